"""Models: the built-in ones, torchvision builders, and parameter groups.

Parameter groups are what discriminative learning rates act on: earliest layers first, the
head last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ComponentError
from .registry import call_with_args, import_object, is_import_path, unknown_name


def mlp(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (128,),
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Fully connected net. Inputs of any shape are flattened first."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for size in hidden:
        block: list[nn.Module] = [nn.Linear(width, size)]
        if batch_norm:
            block.append(nn.BatchNorm1d(size))
        block.append(nn.ReLU())
        if dropout:
            block.append(nn.Dropout(dropout))
        layers.append(nn.Sequential(*block))
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    width: int = 32,
    depth: int = 2,
) -> nn.Sequential:
    """Small conv net for images of any size: conv-BN-ReLU blocks, each halving the size."""
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(depth):
        out = width * 2**i
        layers.append(
            nn.Sequential(
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
        )
        channels = out
    layers.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    layers.append(nn.Linear(channels, num_classes))
    return nn.Sequential(*layers)


def linear(in_features: int, out_features: int = 1) -> nn.Sequential:
    """Linear (or logistic) regression."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features))


BUILTIN_MODELS = {"mlp": mlp, "cnn": cnn, "linear": linear}


def torchvision_builders() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def model_factory(name: str, search_dirs: Sequence[Path] = ()) -> Callable[..., Any]:
    """The function or class a model name stands for (built-in, torchvision, import path)."""
    if is_import_path(name):
        return import_object(name, what="model", search_dirs=search_dirs)
    if name.startswith("torchvision."):
        import torchvision

        builder = name.removeprefix("torchvision.")
        available = torchvision_builders()
        if builder not in available:
            raise unknown_name("torchvision model", builder, available)
        return torchvision.models.get_model_builder(builder)
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name]
    raise unknown_name("model", name, sorted(BUILTIN_MODELS), extra=", or torchvision.<builder>")


def output_count(name: str, args: dict[str, Any]) -> int | None:
    """How many outputs (classes) a model's spec asks for, when its arguments say so."""
    value = args.get("num_classes", args.get("out_features", 1) if name == "linear" else None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def build_model(
    name: str,
    args: dict[str, Any],
    weights: str | None = None,
    search_dirs: Sequence[Path] = (),
) -> nn.Module:
    """Build a model from its spec and load local pretrained weights if given."""
    factory = model_factory(name, search_dirs)
    model = call_with_args(factory, args, what=f"model {name!r}")
    if not isinstance(model, nn.Module):
        raise ComponentError(
            f"model {name!r} must return a torch.nn.Module, got {type(model).__name__}."
        )
    if weights:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise ComponentError(f"model.weights: file {file} does not exist.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or non-torch file: say so, no traceback
        raise ComponentError(
            f"model.weights: {file} is not a readable state_dict ({err})."
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # an lrtool checkpoint.pt
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved under DDP
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ComponentError(f"model.weights: {file} does not fit the model: {first}") from None


# --- parameter groups ---------------------------------------------------------------------

_TORCHVISION_HEADS = ("fc", "classifier", "heads", "head")


def _is_torchvision(model: nn.Module) -> bool:
    return type(model).__module__.startswith("torchvision.models")


def group_prefixes(model: nn.Module, prefixes: list[str] | None) -> list[str]:
    """Module-name prefixes of the parameter groups, earliest first ('' = everything else)."""
    if prefixes:
        return list(prefixes)
    if _is_torchvision(model):
        for head in _TORCHVISION_HEADS:
            if isinstance(getattr(model, head, None), nn.Module):
                return ["", head]  # body, head
    if isinstance(model, nn.Sequential):
        with_params = [
            name for name, child in model.named_children() if any(True for _ in child.parameters())
        ]
        if len(with_params) > 1:
            return with_params
    return [""]


def _matches(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def parameter_groups(
    model: nn.Module, prefixes: list[str] | None = None
) -> list[tuple[str, list[nn.Parameter]]]:
    """Split the trainable parameters into named groups, earliest layers first.

    A parameter goes to the group of the longest prefix it matches; one matching none joins
    the first group (usually the stem: `conv1`, `bn1`, embeddings).
    """
    names = group_prefixes(model, prefixes)
    groups: list[list[nn.Parameter]] = [[] for _ in names]
    for pname, param in model.named_parameters():
        best, best_len = 0, -1
        for i, prefix in enumerate(names):
            if _matches(pname, prefix) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
        groups[best].append(param)
    empty = [names[i] for i, g in enumerate(groups) if not g]
    if prefixes and empty:
        known = sorted({n.rsplit(".", 1)[0] for n, _ in model.named_parameters()})[:20]
        raise ComponentError(
            f"model.groups: prefix {empty[0]!r} matches no parameter. Module names with "
            f"parameters include: {', '.join(known)}."
        )
    labels = [name or ("body" if len(names) > 1 else "all") for name in names]
    return [(label, g) for label, g in zip(labels, groups, strict=True) if g]
