"""Does the suggested rate actually give the best model? Short one-cycle runs decide.

`lrtool verify` trains the experiment at a few candidate peak rates (by default the finder's
suggestion times 1/10, 1/3, 1, 3 and 10) and keeps the best by the validation metric:
accuracy when the experiment has it, else the validation loss. The budget is spent by
successive halving (Jamieson & Talwalkar 2016, "Non-stochastic Best Arm Identification and
Hyperparameter Optimization"): every candidate trains a short budget, the better half
(rounded up) trains again with twice the budget, until one candidate is left or the next
budget would exceed `max_epochs`.

Each round trains FROM SCRATCH: a fresh build with the experiment's seed, then a whole
one-cycle over that round's epochs. One-cycle is one schedule over the whole run (warm-up,
peak, anneal to almost zero), so continuing a finished 1-epoch cycle for 2 more epochs is not
a 2-epoch one-cycle; only a fresh run tells how the rate does under the schedule it would
really be used with. Re-training costs at most a factor of two (1 + 2 + 4 + ... < 2 x the
last round), and the same seed means every candidate starts from the same weights and sees
the same batches, so the rate is the only difference.

A known bias: a 1-epoch cycle has a very short warm-up, so the first round is hard on high
rates that a longer cycle would have tolerated. A larger `first_epochs` softens it.

Nothing here parses options, prints or writes files: the CLI does that with the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .build import build
from .config import Experiment
from .errors import ConfigError
from .history import versions
from .run import train_built

# The finder's suggestion is an estimate, usually right within a factor of a few: half a
# decade and a decade either side cover where the best rate is found in practice.
DEFAULT_FACTORS = (0.1, 1 / 3, 1.0, 3.0, 10.0)

LRS_KEY = "--lrs"

OnRound = Callable[[int, list[dict[str, Any]]], None]
OnRun = Callable[[int, float, int], None]


# --- pure helpers -------------------------------------------------------------------------


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def halving_schedule(
    n_candidates: int, first_epochs: int = 1, max_epochs: int | None = None
) -> list[tuple[int, int]]:
    """The rounds of successive halving: (candidates entering the round, epochs each trains).

    Each round keeps the better half, rounded up, and doubles the epochs. It stops when one
    candidate is left (it is the winner: a round of one compares nothing, so it is not
    trained) or when the next round's epochs would exceed `max_epochs`.

    >>> halving_schedule(5)
    [(5, 1), (3, 2), (2, 4)]
    >>> halving_schedule(5, max_epochs=2)
    [(5, 1), (3, 2)]
    """
    if not _whole(n_candidates) or n_candidates < 1:
        raise ConfigError(
            f"verify needs at least one candidate rate, got {n_candidates!r} candidates."
        )
    if not _whole(first_epochs) or first_epochs < 1:
        raise ConfigError(
            "first_epochs (the epochs every candidate trains in the first round) must be a "
            f"whole number >= 1, got {first_epochs!r}."
        )
    if max_epochs is not None and (not _whole(max_epochs) or max_epochs < first_epochs):
        raise ConfigError(
            "max_epochs (the most epochs a round may train) must be a whole number >= "
            f"first_epochs ({first_epochs}), got {max_epochs!r}."
        )
    rounds: list[tuple[int, int]] = []
    alive, epochs = n_candidates, first_epochs
    while alive > 1 and (max_epochs is None or epochs <= max_epochs):
        rounds.append((alive, epochs))
        alive, epochs = math.ceil(alive / 2), epochs * 2
    return rounds


def schedule_epochs(schedule: Sequence[tuple[int, int]]) -> int:
    """Total epochs a completed schedule trains: candidates x epochs, summed over rounds."""
    return sum(n * epochs for n, epochs in schedule)


def _diverged(score: float | None) -> bool:
    # An infinite loss is as diverged as a NaN one, and an infinite accuracy is impossible.
    return score is None or not math.isfinite(score)


def survivors(
    scores: dict[float, float | None],
    keep: int,
    higher_is_better: bool,
    val_losses: dict[float, float | None] | None = None,
) -> list[float]:
    """The `keep` best rates, best first.

    A None or non-finite score (a diverged run) always ranks last, whichever direction is
    better. A small validation set ties often (accuracy on 30 samples moves in steps of 3.3
    points): equal scores go to the lower validation loss when `val_losses` is given, then
    to the smaller rate, the safer choice, further from the edge where training diverges.
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")

    def key(lr: float) -> tuple[bool, float, float, float]:
        score = scores[lr]
        if _diverged(score):
            return (True, 0.0, 0.0, lr)
        loss = (val_losses or {}).get(lr)
        tie = loss if loss is not None and math.isfinite(loss) else math.inf
        return (False, -score if higher_is_better else score, tie, lr)

    return sorted(scores, key=key)[:keep]


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def candidate_rates(suggested: float, factors: Sequence[float] = DEFAULT_FACTORS) -> list[float]:
    """The suggestion times each factor, smallest first (a repeated rate appears once)."""
    if isinstance(suggested, bool) or not isinstance(suggested, (int, float)):
        raise ConfigError(f"the suggested rate must be a number, got {suggested!r}.")
    if not _positive(suggested):
        raise ConfigError(f"the suggested rate must be positive and finite, got {suggested!r}.")
    if not factors or not all(_positive(f) for f in factors):
        raise ConfigError(f"factors must be positive and finite numbers, got {list(factors)!r}.")
    return sorted({suggested * f for f in factors})


def parse_lrs(text: str) -> list[float]:
    """`--lrs 1e-3,3e-3,1e-2`: at least two distinct positive rates, returned smallest first."""
    expected = f"{LRS_KEY} expects comma-separated positive learning rates (1e-3,3e-3,1e-2)"
    pieces = [p.strip() for p in str(text).split(",") if p.strip()]
    rates: list[float] = []
    for piece in pieces:
        try:
            rate = float(piece)
        except ValueError:
            raise ConfigError(f"{expected}; {piece!r} in {text!r} is not a number.") from None
        if not _positive(rate):
            raise ConfigError(f"{expected}; {piece!r} in {text!r} is not positive and finite.")
        rates.append(rate)
    if len(set(rates)) != len(rates):
        raise ConfigError(f"{LRS_KEY} lists a rate twice: {text!r}.")
    if len(rates) < 2:
        raise ConfigError(
            f"{expected}, at least two to compare; got {text!r}. To train at one rate, use "
            "`lrtool train --lr-max`."
        )
    return sorted(rates)


# --- the result ---------------------------------------------------------------------------


@dataclass
class VerifyResult:
    """The outcome of `lrtool verify`; `to_dict()` is verify.json.

    `candidates`: one entry per rate, smallest first: {"lr", "rounds"}, one round record per
    round it trained in: {"epochs", "val_loss", each metric, "stop_reason", "elapsed_s",
    "rank", "kept"}. Metrics are None for a run that diverged (stop_reason "nan"); "rank"
    (1 = best) and "kept" (went on to the next round, or won the last one) are None in a
    round that Ctrl-C cut short.
    """

    candidates: list[dict[str, Any]]
    best_lr: float | None  # None: interrupted in round 1, or every finalist diverged
    suggested_lr: float | None  # the finder's suggestion the candidates came from; None: --lrs
    # Epochs of every run: a run stopped by a NaN loss counts its round's full budget (as the
    # grid in `lrtool.bench` is charged for a diverged rate), an interrupted run counts the
    # epochs it completed. A completed verify costs exactly schedule_epochs(schedule).
    budget_epochs_total: int
    metric: str  # what ranks the candidates: "accuracy" (higher is better) or "val_loss"
    stop_reason: str  # completed | interrupted
    seed: int | None
    elapsed_s: float
    schedule: list[tuple[int, int]] = field(default_factory=list)  # as planned
    config: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=versions)
    kind: str = "verify"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schedule"] = [list(r) for r in self.schedule]
        return data


def ranking_metric(exp: Experiment) -> tuple[str, bool]:
    """The metric that ranks candidates and whether higher is better."""
    if "accuracy" in exp.metrics:
        return "accuracy", True
    return "val_loss", False


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN: a value that is not a finite number is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the search ---------------------------------------------------------------------------


def verify_rates(
    exp: Experiment,
    rates: Sequence[float],
    *,
    first_epochs: int = 1,
    max_epochs: int | None = None,
    suggested_lr: float | None = None,
    on_round: OnRound | None = None,
    on_run: OnRun | None = None,
) -> VerifyResult:
    """Successive halving over `rates`: the rate whose one-cycle run validates best.

    Every run is `train_built(build(exp), lr, epochs=<round's epochs>, freeze_epochs=0)`:
    a fresh build with the experiment's seed and its `train:` settings, the main cycle only.
    `on_run(round_number, lr, epochs)` is called before each run and `on_round(round_number,
    rows)` after each completed round (round numbers start at 1); each row is a round record
    (see VerifyResult) with the candidate's "lr" added, smallest rate first.

    Ctrl-C (between runs, in a callback or inside training) stops the search: the result
    keeps every finished run, stop_reason is "interrupted" and best_lr is the best of the
    last completed round (None when round 1 did not complete). Nothing is raised.

    A single rate is returned as best_lr without training: there is nothing to compare.
    """
    started = time.perf_counter()
    rates = [float(r) for r in rates]
    if not rates or not all(_positive(r) for r in rates):
        raise ConfigError(f"verify needs positive, finite candidate rates; got {rates!r}.")
    if len(set(rates)) != len(rates):
        raise ConfigError(f"verify: a candidate rate appears twice in {rates!r}.")
    rates = sorted(rates)
    schedule = halving_schedule(len(rates), first_epochs, max_epochs)
    metric, higher_is_better = ranking_metric(exp)
    records: dict[float, list[dict[str, Any]]] = {lr: [] for lr in rates}
    alive = list(rates)
    best_lr: float | None = rates[0] if not schedule else None
    budget = 0
    stop_reason = "completed"

    try:
        for number, (_, epochs) in enumerate(schedule, start=1):
            scores: dict[float, float | None] = {}
            val_losses: dict[float, float | None] = {}
            for lr in alive:
                if on_run is not None:
                    on_run(number, lr, epochs)
                result = train_built(build(exp), lr, epochs=epochs, freeze_epochs=0)
                if result.stop_reason == "interrupted":
                    # fit_one_cycle catches Ctrl-C itself: its epochs were trained all the same.
                    budget += len(result.epochs)
                    raise KeyboardInterrupt
                budget += epochs
                # After a NaN loss the last evaluation predates the blow-up: not a result.
                finished = result.stop_reason == "completed"
                values = {
                    k: _finite_or_none(v) if finished else None for k, v in result.final.items()
                }
                records[lr].append(
                    {
                        "epochs": epochs,
                        **values,
                        "stop_reason": result.stop_reason,
                        "elapsed_s": result.elapsed_s,
                        "rank": None,
                        "kept": None,
                    }
                )
                scores[lr] = values.get(metric)
                val_losses[lr] = values.get("val_loss")
            ranked = survivors(scores, len(scores), higher_is_better, val_losses)
            last_round = number == len(schedule)
            # The last round keeps only its winner; the others keep the better half.
            keep = 1 if last_round else math.ceil(len(alive) / 2)
            alive = sorted(ranked[:keep])  # every round trains smallest rate first
            best_lr = None if _diverged(scores[ranked[0]]) else ranked[0]
            for rank, lr in enumerate(ranked, start=1):
                records[lr][-1].update(rank=rank, kept=rank <= keep)
            if on_round is not None:
                on_round(number, [{"lr": lr, **records[lr][-1]} for lr in rates if lr in scores])
    except KeyboardInterrupt:
        stop_reason = "interrupted"

    return VerifyResult(
        candidates=[{"lr": lr, "rounds": records[lr]} for lr in rates],
        best_lr=best_lr,
        suggested_lr=suggested_lr,
        budget_epochs_total=budget,
        metric=metric,
        stop_reason=stop_reason,
        seed=exp.seed,
        elapsed_s=round(time.perf_counter() - started, 3),
        schedule=schedule,
    )


# --- the benchmark row (`python -m lrtool.bench suggest --verify`) ------------------------


def _task_epochs(spec: dict[str, Any]) -> int:
    from .bench import _experiment

    return _experiment(spec, 0).train.epochs


def verify_cost(task_spec: dict[str, Any], n_candidates: int = 5) -> int:
    """Epochs verify spends choosing a rate for one seed of a bench task.

    The halving schedule with first_epochs 1 and max_epochs the task's `train.epochs`. To be
    compared with the grid's rates x task epochs per seed. Left out: the finder's sweep (100
    steps, a few epochs at most on the bench tasks) and the final training at the chosen
    rate, which every method needs.
    """
    return schedule_epochs(halving_schedule(n_candidates, 1, _task_epochs(task_spec)))


def bench_verify(task: str, spec: dict[str, Any], seeds: list[int]) -> dict[str, list[float]]:
    """`suggest_benchmark`'s `extra` hook: the score of verify's pick, per seed.

    Per seed, as the benchmark does for the suggestion methods: a sweep from 1e-6 to 10 in
    100 steps, then verify around the default method's suggestion (the geometric middle of
    the sweep when it has none) with max_epochs the task's `train.epochs`, then the full
    training at the chosen rate that the grid's rates had. Ctrl-C stops the benchmark.
    """
    from .bench import _experiment, _train_score, bench_find
    from .suggest import DEFAULT_METHOD

    scores: list[float] = []
    for seed in seeds:
        exp = _experiment(spec, seed)
        found = bench_find(spec, seed)
        if found.stop_reason == "interrupted":
            raise KeyboardInterrupt
        suggested = found.suggestions.get(DEFAULT_METHOD)
        if suggested is None:
            low, high = (found.lr[0], found.lr[-1]) if found.lr else (1e-6, 10.0)
            suggested = math.sqrt(low * high)
        result = verify_rates(
            exp, candidate_rates(suggested), max_epochs=exp.train.epochs, suggested_lr=suggested
        )
        if result.stop_reason == "interrupted":
            raise KeyboardInterrupt
        if result.best_lr is None:
            # Every finalist diverged: scored as _train_score scores a diverged run.
            regression = "accuracy" not in exp.metrics
            scores.append(math.inf if regression else 0.0)
        else:
            scores.append(_train_score(spec, seed, result.best_lr))
    return {"verify": scores}
