"""verify: the halving schedule, ranking, candidate rates, and real short runs on iris."""

from __future__ import annotations

import json
import math

import pytest

from lrtool.bench import SUGGEST_TASKS
from lrtool.config import validate
from lrtool.errors import ConfigError
from lrtool.verify import (
    VerifyResult,
    bench_verify,
    candidate_rates,
    halving_schedule,
    parse_lrs,
    schedule_epochs,
    survivors,
    verify_cost,
    verify_rates,
)

# --- halving_schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "first", "most", "expected"),
    [
        (5, 1, None, [(5, 1), (3, 2), (2, 4)]),  # 3 -> 2 -> 1: the round of one is not run
        (4, 1, None, [(4, 1), (2, 2)]),
        (8, 1, None, [(8, 1), (4, 2), (2, 4)]),
        (2, 1, None, [(2, 1)]),
        (1, 1, None, []),  # nothing to compare
        (5, 1, 2, [(5, 1), (3, 2)]),  # the next round's 4 epochs would exceed max_epochs
        (5, 1, 4, [(5, 1), (3, 2), (2, 4)]),  # max_epochs itself is allowed
        (5, 1, 1, [(5, 1)]),
        (5, 2, None, [(5, 2), (3, 4), (2, 8)]),
        (9, 1, 5, [(9, 1), (5, 2), (3, 4)]),
    ],
)
def test_halving_schedule(n: int, first: int, most: int | None, expected: list) -> None:
    assert halving_schedule(n, first, most) == expected


def test_schedule_epochs_is_candidates_times_epochs() -> None:
    assert schedule_epochs(halving_schedule(5)) == 5 * 1 + 3 * 2 + 2 * 4


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0,), "at least one candidate"),
        ((5, 0), "first_epochs"),
        ((5, 1.5), "first_epochs"),
        ((5, True), "first_epochs"),
        ((5, 2, 1), "max_epochs"),
        ((5, 1, 0), "max_epochs"),
    ],
)
def test_halving_schedule_rejects_bad_arguments(args: tuple, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        halving_schedule(*args)


# --- survivors ----------------------------------------------------------------------------


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


# --- candidate_rates and parse_lrs --------------------------------------------------------


def test_candidate_rates_default_factors() -> None:
    assert candidate_rates(3e-3) == pytest.approx([3e-4, 1e-3, 3e-3, 9e-3, 3e-2])


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


# --- real runs on iris --------------------------------------------------------------------

IRIS = {
    "device": "cpu",
    "data": {"name": "sklearn.iris", "batch_size": 16},
    "model": {"name": "mlp", "args": {"in_features": 4, "hidden": [16], "num_classes": 3}},
    "optimizer": {"name": "sgd", "args": {"momentum": 0.9}},
}
# 1e4 gives a NaN loss in the first epoch; 1e3 only reaches a huge finite loss in one epoch.
RATES = [1e-4, 1e-2, 1e-1, 1e4]


@pytest.fixture(scope="module")
def iris_verify() -> tuple[VerifyResult, list[tuple[int, list[dict]]], list[tuple]]:
    rounds: list[tuple[int, list[dict]]] = []
    runs: list[tuple] = []
    result = verify_rates(
        validate(IRIS),
        RATES,
        on_round=lambda number, rows: rounds.append((number, rows)),
        on_run=lambda *args: runs.append(args),
    )
    return result, rounds, runs


def test_verify_eliminates_the_diverged_and_the_tiny_rate_first(iris_verify) -> None:
    result, rounds, runs = iris_verify
    assert result.stop_reason == "completed"
    assert result.metric == "accuracy"
    assert result.schedule == [(4, 1), (2, 2)]
    assert runs == [(1, lr, 1) for lr in RATES] + [(2, 1e-2, 2), (2, 1e-1, 2)]

    by_lr = {c["lr"]: c["rounds"] for c in result.candidates}
    assert [c["lr"] for c in result.candidates] == RATES
    assert [len(by_lr[lr]) for lr in RATES] == [1, 2, 2, 1]
    diverged = by_lr[1e4][0]
    assert diverged["stop_reason"] == "nan"
    assert diverged["accuracy"] is None and diverged["val_loss"] is None
    assert diverged["rank"] == 4 and diverged["kept"] is False
    assert by_lr[1e-4][0]["kept"] is False
    assert {lr for lr in RATES if by_lr[lr][0]["kept"]} == {1e-2, 1e-1}
    assert [r["epochs"] for r in by_lr[1e-1]] == [1, 2]

    # on_round: one call per round, rows smallest rate first, each round's survivors only.
    assert [number for number, _ in rounds] == [1, 2]
    assert [row["lr"] for row in rounds[0][1]] == RATES
    assert [row["lr"] for row in rounds[1][1]] == [1e-2, 1e-1]
    assert sum(row["kept"] for row in rounds[1][1]) == 1  # the last round keeps its winner


def test_verify_picks_a_sensible_rate_and_counts_the_budget(iris_verify) -> None:
    result, _, _ = iris_verify
    assert result.best_lr in (1e-2, 1e-1)
    winner = next(c for c in result.candidates if c["lr"] == result.best_lr)["rounds"][-1]
    assert winner["rank"] == 1 and winner["kept"] is True
    assert result.budget_epochs_total == schedule_epochs(result.schedule) == 4 * 1 + 2 * 2
    assert result.suggested_lr is None and result.seed == 0


def test_verify_json_has_no_nan(iris_verify) -> None:
    result, _, _ = iris_verify
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["kind"] == "verify"
    assert data["schedule"] == [[4, 1], [2, 2]]
    assert set(data) >= {"candidates", "best_lr", "budget_epochs_total", "versions", "config"}


def test_verify_interrupted_in_round_2_keeps_round_1() -> None:
    def on_run(number: int, lr: float, epochs: int) -> None:
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
    assert result.budget_epochs_total == 4 * 1 + 2


def test_verify_interrupted_in_round_1_has_no_best() -> None:
    def on_run(number: int, lr: float, epochs: int) -> None:
        if lr == 1e-1:
            raise KeyboardInterrupt

    result = verify_rates(validate(IRIS), RATES, on_run=on_run)
    assert result.stop_reason == "interrupted"
    assert result.best_lr is None
    assert result.budget_epochs_total == 2


def test_verify_ctrl_c_inside_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit_one_cycle catches Ctrl-C itself and returns "interrupted": verify stops too."""
    import lrtool.verify as verify_module

    real_train_built = verify_module.train_built

    def ctrl_c_after_an_epoch(record: dict) -> None:
        raise KeyboardInterrupt

    def train_built(built, lr, **overrides):  # real training, with a Ctrl-C after epoch 1
        if overrides["epochs"] == 2:
            overrides["on_epoch"] = ctrl_c_after_an_epoch
        return real_train_built(built, lr, **overrides)

    monkeypatch.setattr(verify_module, "train_built", train_built)
    result = verify_rates(validate(IRIS), RATES)
    assert result.stop_reason == "interrupted"
    assert all(len(c["rounds"]) == 1 for c in result.candidates)  # the cut run is not a result
    assert result.best_lr == next(c["lr"] for c in result.candidates if c["rounds"][0]["rank"] == 1)
    assert result.budget_epochs_total == 4 * 1 + 1  # round 1, then the one epoch of round 2


def test_verify_ranks_by_val_loss_without_accuracy() -> None:
    result = verify_rates(validate({**IRIS, "metrics": []}), [1e-4, 1e-1], max_epochs=1)
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


# --- the benchmark hook -------------------------------------------------------------------


def test_verify_cost_follows_the_task_epochs() -> None:
    assert verify_cost(SUGGEST_TASKS["iris-mlp-sgd"]) == 5 + 3 * 2 + 2 * 4
    # 9 candidates: a fourth round of 8 epochs fits in iris's 10, not in digits' 5.
    assert verify_cost(SUGGEST_TASKS["iris-mlp-sgd"], 9) == 9 + 5 * 2 + 3 * 4 + 2 * 8
    assert verify_cost(SUGGEST_TASKS["digits-mlp-sgd"], 9) == 9 + 5 * 2 + 3 * 4


def test_bench_verify_scores_each_seed() -> None:
    spec = {k: v for k, v in IRIS.items() if k != "device"} | {"train": {"epochs": 2}}
    scores = bench_verify("iris-tiny", spec, [0])
    assert list(scores) == ["verify"]
    assert len(scores["verify"]) == 1
    assert 0.0 <= scores["verify"][0] <= 100.0


def test_accuracy_ties_go_to_the_lower_validation_loss_first():
    scores = {1e-3: 0.9, 1e-2: 0.9, 1e-1: 0.5}
    losses = {1e-3: 0.40, 1e-2: 0.25, 1e-1: 0.9}
    assert survivors(scores, 2, higher_is_better=True, val_losses=losses) == [1e-2, 1e-3]
    # Without losses (or with a missing one) the smaller rate still wins the tie.
    assert survivors(scores, 2, higher_is_better=True) == [1e-3, 1e-2]
    assert survivors(scores, 2, True, {1e-3: 0.4, 1e-2: None}) == [1e-3, 1e-2]
