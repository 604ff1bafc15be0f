"""Freezing for fine-tuning: every parameter group but the last (the head) held still.

fastai's `freeze` and `train_bn`: `frozen` stops the gradients, `last_group_only` hides the
frozen groups from the optimizer and its scheduler, `norm_parameters` finds the normalisation
layers that keep training meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

# Normalisation layers whose weights and biases keep training in frozen groups, as fastai's
# `train_bn=True` does (its `norm_types`): they adapt the pretrained statistics to new data.
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


def norm_parameters(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The normalisation layers' parameters that sit in the frozen groups (all but the last)."""
    norm = {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()}
    return [p for g in optimizer.param_groups[:-1] for p in g["params"] if id(p) in norm]


@contextlib.contextmanager
def frozen(optimizer: torch.optim.Optimizer, keep: Sequence[nn.Parameter] = ()) -> Iterator[None]:
    """Stop gradients to every parameter group but the last (the head), except `keep`.

    Each parameter's `requires_grad` flag is restored on exit, whatever it was before.
    """
    kept = {id(p) for p in keep}
    params = [
        p for group in optimizer.param_groups[:-1] for p in group["params"] if id(p) not in kept
    ]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@contextlib.contextmanager
def last_group_only(
    optimizer: torch.optim.Optimizer, extra: Sequence[nn.Parameter] = ()
) -> Iterator[None]:
    """Show the optimizer, and any scheduler built or stepped meanwhile, only its last group.

    Frozen groups are then out of the step altogether: no weight decay, no momentum, no
    rate, whatever the optimizer does with parameters that have no gradient. The head's
    group dict is shared, so what the step and the scheduler write into it stays.

    `extra` parameters (frozen groups' norm layers under train_bn) join the head's group for
    the while, with its settings: a copy of the head's dict whose rate, momentum and
    scheduler keys are written back to the head on exit. Optimizer state is per parameter,
    so theirs stays theirs in the full optimizer (and its checkpoints).
    """
    groups = optimizer.param_groups
    head = groups[-1]
    shown = {**head, "params": [*head["params"], *extra]} if extra else head
    optimizer.param_groups = [shown]
    try:
        yield
    finally:
        optimizer.param_groups = groups
        if shown is not head:
            head.update({k: v for k, v in shown.items() if k != "params"})


def nothing_to_freeze(freeze_epochs: int, n_groups: int) -> str | None:
    """Why `train.freeze_epochs` cannot work on a model of `n_groups` groups, else None: the
    frozen phase trains the last group only, so a single group would freeze nothing. Said
    by the trainer and, earlier, by the build that `check` runs."""
    if freeze_epochs and n_groups < 2:
        return (
            f"train.freeze_epochs: {freeze_epochs} frozen epoch(s) train only the last parameter "
            "group, but this model has a single group, so nothing would be frozen. Split it "
            "with model.groups (e.g. [body, head]) or set train.freeze_epochs: 0."
        )
    return None
