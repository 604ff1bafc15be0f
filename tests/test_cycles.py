"""train.cycles: the epochs split over one-cycle runs, a re-find before each after the first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from typer.testing import CliRunner

from lrtool.cli import app
from lrtool.cycles import Plan, next_head_rate, plan_cycles, spread_rates, train_cycles
from lrtool.errors import ConfigError
from lrtool.probe import checked_build
from lrtool.workflows import load_experiment, run_train

runner = CliRunner()

# The tiny MLP in two parameter groups (hidden layer, head), for freezing.
TWO_GROUPS = TINY.replace(
    "  args: {in_features: 4, hidden: [8], num_classes: 3}\n",
    '  args: {in_features: 4, hidden: [8], num_classes: 3}\n  groups: ["1", "2"]\n',
)


# --- the plan and the rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "cycles", "freeze", "expected"),
    [
        (5, 1, 0, [Plan(1, 5)]),
        (5, 1, 2, [Plan(1, 7)]),  # one cycle is the whole run, as fit_one_cycle trains it
        (7, 3, 0, [Plan(1, 3), Plan(2, 2), Plan(3, 2)]),
        (3, 2, 1, [Plan(1, 1, frozen=True), Plan(2, 3)]),
        (3, 3, 2, [Plan(1, 2, frozen=True), Plan(2, 2), Plan(3, 1)]),
    ],
)
def test_plan_splits_the_epochs(epochs: int, cycles: int, freeze: int, expected: list) -> None:
    assert plan_cycles(epochs, cycles, freeze) == expected


def test_next_rate_rise_over_ten_then_suggestion_then_previous() -> None:
    lr = np.geomspace(1e-5, 1.0, 60)
    flat_then_rise = np.where(lr < 1e-2, 0.3, 0.3 * (lr / 1e-2) ** 2)
    rate, rule = next_head_rate(lr, flat_then_rise, 5e-4, 1e-3)
    assert rule == "refind_rise"
    assert 1e-4 < rate < 3e-3  # the rise starts near 1e-2: a tenth of it
    flat = np.full(60, 0.3)
    assert next_head_rate(lr, flat, 5e-4, 1e-3) == (5e-4, "suggested_lr")
    assert next_head_rate(lr, flat, None, 1e-3) == (1e-3, "previous")


def test_next_rate_never_below_what_the_refind_swept() -> None:
    """A re-find that blew up in its first steps put its rise near the start: a tenth of it
    lay below the sweep (a whole cycle trained at 3.65e-08 and learned nothing)."""
    lr = np.geomspace(1e-7, 1e-6, 30)
    early_rise = np.where(np.arange(30) < 4, 0.3, 0.3 * 3.0 ** (np.arange(30) - 3))
    rate, rule = next_head_rate(lr, early_rise, None, 1e-2)
    assert (rate, rule) == (1e-2, "previous")
    rate, rule = next_head_rate(lr, early_rise, 5e-7, 1e-2)
    assert (rate, rule) == (5e-7, "suggested_lr")
    assert next_head_rate(lr, early_rise, 1e-9, 1e-2) == (1e-2, "previous")


def test_spread_rates_is_the_low_high_slice() -> None:
    assert spread_rates(1e-2, 3, 100) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert spread_rates(1e-2, 1, 100) == pytest.approx([1e-2])


def test_more_cycles_than_epochs_is_refused(write_yaml) -> None:
    path = write_yaml(TINY.replace("  epochs: 2\n", "  epochs: 2\n  cycles: 3\n"))
    with pytest.raises(ConfigError, match="train.cycles"):
        load_experiment(path)
    result = runner.invoke(app, ["train", str(write_yaml()), "--lr-max", "0.1", "--cycles", "0"])
    assert result.exit_code != 0


# --- training -----------------------------------------------------------------------------


def test_cycles_write_refinds_and_records(tmp_path: Path, tiny_yaml: Path) -> None:
    exp = load_experiment(tiny_yaml, {"train.cycles": 2, "train.epochs": 2})
    run = run_train(exp, 0.1, folder=tmp_path / "run")
    folder = tmp_path / "run"
    assert (folder / "refind-2.json").is_file() and (folder / "refind-2.csv").is_file()
    assert not (folder / "checkpoint.pt").exists()  # a run of cycles cannot be resumed
    saved = json.loads((folder / "train.json").read_text())
    first, second = saved["cycles"]
    assert (first["cycle"], first["frozen"], first["epochs"], first["lr_max"]) == (1, False, 1, 0.1)
    assert first["refind_suggested_lr"] is None and first["lr_from"] == "lr_max"
    # Cycle 2's peak is the rule applied to the saved re-find's curve.
    refind = json.loads((folder / "refind-2.json").read_text())
    rate, rule = next_head_rate(
        refind["history"]["lr"], refind["history"]["loss"], refind["suggested_lr"], 0.1
    )
    assert second["lr_max"] == pytest.approx(rate)
    assert second["lr_from"] == rule != "previous"
    assert second["refind_suggested_lr"] == pytest.approx(rate)
    # One run's numbering: epochs 1, 2; steps 1..N; cycle 2 starts after cycle 1's steps.
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2]
    steps = saved["history"]["step"]
    assert steps == list(range(1, len(steps) + 1))
    assert second["first_step"] == len(steps) // 2 + 1
    assert saved["final"] == second["final"] == run.train.final
    assert saved["lr_max"] == 0.1
    assert [f.kind for f in run.cycle_refinds] == ["refind"]


def test_one_cycle_is_recorded_and_unchanged(tmp_path: Path, tiny_yaml: Path) -> None:
    exp = load_experiment(tiny_yaml)
    result = run_train(exp, 0.1).train
    assert result.cycles == [
        {
            "cycle": 1,
            "frozen": False,
            "epochs": 2,
            "lr_max": 0.1,
            "refind_suggested_lr": None,
            "lr_from": "lr_max",
            "first_step": 1,
            "final": result.final,
        }
    ]


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_refind_leaves_no_trace(tiny_yaml: Path) -> None:
    """Training with re-finds is bit-identical to training at their rates given by hand."""
    exp = load_experiment(tiny_yaml, {"train.cycles": 3, "train.epochs": 3})
    built = checked_build(exp)
    found, finds = train_cycles(built, 0.1)
    assert len(finds) == 2
    by_hand = checked_build(exp)
    given = [c["lr_max"] for c in found.cycles[1:]]
    again, none = train_cycles(by_hand, 0.1, given=given)
    assert none == []
    assert again.history["loss"] == found.history["loss"]
    for a, b in zip(_weights(built.model), _weights(by_hand.model), strict=True):
        assert torch.equal(a, b)


def test_freeze_then_refind_spreads_by_group_ratio(tmp_path: Path, write_yaml) -> None:
    path = write_yaml(TWO_GROUPS)
    exp = load_experiment(
        path,
        {"train.cycles": 2, "train.epochs": 1, "train.freeze_epochs": 1, "train.group_ratio": 10},
    )
    built = checked_build(exp)
    body = [p.detach().clone() for p in built.optimizer.param_groups[0]["params"]]
    seen: list[list[torch.Tensor]] = []

    def refind(cycle: int):
        seen.append([p.detach().clone() for p in built.optimizer.param_groups[0]["params"]])
        from lrtool.run import find_built

        return find_built(built)

    result, finds = train_cycles(built, 0.1, refind=refind)
    # Cycle 1 trained the head only: the body was untouched when the re-find ran.
    for before, at_refind in zip(body, seen[0], strict=True):
        assert torch.equal(before, at_refind)
    frozen, unfrozen = result.cycles
    assert (frozen["frozen"], frozen["epochs"], frozen["lr_max"]) == (True, 1, 0.1)
    assert [e["phase"] for e in result.epochs] == ["frozen", "main"]
    head = unfrozen["refind_suggested_lr"]
    assert head is not None
    assert unfrozen["lr_max"] == pytest.approx([head / 10, head])
    peak = result.group_lrs_at_peak  # the rates at the step nearest the peak
    assert peak is not None and peak[1] / peak[0] == pytest.approx(10)
    # And then the body trained.
    assert not all(
        torch.equal(a, b)
        for a, b in zip(body, built.optimizer.param_groups[0]["params"], strict=True)
    )


def test_cli_freeze_cycles_auto_and_compare(tmp_path: Path, write_yaml) -> None:
    path = write_yaml(TWO_GROUPS)
    out = tmp_path / "run"
    args = ["train", str(path), "--lr-max", "auto", "--freeze-epochs", "1", "--cycles", "2"]
    result = runner.invoke(app, [*args, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # The printed line says what train.json says: the first epoch trained the head only.
    assert "epoch 1 (frozen):" in result.output and "epoch 2 (frozen)" not in result.output
    saved = json.loads((out / "train.json").read_text())
    assert [c["frozen"] for c in saved["cycles"]] == [True, False]
    assert saved["cycles"][0]["lr_from"] == "find"
    assert (out / "find.json").is_file() and (out / "refind-2.json").is_file()
    compared = runner.invoke(app, ["compare", str(out / "find.json"), str(out / "refind-2.json")])
    assert compared.exit_code == 0, compared.output


def test_resume_with_cycles_is_refused(tmp_path: Path, tiny_yaml: Path) -> None:
    exp = load_experiment(tiny_yaml, {"train.cycles": 2})
    with pytest.raises(ConfigError, match="train.cycles"):
        run_train(exp, resume=tmp_path)


def test_train_chart_marks_each_cycle_after_the_first() -> None:
    from lrtool.plot import train_charts

    step = list(range(1, 61))
    loss = [1.0 / s for s in step]
    lr = [1e-3] * 60
    marked = train_charts(step, loss, lr, None, color=False, cycle_starts=[1, 21, 41])
    assert "cycle 2" in marked and "cycle 3" in marked and "cycle 1" not in marked
    assert "cycle" not in train_charts(step, loss, lr, None, color=False, cycle_starts=[1])


def test_a_folder_with_a_cycle_refind_is_taken(tmp_path: Path) -> None:
    from lrtool.history import fresh_folder

    (tmp_path / "refind-2.json").write_text("{}")
    with pytest.raises(ConfigError, match="refind-2.json"):
        fresh_folder(tmp_path)


def test_ctrl_c_between_cycles_keeps_the_finished_cycle(
    tmp_path: Path, tiny_yaml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C outside the sweep's own loop (here: as the re-find starts) still writes
    train.json with the cycles that finished, and the run reads as interrupted."""
    import lrtool.run

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lrtool.run, "find_built", interrupted)
    exp = load_experiment(tiny_yaml, {"train.cycles": 2, "train.epochs": 2})
    run = run_train(exp, 0.1, folder=tmp_path / "run")
    assert run.train.stop_reason == "interrupted"
    saved = json.loads((tmp_path / "run" / "train.json").read_text())
    assert saved["stop_reason"] == "interrupted"
    assert [c["cycle"] for c in saved["cycles"]] == [1]
    assert [e["epoch"] for e in saved["epochs"]] == [1]
    # No checkpoint, no kept weights: `final` describes none; the cycle's record stays.
    assert saved["final"] and all(v is None for v in saved["final"].values())
    assert saved["cycles"][0]["final"]["val_loss"] is not None
    assert not (tmp_path / "run" / "model.pt").exists()
    # Resuming it (with a file of one cycle) is refused for the reason, not for a missing file.
    plain = load_experiment(tiny_yaml)
    with pytest.raises(ConfigError, match="holds a run of several cycles"):
        run_train(plain, resume=tmp_path / "run")


def test_a_merged_run_reports_its_highest_peak_per_group(write_yaml) -> None:
    """group_lrs_at_peak showed the last cycle's (a re-find's lower rate) beside an lr_max and
    a history that reached the first cycle's higher one."""
    from lrtool.cycles import merge
    from lrtool.results import TrainResult

    built = checked_build(load_experiment(write_yaml(TWO_GROUPS)))

    def cycle(peak: list[float]) -> TrainResult:
        history = {"step": [1], "lr": [peak[-1]], "momentum": [0.9], "loss": [1.0]}
        return TrainResult(peak, [], {"val_loss": 1.0}, history, "completed", 0, "cpu", 0.1,
                           group_lrs_at_peak=peak)  # fmt: skip

    merged = merge([cycle([0.01, 0.1]), cycle([0.001, 0.01])], built, [0.01, 0.1], "completed")
    assert merged.group_lrs_at_peak == [0.01, 0.1] and merged.lr_max == [0.01, 0.1]


def test_a_cycle_rate_resting_on_a_refind_says_what_the_refind_said() -> None:
    """The re-find's warning was saved in refind-<k>.json and never printed."""
    from lrtool.history import FindResult
    from lrtool.workflows import _say_refind

    history = {"lr": [1e-7, 1e-6], "loss": [1.0, 9.0], "smoothed_loss": [1.0, 9.0]}
    found = FindResult(5e-7, "robust_minimum", {}, history, "diverged", 2, 0, "cpu", 0.1,
                       warning="less certain than usual")  # fmt: skip
    said: list[str] = []
    _say_refind(said.append, {"cycle": 2, "lr_from": "previous"}, found)
    _say_refind(said.append, {"cycle": 3, "lr_from": "suggested_lr"}, found)
    _say_refind(said.append, {"cycle": 4, "lr_from": "refind_rise"}, found)
    assert said == [
        "refind 2: no rate within what it swept (diverged after 2 steps); the cycle kept the "
        "previous cycle's rate",
        "refind 3: less certain than usual",
    ]
