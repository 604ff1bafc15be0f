"""Names to factories: import paths, optimizers, losses and metrics.

A component is named by a short built-in name or by an import path 'package.module:callable'.
Import paths resolve from the current folder, then from the experiment file's folder (the
same rule as data paths), so a `components.py` beside the experiment file works from anywhere.
Importing a module runs its code: an experiment file is as trusted as a script.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
import sys
import traceback
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ComponentError


def is_import_path(name: str) -> bool:
    return ":" in name


def import_object(path: str, *, what: str, search_dirs: Sequence[Path] = ()) -> Any:
    """Resolve 'package.module:attr' (attr may be dotted): the current folder first, then
    `search_dirs` (the experiment file's folder), then the installed packages."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ComponentError(
            f"{what} import path {path!r} must look like 'package.module:callable'."
        )
    folders = [str(Path(folder).resolve()) for folder in (Path.cwd(), *search_dirs)]
    for folder in reversed(folders):  # inserted last = searched first: the current folder
        if folder not in sys.path:
            sys.path.insert(0, folder)
    _forget_other_copy(module_name, folders)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        where = " or ".join(dict.fromkeys(folders))
        # 'sub.mod' is the file sub/mod.py (in a folder sub), not sub.py.
        file = module_name.replace(".", "/") + ".py"
        raise ComponentError(
            f"{what} {path!r}: module {module_name!r} does not import ({err}). Check the "
            f"spelling, that the package is installed, or that {file} is in {where}."
        ) from None
    except Exception as err:  # the module's own code raised while importing: say where
        frames = traceback.extract_tb(err.__traceback__)
        at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        raise ComponentError(
            f"{what} {path!r}: importing module {module_name!r} failed with "
            f"{type(err).__name__}: {err}{at}."
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


def _forget_other_copy(module_name: str, folders: list[str]) -> None:
    """Two experiments in two folders, each with its own components.py: Python caches the
    first one imported under the name, and the second experiment silently built the first's
    model. When the module this experiment's folders hold is not the one cached, the cached
    one (and its submodules) is dropped and this folder searched first."""
    parts = module_name.split(".")
    top = parts[0]
    here = next(
        (
            Path(folder)
            for folder in folders
            if Path(folder, *parts).with_suffix(".py").is_file()
            or Path(folder, *parts, "__init__.py").is_file()
        ),
        None,
    )
    cached = sys.modules.get(top)
    if here is None or cached is None:
        return
    where = getattr(cached, "__file__", None) or next(iter(getattr(cached, "__path__", [])), None)
    if where is not None and Path(where).resolve().is_relative_to(here):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]
    sys.path.remove(str(here))
    sys.path.insert(0, str(here))
    importlib.invalidate_caches()


def unknown_name(what: str, name: str, available: list[str], extra: str = "") -> ComponentError:
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ComponentError(
        f"Unknown {what} {name!r}.{hint} Available: {', '.join(available)}{extra}; or give an "
        "import path 'package.module:callable'."
    )


# --- arguments against signatures --------------------------------------------------------

_NUMBER_TYPE = re.compile(r"\b(float|int)\b")


def number_from_text(text: str) -> int | float | None:
    """The number a text spells ("3", "1e-3", " 0.9 "), or None."""
    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            pass
    return None


def _takes_number(param: inspect.Parameter) -> bool:
    """Does the parameter take a number (or a tuple of numbers, like Adam's betas)?"""
    default = param.default
    if isinstance(default, (tuple, list)) and default:
        default = default[0]
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return True
    annotation = param.annotation
    if annotation in (int, float):
        return True
    # `from __future__ import annotations` leaves annotations as text: "float | None".
    return (
        isinstance(annotation, str)
        and bool(_NUMBER_TYPE.search(annotation))
        and ("str" not in annotation)
    )


def takes_number(factory: Callable[..., Any], name: str, *, skip: int = 0) -> bool:
    """Does `factory`'s parameter `name` take a number (`_takes_number`)? False when unknown."""
    try:
        params = list(inspect.signature(factory).parameters.values())[skip:]
    except (TypeError, ValueError):
        return False
    return any(p.name == name and _takes_number(p) for p in params)


def _as_number(value: Any) -> Any:
    """Numbers written as text become numbers, in lists too; anything else is left alone."""
    if isinstance(value, str):
        number = number_from_text(value)
        return value if number is None else number
    if isinstance(value, (list, tuple)):
        return type(value)(_as_number(v) for v in value)
    return value


def check_args(
    factory: Callable[..., Any],
    args: dict[str, Any],
    *,
    skip: int = 0,
    required: bool = True,
    hidden: Collection[str] = (),
    filled_later: Collection[str] = (),
) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    """Match keyword arguments against a factory's signature, as calling it would.

    Returns the arguments with numbers written as text ("1e-3") turned into numbers wherever
    the parameter takes a number, and the problems as (argument or None, message): unknown
    arguments (with "did you mean"), and missing required ones when `required`. `skip` leaves
    out leading parameters lrtool fills in itself (an optimizer's params); `hidden` ones are
    not offered in the list of valid names.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return dict(args), []  # a builtin without a signature: the call will decide
    params = list(signature.parameters.values())[skip:]
    named = {
        p.name: p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    offered = [name for name in named if name not in hidden]
    fixed: dict[str, Any] = {}
    problems: list[tuple[str | None, str]] = []
    for key, value in args.items():
        param = named.get(key)
        if param is None and not open_ended:
            close = difflib.get_close_matches(key, offered, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append((key, f"unknown argument{hint} (valid: {', '.join(offered)})"))
            continue
        fixed[key] = _as_number(value) if param is not None and _takes_number(param) else value
    if required:
        missing = [
            n
            for n, p in named.items()
            if p.default is p.empty and n not in args and n not in filled_later
        ]
        if missing:
            names = ", ".join(repr(n) for n in missing)
            problems.append((None, f"missing required argument{'s' * (len(missing) > 1)} {names}"))
    return fixed, problems


def call_with_args(
    factory: Callable[..., Any],
    args: dict[str, Any],
    *,
    what: str,
    given: dict[str, Any] | None = None,
) -> Any:
    """Call a user or library factory with keyword args; a bad argument is a clear error.

    `given` is what the experiment file wrote when lrtool adds arguments of its own: the
    error shows the user's arguments, not lrtool's."""
    try:
        inspect.signature(factory).bind(**args)
    except TypeError as err:
        shown = args if given is None else given
        raise ComponentError(
            f"{what}: arguments {shown} do not fit its signature: {err}."
        ) from None
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


# Optimizers whose step does not fit lrtool's loop: one step per mini-batch, several named
# parameter groups, dense gradients.
_UNSUPPORTED_OPTIMIZERS: dict[type[torch.optim.Optimizer], str] = {
    torch.optim.LBFGS: "it needs a closure that re-evaluates the loss several times per step "
    "and accepts a single parameter group, while the range test and one-cycle training take "
    "one step per mini-batch over one group per layer block. Use sgd, adam or adamw",
    torch.optim.SparseAdam: "it accepts only sparse gradients (from "
    "nn.Embedding(sparse=True)); every other layer's gradients are dense, so the first step "
    "would fail. Use adam or adamw (or a sparse optimizer of your own for the embeddings)",
}


def optimizer_class(name: str, search_dirs: Sequence[Path] = ()) -> type[torch.optim.Optimizer]:
    """The optimizer class a name stands for; unknown and unsupported ones are errors."""
    if is_import_path(name):
        cls = import_object(name, what="optimizer", search_dirs=search_dirs)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ComponentError(
                f"optimizer {name!r} must be a torch.optim.Optimizer subclass, got {cls!r}."
            )
    else:
        classes = optimizer_classes()
        if name.lower() not in classes:
            raise unknown_name("optimizer", name, sorted(classes))
        cls = classes[name.lower()]
    why = unsupported_optimizer(cls)
    if why:
        raise ComponentError(f"optimizer {name!r} cannot be used with lrtool: {why}.")
    return cls


def unsupported_optimizer(cls: type) -> str | None:
    """Why lrtool's loop cannot step this optimizer class, or None."""
    for unsupported, why in _UNSUPPORTED_OPTIMIZERS.items():
        if issubclass(cls, unsupported):
            return why
    return None


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
# Losses whose targets are probabilities, from 0 to 1.
BINARY_LOSSES = {"bce_with_logits"}


def loss_factory(name: str, search_dirs: Sequence[Path] = ()) -> Callable[..., Any]:
    """A loss class (built with the args) or a loss function (the args bound to it)."""
    if is_import_path(name):
        return import_object(name, what="loss", search_dirs=search_dirs)
    if name not in LOSSES:
        raise unknown_name("loss", name, sorted(LOSSES))
    return LOSSES[name]


def build_loss(
    name: str, args: dict[str, Any], search_dirs: Sequence[Path] = ()
) -> Callable[..., torch.Tensor]:
    factory = loss_factory(name, search_dirs)
    if isinstance(factory, type):
        if name in LOSSES:
            # YAML has no tensors: torch's class weights (weight, pos_weight) arrive as lists.
            args = {
                k: torch.tensor(v, dtype=torch.float32) if _numbers(v) else v
                for k, v in args.items()
            }
        return call_with_args(factory, args, what=f"loss {name!r}")
    return functools.partial(factory, **args) if args else factory


def _numbers(value: Any) -> bool:
    """A non-empty list of numbers (not booleans), as YAML gives `weight: [1, 1, 2]`."""
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


# --- metrics ------------------------------------------------------------------------------


def _shapes(output: torch.Tensor, target: torch.Tensor) -> str:
    return (
        f"outputs of shape {tuple(output.shape)} and targets of shape {tuple(target.shape)} "
        f"({str(target.dtype).removeprefix('torch.')})"
    )


def _accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Correct predictions, summed over the batch; three kinds of targets.

    1) Class indices (targets [N] of integers, outputs [N, C]): the argmax is the class.
    2) One 0/1 label per sample (outputs [N] or [N, 1]): a logit above 0 (sigmoid > 0.5)
       predicts 1.
    3) Multi-label (targets [N, k] of 0/1, outputs [N, k], bce_with_logits): each label as in
       2); a sample scores the share of its k labels predicted right (element-wise accuracy).
    ValueError for anything else.
    """
    if output.ndim == 0 or target.ndim == 0 or len(output) != len(target):
        raise ValueError(f"expected one output row per target, got {_shapes(output, target)}")
    if (
        output.ndim == 2
        and output.shape[1] > 1
        and target.ndim == 1
        and not target.is_floating_point()
    ):
        return (output.argmax(dim=1) == target).float().sum()
    if output.numel() == target.numel():
        predicted = output.reshape(target.shape) > 0
        correct = (predicted == (target > 0.5)).float().reshape(len(target), -1)
        return correct.mean(dim=1).sum()
    raise ValueError(
        "expected class indices (targets [N] with outputs [N, classes]) or 0/1 labels with one "
        f"output each (targets [N] or [N, k] with outputs of the same size), got "
        f"{_shapes(output, target)}"
    )


def _mae(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of each sample over its target values, summed over the batch."""
    if output.ndim == 0 or target.ndim == 0 or output.shape[0] != target.shape[0]:
        raise ValueError(f"expected one output row per target, got {_shapes(output, target)}")
    if output.numel() != target.numel():
        raise ValueError(
            "expected one output per target value (a regression model's predictions), got "
            f"{_shapes(output, target)}"
        )
    error = (output.reshape(target.shape) - target).abs().float()
    return error.reshape(len(target), -1).mean(dim=1).sum()


# Each metric returns a *sum* over the batch, so epoch values are exact means.
METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "accuracy": _accuracy,
    "mae": _mae,
}


def metric(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in METRICS:
        raise unknown_name("metric", name, sorted(METRICS))
    return METRICS[name]


def metric_mismatch(
    name: str, loss_name: str, output: torch.Tensor, target: torch.Tensor
) -> str | None:
    """Why metric `name` cannot be computed on a batch's outputs and targets, else None.

    The probe asks this of the first batch, so a metric that does not fit the model, the loss
    or the targets is refused before training, not after its first epoch.
    """
    if name == "accuracy" and loss_name in CLASSIFICATION_LOSSES and target.is_floating_point():
        return (
            f"metrics: accuracy compares the predicted class with one class index per sample, "
            f"but loss {loss_name!r} gets {_shapes(output, target)} (class probabilities?). "
            "Give integer class indices, or leave accuracy out (metrics: [])."
        )
    try:
        METRICS[name](output, target)
    except (ValueError, RuntimeError) as err:
        advice = (
            "Accuracy needs class scores against class indices, or logits against 0/1 labels"
            if name == "accuracy"
            else "mae needs one prediction per real-valued target (a regression loss)"
        )
        return (
            f"metrics: {name} cannot be computed with loss {loss_name!r} on this model and "
            f"data: {err}. {advice}; remove {name} from metrics, or "
            "change the model or the loss to fit it."
        )
    return None
