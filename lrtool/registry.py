"""Names to factories: import paths, optimizers, losses and metrics.

A component is named by a short built-in name or by an import path 'package.module:callable'.
Import paths resolve relative to the current directory too, so a `components.py` beside the
experiment file works.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ComponentError


def is_import_path(name: str) -> bool:
    return ":" in name


def import_object(path: str, *, what: str, search_dirs: tuple[Path, ...] = ()) -> Any:
    """Resolve 'package.module:attr' (attr may be dotted), trying the current directory first."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ComponentError(
            f"{what} import path {path!r} must look like 'package.module:callable'."
        )
    for folder in (Path.cwd(), *search_dirs):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ComponentError(
            f"{what} {path!r}: module {module_name!r} does not import ({err}). Check the "
            "spelling, that the package is installed, or that the file is in the current folder."
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(module) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ComponentError(
                f"{what} {path!r}: module {module_name!r} has no attribute {part!r}.{hint}"
            ) from None
    if not callable(obj):
        raise ComponentError(f"{what} {path!r} is not callable (got {type(obj).__name__}).")
    return obj


def unknown_name(what: str, name: str, available: list[str], extra: str = "") -> ComponentError:
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ComponentError(
        f"Unknown {what} {name!r}.{hint} Available: {', '.join(available)}{extra}; or give an "
        "import path 'package.module:callable'."
    )


def call_with_args(factory: Callable[..., Any], args: dict[str, Any], *, what: str) -> Any:
    """Call a user or library factory with keyword args; a bad argument is a clear error."""
    try:
        inspect.signature(factory).bind(**args)
    except TypeError as err:
        raise ComponentError(f"{what}: arguments {args} do not fit its signature: {err}.") from None
    except ValueError:
        pass  # builtins without a signature: let the call decide
    return factory(**args)


# --- optimizers ---------------------------------------------------------------------------


def optimizer_classes() -> dict[str, type[torch.optim.Optimizer]]:
    """Every optimizer class in torch.optim, by lower-case name."""
    return {
        name.lower(): cls
        for name, cls in vars(torch.optim).items()
        if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    }


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    if is_import_path(name):
        cls = import_object(name, what="optimizer")
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ComponentError(
                f"optimizer {name!r} must be a torch.optim.Optimizer subclass, got {cls!r}."
            )
        return cls
    classes = optimizer_classes()
    if name.lower() not in classes:
        raise unknown_name("optimizer", name, sorted(classes))
    return classes[name.lower()]


# --- losses -------------------------------------------------------------------------------

LOSSES: dict[str, type[nn.Module]] = {
    "cross_entropy": nn.CrossEntropyLoss,
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "smooth_l1": nn.SmoothL1Loss,
    "huber": nn.HuberLoss,
    "bce_with_logits": nn.BCEWithLogitsLoss,
    "nll": nn.NLLLoss,
}

# Losses whose targets are class indices: the data path keeps integer targets for them.
CLASSIFICATION_LOSSES = {"cross_entropy", "nll"}


def build_loss(name: str, args: dict[str, Any]) -> Callable[..., torch.Tensor]:
    if is_import_path(name):
        obj = import_object(name, what="loss")
        if isinstance(obj, type):
            return call_with_args(obj, args, what=f"loss {name!r}")
        return functools.partial(obj, **args) if args else obj
    if name not in LOSSES:
        raise unknown_name("loss", name, sorted(LOSSES))
    return call_with_args(LOSSES[name], args, what=f"loss {name!r}")


# --- metrics ------------------------------------------------------------------------------


def _accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of correct predictions: argmax over classes, or a 0.5 threshold on one logit."""
    if output.ndim == 1 or output.shape[-1] == 1:
        predicted = (output.reshape(target.shape) > 0).to(target.dtype)
    else:
        predicted = output.argmax(dim=-1)
    return (predicted == target).float().sum()


def _mae(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output.reshape(target.shape) - target).abs().float().sum()


# Each metric returns a *sum* over the batch, so epoch values are exact means.
METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "accuracy": _accuracy,
    "mae": _mae,
}


def metric(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in METRICS:
        raise unknown_name("metric", name, sorted(METRICS))
    return METRICS[name]
