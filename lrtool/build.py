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
from .data import Batches, load_splits, use_memory
from .errors import ComponentError, ConfigError
from .models import build_model, parameter_groups
from .registry import CLASSIFICATION_LOSSES, LOSSES, build_loss, metric, optimizer_class
from .runtime import resolve_device, seed_everything

# Losses on real-valued targets: accuracy makes no sense with them.
_REGRESSION_LOSSES = {"mse", "l1", "smooth_l1", "huber"}


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
    rank: int = 0
    world_size: int = 1
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


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
        return cls(param_groups, **kwargs)
    except (TypeError, ValueError) as err:
        raise ComponentError(f"optimizer {name!r} with args {kwargs}: {err}") from None


def _index_targets(loss_name: str) -> bool | None:
    if loss_name in CLASSIFICATION_LOSSES:
        return True
    if loss_name in LOSSES:
        return False
    return None  # a custom loss: keep the targets as the source gives them


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
    if "accuracy" in exp.metrics and exp.loss.name in _REGRESSION_LOSSES:
        raise ConfigError(
            f"metrics: accuracy needs class targets, but loss {exp.loss.name!r} is a regression "
            "loss. Use metrics: [] or [mae]."
        )
    metrics = {name: metric(name) for name in exp.metrics}
    loss_fn = build_loss(exp.loss.name, exp.loss.args)

    splits = load_splits(
        exp.data.name,
        exp.data.args,
        val_fraction=exp.data.val_fraction,
        seed=exp.seed,
        index_targets=_index_targets(exp.loss.name),
    )
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

    # Every rank seeds identically, so the initial weights agree without a broadcast.
    seed_everything(exp.seed)
    model = build_model(exp.model.name, exp.model.args, exp.model.weights).to(device)
    groups = parameter_groups(model, exp.model.groups)
    optimizer = make_optimizer(exp.optimizer.name, exp.optimizer.args, groups)
    extras: dict[str, Any] = {}
    if data_parallel:
        # DDP shares the parameters the optimizer holds; frozen epochs leave some without
        # gradients, which DDP must be told to expect.
        model = distributed.wrap(model, device, exp.train.freeze_epochs > 0)
        extras["reduce"] = distributed.reducer()
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
        data_note=splits.note + (" (in memory)" if in_memory else " (DataLoader)"),
        rank=rank,
        world_size=world_size,
        extras=extras,
    )


def smoke_step(built: Built) -> float:
    """One forward and backward pass on one training batch: does the experiment run at all?"""
    model, loss_fn = built.model, built.loss_fn
    x, y = next(iter(built.train_data))
    model.train()
    try:
        output = model(x)
    except Exception as err:  # the user's model and data disagree: say which shapes met
        raise ComponentError(
            f"the model failed on a batch of inputs of shape {tuple(x.shape)}: {err}"
        ) from None
    try:
        loss = loss_fn(output, y)
    except Exception as err:
        raise ComponentError(
            f"loss {built.experiment.loss.name!r} failed on outputs of shape "
            f"{tuple(output.shape)} and targets of shape {tuple(y.shape)} ({y.dtype}): {err}"
        ) from None
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ComponentError(
            f"loss {built.experiment.loss.name!r} must return a scalar tensor, got "
            f"{type(loss).__name__} of shape {getattr(loss, 'shape', None)}."
        )
    loss.backward()
    built.optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
