"""Models: the built-in ones, torchvision builders, and parameter groups.

Parameter groups are what discriminative learning rates act on: earliest layers first, the
head last.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from .errors import ComponentError, ConfigError, LrtoolError
from .registry import call_with_args, import_object, is_import_path, unknown_name


def _sizes(hidden: Any = (), **sizes: Any) -> None:
    """The built-in models' sizes are whole numbers >= 1 (`hidden`: a list of them), said in
    the file's keys before torch says it in its own words or builds an empty layer."""

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    for key, value in sizes.items():
        if not whole(value):
            raise ComponentError(f"model.args.{key}: expected a whole number >= 1, got {value!r}.")
    if not isinstance(hidden, (list, tuple)) or not all(whole(v) for v in hidden):
        raise ComponentError(
            f"model.args.hidden: expected a list of whole numbers >= 1, such as [128], got "
            f"{hidden!r}."
        )


def mlp(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (128,),
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Fully connected net. Inputs of any shape are flattened first."""
    _sizes(in_features=in_features, num_classes=num_classes, hidden=hidden)
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ComponentError(f"model.args.dropout: expected a number in [0, 1), got {dropout!r}.")
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
    _sizes(in_channels=in_channels, num_classes=num_classes, width=width, depth=depth)
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
    _sizes(in_features=in_features, out_features=out_features)
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


def too_few_outputs(
    outputs: int,
    classes: int,
    key: str | None,
    names: Sequence[str] = (),
    default: bool = False,
) -> str:
    """The one message for labels beyond the model's outputs, found at load time (the data's
    labels or class names) or at the first batch (its targets)."""
    listed = f": {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}" if names else ""
    if key:
        what = f"model.args.{key} is {outputs}{' (its default)' if default else ''}"
        fix = f"Set model.args.{key}: {classes}."
    else:
        what = f"the model outputs {outputs} classes"
        fix = f"Make the model output {classes} classes (its last layer)."
    return (
        f"{what}, but the data has {classes} classes (labels 0 to {classes - 1}{listed}); the "
        f"loss would fail at the first batch with a label of {outputs} or more. {fix}"
    )


def build_model(
    name: str,
    args: dict[str, Any],
    weights: str | None = None,
    search_dirs: Sequence[Path] = (),
) -> nn.Module:
    """Build a model from its spec and load pretrained weights if given (see `load_weights`)."""
    factory = model_factory(name, search_dirs)
    model = call_with_args(factory, args, what=f"model {name!r}")
    if not isinstance(model, nn.Module):
        raise ComponentError(
            f"model {name!r} must return a torch.nn.Module, got {type(model).__name__}."
        )
    if weights:
        load_weights(model, weights, model_name=name)
    return model


def _num_classes_parameter(name: str, search_dirs: Sequence[Path]) -> inspect.Parameter | None:
    """The builder's `num_classes` parameter; None without one (or an unreadable builder)."""
    try:
        params = inspect.signature(model_factory(name, search_dirs)).parameters
    except (TypeError, ValueError, LrtoolError):
        return None
    return params.get("num_classes")


def takes_num_classes(name: str, search_dirs: Sequence[Path] = ()) -> bool:
    """Whether the model's builder accepts `num_classes` (torchvision's all do, via kwargs)."""
    return name.startswith("torchvision.") or _num_classes_parameter(name, search_dirs) is not None


def requires_num_classes(name: str, search_dirs: Sequence[Path] = ()) -> bool:
    """Whether the builder must be given `num_classes` (torchvision's default to 1000)."""
    if name.startswith("torchvision."):
        return False
    param = _num_classes_parameter(name, search_dirs)
    return param is not None and param.default is inspect.Parameter.empty


# --- pretrained weights -------------------------------------------------------------------

# A torchvision weights name: DEFAULT, IMAGENET1K_V1 or ResNet18_Weights.IMAGENET1K_V1. A file
# name such as resnet18.pth never matches (its suffix is lower case).
_WEIGHTS_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Z][A-Z0-9_]*$")


def is_weights_name(weights: str) -> bool:
    """True when `model.weights` names torchvision weights rather than a local file."""
    return bool(_WEIGHTS_NAME.match(weights)) and not Path(weights).exists()


def torchvision_weights(model_name: str, weights: str) -> Any:
    """The torchvision weights enum member `weights` names for `torchvision.<builder>`."""
    import torchvision

    if not model_name.startswith("torchvision."):
        raise ConfigError(
            f"model.weights: {weights!r} is neither a file nor usable as a weights name: "
            f"names such as DEFAULT or IMAGENET1K_V1 exist only for torchvision.<builder> "
            f"models, and model.name is {model_name!r}. Give the path of a state_dict file."
        )
    builder = model_name.removeprefix("torchvision.")
    enum = torchvision.models.get_model_weights(builder)
    enum_name, _, member = weights.rpartition(".")
    if member in enum.__members__ and enum_name in ("", enum.__name__):
        return enum[member]
    raise ConfigError(
        f"model.weights: {weights!r} is not a file, nor a weights name of {model_name}; its "
        f"names are {', '.join(enum.__members__)} (or {enum.__name__}.<name>). Give one of "
        "them or the path of a local state_dict file."
    )


def cached_weights_file(weights: Any) -> Path:
    """Where torchvision's own cache keeps a weights file: $TORCH_HOME/hub/checkpoints/<file>."""
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def weights_available(model_name: str, weights: str) -> bool:
    """Whether `model.weights` can be loaded without the network (a file, or a cached name)."""
    if not is_weights_name(weights):
        return Path(weights).is_file()
    try:
        return cached_weights_file(torchvision_weights(model_name, weights)).is_file()
    except LrtoolError:
        return False


def load_weights(model: nn.Module, weights: str, model_name: str = "") -> list[str]:
    """Load a local state_dict file or cached torchvision weights into `model`.

    Returns notes for `lrtool check`: where the weights came from, and which head was
    replaced. Nothing is downloaded: torchvision weights must already be in torchvision's
    cache ($TORCH_HOME/hub/checkpoints), and the error says which file to fetch and where.
    """
    if is_weights_name(weights):
        member = torchvision_weights(model_name, weights)
        file = cached_weights_file(member)
        if not file.is_file():
            raise ConfigError(
                f"model.weights: {weights} ({type(member).__name__}.{member.name}) is not in "
                f"torchvision's cache and lrtool downloads nothing. Fetch {member.url} and put "
                f"it at {file} (TORCH_HOME sets the folder), or give model.weights the path of "
                "a local state_dict file."
            )
        source = f"torchvision {type(member).__name__}.{member.name} from {file}"
    else:
        file = Path(weights)
        if file.is_dir():
            inside = [n for n in ("model.pt", "checkpoint.pt") if (file / n).is_file()]
            hint = f": did you mean {file / inside[0]}?" if inside else "."
            raise ComponentError(
                f"model.weights: {file} is a folder, not a file. Give the path of a state_dict "
                f"file{hint}"
            )
        if not file.is_file():
            raise ComponentError(f"model.weights: file {file} does not exist.")
        source = f"local state_dict {file}"
    state = _read_state_dict(file)
    return [f"weights: {source}", *fit_state_dict(model, state, str(file))]


# torch's weights-only refusal opens with advice lrtool must not pass on (re-run with
# weights_only=False: arbitrary code execution) and a plea to file an issue; the reason
# itself follows "WeightsUnpickler error:".
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.+)")
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def torch_load_reason(err: BaseException) -> str:
    """The line of a `torch.load` error that says what is wrong with the file, nothing else.

    "Unsupported operand 123" rather than six lines that end in "Please file an issue"; for a
    whole pickled model, the class it holds.
    """
    text = str(err).strip()
    found = _UNPICKLER_REASON.search(text)
    if found:
        text = found[1]
        unsafe = _UNSAFE_GLOBAL.search(text)
        if unsafe:
            return f"it holds a pickled Python object ({unsafe[1]}), not only tensors"
    first = text.splitlines()[0].strip() if text else ""
    # The first sentence: miniz's "PytorchStreamReader failed reading zip archive: failed
    # finding central directory" is followed by a paragraph of speculation.
    first = first.split(". ")[0].rstrip(".")
    if isinstance(err, EOFError) or not first:
        return f"{type(err).__name__}: the file ends early" + (f" ({first})" if first else "")
    return first


def read_torch_file(
    path: Path, label: str, kind: str, fix: str, error: type[LrtoolError] = ConfigError
) -> Any:
    """`torch.load(path, weights_only=True)`, or one `error` paragraph naming `label`.

    `label` is the key or flag that named the file (model.weights, --resume), `kind` what it
    should hold ("state_dict", "checkpoint"), `fix` what to give instead. Nothing but tensors
    and plain data is unpickled.
    """
    try:
        with warnings.catch_warnings():
            # "Detected pickle protocol 4 ... please file an issue": torch's, not the user's.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, foreign or unsafe: say which file, no traceback
        reason = "the file is empty" if path.stat().st_size == 0 else torch_load_reason(err)
        raise error(
            f"{label}: {path} is not a PyTorch {kind} file lrtool can read (torch.load: "
            f"{reason}). {fix} lrtool unpickles tensors and plain data only, never code."
        ) from None


def _read_state_dict(file: Path) -> dict[str, Any]:
    state = read_torch_file(
        file,
        "model.weights",
        "state_dict",
        "Give a state_dict saved with torch.save(model.state_dict(), path).",
        ComponentError,
    )
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # an lrtool checkpoint.pt
    if not isinstance(state, dict):
        raise ComponentError(
            f"model.weights: {file} holds a {type(state).__name__}, not a state_dict (a mapping "
            "of parameter names to tensors); save model.state_dict(), not the model."
        )
    if state and all(k.startswith("module.") for k in state):
        state = _renamed(state, lambda k: k.removeprefix("module."))  # saved under DDP
    # torchvision's densenet files predate its module names ("norm.1" for "norm1"); its own
    # loader renames them the same way.
    return _renamed(state, lambda k: _DENSENET_OLD_KEY.sub(r"\1\2", k))


def _renamed(state: dict[str, Any], rename: Callable[[str], str]) -> dict[str, Any]:
    """`state` with its keys renamed, keeping the per-module versions torch stores beside
    them (`_metadata`: mnasnet, for one, refuses a state_dict without them)."""
    out = OrderedDict((rename(k), v) for k, v in state.items())
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        out._metadata = OrderedDict((rename(k), v) for k, v in metadata.items())  # type: ignore[attr-defined]
    return out


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)

# Top-level modules that hold a classifier's output layer (torchvision's names: resnet `fc`,
# mobilenet/efficientnet/convnext/vgg/densenet/squeezenet `classifier`, vit `heads`, swin
# `head`; inception's and googlenet's auxiliary classifiers).
_HEAD_MODULES = ("fc", "classifier", "heads", "head", "AuxLogits", "aux1", "aux2")


def _head_layer(model: nn.Module, key: str) -> str | None:
    """The output layer `key` belongs to, when it is a classifier head's Linear or Conv."""
    layer_name = key.rpartition(".")[0]
    if layer_name.split(".")[0] not in _HEAD_MODULES:
        return None
    try:
        layer = model.get_submodule(layer_name)
    except AttributeError:
        return None
    return layer_name if isinstance(layer, (nn.Linear, nn.Conv2d)) else None


def fit_state_dict(model: nn.Module, state: dict[str, Any], source: str) -> list[str]:
    """Load `state` into `model`: every weight strictly, except a head of another class count.

    1) A classifier head whose output size differs (a 1000-class file, `num_classes: 10`) keeps
       the model's own freshly initialised layer: fastai's and timm's fine-tuning recipe.
    2) Any other difference (a key missing, extra, or of another shape) is an error listing
       each key with both shapes.
    """
    own = model.state_dict()
    heads: dict[str, tuple[int, int]] = {}
    head_keys: set[str] = set()
    mismatched: list[str] = []
    for key, value in state.items():
        if key not in own or not isinstance(value, torch.Tensor):
            continue
        mine = own[key]
        if tuple(value.shape) == tuple(mine.shape):
            continue
        layer = _head_layer(model, key)
        if layer is not None and value.ndim >= 1 and value.shape[1:] == mine.shape[1:]:
            heads[layer] = (int(value.shape[0]), int(mine.shape[0]))
            head_keys.add(key)
        else:
            mismatched.append(f"{key}: file {tuple(value.shape)}, model {tuple(mine.shape)}")
    # A head's every tensor is replaced together (the bias goes with the weight).
    head_keys |= {k for k in state if k.rpartition(".")[0] in heads}
    kept = OrderedDict((k, v) for k, v in state.items() if k not in head_keys)
    kept._metadata = getattr(state, "_metadata", None)  # type: ignore[attr-defined]
    missing: list[str] = []
    unexpected: list[str] = []
    if not mismatched:
        try:
            result = model.load_state_dict(kept, strict=False)
        except (RuntimeError, TypeError) as err:
            first = str(err).strip().splitlines()[-1].strip()
            raise ComponentError(
                f"model.weights: {source} does not fit the model: {first}"
            ) from None
        missing = [k for k in result.missing_keys if k not in head_keys]
        unexpected = list(result.unexpected_keys)
    if mismatched or missing or unexpected:
        parts = []
        for label, keys in (
            ("of another shape", mismatched),
            ("missing from the file", missing),
            ("in the file but not in the model", unexpected),
        ):
            if keys:
                shown = "; ".join(keys[:10]) + (
                    f"; and {len(keys) - 10} more" if len(keys) > 10 else ""
                )
                parts.append(f"{len(keys)} key(s) {label}: {shown}")
        raise ComponentError(
            f"model.weights: {source} does not fit the model. " + ". ".join(parts) + ". Only "
            "a classifier head of another class count is replaced on its own (fc, classifier, "
            "heads, head); other keys must match: is it the state_dict of the same "
            "architecture (model.name, model.args)?"
        )
    return [
        f"head replaced: {layer} {old} → {new} classes, initialised fresh"
        for layer, (old, new) in heads.items()
    ]


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
    the first group (usually the stem: `conv1`, `bn1`, embeddings). Every prefix given must
    match a parameter of its own, and no prefix may repeat.
    """
    if prefixes:
        _check_prefixes(model, prefixes)
    names = group_prefixes(model, prefixes)
    groups: list[list[nn.Parameter]] = [[] for _ in names]
    for pname, param in model.named_parameters():
        best, best_len = 0, -1
        for i, prefix in enumerate(names):
            if _matches(pname, prefix) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
        groups[best].append(param)
    labels = [name or ("body" if len(names) > 1 else "all") for name in names]
    return [(label, g) for label, g in zip(labels, groups, strict=True) if g]


def _check_prefixes(model: nn.Module, prefixes: list[str]) -> None:
    """Repeated prefixes, and prefixes that match no parameter (or only ones a longer prefix
    takes), are errors: such a group would be empty, or catch the unmatched parameters."""
    repeated = sorted({p for p in prefixes if prefixes.count(p) > 1})
    if repeated:
        raise ComponentError(
            f"model.groups: {', '.join(repr(p) for p in repeated)} appears more than once in "
            f"{prefixes}; each prefix names one group: keep one of each."
        )
    names = [n for n, _ in model.named_parameters()]
    known = sorted({n.rsplit(".", 1)[0] for n in names})[:20]
    for prefix in prefixes:
        matched = [n for n in names if _matches(n, prefix)]
        if not matched:
            raise ComponentError(
                f"model.groups: prefix {prefix!r} matches no parameter. Module names with "
                f"parameters include: {', '.join(known)}."
            )
        longer = [p for p in prefixes if len(p) > len(prefix) and p.startswith(prefix)]
        if all(any(_matches(n, p) for p in longer) for n in matched):
            raise ComponentError(
                f"model.groups: every parameter that prefix {prefix!r} matches goes to a "
                f"longer prefix ({', '.join(repr(p) for p in longer)}), so its group would be "
                "empty. Remove one of them."
            )


def nothing_to_train(model: nn.Module, model_name: str) -> str | None:
    """Why the optimizer would have nothing to change in the model, else None."""
    params = list(model.parameters())
    if not params:
        return (
            f"model {model_name!r} has no parameters (only buffers or parameter-free layers): "
            "there is nothing to train. Give it layers with weights (nn.Linear, nn.Conv2d, ...)."
        )
    if not any(p.requires_grad for p in params):
        return (
            f"no parameter requires a gradient: the whole model is frozen (model "
            f"{model_name!r} sets requires_grad=False on all {len(params)} of its parameter "
            "tensors), so no step can change it. Leave requires_grad on for the layers to "
            "train (at least the head); to train the head alone for a while, use model.groups "
            "and train.freeze_epochs."
        )
    return None
