"""The engine: the step loop shared by the finder and the one-cycle trainer.

The golden digests below were computed by the trainer as it stood before it became a class
(commit b09d5b7, `fit_one_cycle` as closures): the refactor must leave every recorded number
and every weight as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY

from lrtool.checkpoint import load_checkpoint
from lrtool.cycles import train_cycles
from lrtool.engine import PendingLosses, StepLoop, default_sync_every
from lrtool.probe import checked_build
from lrtool.run import train_built
from lrtool.workflows import load_experiment

# The tiny iris MLP in two parameter groups (hidden layer, head), so that it can be frozen.
TWO_GROUPS = TINY.replace(
    "  args: {in_features: 4, hidden: [8], num_classes: 3}\n",
    '  args: {in_features: 4, hidden: [8], num_classes: 3}\n  groups: ["1", "2"]\n',
)

# Wall-clock values and installed versions differ from run to run; everything else is pinned.
UNPINNED = {"elapsed_s", "seconds", "versions"}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in sorted(value.items()) if k not in UNPINNED}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def digest(result: dict[str, Any], model: torch.nn.Module) -> str:
    """sha256 of the result (10 significant digits, wall-clock fields left out) and weights."""
    weights = {k: v.double().flatten().tolist() for k, v in model.state_dict().items()}
    text = json.dumps(_rounded({"result": result, "weights": weights}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _train(write_yaml, overrides: dict[str, Any], tmp_path: Path | None = None) -> str:
    lr_max = overrides.pop("lr_max", 0.1)
    exp = load_experiment(write_yaml(TWO_GROUPS), overrides)
    built = checked_build(exp)
    checkpoint = {"checkpoint": tmp_path} if tmp_path is not None else {}
    if exp.train.cycles > 1:
        result, _ = train_cycles(built, lr_max)
    else:
        result = train_built(built, lr_max, **checkpoint)
    pinned = result.to_dict()
    if tmp_path is not None:
        saved = load_checkpoint(tmp_path)
        keys = ("format", "epoch", "phase", "settings", "progress", "scheduler", "data_epoch")
        pinned["checkpoint"] = {k: saved[k] for k in keys}
    return digest(pinned, built.model)


# Re-pinned once because the resolved config in train.json gained find.extend_decades (with
# that key left out, every case matched its old digest), and once because evaluation sums its
# losses in float64: every val_loss moved in its 8th digit, nothing else (weights, training
# losses, rates and schedules compared field by field before re-pinning).
GOLDEN = {
    "frozen": "26d6c52d1110131ddc50c05f5d1934d8d4bd8b59c72e6a8e3af6eb41411d7e3b",
    "cycles": "643cdacadbd21a184ad97991c6ac3170b73500cac8d41580b792d5d94dd1c346",
    "accum": "ec25a40b0467c437be5e05faca0f37890c3154d3cb86570b1c2881d8f30e36b2",
    "nan": "12ae060b4a8a84b5133c073ab50b5247c44d4e398b094191787b3cd3dae52f20",
}


@pytest.mark.parametrize(
    ("case", "overrides", "with_checkpoint"),
    [
        ("frozen", {"train.epochs": 2, "train.freeze_epochs": 1}, False),
        ("cycles", {"train.epochs": 2, "train.cycles": 2}, False),
        (
            "accum",
            {
                "train.epochs": 2,
                "train.freeze_epochs": 1,
                "train.grad_accum": 2,
                "train.eval_every": 3,
                "train.clip_grad_norm": 1.0,
            },
            True,
        ),
        ("nan", {"train.epochs": 2, "lr_max": 1e6}, False),
    ],
)
def test_training_is_unchanged(write_yaml, tmp_path, case, overrides, with_checkpoint) -> None:
    got = _train(write_yaml, dict(overrides), tmp_path / "run" if with_checkpoint else None)
    assert got == GOLDEN[case]


# --- the shared step loop -----------------------------------------------------------------


def test_sync_every_defaults_to_ten_on_cuda_and_one_elsewhere() -> None:
    assert default_sync_every(torch.device("cuda"), None) == 10
    assert default_sync_every(torch.device("cpu"), None) == 1
    assert default_sync_every(torch.device("cpu"), 4) == 4


def test_pending_losses_are_read_up_to_the_first_non_finite_one() -> None:
    pending: PendingLosses[int] = PendingLosses(sync_every=3)
    for step, value in enumerate([0.5, 0.25, float("nan"), 0.125], start=1):
        assert not pending.due() or step == 4
        pending.add(step, torch.tensor(value))
    assert pending.due() and len(pending) == 4
    finite, not_finite = pending.read()
    assert finite == [(1, 0.5), (2, 0.25)]
    assert not_finite is not None and not_finite[0] == 3 and math.isnan(not_finite[1])
    assert len(pending) == 0 and pending.read() == ([], None)


def test_a_half_computed_loss_after_ctrl_c_is_dropped() -> None:
    pending: PendingLosses[int] = PendingLosses(sync_every=1)
    pending.add(1, torch.tensor(0.5))
    pending.add(2, torch.tensor([1.0, 2.0]))  # not a scalar: reading them together fails
    assert pending.read_after_interrupt() == ([], None)
    assert len(pending) == 0


def test_step_loop_steps_and_records_the_reduced_loss() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loop: StepLoop[int] = StepLoop(
        model, optimizer, torch.nn.functional.mse_loss, reduce=lambda t: t * 2
    )
    assert loop.device == torch.device("cpu") and loop.scaler is None
    x, y = torch.ones(4, 2), torch.zeros(4, 1)
    before = model.weight.detach().clone()
    loss = loop.backward(iter([(x, y)]), 1)
    loop.step()
    loop.record(1, loss)
    assert not torch.equal(model.weight, before)
    (info, value), *_ = loop.pending.read()[0]
    assert info == 1 and value == pytest.approx(2 * loss.item())
