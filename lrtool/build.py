"""Turn a validated Experiment into the objects the engine runs: model, data, optimizer, loss."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import distributed
from .config import Experiment
from .data import Batches, Splits, load_splits, use_memory
from .errors import ComponentError, ConfigError
from .freezing import nothing_to_freeze
from .models import (
    build_model,
    load_weights,
    nothing_to_train,
    output_count,
    parameter_groups,
    requires_num_classes,
    takes_num_classes,
    too_few_outputs,
)
from .registry import (
    BINARY_LOSSES,
    CLASSIFICATION_LOSSES,
    LOSSES,
    build_loss,
    metric,
    optimizer_class,
)
from .runtime import resolve_device, seed_everything


@dataclass
class Built:
    """Everything one run needs, built from one Experiment."""

    experiment: Experiment
    device: torch.device
    model: nn.Module
    group_names: list[str]
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[..., torch.Tensor]
    train_data: Batches
    val_data: Batches
    metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    data_note: str = ""
    # What building decided on the user's behalf, one line each, for `lrtool check`: where the
    # weights came from, a classifier head replaced, num_classes taken from the data.
    model_notes: list[str] = field(default_factory=list)
    world_size: int = 1
    # Averages a loss across processes in a data-parallel run; None in a single process.
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    # data.classes came from the experiment (False: from the source, e.g. MNIST's ten names).
    classes_given: bool = True

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def batch_size(self) -> int:
        """The mini-batch this process trains on: data.batch_size, or the whole training
        split when that is smaller (every batch is then the split)."""
        return min(self.experiment.data.batch_size, self.train_data.num_samples)


def make_optimizer(
    name: str,
    args: dict[str, Any],
    groups: Sequence[tuple[str, list[nn.Parameter]]],
    lr: float | Sequence[float] = 1e-3,
) -> torch.optim.Optimizer:
    """One optimizer parameter group per model group, each named, each with its own rate."""
    cls = optimizer_class(name)
    rates = [lr] * len(groups) if isinstance(lr, (int, float)) else list(lr)
    param_groups = [
        {"params": params, "lr": float(rate), "name": gname}
        for (gname, params), rate in zip(groups, rates, strict=True)
    ]
    kwargs = {k: v for k, v in args.items() if k != "lr"}
    try:
        inspect.signature(cls).bind(param_groups, **kwargs)
        optimizer = cls(param_groups, **kwargs)
    except (TypeError, ValueError) as err:
        raise ComponentError(f"optimizer {name!r} with args {kwargs}: {err}") from None
    _check_groups_kept(name, optimizer, param_groups)
    return optimizer


def _check_groups_kept(name: str, optimizer: Any, given: Sequence[dict[str, Any]]) -> None:
    """Every rate lrtool sets (one-cycle, discriminative rates, freezing) is set per group:
    an optimizer that merges, drops or reorders the groups it was given would train other
    parameters at other rates than the ones reported."""
    kept = getattr(optimizer, "param_groups", None)
    if not isinstance(kept, list):
        return  # not an optimizer at all: reported where it is used
    same = len(kept) == len(given) and all(
        {id(p) for p in group.get("params", [])} == {id(p) for p in want["params"]}
        for group, want in zip(kept, given, strict=False)
    )
    if not same:
        names = ", ".join(str(g["name"]) for g in given)
        raise ComponentError(
            f"optimizer {name!r} was given {len(given)} parameter group(s) ({names}) and "
            f"kept {len(kept)}{'' if len(kept) != len(given) else ', with other parameters'}: "
            "lrtool sets the learning rate of each group (the one-cycle schedule, rates per "
            "layer group, freezing), so the optimizer must keep the groups it is given, in "
            "order, as torch.optim's optimizers do: pass `params` on to "
            "torch.optim.Optimizer.__init__ unchanged."
        )


def _index_targets(loss_name: str) -> bool | None:
    if loss_name in CLASSIFICATION_LOSSES:
        return True
    if loss_name in LOSSES:
        return False
    return None  # a custom loss: keep the targets as the source gives them


def _build_data(
    exp: Experiment, device: torch.device, rank: int, world_size: int
) -> tuple[Splits, Batches, Batches, str]:
    """The splits, this rank's training and validation batches, and the note saying how."""
    splits = load_splits(
        exp.data.name,
        exp.data.args,
        val_fraction=exp.data.val_fraction,
        seed=exp.seed,
        index_targets=_index_targets(exp.loss.name),
        measured_targets=exp.loss.name in LOSSES
        and exp.loss.name not in CLASSIFICATION_LOSSES | BINARY_LOSSES,
        classes=exp.data.classes,
        search_dirs=exp.search_dirs,
    )
    if splits.classes is not None and exp.data.classes is None:
        # Results carry the resolved experiment: this is how find.json and train.json record
        # which index stands for which class name.
        exp.data.classes = splits.classes
    in_memory = use_memory(splits, exp.data.in_memory)
    common = dict(
        batch_size=exp.data.batch_size,
        device=device,
        seed=exp.seed,
        in_memory=in_memory,
        num_workers=exp.data.num_workers,
        rank=rank,
        world_size=world_size,
    )
    train_data = Batches(splits.train, shuffle=True, drop_last=True, **common)
    val_data = Batches(splits.val, shuffle=False, **common)
    if len(train_data) == 0:
        raise ComponentError("the training split is empty; lower data.val_fraction.")
    for split_name, part in (("training", train_data), ("validation", val_data)):
        if part.tensors is not None:
            _check_finite(exp.data.name, split_name, *part.tensors)
    note = splits.note + (" (in memory)" if in_memory else " (DataLoader)")
    return splits, train_data, val_data, note


def build(exp: Experiment, *, device: torch.device | None = None) -> Built:
    """Build every component of the experiment, seeded by `exp.seed`.

    Under torchrun (a process group is active) the data is sharded per rank, the model is
    wrapped in DistributedDataParallel and losses are averaged across ranks.
    """
    data_parallel = distributed.active()
    rank, world_size = distributed.rank(), distributed.world_size()
    if data_parallel:
        device = distributed.local_device(exp.device)
    device = device or resolve_device(exp.device)
    # (Metric names and their fit with the loss were checked when the experiment was loaded.)
    metrics = {name: metric(name) for name in exp.metrics}
    loss_fn = build_loss(exp.loss.name, exp.loss.args, exp.search_dirs)
    if isinstance(loss_fn, torch.nn.Module):
        loss_fn = loss_fn.to(device)  # its buffers (class weights) where the outputs are

    classes_given = exp.data.classes is not None  # else the source's names fill it in
    # A source that draws from the global generators (make_classification without
    # random_state, a callable's torch.randn) gives the same data for the same seed: every
    # verify candidate, --seeds sweep, resume and torchrun rank sees one dataset.
    seed_everything(exp.seed)
    splits, train_data, val_data, data_note = _build_data(exp, device, rank, world_size)
    model_args, model_notes = model_arguments(exp)
    if _index_targets(exp.loss.name):
        _check_class_count(exp, model_args, splits.train, train_data, val_data)

    # Every rank seeds identically, so the initial weights agree without a broadcast.
    seed_everything(exp.seed)
    model = build_model(exp.model.name, model_args, search_dirs=exp.search_dirs)
    if exp.model.weights:
        model_notes += load_weights(model, exp.model.weights, model_name=exp.model.name)
    model = model.to(device)
    untrainable = nothing_to_train(model, exp.model.name)
    if untrainable:
        raise ComponentError(untrainable)
    groups = parameter_groups(model, exp.model.groups)
    rates = exp.train.lr_max
    if isinstance(rates, list) and len(rates) != len(groups):
        names = ", ".join(name for name, _ in groups)
        raise ConfigError(
            f"train.lr_max: {len(rates)} rates for {len(groups)} parameter groups ({names}); "
            "give one per group, earliest first, or 'LOW:HIGH' to spread them over the groups."
        )
    frozen_nothing = nothing_to_freeze(exp.train.freeze_epochs, len(groups))
    if frozen_nothing:
        raise ConfigError(frozen_nothing)
    optimizer = make_optimizer(exp.optimizer.name, exp.optimizer.args, groups)
    reduce = None
    if data_parallel:
        # DDP shares the parameters the optimizer holds; frozen epochs leave some without
        # gradients, which DDP must be told to expect.
        model = distributed.wrap(model, device, exp.train.freeze_epochs > 0)
        reduce = distributed.reducer()
    return Built(
        experiment=exp,
        device=device,
        model=model,
        group_names=[name for name, _ in groups],
        optimizer=optimizer,
        loss_fn=loss_fn,
        train_data=train_data,
        val_data=val_data,
        metrics=metrics,
        data_note=data_note,
        model_notes=model_notes,
        world_size=world_size,
        reduce=reduce,
        classes_given=classes_given,
    )


def model_arguments(exp: Experiment) -> tuple[dict[str, Any], list[str]]:
    """The model's arguments, `num_classes` taken from the data when the file leaves it out.

    Only for a classification loss on a source that names its classes (an ImageFolder, a
    torchvision dataset, CSV text labels): there the class count is known, not guessed.
    """
    args = dict(exp.model.args)
    classes = exp.data.classes
    if (
        "num_classes" not in args
        and classes
        and _index_targets(exp.loss.name)
        and takes_num_classes(exp.model.name, exp.search_dirs)
    ):
        args["num_classes"] = len(classes)
        return args, [f"num_classes: {len(classes)}, from the data's classes"]
    if "num_classes" not in args and requires_num_classes(exp.model.name, exp.search_dirs):
        # The load check let it through for a source that may name its classes; this one
        # did not (numeric CSV labels, FakeData): say it in the experiment's keys.
        raise ConfigError(
            f"model.args.num_classes is missing, and data {exp.data.name!r} does not name its "
            "classes (its labels are numbers), so lrtool cannot take the count from it: set "
            "model.args.num_classes to the number of classes."
        )
    return args, []


def _check_finite(name: str, split_name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """NaN or inf in the data makes every loss NaN: name the samples instead of training."""
    for what, values in (("inputs", x), ("targets", y)):
        if not torch.is_floating_point(values) or len(values) == 0:
            continue
        bad = (~torch.isfinite(values.reshape(len(values), -1))).any(dim=1)
        if bool(bad.any()):
            samples = bad.nonzero().flatten()[:10].tolist()
            raise ComponentError(
                f"data {name!r}: the {split_name} split has NaN or infinite {what} in "
                f"{int(bad.sum())} samples (the first: {', '.join(map(str, samples))}, counting "
                "from 0); the loss would be NaN from the first step. Clean the source."
            )


def _known_labels(dataset: Any) -> torch.Tensor | None:
    """A dataset's labels without reading its samples (torchvision's `targets`), or None."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    targets = getattr(dataset, "targets", None)
    if targets is None or len(targets) == 0:
        return None
    try:
        return torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        return None


def _check_class_count(
    exp: Experiment, model_args: dict[str, Any], train_set: Any, *parts: Batches
) -> None:
    """Labels beyond the model's outputs fail at the first batch that holds one (on a GPU as
    an opaque device-side assert): compare the counts before training, where it is cheap.

    Outputs beyond a source's named classes (a 1000-class head on three folders) train fine
    but waste the head and skew the loss: also an error, since the count is known for sure.
    """
    outputs = output_count(exp.model.name, model_args)
    if outputs is None:
        return
    highest = -1
    if all(part.tensors is not None for part in parts):
        labels = [part.tensors[1] for part in parts if len(part.tensors[1])]  # type: ignore[index]
        highest = max((int(y.max()) for y in labels if not torch.is_floating_point(y)), default=-1)
    else:
        known = _known_labels(train_set)
        if known is not None and not torch.is_floating_point(known):
            highest = int(known.max())
    names = exp.data.classes or []
    count = max(highest + 1, len(names))
    key = "num_classes" if "num_classes" in model_args else "out_features"
    if names and count < outputs and key in exp.model.args:
        shown = f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
        raise ComponentError(
            f"model.args.{key} is {outputs}, but data {exp.data.name!r} has {count} classes "
            f"({shown}); {outputs - count} outputs would stand for classes that never occur. "
            f"Set model.args.{key}: {count}, or leave it out to take it from the data "
            "(with model.weights, a pretrained head of another size is replaced)."
        )
    if count > outputs:
        default = key not in exp.model.args
        raise ComponentError(too_few_outputs(outputs, count, key, names, default))
