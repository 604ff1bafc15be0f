"""The one-cycle schedule: torch's OneCycleLR as lrtool sets it up, and what it steps over."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import OneCycleLR


def steps_per_epoch(n_batches: int, grad_accum: int = 1) -> int:
    """Optimizer steps in an epoch of `n_batches` batches: a short last window still steps."""
    return math.ceil(n_batches / grad_accum)


def momentum_key(optimizer: torch.optim.Optimizer) -> str | None:
    """What OneCycleLR cycles: beta1 of Adam-style optimizers, else SGD's momentum; or None."""
    if "betas" in optimizer.defaults:
        return "betas"
    if "momentum" in optimizer.defaults:
        return "momentum"
    return None


def _momentum(group: dict[str, Any], key: str | None) -> float | None:
    if key == "betas":
        return float(group["betas"][0])
    if key == "momentum":
        return float(group["momentum"])
    return None


def one_cycle_scheduler(
    optimizer: torch.optim.Optimizer,
    lr_max: Sequence[float],
    total_steps: int,
    *,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e5,
    moms: Sequence[float] = (0.95, 0.85, 0.95),
    anneal: str = "cos",
) -> OneCycleLR:
    """torch's OneCycleLR over `total_steps` optimizer steps, one peak per (visible) group.

    The rate warms up from lr_max/div_factor to lr_max over pct_start of the steps, then
    anneals to lr_max/div_factor/final_div_factor; momentum (or beta1) moves the other way,
    moms[0] -> moms[1] -> moms[0]. SGD set up without momentum gets it too, as in fastai;
    optimizers with neither (Adagrad) keep their own.
    """
    pct = float(pct_start)
    if pct * total_steps == 1.0:
        # OneCycleLR divides by pct*total - 1 when the warm-up is a single step. A billionth
        # less puts that step on the peak (where a one-step warm-up ends) instead of crashing.
        pct *= 1 - 1e-9
    return OneCycleLR(
        optimizer,
        max_lr=list(lr_max),
        total_steps=total_steps,
        pct_start=pct,
        anneal_strategy=anneal,
        cycle_momentum=momentum_key(optimizer) is not None,
        base_momentum=moms[1],
        max_momentum=moms[0],
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )
