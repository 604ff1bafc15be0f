"""verify: its schedule, ranking, widening, the no-suggestion bracket, and real runs on iris."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import lrtool.verify as verify_module
from lrtool.cli import app
from lrtool.config import validate
from lrtool.errors import ConfigError
from lrtool.verify import (
    Round,
    VerifyResult,
    bracket,
    bracket_centre,
    candidate_rates,
    clear_win,
    loss_minimum,
    parse_lrs,
    pick_finalists,
    rank_lower_within_noise,
    run_length,
    schedule_epochs,
    survivors,
    verify_rates,
    verify_schedule,
    widened_rate,
    within_noise,
)

# --- the schedule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "epochs", "per_epoch", "expected"),
    [
        (0.2, 10, 8, (2, None)),  # a fifth of 10 epochs: 2 whole epochs
        (0.2, 12, 8, (2, None)),  # 2.4 epochs: rounded to whole epochs
        (0.2, 8, 8, (2, None)),  # 1.6 -> 2
        (0.2, 7, 8, (1, None)),  # 1.4 -> 1
        (0.2, 5, 23, (1, None)),  # exactly one epoch
        (0.2, 4, 100, (1, 80)),  # 0.8 epoch: one epoch cut to its first 80 batches
        (0.2, 2, 100, (1, 40)),
        (0.2, 1, 30, (1, 8)),  # 6 batches is too short a cycle: MIN_SCREEN_BATCHES
        (0.2, 1, 8, (1, None)),  # the minimum is the whole epoch
        (1.0, 10, 8, (10, None)),  # the whole run
    ],
)
def test_run_length(fraction: float, epochs: int, per_epoch: int, expected: tuple) -> None:
    assert run_length(fraction, epochs, per_epoch) == expected


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0.0, 10, 8), "fraction"),
        ((1.5, 10, 8), "fraction"),
        ((0.2, 0, 8), "whole number of epochs"),
        ((0.2, 2.5, 8), "whole number of epochs"),
        ((0.2, 10, 0), "batches"),
    ],
)
def test_run_length_rejects_bad_arguments(args: tuple, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        run_length(*args)


@pytest.mark.parametrize(
    ("n", "epochs", "per_epoch", "finalists", "expected"),
    [
        # The default: a tenth of the run for five, then the best two at the real length.
        (5, 10, 8, 2, [Round(5, 1, None, 1.0), Round(2, 10, None, 10.0)]),
        (5, 4, 100, 2, [Round(5, 1, 40, 0.4), Round(2, 4, None, 4.0)]),
        (8, 5, 23, 3, [Round(8, 1, 12, 12 / 23), Round(3, 5, None, 5.0)]),
        # Nothing to screen: two candidates (or the finalists' number) go straight to the final.
        (2, 10, 8, 2, [Round(2, 10, None, 10.0)]),
        (3, 10, 8, 3, [Round(3, 10, None, 10.0)]),
        # A screen as long as the run is no screen: one full-length round.
        (5, 1, 8, 2, [Round(5, 1, None, 1.0)]),
        (1, 10, 8, 2, []),  # one rate: nothing to compare
    ],
)
def test_verify_schedule(
    n: int, epochs: int, per_epoch: int, finalists: int, expected: list[Round]
) -> None:
    schedule = verify_schedule(n, epochs, per_epoch, finalists=finalists)
    assert schedule == expected
    if schedule:
        # The last round always trains the real run.
        assert (schedule[-1].epochs, schedule[-1].batches) == (epochs, None)


def test_schedule_epochs_costs_two_and_a_half_trainings_by_default() -> None:
    # 5 x a tenth + 2 x the whole run: two and a half trainings, whatever the run's length.
    assert schedule_epochs(verify_schedule(5, 10, 8)) == 5 * 1 + 2 * 10 == 2.5 * 10
    assert schedule_epochs(verify_schedule(5, 4, 100)) == pytest.approx(5 * 0.4 + 2 * 4)
    assert schedule_epochs(verify_schedule(5, 40, 30)) == 5 * 4 + 2 * 40 == 2.5 * 40


@pytest.mark.parametrize(
    ("args", "words"), [((0, 10, 8), "at least one"), ((5, 10, 8, 0.2, 0), "finalists")]
)
def test_verify_schedule_rejects_bad_arguments(args: tuple, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        verify_schedule(*args)


# --- ranking ------------------------------------------------------------------------------


def test_survivors_higher_is_better() -> None:
    scores = {1e-3: 0.5, 1e-2: 0.9, 1e-1: 0.7, 1.0: 0.1}
    assert survivors(scores, 2, higher_is_better=True) == [1e-2, 1e-1]


def test_survivors_lower_is_better() -> None:
    scores = {1e-3: 0.5, 1e-2: 0.9, 1e-1: 0.7, 1.0: 0.1}
    assert survivors(scores, 2, higher_is_better=False) == [1.0, 1e-3]


@pytest.mark.parametrize("higher", [True, False])
def test_survivors_ties_go_to_the_smaller_rate(higher: bool) -> None:
    scores = {1e-1: 0.5, 1e-3: 0.5, 1e-2: 0.5}
    assert survivors(scores, 2, higher_is_better=higher) == [1e-3, 1e-2]


@pytest.mark.parametrize("higher", [True, False])
def test_survivors_diverged_rank_last(higher: bool) -> None:
    # The diverged rates are the smallest, so the lr tie-break would favour them if they
    # were not put last first.
    scores = {1e-5: None, 1e-4: math.nan, 1e-3: math.inf, 1e-2: 0.5, 1e-1: 0.6}
    ranked = survivors(scores, 5, higher_is_better=higher)
    assert ranked[2:] == [1e-5, 1e-4, 1e-3]  # among themselves: smaller rate first
    assert ranked[:2] == ([1e-1, 1e-2] if higher else [1e-2, 1e-1])


def test_survivors_keep_bounds() -> None:
    scores = {1e-2: 0.5, 1e-1: 0.6}
    assert survivors(scores, 0, higher_is_better=True) == []
    assert survivors(scores, 5, higher_is_better=True) == [1e-1, 1e-2]
    with pytest.raises(ValueError, match="keep"):
        survivors(scores, -1, higher_is_better=True)


def test_accuracy_ties_go_to_the_lower_validation_loss_first() -> None:
    scores = {1e-3: 0.9, 1e-2: 0.9, 1e-1: 0.5}
    losses = {1e-3: 0.40, 1e-2: 0.25, 1e-1: 0.9}
    assert survivors(scores, 2, higher_is_better=True, val_losses=losses) == [1e-2, 1e-3]
    # Without losses (or with a missing one) the smaller rate still wins the tie.
    assert survivors(scores, 2, higher_is_better=True) == [1e-3, 1e-2]
    assert survivors(scores, 2, True, {1e-3: 0.4, 1e-2: None}) == [1e-3, 1e-2]


def test_within_noise() -> None:
    assert within_noise(0.9, 0.902, higher_is_better=True)  # 0.2 points below: a tie
    assert not within_noise(0.9, 0.903, higher_is_better=True)  # 0.3 points: a loss
    assert within_noise(1.004, 1.0, higher_is_better=False)  # 0.4% above the best loss
    assert not within_noise(1.006, 1.0, higher_is_better=False)
    # A negative loss: the tolerance is a share of its size.
    assert within_noise(-0.996, -1.0, higher_is_better=False)
    assert not within_noise(-0.994, -1.0, higher_is_better=False)


def test_full_length_ties_go_to_the_lower_rate() -> None:
    # 1e-1 is 0.2 points better: within noise, so the lower rate wins; 3e-1 diverged.
    scores = {1e-2: 0.900, 1e-1: 0.902, 3e-1: None}
    assert rank_lower_within_noise(scores, higher_is_better=True) == [1e-2, 1e-1, 3e-1]
    # 0.5 points better is a real win.
    assert rank_lower_within_noise({1e-2: 0.900, 1e-1: 0.905}, True) == [1e-1, 1e-2]
    # A loss: 0.4% higher is a tie, won by the lower rate; 1% higher is not.
    assert rank_lower_within_noise({1e-2: 0.502, 1e-1: 0.5}, False) == [1e-2, 1e-1]
    assert rank_lower_within_noise({1e-2: 0.505, 1e-1: 0.5}, False) == [1e-1, 1e-2]
    # A chain: the best (1.0) ties with 1e-1, which ties with nothing lower.
    scores = {1e-3: 0.5, 1e-2: 0.8, 1e-1: 0.899, 1.0: 0.9}
    assert rank_lower_within_noise(scores, True) == [1e-1, 1.0, 1e-2, 1e-3]


def test_clear_win() -> None:
    assert clear_win({1e-2: 0.9, 1e-1: 0.8}, True)
    assert not clear_win({1e-2: 0.9, 1e-1: 0.901}, True)  # won only on the tie rule
    assert clear_win({1e-2: 0.9, 1e-1: None}, True)
    assert not clear_win({1e-2: None}, True)


def test_widened_rate() -> None:
    tried = [1e-3, 1e-2, 1e-1]
    assert widened_rate(tried, 1e-3) == pytest.approx(1e-4)  # the low edge
    assert widened_rate(tried, 1e-1) == pytest.approx(1.0)  # the high edge
    assert widened_rate(tried, 1e-2) is None  # bracketed
    # A higher rate that was tried (and diverged) makes the winner an inner rate.
    assert widened_rate([1e-3, 1e-2, 1e-1, 1.0], 1e-1) is None
    # The step is the spacing at that edge: the default candidates are 3 apart.
    default = candidate_rates(1.0)
    assert default == pytest.approx([1 / 3, 1.0, 3.0])
    assert widened_rate(default, default[-1]) == pytest.approx(9.0)
    assert widened_rate(default, default[0]) == pytest.approx(1 / 9)
    uneven = [0.1, 1 / 3, 1.0, 3.0, 10.0]
    assert widened_rate(uneven, uneven[-1]) == pytest.approx(10 * 10 / 3)
    assert widened_rate(uneven, uneven[0]) == pytest.approx(0.1 * 0.3)


# --- candidate_rates and parse_lrs --------------------------------------------------------


def test_candidate_rates_default_factors() -> None:
    assert candidate_rates(3e-3) == pytest.approx([1e-3, 3e-3, 9e-3])


def test_candidate_rates_sorted_and_unique() -> None:
    assert candidate_rates(1e-2, factors=(10, 1, 0.1, 1)) == pytest.approx([1e-3, 1e-2, 1e-1])


@pytest.mark.parametrize("bad", [0.0, -1e-3, math.nan, math.inf, None, "1e-3", True])
def test_candidate_rates_rejects_a_bad_suggestion(bad: object) -> None:
    with pytest.raises(ConfigError, match="suggested rate"):
        candidate_rates(bad)  # type: ignore[arg-type]


def test_candidate_rates_rejects_bad_factors() -> None:
    with pytest.raises(ConfigError, match="factors"):
        candidate_rates(1e-3, factors=(1, 0))
    with pytest.raises(ConfigError, match="factors"):
        candidate_rates(1e-3, factors=())


def test_parse_lrs() -> None:
    assert parse_lrs("1e-3,3e-3,1e-2") == [1e-3, 3e-3, 1e-2]
    assert parse_lrs(" 1e-2 , 1e-3, ") == [1e-3, 1e-2]  # sorted; spaces and a trailing comma


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1e-3,abc", "'abc' in '1e-3,abc' is not a number"),
        ("1e-3,-1e-2", "is not positive"),
        ("1e-3,0", "is not positive"),
        ("1e-3,nan", "is not positive"),
        ("1e-3,1e-3", "lists a rate twice"),
        ("1e-3", "at least two"),
        ("", "at least two"),
    ],
)
def test_parse_lrs_errors_name_the_flag(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match="--lrs") as err:
        parse_lrs(text)
    assert words in str(err.value)


# --- the no-suggestion bracket ------------------------------------------------------------

SWEEP = np.geomspace(1e-6, 10, 71)  # 10 points per decade


def _valley(lr: np.ndarray, lowest: float) -> np.ndarray:
    """A range-test-like curve: a plateau at 2.5, a V down to 1 at `lowest`, then up."""
    x = np.log10(lr / lowest)
    return np.where(x < 0, np.minimum(1 - x, 2.5), 1 + x)


def test_loss_minimum_finds_the_valley() -> None:
    loss = _valley(SWEEP, 1e-2)
    assert loss_minimum(SWEEP, loss) == pytest.approx(1e-2)
    assert bracket_centre(SWEEP, loss) == pytest.approx(1e-2 / 3)


def test_loss_minimum_ignores_a_spike_and_a_lucky_batch() -> None:
    loss = _valley(SWEEP, 1e-2)
    assert loss_minimum(SWEEP, loss) == pytest.approx(1e-2)
    loss[20] = 50.0  # a spike on the plateau
    loss[46] = 0.01  # one lucky batch at 4e-2, past the minimum: the raw argmin
    assert int(np.argmin(loss)) == 46
    assert loss_minimum(SWEEP, loss) == pytest.approx(1e-2)


def test_loss_minimum_stops_at_the_first_blow_up() -> None:
    # After the blow-up the loss settles lower again at absurd rates (Adam on a regression):
    # the minimum that counts is the one before.
    loss = _valley(SWEEP, 1e-3)
    loss[SWEEP > 1] = 0.5
    assert int(np.argmin(loss)) > 60
    assert loss_minimum(SWEEP, loss) == pytest.approx(1e-3)


def test_loss_minimum_cuts_at_the_first_nan() -> None:
    loss = _valley(SWEEP, 1e-2)
    loss[40:] = np.nan  # from 1e-2 on: the last finite point is the lowest
    loss[45] = 0.001  # finite again after the NaN: garbage, ignored
    assert loss_minimum(SWEEP, loss) == pytest.approx(SWEEP[39])


def test_loss_minimum_needs_enough_increasing_points() -> None:
    assert loss_minimum([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0]) is None
    assert loss_minimum([1e-3, 1e-2, 1e-1, 1.0, 10.0], [1.0, math.nan, 1, 1, 1]) is None
    assert loss_minimum([1e-3, 1e-2, 1e-2, 1e-1], [1.0, 0.9, 0.8, 0.7]) is None
    assert bracket_centre([], []) is None
    with pytest.raises(ValueError, match="length"):
        loss_minimum([1e-3, 1e-2], [1.0])


def test_loss_minimum_of_a_short_sweep() -> None:
    # Four points, under half a decade each: no smoothing, the plain minimum.
    assert loss_minimum([1e-4, 1e-2, 1.0, 100.0], [2.0, 1.0, 1.5, 9.0]) == 1e-2


# --- the search, with a stand-in for training ---------------------------------------------

IRIS = {
    "device": "cpu",
    "data": {"name": "sklearn.iris", "batch_size": 16},  # 120 training samples: 8 batches
    "model": {"name": "mlp", "args": {"in_features": 4, "hidden": [16], "num_classes": 3}},
    "optimizer": {"name": "sgd", "args": {"momentum": 0.9}},
}


def _iris(epochs: int, **data: object) -> dict:
    return {**IRIS, "data": {**IRIS["data"], **data}, "train": {"epochs": epochs}}


def fake_training(monkeypatch: pytest.MonkeyPatch, accuracy) -> list[tuple]:
    """Replace training by `accuracy(lr, epochs)` (None: the run diverged); return the calls."""
    calls: list[tuple] = []

    def train_built(built, lr, *, epochs, freeze_epochs):
        calls.append((lr, epochs, built.train_data.max_batches))
        value = accuracy(lr, epochs)
        steps = len(built.train_data) * epochs  # a diverged run: NaN at its last step
        return SimpleNamespace(
            stop_reason="completed" if value is not None else "nan",
            epochs=[{}] * epochs,
            history={"step": list(range(1, steps + 1))},
            final={"val_loss": 0.5, "accuracy": value},
            elapsed_s=0.0,
        )

    monkeypatch.setattr(verify_module, "train_built", train_built)
    return calls


RATES3 = [1e-3, 1e-2, 1e-1]


def test_the_winner_is_judged_at_the_real_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short runs favour the high rate, the real run the lower one: the real run decides."""

    def accuracy(lr: float, epochs: int) -> float:
        short = {1e-3: 0.5, 1e-2: 0.8, 1e-1: 0.9}
        full = {1e-3: 0.5, 1e-2: 0.9, 1e-1: 0.8}
        return (full if epochs == 10 else short)[lr]

    calls = fake_training(monkeypatch, accuracy)
    result = verify_rates(validate(_iris(10)), RATES3, screen_fraction=0.2)
    assert calls == [(lr, 2, None) for lr in RATES3] + [(1e-2, 10, None), (1e-1, 10, None)]
    assert result.best_lr == 1e-2
    by_lr = {c["lr"]: c["rounds"] for c in result.candidates}
    assert [r["epochs"] for r in by_lr[1e-2]] == [2, 10]
    assert by_lr[1e-1][0]["rank"] == 1 and by_lr[1e-1][1]["rank"] == 2
    assert result.widened == []  # 1e-2 is between two rates tried
    assert result.budget_epochs_total == 3 * 2 + 2 * 10
    assert result.cost_vs_one_training == pytest.approx(2.6)


@pytest.mark.parametrize(
    ("winner", "finalists", "expected"),
    [
        (0.3, 2, [0.1, 0.3]),  # the winner and the next lower rate
        (1.0, 2, [0.3, 1.0]),
        (0.01, 2, [0.01, 0.03]),  # nothing lower: the next higher fills the place
        (0.1, 3, [0.01, 0.03, 0.1]),  # two lower ones
        (0.03, 3, [0.01, 0.03, 0.1]),  # one lower, one higher
        (0.3, 5, [0.01, 0.03, 0.1, 0.3, 1.0]),
    ],
)
def test_pick_finalists(winner: float, finalists: int, expected: list[float]) -> None:
    assert pick_finalists([0.01, 0.03, 0.1, 0.3, 1.0], winner, finalists) == expected


def test_the_screens_runner_up_above_the_winner_does_not_go_on(monkeypatch) -> None:
    """The screen ranks 0.1 then 1; the final pits 0.1 against the next LOWER rate."""
    short = {1e-3: 0.5, 1e-2: 0.6, 1e-1: 0.9, 1.0: 0.8}
    full = {1e-2: 0.9, 1e-1: 0.85, 1.0: 0.7}
    calls = fake_training(monkeypatch, lambda lr, epochs: (full if epochs == 10 else short)[lr])
    result = verify_rates(validate(_iris(10)), [1e-3, 1e-2, 1e-1, 1.0], screen_fraction=0.2)
    assert calls[4:] == [(1e-2, 10, None), (1e-1, 10, None)]
    screen = {c["lr"]: c["rounds"][0] for c in result.candidates}
    assert (screen[1.0]["rank"], screen[1.0]["kept"]) == (2, False)
    assert (screen[1e-2]["rank"], screen[1e-2]["kept"]) == (3, True)
    assert result.best_lr == 1e-2 and result.widened == []


def test_a_tie_at_the_real_length_goes_to_the_lower_rate(monkeypatch: pytest.MonkeyPatch):
    rates = [1e-3, 1e-2, 1e-1, 1.0]
    scores = {1e-3: 0.5, 1e-2: 0.900, 1e-1: 0.902, 1.0: 0.1}
    fake_training(monkeypatch, lambda lr, epochs: scores[lr])
    assert verify_rates(validate(_iris(10)), rates).best_lr == 1e-2
    scores[1e-1] = 0.905  # half a point: better beyond the noise
    assert verify_rates(validate(_iris(10)), rates).best_lr == 1e-1


def test_widening_at_the_high_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    accuracy = {1e-3: 0.5, 1e-2: 0.6, 1e-1: 0.7, 1.0: 0.8, 10.0: 0.9, 100.0: 0.95}
    rounds: list[tuple[int, list[float]]] = []
    calls = fake_training(monkeypatch, lambda lr, epochs: accuracy[round(lr, 12)])
    result = verify_rates(
        validate(_iris(10)),
        RATES3,
        on_round=lambda number, rows: rounds.append((number, [r["lr"] for r in rows])),
        screen_fraction=0.2,
    )
    # The winner 0.1 sat at the top of the rates tried: 1 was added, won, then 10; two
    # widenings at most, so 100 is never tried.
    assert result.widened == pytest.approx([1.0, 10.0])
    assert result.best_lr == pytest.approx(10.0)
    assert [c["lr"] for c in result.candidates] == pytest.approx([*RATES3, 1.0, 10.0])
    assert calls[-2:] == [(pytest.approx(1.0), 10, None), (pytest.approx(10.0), 10, None)]
    # Each widening is a full-length run, charged to the budget.
    assert result.budget_epochs_total == 3 * 2 + 2 * 10 + 2 * 10
    assert result.cost_vs_one_training == pytest.approx(4.6)
    added = result.candidates[-1]["rounds"]
    assert [(r["round"], r["epochs"], r["rank"], r["kept"]) for r in added] == [(4, 10, 1, True)]
    # Rounds 3 and 4 show every full-length run so far.
    assert [n for n, _ in rounds] == [1, 2, 3, 4]
    assert rounds[3][1] == pytest.approx([1e-2, 1e-1, 1.0, 10.0])


def test_a_diverged_higher_rate_is_the_cliff_not_an_edge(monkeypatch) -> None:
    accuracy = {1e-3: 0.5, 1e-2: 0.6, 1e-1: 0.7, 1.0: None}
    fake_training(monkeypatch, lambda lr, epochs: accuracy[round(lr, 12)])
    result = verify_rates(validate(_iris(10)), RATES3, screen_fraction=0.2)
    # 0.1 won at the edge, so 1 was tried; it diverged: 0.1 stays, no second widening.
    assert result.widened == pytest.approx([1.0])
    assert result.best_lr == 1e-1
    assert result.budget_epochs_total == 3 * 2 + 2 * 10 + 10  # the diverged run is charged
    diverged = result.candidates[-1]["rounds"][0]
    # A diverged run has no rank and is not kept.
    assert diverged["stop_reason"] == "nan" and diverged["rank"] is None
    assert diverged["kept"] is False

    # Given from the start, the diverged rate is no edge either: nothing is added.
    result = verify_rates(validate(_iris(10)), [*RATES3, 1.0], screen_fraction=0.2)
    assert result.widened == [] and result.best_lr == 1e-1


def test_widening_at_the_low_edge_and_not_on_a_tie(monkeypatch) -> None:
    accuracy = {1e-4: 0.95, 1e-3: 0.9, 1e-2: 0.8, 1e-1: 0.7, 1e-5: 0.7}
    fake_training(monkeypatch, lambda lr, epochs: accuracy[round(lr, 12)])
    result = verify_rates(validate(_iris(10)), RATES3, screen_fraction=0.2)
    assert result.widened == pytest.approx([1e-4, 1e-5]) and result.best_lr == 1e-4

    # The smallest rate won only because ties go to the lower rate: the scores are flat
    # there, and a still lower rate would win the same way. No widening.
    accuracy.update({1e-3: 0.8})
    result = verify_rates(validate(_iris(10)), RATES3, screen_fraction=0.2)
    assert result.best_lr == 1e-3 and result.widened == []


def test_no_widening_when_asked_for_none(monkeypatch) -> None:
    fake_training(monkeypatch, lambda lr, epochs: {1e-3: 0.5, 1e-2: 0.6, 1e-1: 0.7}[lr])
    result = verify_rates(validate(_iris(10)), RATES3, max_widenings=0, screen_fraction=0.2)
    assert result.best_lr == 1e-1 and result.widened == []


def test_a_screen_shorter_than_an_epoch_cuts_the_epoch(monkeypatch) -> None:
    # batch_size 4: 30 batches an epoch; a fifth of 2 epochs is 12 batches of one cycle.
    calls = fake_training(monkeypatch, lambda lr, epochs: {1e-3: 0.5, 1e-2: 0.6, 1e-1: 0.55}[lr])
    result = verify_rates(validate(_iris(2, batch_size=4)), RATES3, screen_fraction=0.2)
    assert result.schedule == [Round(3, 1, 12, 0.4), Round(2, 2, None, 2.0)]
    assert calls == [(lr, 1, 12) for lr in RATES3] + [(1e-3, 2, None), (1e-2, 2, None)]
    assert [r["epochs"] for r in result.candidates[-1]["rounds"]] == [0.4]
    assert [(r["epochs"], r["batches"]) for r in result.candidates[0]["rounds"]] == [
        (0.4, 12),
        (2, None),
    ]
    assert result.budget_epochs_total == pytest.approx(3 * 0.4 + 2 * 2)


def test_a_real_cut_epoch_trains_that_many_steps(monkeypatch) -> None:
    real = verify_module.train_built
    steps: list[int] = []

    def train_built(built, lr, **overrides):
        result = real(built, lr, **overrides)
        steps.append(len(result.history["step"]))
        return result

    monkeypatch.setattr(verify_module, "train_built", train_built)
    verify_rates(
        validate(_iris(2, batch_size=4)), [1e-2, 1e-1, 1.0], max_widenings=0, screen_fraction=0.2
    )
    assert steps == [12, 12, 12, 60, 60]  # 12 batches each, then 2 epochs of 30


# --- real runs on iris --------------------------------------------------------------------

# 1e4 gives a NaN loss in the first epoch; 1e3 only reaches a huge finite loss in one epoch.
RATES = [1e-4, 1e-2, 1e-1, 1e4]


@pytest.fixture(scope="module")
def iris_verify() -> tuple[VerifyResult, list[tuple[int, list[dict]]], list[tuple]]:
    rounds: list[tuple[int, list[dict]]] = []
    runs: list[tuple] = []
    result = verify_rates(
        validate(IRIS),  # train.epochs 5 by default: 8 batches an epoch
        RATES,
        on_round=lambda number, rows: rounds.append((number, rows)),
        on_run=lambda *args: runs.append(args),
    )
    return result, rounds, runs


def test_verify_screens_then_trains_the_finalists_at_the_real_length(iris_verify) -> None:
    result, rounds, runs = iris_verify
    assert result.stop_reason == "completed"
    assert result.metric == "accuracy"
    assert result.full_epochs == 5
    assert result.schedule == [Round(4, 1, None, 1.0), Round(2, 5, None, 5.0)]
    assert runs == [(1, lr, 1) for lr in RATES] + [(2, 1e-2, 5), (2, 1e-1, 5)]

    by_lr = {c["lr"]: c["rounds"] for c in result.candidates}
    assert [c["lr"] for c in result.candidates] == RATES
    assert [len(by_lr[lr]) for lr in RATES] == [1, 2, 2, 1]
    diverged = by_lr[1e4][0]
    assert diverged["stop_reason"] == "nan"
    assert diverged["accuracy"] is None and diverged["val_loss"] is None
    assert diverged["rank"] is None and diverged["kept"] is False  # diverged: no rank
    assert by_lr[1e-4][0]["kept"] is False
    assert {lr for lr in RATES if by_lr[lr][0]["kept"]} == {1e-2, 1e-1}
    # The last round trains the experiment's own train.epochs.
    assert [(r["round"], r["epochs"]) for r in by_lr[1e-1]] == [(1, 1), (2, 5)]

    # on_round: one call per round, rows smallest rate first, each round's runs only.
    assert [number for number, _ in rounds] == [1, 2]
    assert [row["lr"] for row in rounds[0][1]] == RATES
    assert [row["lr"] for row in rounds[1][1]] == [1e-2, 1e-1]
    assert sum(row["kept"] for row in rounds[1][1]) == 1  # the final keeps its winner


def test_verify_picks_a_sensible_rate_and_counts_the_budget(iris_verify) -> None:
    result, _, _ = iris_verify
    assert result.best_lr in (1e-2, 1e-1)
    winner = next(c for c in result.candidates if c["lr"] == result.best_lr)["rounds"][-1]
    assert winner["rank"] == 1 and winner["kept"] is True and winner["epochs"] == 5
    # 0.1 sits below 1e4, which diverged: the cliff, not an edge, so nothing was added.
    assert result.widened == []
    # The plan is 4 x 1 + 2 x 5 epochs; 1e4 diverged within its screen epoch and is charged
    # the share of it that it trained, not the whole epoch.
    assert schedule_epochs(result.schedule) == 4 * 1 + 2 * 5
    assert 13 < result.budget_epochs_total < 14
    assert result.cost_vs_one_training == pytest.approx(result.budget_epochs_total / 5, abs=1e-4)
    assert result.suggested_lr is None and result.seed == 0 and result.centre == "lrs"


def test_verify_json_has_no_nan_and_reports_the_cost(iris_verify) -> None:
    result, _, _ = iris_verify
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["kind"] == "verify"
    assert data["schedule"] == [
        {"candidates": 4, "epochs": 1, "batches": None, "run_epochs": 1.0},
        {"candidates": 2, "epochs": 5, "batches": None, "run_epochs": 5.0},
    ]
    # 14 epochs planned; 1e4 diverged after 6 of the 7 steps of its screen epoch.
    assert data["budget_epochs_total"] == pytest.approx(14 - 1 / 7, abs=1e-6)
    assert data["cost_vs_one_training"] == pytest.approx((14 - 1 / 7) / 5, abs=1e-4)
    assert data["device"] == "cpu" and data["world_size"] == 1
    assert data["effective_batch_size"] == 16
    assert set(data) >= {"candidates", "best_lr", "versions", "config", "widened"}


def test_verify_interrupted_in_round_2_keeps_round_1() -> None:
    def on_run(number: int, lr: float, epochs: float) -> None:
        if (number, lr) == (2, 1e-1):  # the second run of round 2: Ctrl-C before it starts
            raise KeyboardInterrupt

    result = verify_rates(validate(IRIS), RATES, on_run=on_run)
    assert result.stop_reason == "interrupted"
    by_lr = {c["lr"]: c["rounds"] for c in result.candidates}
    assert all(len(by_lr[lr]) >= 1 for lr in RATES)  # round 1 kept whole
    assert len(by_lr[1e-1]) == 1
    # The round-2 run that finished is kept, unranked: its round never completed.
    assert len(by_lr[1e-2]) == 2 and by_lr[1e-2][1]["rank"] is None
    round_1_winner = next(lr for lr in RATES if by_lr[lr][0]["rank"] == 1)
    assert result.best_lr == round_1_winner
    assert result.budget_epochs_total == pytest.approx(4 * 1 - 1 / 7 + 5)  # 1e4: 6 of 7 steps
    # The full-length run that finished is not the winner's: no model is kept.
    assert result.model_lr is None and result.model_state is None


def test_verify_interrupted_in_round_1_has_no_best() -> None:
    def on_run(number: int, lr: float, epochs: float) -> None:
        if lr == 1e-1:
            raise KeyboardInterrupt

    result = verify_rates(validate(IRIS), RATES, on_run=on_run)
    assert result.stop_reason == "interrupted"
    assert result.best_lr is None
    assert result.budget_epochs_total == 2


def test_verify_ctrl_c_inside_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit_one_cycle catches Ctrl-C itself and returns "interrupted": verify stops too."""
    real_train_built = verify_module.train_built

    def ctrl_c_after_an_epoch(record: dict) -> None:
        raise KeyboardInterrupt

    def train_built(built, lr, **overrides):  # real training, with a Ctrl-C after epoch 1
        if overrides["epochs"] == 5:
            overrides["on_epoch"] = ctrl_c_after_an_epoch
        return real_train_built(built, lr, **overrides)

    monkeypatch.setattr(verify_module, "train_built", train_built)
    result = verify_rates(validate(IRIS), RATES)
    assert result.stop_reason == "interrupted"
    assert all(len(c["rounds"]) == 1 for c in result.candidates)  # the cut run is not a result
    assert result.best_lr == next(c["lr"] for c in result.candidates if c["rounds"][0]["rank"] == 1)
    # The screen (1e4 diverged after 6 of its 7 steps), then one epoch of the final.
    assert result.budget_epochs_total == pytest.approx(4 * 1 - 1 / 7 + 1)


def test_verify_ranks_by_val_loss_without_accuracy() -> None:
    result = verify_rates(validate({**_iris(1), "metrics": []}), [1e-4, 1e-1], max_widenings=0)
    assert result.metric == "val_loss"
    assert result.best_lr == 1e-1  # a 1e-4 peak barely moves the loss in one epoch


def test_verify_single_rate_trains_nothing() -> None:
    result = verify_rates(validate(IRIS), [3e-2])
    assert result.best_lr == 3e-2 and result.budget_epochs_total == 0
    assert result.candidates == [{"lr": 3e-2, "rounds": []}]


def test_verify_rejects_bad_rates() -> None:
    with pytest.raises(ConfigError, match="twice"):
        verify_rates(validate(IRIS), [1e-2, 1e-2])
    with pytest.raises(ConfigError, match="positive"):
        verify_rates(validate(IRIS), [1e-2, -1.0])
    with pytest.raises(ConfigError, match="max_widenings"):
        verify_rates(validate(IRIS), [1e-2, 1e-1], max_widenings=-1)


# --- the command --------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_cli_verify_reports_the_cost(tiny_yaml, tmp_path) -> None:
    out = tmp_path / "v"
    result = invoke("verify", tiny_yaml, "--lrs", "1e-2,1e-1", "--out", out, "--no-plot")
    assert result.exit_code == 0, result.output
    data = json.loads((out / "verify.json").read_text())
    assert data["full_epochs"] == 2  # the experiment's train.epochs
    final = [r for c in data["candidates"] for r in c["rounds"] if r["round"] == 1]
    assert [r["epochs"] for r in final] == [2, 2]  # two candidates: straight to the real run
    assert data["cost_vs_one_training"] == data["budget_epochs_total"] / 2
    assert data["device"] == "cpu" and data["effective_batch_size"] == 16
    assert f"{data['cost_vs_one_training']:.3g} x one training of 2 epochs" in result.output


def test_verify_model_is_the_training_at_the_best_rate(tiny_yaml, tmp_path) -> None:
    """model.pt beside verify.json is the winner's full-length run: bit for bit the model
    `lrtool train --lr-max best_lr` trains, so verifying includes the training."""
    from lrtool.workflows import load_experiment, run_train, run_verify

    exp = load_experiment(tiny_yaml)
    verified = run_verify(exp, lrs=[1e-2, 1e-1, 1.0], folder=tmp_path / "v")
    assert verified.model_lr == verified.best_lr is not None
    trained = run_train(exp, verified.best_lr, folder=tmp_path / "t")
    assert trained.train.stop_reason == "completed"
    kept = torch.load(tmp_path / "v" / "model.pt")
    again = torch.load(tmp_path / "t" / "model.pt")
    assert kept.keys() == again.keys()
    assert all(torch.equal(kept[k], again[k]) for k in kept)
    data = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert data["model_lr"] == data["best_lr"] and "model_state" not in data


def test_the_printed_train_command_reproduces_verifys_model_with_its_overrides(
    tiny_yaml, tmp_path
) -> None:
    """With --epochs (or --set) the printed `lrtool train --lr-max X` trained the file's
    settings, another model: the command now names the config.yaml verify wrote."""
    out = tmp_path / "v"
    verified = invoke("verify", tiny_yaml, "--lrs", "1e-2,1e-1", "--epochs", "1", "--set",
                      "data.batch_size=8", "--out", out, "--no-plot")  # fmt: skip
    assert verified.exit_code == 0, verified.output
    said = " ".join(verified.output.split())
    command = said.split("is the model `")[1].split("`")[0]
    assert command.startswith(f"lrtool train {out / 'config.yaml'} --lr-max ")
    args = command.split()[2:]
    trained = invoke("train", *args, "--out", tmp_path / "t", "--no-plot")
    assert trained.exit_code == 0, trained.output
    kept, again = (torch.load(f / "model.pt") for f in (out, tmp_path / "t"))
    assert all(torch.equal(kept[k], again[k]) for k in kept)


def test_cli_verify_epochs_sets_the_real_run(tiny_yaml, tmp_path) -> None:
    out = tmp_path / "v"
    result = invoke(
        "verify", tiny_yaml, "--lrs", "1e-2,1e-1", "--epochs", "1", "--out", out, "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["full_epochs"] == 1 and data["config"]["train"]["epochs"] == 1


TINY = """\
name: tiny
seed: 0
device: cpu
model: {name: mlp, args: {in_features: 4, hidden: [8], num_classes: 3}}
data: {name: sklearn.iris, batch_size: 16}
optimizer: {name: sgd, args: {momentum: 0.9}}
find: {start_lr: START, end_lr: END, num_steps: STEPS}
train: {epochs: 2}
"""


def _sweep_yaml(write_yaml, start: str, end: str, steps: int):
    text = TINY.replace("START", start).replace("END", end).replace("STEPS", str(steps))
    return write_yaml(text)


def test_cli_verify_brackets_the_curve_without_a_suggestion(write_yaml, tmp_path) -> None:
    # Rates so low that the loss never falls: the finder suggests nothing.
    flat = _sweep_yaml(write_yaml, "1e-8", "1e-7", 10)
    out = tmp_path / "v"
    result = invoke("verify", flat, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    found = json.loads((out / "find.json").read_text())
    assert found["suggested_lr"] is None and data["suggested_lr"] is None
    # Flat: the sweep never blew up, so the cliff lies beyond it, and the candidates centre
    # where the rule would land below a cliff at its last rate.
    assert data["centre"] == "sweep_end"
    history = found["history"]
    assert data["centre_lr"] == pytest.approx(bracket_centre(history["lr"], history["loss"]))
    assert data["centre_lr"] == pytest.approx(history["lr"][-1] / 30)
    assert [c["lr"] for c in data["candidates"]] == pytest.approx(
        candidate_rates(data["centre_lr"])
    )
    assert data["widened"] == []  # flat scores: the lowest rate wins on ties, no widening
    assert "no suggested rate" in result.output


def test_cli_verify_from_a_find_json_without_a_suggestion(write_yaml, tmp_path) -> None:
    flat = _sweep_yaml(write_yaml, "1e-8", "1e-7", 10)
    invoke("find", flat, "--out", tmp_path / "f", "--no-plot")
    result = invoke(
        "verify", flat, "--from", tmp_path / "f" / "find.json", "--out", tmp_path / "v", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["centre"] == "sweep_end"


def test_a_sweep_that_rose_from_the_start_is_bracketed_at_its_lowest_loss() -> None:
    rising = np.where(SWEEP > 1e-4, 1.0 + 50 * (np.log10(SWEEP) + 4), 1.0)
    rising[:8] = [1.0, 0.97, 0.95, 0.96, 0.98, 1.0, 1.02, 1.01]
    centre, where = bracket(SWEEP, rising)
    assert where == "loss_minimum"
    assert centre == pytest.approx(loss_minimum(SWEEP, rising) / 3)


def test_cli_verify_without_enough_points_exits_3(write_yaml, tmp_path) -> None:
    short = _sweep_yaml(write_yaml, "1e-4", "10", 3)
    result = invoke("verify", short, "--out", tmp_path / "v", "--no-plot")
    assert result.exit_code == 3
    assert "too few usable points" in result.output and "--lrs" in result.output


def test_max_epochs_is_still_accepted_as_the_old_name_of_epochs(tmp_path) -> None:
    from typer.testing import CliRunner

    from lrtool.cli import app

    path = tmp_path / "iris.yaml"
    path.write_text(yaml.safe_dump(_iris(3)))
    runner = CliRunner()
    old = runner.invoke(
        app,
        [
            "verify",
            str(path),
            "--lrs",
            "1e-2,1e-1",
            "--max-epochs",
            "1",
            "--out",
            str(tmp_path / "a"),
            "--json",
            "--no-plot",
        ],
    )
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout)["full_epochs"] == 1
    both = runner.invoke(app, ["verify", str(path), "--epochs", "1", "--max-epochs", "1"])
    assert both.exit_code == 2


def test_verify_from_a_train_history_is_bad_input(tiny_yaml, tmp_path) -> None:
    trained = invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", tmp_path / "t", "--no-plot")
    assert trained.exit_code == 0, trained.output
    result = invoke("verify", tiny_yaml, "--from", tmp_path / "t" / "train.json", "--no-plot")
    assert result.exit_code == 2, result.output
    assert "this is a training history (train.json), not a range test" in " ".join(
        result.output.split()
    )


def test_an_interrupted_verify_does_not_claim_every_candidate_diverged() -> None:
    from rich.console import Console

    from lrtool.cli import render_verify

    def on_run(number: int, lr: float, epochs: float) -> None:
        if lr == 1e-1:
            raise KeyboardInterrupt

    result = verify_rates(validate(IRIS), RATES, on_run=on_run)
    console = Console(record=True, width=200)
    render_verify(console, result, Path("out"), plot=False)
    shown = console.export_text()
    assert "interrupted before the first round completed: no winner" in shown
    assert "diverging" not in shown


def test_bad_lrs_are_refused_before_the_out_folder_is_made(tiny_yaml, tmp_path) -> None:
    out = tmp_path / "v"
    result = invoke("verify", tiny_yaml, "--lrs", "1e300,0.1", "--out", out)
    assert result.exit_code == 2 and "--lrs" in result.output
    assert not out.exists()


def test_verify_prints_its_cost_rounded(tiny_yaml, tmp_path) -> None:
    """A run stopped by a NaN is charged a share of its epochs: 6.90503 epochs must print
    as 6.905, not with every digit."""
    from rich.console import Console

    from lrtool.cli import render_verify
    from lrtool.results import read

    out = tmp_path / "v"
    assert (
        invoke("verify", tiny_yaml, "--lrs", "1e-2,1e4", "--out", out, "--no-plot").exit_code == 0
    )
    result = read(out / "verify.json")
    result.budget_epochs_total, result.cost_vs_one_training = 6.90503, 2.301677
    console = Console(width=200, record=True)
    render_verify(console, result, out, plot=False)
    assert "cost: 6.905 epochs in all, 2.3 x one training" in console.export_text()


def test_saved_ranks_are_the_printed_ones_and_charts_take_round_one_only(tiny_yaml):
    import lrtool
    from lrtool.plot import round_one

    printed = {}

    def on_round(number, rows, metric):
        printed[number] = {row["lr"]: (row["rank"], row["kept"]) for row in rows}

    # Rates far below what iris trains well at: the highest wins, at the edge, and widening
    # climbs, ranking the full-length runs again each round.
    exp = lrtool.load_experiment(tiny_yaml)
    result = lrtool.run_verify(exp, lrs=[1e-3, 3e-3, 1e-2], on_round=on_round)
    assert result.widened, "the test needs a widening round"
    for candidate in result.candidates:
        for record in candidate["rounds"]:
            if record["rank"] is not None or record["kept"] is not None:
                shown = printed[record["round"]][candidate["lr"]]
                assert (record["rank"], record["kept"]) == shown, (candidate["lr"], record)
    first = round_one(result.to_dict()["candidates"], "val_loss")
    assert sorted(lr for lr, _ in first) == [1e-3, 3e-3, 1e-2]  # widened rates: no round 1


def test_verify_from_a_range_test_of_another_model_is_refused(tiny_yaml, tmp_path):
    import json

    import lrtool
    from lrtool.errors import ConfigError

    exp = lrtool.load_experiment(tiny_yaml)
    lrtool.run_find(exp, folder=tmp_path / "f")
    found = json.loads((tmp_path / "f" / "find.json").read_text())
    # As another experiment's find.json would say: another model, another of the same name
    # (only its arguments differ), other data of the same source.
    edits = {
        "model.name 'cnn' there": lambda c: c["model"].update(name="cnn"),
        "model.args": lambda c: c["model"]["args"].update(hidden=[999]),
        "data.args": lambda c: c["data"].setdefault("args", {}).update(n_samples=12345),
    }
    for said, edit in edits.items():
        other = json.loads(json.dumps(found))
        edit(other["config"])
        (tmp_path / "other.json").write_text(json.dumps(other))
        with pytest.raises(ConfigError, match="that range test ran another model or other data"):
            try:
                lrtool.run_verify(exp, from_find=tmp_path / "other.json")
            except ConfigError as err:
                assert said in str(err), str(err)
                raise
    # The same data named another way is the same data: a root saved relative (the run made
    # the folder itself, so it was not there to resolve), or only `download` changed.
    relative = tmp_path / "cache"
    relative.mkdir()
    exp_dl = lrtool.load_experiment(tiny_yaml, {"data.args.root": str(relative)})
    same = json.loads(json.dumps(found))
    same["config"]["data"]["args"] = {"root": "cache", "download": True}
    (tmp_path / "same.json").write_text(json.dumps(same))
    from lrtool.workflows import _same_model_and_data

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        _same_model_and_data(exp_dl, same, tmp_path / "same.json")  # no error
    # Its own find.json is taken (with --epochs 1 for speed).
    short = lrtool.load_experiment(tiny_yaml, {"train.epochs": 1})
    assert lrtool.run_verify(short, from_find=tmp_path / "f" / "find.json").best_lr is not None


def test_the_screen_takes_a_few_optimizer_steps_under_gradient_accumulation() -> None:
    """18 batches under grad_accum 20 trained nothing: the screen ranked untrained models."""
    from lrtool.verify import verify_schedule

    screen, _ = verify_schedule(3, 4, 200, grad_accum=20)
    assert screen.batches is not None and screen.batches >= 80
    assert (
        verify_schedule(3, 4, 200)[0].batches == verify_schedule(3, 4, 200, grad_accum=1)[0].batches
    )


def test_widening_stops_below_float32s_largest_rate(tmp_path, monkeypatch) -> None:
    """A winner at 1.5e38 widened to 4.5e38: the experiment was refused mid-search and every
    finished run was lost."""
    from lrtool.verify import verify_rates
    from lrtool.workflows import load_experiment

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "scaled.py").write_text(
        "from torch import nn\n"
        "class Scaled(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x) * 3e-20\n"
    )
    (tmp_path / "exp.yaml").write_text(
        "device: cpu\nmodel: {name: 'scaled:Scaled'}\n"
        "data: {name: sklearn.digits, batch_size: 64}\nmetrics: [accuracy]\n"
        "optimizer: {name: sgd, args: {momentum: 0.9}}\ntrain: {epochs: 2}\n"
    )
    exp = load_experiment(tmp_path / "exp.yaml")
    result = verify_rates(exp, [5e37, 1.5e38])
    assert all(rate <= 3.4e38 for rate in result.widened)
    assert result.best_lr is not None


def test_an_interrupted_real_length_round_calls_the_screen_winner_unjudged() -> None:
    """It was printed in bold green as `best_lr`, though the screen leans high and the real
    length never judged it."""
    from rich.console import Console

    from lrtool.cli import render_verify

    def on_run(number: int, lr: float, epochs: float) -> None:
        if (number, lr) == (2, 1e-1):
            raise KeyboardInterrupt

    result = verify_rates(validate(IRIS), RATES, on_run=on_run)
    console = Console(record=True, width=200)
    render_verify(console, result, Path("out"), plot=False)
    shown = console.export_text()
    assert "best so far" in shown and "not judged at the real length" in shown
    assert "best_lr = " not in shown


def test_a_widening_cut_by_ctrl_c_is_not_listed_as_widened() -> None:
    """verify.json listed a widened rate with no run in `candidates`."""
    from lrtool.verify import _Search

    rates = [1e-3, 3e-3]  # on iris the higher wins clearly: widened to 9e-3, then 2.7e-2
    calls = []
    real = _Search.train

    def train(self, number, lr, rnd):
        calls.append(lr)
        if lr not in rates:  # the widened rate's run: Ctrl-C inside it
            raise KeyboardInterrupt
        return real(self, number, lr, rnd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Search, "train", train)
        result = verify_rates(validate(IRIS), rates)
    widened_tried = [lr for lr in calls if lr not in rates]
    assert widened_tried and result.stop_reason == "interrupted"
    assert result.widened == []
    assert {c["lr"] for c in result.candidates} == set(rates)
