"""The probe: one batch through the model and the loss before a run starts.

A model that does not fit its data (`num_classes: 5` on ten classes, `in_features: 32` on 64
features) would otherwise fail deep in the training loop in torch's words ("Target 7 is out of
bounds", "mat1 and mat2 shapes cannot be multiplied"). The probe meets it once, at the start of
find, train, verify, check and --smoke, and says it in the experiment's keys, in the same
words as the load-time check on the data's labels (`models.too_few_outputs`):
"model.args.num_classes is 5, but the data has 10 classes (labels 0 to 9); ... Set
model.args.num_classes: 10."

The probe leaves no trace: the random state, BatchNorm statistics and gradients are as before,
so a probed run gives the same numbers as an unprobed one.
"""

from __future__ import annotations

import math
import re
import traceback
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .build import Built, build
from .config import Experiment
from .data import Batches
from .errors import ComponentError, ConfigError, LossCannotTrain, user_frames
from .models import too_few_outputs
from .registry import BINARY_LOSSES, CLASSIFICATION_LOSSES, LOSSES, metric_mismatch
from .runtime import preserved_rng

# Model arguments that set the number of outputs, most common first.
_OUTPUT_KEYS = ("num_classes", "out_features", "n_classes", "classes", "num_outputs", "out_dim")
# Built-in losses that pair each output with the target value at the same place.
ELEMENTWISE_LOSSES = set(LOSSES) - CLASSIFICATION_LOSSES
_MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
_CHANNELS = re.compile(r"expected input\[[\d, ]+\] to have (\d+) channels, but got (\d+) channels")


# --- pure: what a mismatch means in the experiment's keys ---------------------------------


def output_key(model_name: str, model_args: dict[str, Any]) -> str | None:
    """The model argument that sets its number of outputs, if lrtool can tell."""
    for key in _OUTPUT_KEYS:
        if key in model_args:
            return key
    if model_name in ("mlp", "cnn") or model_name.startswith("torchvision."):
        return "num_classes"
    if model_name == "linear":
        return "out_features"
    return None


def class_mismatch(
    loss_name: str,
    output_shape: tuple[int, ...],
    max_target: int | None,
    model_name: str,
    model_args: dict[str, Any],
) -> str | None:
    """The message for class-index targets beyond the model's outputs, or None if they fit.

    Cross-entropy and NLL read the classes along dimension 1 of the output.
    """
    if loss_name not in CLASSIFICATION_LOSSES or len(output_shape) < 2 or max_target is None:
        return None
    outputs = output_shape[1]
    if max_target < outputs:
        return None
    if len(output_shape) >= 3 and outputs == 1:
        # (N, 1, C): a stray dimension, not a one-class model; resizing the last layer would
        # not help.
        return (
            f"the model's outputs have shape {output_shape}, and loss {loss_name!r} reads the "
            "classes along dimension 1, which has size 1: the outputs carry an extra dimension "
            "(an unsqueeze, or a sequence of length 1). Return outputs of shape (batch, "
            "classes), e.g. `out.squeeze(1)` in the model's forward."
        )
    key = output_key(model_name, model_args)
    return too_few_outputs(outputs, max_target + 1, key, default=key not in model_args)


def input_mismatch(
    error_text: str,
    input_shape: tuple[int, ...],
    model_name: str,
    model_args: dict[str, Any],
) -> str | None:
    """The message for a first layer that does not take the data's features (or channels).

    Recognised from torch's own words; a mismatch deeper in the model (between two of its
    layers) is the model's business and gives None.
    """
    shape = tuple(input_shape)
    found = _MATMUL.search(error_text)
    if found:
        has, expects = int(found[2]), int(found[3])
        # A flattening model sees all features at once, a Linear on the last axis only those.
        if has not in (math.prod(shape[1:]), shape[-1]):
            return None
        key = (
            "in_features"
            if "in_features" in model_args or model_name in ("mlp", "linear")
            else None
        )
        fix = f"set model.args.in_features: {has}" if key else f"make its first layer take {has}"
        return (
            f"the model expects {expects} input features but the data has {has} (batches of "
            f"shape {shape}): {fix}."
        )
    found = _CHANNELS.search(error_text)
    if found and len(shape) > 1:
        expects, has = int(found[1]), int(found[2])
        if has != shape[1]:
            return None
        key = "in_channels" in model_args or model_name == "cnn"
        fix = f"set model.args.in_channels: {has}" if key else f"make its first layer take {has}"
        return (
            f"the model expects {expects} input channels but the images have {has} (batches of "
            f"shape {shape}): {fix}."
        )
    return None


# --- the largest class index in the data --------------------------------------------------


def _dataset_targets(dataset: Dataset) -> torch.Tensor | None:
    """All targets of a dataset without reading its samples, when it keeps them apart."""
    if isinstance(dataset, Subset):
        base = _dataset_targets(dataset.dataset)
        return None if base is None else base[torch.as_tensor(dataset.indices, dtype=torch.long)]
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[1]
    targets = getattr(dataset, "targets", None)  # torchvision datasets, ImageFolder
    if targets is None:
        return None
    try:
        return torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        return None


def _split_targets(batches: Batches) -> torch.Tensor | None:
    targets = batches.tensors[1] if batches.tensors is not None else None
    return _dataset_targets(batches.dataset) if targets is None else targets


def target_range(
    built: Built, batch: torch.Tensor, ignore_index: int | None = None
) -> tuple[float, float]:
    """(smallest, largest) target of every split when the data keeps them apart, else of
    `batch` (the probe's); `ignore_index` left out."""
    parts = [_split_targets(b) for b in (built.train_data, built.val_data)]
    known = [t for t in parts if t is not None] or [batch]
    values = torch.cat([t.detach().reshape(-1).double().cpu() for t in known])
    if ignore_index is not None:
        values = values[values != ignore_index]
    if values.numel() == 0:
        return 0.0, 0.0
    return float(values.min()), float(values.max())


def max_target(batches: Batches, ignore_index: int | None = None) -> int | None:
    """The largest integer target of a split; None when targets are not class indices."""
    targets = _split_targets(batches)
    if targets is None or targets.is_floating_point() or targets.is_complex():
        return None
    if ignore_index is not None:
        targets = targets[targets != ignore_index]
    return int(targets.max()) if targets.numel() else None


# --- the probe ------------------------------------------------------------------------------


def probe_data(built: Built) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch (a failure here is the dataset's)."""
    return next(iter(built.train_data))


def probe_model(built: Built, x: torch.Tensor) -> torch.Tensor:
    """The model on one batch; a first layer that does not fit the data is bad input."""
    spec = built.experiment.model
    try:
        output = built.model(x)
    except Exception as err:
        message = input_mismatch(str(err), tuple(x.shape), spec.name, spec.args)
        message = message or _dtype_mismatch(built, x, err)
        if message is not None:
            raise ComponentError(message) from None
        if _from_user_code(err):
            raise  # the user's own code: the CLI shows their frames
        raise ComponentError(
            f"the model failed on a batch of inputs of shape {tuple(x.shape)}: {err}"
        ) from None
    if not isinstance(output, torch.Tensor):
        # A tuple (logits, aux), a dict or a HuggingFace-style output: the loss and the
        # metrics take one tensor, and would fail later in lrtool's or torch's words.
        raise ComponentError(
            f"model {spec.name!r} must return a tensor (the output of forward), got "
            f"{_kind(output)}. Make forward return the logits (or predictions) alone, e.g. "
            "in a wrapper module that picks them out."
        )
    return output


# Words torch uses when a layer gets inputs of another dtype than its weights.
_DTYPE_WORDS = ("dtype", "scalar type", "Input type", "should be the same")


def _dtype_mismatch(built: Built, x: torch.Tensor, err: Exception) -> str | None:
    """Float64 inputs to a float32 model: numpy's default float is float64, so
    a dataset returning numpy arrays trips here; the data is to blame, not the model code."""
    weight = next((p for p in built.model.parameters() if p.is_floating_point()), None)
    # Integer inputs are token ids for an embedding by design: a failure with those is the
    # model code's own, shown with its frames.
    if weight is None or not x.is_floating_point() or x.dtype == weight.dtype:
        return None
    if not any(word in str(err) for word in _DTYPE_WORDS):
        return None
    return (
        f"the inputs from data {built.experiment.data.name!r} are {x.dtype} and the model's "
        f"weights {weight.dtype}, and model {built.experiment.model.name!r} failed on them "
        f"({err}). Return {weight.dtype} inputs from the dataset (x.float(), or numpy arrays "
        "as np.float32; numpy's default is float64), or convert them in the model's forward."
    )


def probe_loss(built: Built, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss on the model's output and the batch's targets."""
    spec = built.experiment.loss
    if spec.name in ELEMENTWISE_LOSSES and output.shape != y.shape:
        # torch only warns, then broadcasts ([N, 3] against [N, 1], or [N] against [N, 1]
        # into [N, N]): the loss trains on pairs that do not belong together.
        key = output_key(built.experiment.model.name, built.experiment.model.args)
        if output.numel() == y.numel():
            fix = f"make forward return shape {tuple(y.shape)} (e.g. with .reshape)"
        elif key:
            fix = f"set model.args.{key}: {y[0].numel()}"
        else:
            fix = f"make the model give {y[0].numel()} output(s) per sample"
        raise ComponentError(
            f"loss {spec.name!r} compares outputs and targets element by element, but the "
            f"outputs have shape {tuple(output.shape)} and the targets {tuple(y.shape)}: "
            f"{fix} (one output per target value), or use a loss that fits the targets."
        )
    try:
        loss = built.loss_fn(output, y)
    except Exception as err:
        if _from_user_code(err):
            raise
        raise ComponentError(
            f"loss {spec.name!r} failed on outputs of shape {tuple(output.shape)} and targets "
            f"of shape {tuple(y.shape)} ({y.dtype}): {err}"
        ) from None
    if not isinstance(loss, torch.Tensor):
        raise ComponentError(
            f"loss {spec.name!r} must return a tensor (a scalar: the batch's mean loss), got "
            f"{_kind(loss)}."
        )
    if loss.ndim != 0:
        raise ComponentError(
            f"loss {spec.name!r} must return a scalar tensor (the batch's mean loss), got a "
            f"tensor of shape {tuple(loss.shape)}: reduce it, e.g. with .mean()."
        )
    return loss


def _kind(value: Any) -> str:
    """'tuple of 2', 'dict with keys logits, aux', 'str': what came instead of a tensor."""
    name = type(value).__name__
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:5])
        return f"{name} with keys {keys}" if keys else f"empty {name}"
    if isinstance(value, (tuple, list)):
        return f"{name} of {len(value)}"
    return name


def _from_user_code(err: BaseException) -> bool:
    return bool(user_frames(traceback.extract_tb(err.__traceback__)))


def probe(built: Built, *, backward: bool = False) -> float:
    """Run one training batch through the model and the loss (and backward if asked).

    Raises ComponentError, in the experiment's keys, when model and data do not fit; an
    exception from the user's own model, data or loss code passes through unchanged. Returns
    the loss. The random state, buffers (BatchNorm statistics) and gradients are restored.
    """
    model = built.model
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    try:
        # With gradients on, as training runs: a loss detached from the model shows here.
        with preserved_rng(), torch.enable_grad():
            x, y = probe_data(built)
            model.train()
            output = probe_model(built, x)
            _check_classes(built, output, y)
            loss = probe_loss(built, output, y)
            _check_metrics(built, output.detach().float(), y)
            _check_first_loss(built, loss)
            if backward:
                loss.backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in saved:
                    buffer.copy_(saved[name])
    return float(loss.detach())


def _check_classes(built: Built, output: torch.Tensor, y: torch.Tensor) -> None:
    """Targets beyond the model's outputs, anywhere in the data, not just in this batch."""
    exp = built.experiment
    if exp.loss.name in BINARY_LOSSES:
        low, high = target_range(built, y)
        if low < 0 or high > 1:
            raise ComponentError(
                f"loss {exp.loss.name!r} takes targets from 0 to 1 (a probability per output), "
                f"but the targets run from {low:g} to {high:g}. Class indices 0..N-1 take "
                "loss: cross_entropy with one output per class (model.args.num_classes: N); "
                "labels -1/1 must become 0/1."
            )
        return
    if exp.loss.name not in CLASSIFICATION_LOSSES:
        return
    if y.is_floating_point() and tuple(y.shape) != tuple(output.shape):
        raise ComponentError(
            f"loss {exp.loss.name!r} takes class indices (whole numbers), but the targets are "
            f"{y.dtype} of shape {tuple(y.shape)}: return the labels as integers (torch.long) "
            "from the dataset, or use a regression loss (mse) for numeric targets."
        )
    if not y.is_floating_point() and y.dtype not in (torch.long, torch.uint8):
        raise ComponentError(
            f"loss {exp.loss.name!r} takes class indices as torch.long (int64), but the targets "
            f"are {y.dtype}: return the labels as `y.long()` from the dataset."
        )
    ignore = exp.loss.args.get("ignore_index", -100)
    if not y.is_floating_point():
        low, _ = target_range(built, y, ignore)
        if low < 0:
            raise ComponentError(
                f"loss {exp.loss.name!r} takes class indices 0..N-1, but a target is "
                f"{low:g}. Map the labels to 0..N-1 (labels -1/1 to 0/1), or write them as "
                "text in a CSV (text labels are numbered in order)."
            )
    tops = [max_target(b, ignore) for b in (built.train_data, built.val_data)]
    if not (y.is_floating_point() or y.is_complex()) and (y != ignore).any():
        tops.append(int(y[y != ignore].max()))
    known = [t for t in tops if t is not None]
    names = exp.data.classes
    if names and known and max(known) >= len(names):
        if built.classes_given:
            fix = "name every class, in label order, or leave data.classes out."
            whose = "data.classes names"
        else:
            fix = (
                "name every class in data.classes, in label order (the source's own list "
                "does not fit these labels)."
            )
            whose = f"data {exp.data.name!r} names its classes itself, and lists"
        raise ComponentError(
            f"{whose} {len(names)} classes, but the labels run to {max(known)} "
            f"({max(known) + 1} classes): {fix}"
        )
    message = class_mismatch(
        exp.loss.name,
        tuple(output.shape),
        max(known) if known else None,
        exp.model.name,
        exp.model.args,
    )
    if message is not None:
        raise ComponentError(message)
    if output.ndim >= 2 and output.shape[1] == 1:
        # A softmax over one class is 1 whatever the weights: the loss is always 0 and the
        # accuracy 100 %, a run that looks perfect and learned nothing.
        one = (
            f" (data {exp.data.name!r} has one class, {names[0]!r})"
            if len(names or []) == 1
            else ""
        )
        raise ComponentError(
            f"loss {exp.loss.name!r} over a single output is always 0, so nothing can train"
            f"{one}. Classification needs two classes or more: for two, give the model 2 "
            "outputs (model.args.num_classes: 2), or one output with loss bce_with_logits. A "
            "torchvision.ImageFolder whose root holds a single folder (train/) has its root one "
            "level too high: point data.args.root at the folder that holds the class folders."
        )
    _check_several_classes(built, ignore)


def _check_several_classes(built: Built, ignore: int) -> None:
    """Labels that are one class across the data (known only when it is held in memory):
    the classifier learns to say that class, and its accuracy is 100 % from the start."""
    parts = [_split_targets(b) for b in (built.train_data, built.val_data)]
    if any(t is None or t.is_floating_point() or t.is_complex() for t in parts):
        return
    labels = torch.cat([t.reshape(-1) for t in parts])  # type: ignore[union-attr]
    labels = labels[labels != ignore]
    if labels.numel() and bool((labels == labels[0]).all()):
        raise ComponentError(
            f"every label in data {built.experiment.data.name!r} is {int(labels[0])}: a "
            "classifier needs at least two classes to learn anything (its loss falls to 0 and "
            "its accuracy is 100 % from the start). Check the data's arguments (n_class, a "
            "filter, data.args.target)."
        )


def _check_metrics(built: Built, output: torch.Tensor, y: torch.Tensor) -> None:
    """Each metric on the first batch, as evaluation will compute it after an epoch."""
    exp = built.experiment
    problems = [metric_mismatch(name, exp.loss.name, output, y) for name in built.metrics]
    found = [p for p in problems if p is not None]
    if found:
        raise ConfigError(" ".join(found))


def _check_first_loss(built: Built, loss: torch.Tensor) -> None:
    """The first batch's loss, before any step: no learning rate is to blame for a NaN or for
    a loss that cannot train; the data, the model or the loss is."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise LossCannotTrain(
            f"the loss of the first batch is {value} (not finite) before any training step: "
            "the data holds NaN or infinite values, or the model or the loss produces them. "
            "Check the source "
            f"of data {built.experiment.data.name!r}, the model's output and loss "
            f"{built.experiment.loss.name!r}."
        )
    trainable = any(p.requires_grad for p in built.model.parameters())
    if trainable and not loss.requires_grad:
        raise LossCannotTrain(
            f"the loss has no gradient: loss {built.experiment.loss.name!r} on the model's "
            "output is detached from the model's parameters (a .detach(), torch.no_grad(), "
            ".item() or .numpy() in the model's forward or in the loss?), so no step could "
            "train it."
        )


def first_step(built: Built) -> float:
    """`lrtool check`'s pass: the probe with a backward (the first loss finite, with a
    gradient), as every workflow's probe without the backward."""
    return probe(built, backward=True)


def check_training(built: Built) -> None:
    """The `train:` settings against the built data and model, where a run trains (train,
    verify, check, --smoke of those); a range test uses neither."""
    check_accumulation(built)
    check_frozen_head(built)


def check_frozen_head(built: Built) -> None:
    """The frozen epochs train the last parameter group alone: it needs something to train."""
    exp = built.experiment
    groups = built.optimizer.param_groups
    if not exp.train.freeze_epochs or not groups:
        return
    head = groups[-1]
    if not any(p.requires_grad for p in head["params"]):
        raise ConfigError(
            f"train.freeze_epochs: the {exp.train.freeze_epochs} frozen epoch(s) train only the "
            f"last parameter group ({head.get('name', len(groups) - 1)}), but the model itself "
            "froze every parameter in it (requires_grad=False), so those epochs could train "
            "nothing. Unfreeze the head, end model.groups with a trainable group, or set "
            "train.freeze_epochs: 0."
        )


def check_accumulation(built: Built) -> None:
    """Training accumulates `train.grad_accum` mini-batches per step, within an epoch: more
    than an epoch holds would make every step the whole epoch, and the effective batch lrtool
    reports (batch_size x grad_accum) larger than the data. (The range test cycles through
    the data: find.grad_accum has no such limit.)"""
    exp, batches = built.experiment, len(built.train_data)
    if exp.train.grad_accum > batches:
        processes = f", {built.world_size} processes" if built.world_size > 1 else ""
        raise ComponentError(
            f"train.grad_accum is {exp.train.grad_accum}, more than the {batches} mini-batches "
            f"of an epoch (data.batch_size {exp.data.batch_size}{processes}): a training step "
            f"cannot accumulate more than an epoch. Set train.grad_accum to at most {batches}, "
            "or lower data.batch_size."
        )


def checked_build(exp: Experiment, *, training: bool = True, **kwargs: Any) -> Built:
    """`build(exp)`, then the probe: what every workflow starts with. `training`: the run
    trains (train, verify), so the `train:` settings must fit the data too."""
    built = build(exp, **kwargs)
    probe(built)
    if training:
        check_training(built)
    return built
