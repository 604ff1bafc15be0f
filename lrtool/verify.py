"""Does the suggested rate actually give the best model? One-cycle runs decide.

`lrtool verify` trains the experiment at a few candidate peak rates (by default the finder's
suggestion times 1/3, 1 and 3) and keeps the best by the validation metric:
accuracy when the experiment has it, else the validation loss. Two rounds:

1) Screen: every candidate trains a one-cycle over `SCREEN_FRACTION` (a tenth) of the real
   run: a tenth of `train.epochs`, in whole epochs when that is at least one epoch, else one
   epoch cut to its first batches (at least `MIN_SCREEN_BATCHES`). Its winner and the next
   LOWER candidate go on (`FINALISTS`, 2; the next higher when the winner is the lowest).
2) Final: the finalists train the real run, `train.epochs`, and the winner is judged there.

Why the last round is full length: the rate that wins a short run is not the one that wins
the long run (short-horizon bias; Wu, Ren, Liao & Grosse 2018, "Understanding Short-Horizon
Bias in Stochastic Meta-Optimization"). With one-cycle the short runs favour HIGH rates: a
short cycle takes few steps, so a larger peak wins by covering more ground, while over the
real run the same peak has many more steps in which to go unstable. lrtool's earlier 1-, 2-
and 4-epoch rounds picked a decade too high on some tasks. Only a run at the real length is
free of that bias, so the final comparison is one; the short screen is kept only to spend
those full runs on two candidates instead of three. Because the screen leans high, its winner
is where the real best lies or just above it: the final pits it against the next lower
candidate, not against the screen's runner-up, which is as often the next HIGHER one (on
digits the screen ranked 0.46 and 1.5 first and second; at 5 epochs 0.15 beat 0.46).

Being too high costs more than being too low: the best rate often sits just under the rate
where training diverges. So when two full-length runs score within noise of each other
(`ACCURACY_TOLERANCE`, 0.25 accuracy points; `LOSS_TOLERANCE`, 0.5% of the validation loss),
the lower rate wins. When the winner is the smallest or the largest rate tried and won by
more than the noise, the best may lie beyond: one more rate, one candidate spacing further
out, trains the full run and is compared (at most `MAX_WIDENINGS` times). A winner whose
higher neighbour diverged is not at an edge: that neighbour found the cliff. A winner that
only won a tie is not widened either: flat scores would make every lower rate win again.

Why only three candidates, half a decade apart: the screen leans high, and with a decade
either side it sent two full runs to the wrong decade whenever its bias won (the suggestion x
3 and x 10 went on while the best was at x 1/3); the finalists then never held the best rate
and one widening could not reach it. With three the finalists lie within half a decade of the
suggestion, and a rate further out is reached by widening, which full-length runs decide.

Cost, in epochs of training: 3 x 1/10 + 2 x 1 = 2.3 real runs, plus one per widening. One of the
two final runs is the real training at the chosen rate (same seed, same schedule: with
`train.freeze_epochs` 0 it is the run `lrtool train --lr-max <best_lr>` makes), so choosing
costs 1.3 trainings (plus any widening) beyond the one you would run anyway.

Every run trains FROM SCRATCH: a fresh build with the experiment's seed, then a whole
one-cycle over that run's length. One-cycle is one schedule over the whole run (warm-up,
peak, anneal to almost zero), so continuing a short cycle is not a longer one-cycle. The same
seed means every candidate starts from the same weights and sees the same batches, so the
rate is the only difference.

When the finder gives no suggestion, the candidates are centred on the rate at the lowest
point of its raw loss, robustly smoothed, divided by `BRACKET_DIVISOR`; on a flat sweep (no
clear fall, no blow-up: the cliff lies beyond it) on its last rate / `CLIFF_DIVISOR`
(`bracket`).

Nothing here parses options, prints or writes files: the CLI does that with the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from numpy.typing import ArrayLike

from .build import build
from .config import FLOAT32_MAX, Experiment
from .distributed import unwrap
from .errors import ConfigError
from .probe import checked_build
from .results import Round, VerifyResult
from .run import train_built
from .schedule import steps_per_epoch
from .suggest import CLIFF_DIVISOR, view_curve

# The finder's suggestion is an estimate, usually right within a factor of a few: half a
# decade either side; rates further out are reached by widening, at the real length (on the
# benchmark's design tasks a decade either side let the biased screen send both finalists a
# decade off: mean regret 2.17 against 0.58 at the same cost; module docstring).
DEFAULT_FACTORS = (1 / 3, 1.0, 3.0)

# The screen: each candidate trains this share of the real run...
SCREEN_FRACTION = 0.1
# ...but never fewer batches than this: a one-cycle of a handful of steps measures nothing.
MIN_SCREEN_BATCHES = 8
# Candidates that go on from the screen to the full-length final.
FINALISTS = 2
# Full-length runs within this much of the best count as a tie, won by the lower rate.
ACCURACY_TOLERANCE = 0.0025  # 0.25 accuracy points (accuracy is a fraction)
LOSS_TOLERANCE = 0.005  # 0.5% of the best validation loss
# How many times the bracket may grow by one rate when the winner sits at its edge.
MAX_WIDENINGS = 2

# No suggestion: the loss curve's robust minimum (a running median over this many decades of
# rate, lowest point before the median first doubles from its running minimum) / this divisor.
BRACKET_DIVISOR = 3.0
BRACKET_MIN_POINTS = 4

# How the candidate rates are named to the user: the workflow argument and the CLI flag.
LRS_KEY = "lrs (--lrs)"

OnRound = Callable[[int, list[dict[str, Any]]], None]
OnRun = Callable[[int, float, float], None]


# --- pure helpers -------------------------------------------------------------------------


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def run_length(
    fraction: float,
    epochs: int,
    batches_per_epoch: int,
    min_batches: int = MIN_SCREEN_BATCHES,
) -> tuple[int, int | None]:
    """(epochs, batches) of a one-cycle run cut to `fraction` of a run of `epochs` epochs.

    At least one epoch's worth: whole epochs, rounded to the nearest (a fifth of 12 epochs is
    2). Less: one epoch cut to round(fraction x the run's batches) batches, at least
    `min_batches`; batches None means whole epochs.

    >>> run_length(0.2, 10, 8)
    (2, None)
    >>> run_length(0.2, 4, 100)
    (1, 80)
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"the screen fraction must be in (0, 1], got {fraction!r}.")
    if not _whole(epochs) or epochs < 1:
        raise ConfigError(f"the real run must be a whole number of epochs >= 1, got {epochs!r}.")
    if not _whole(batches_per_epoch) or batches_per_epoch < 1:
        raise ConfigError(
            f"an epoch must hold a whole number of batches >= 1, got {batches_per_epoch!r}."
        )
    if fraction * epochs >= 1:
        return max(1, min(epochs, round(fraction * epochs))), None
    batches = max(min_batches, round(fraction * epochs * batches_per_epoch))
    if batches >= batches_per_epoch:
        return 1, None
    return 1, batches


def verify_schedule(
    n_candidates: int,
    epochs: int,
    batches_per_epoch: int,
    screen_fraction: float = SCREEN_FRACTION,
    finalists: int = FINALISTS,
    grad_accum: int = 1,
) -> list[Round]:
    """The rounds verify trains: a short screen, then the finalists at the real length.
    A screen takes at least `MIN_SCREEN_BATCHES` batches, and at least 4 optimizer steps
    under `grad_accum` (fewer batches than one step trained nothing, and ranked noise).

    `epochs` is the real run (`train.epochs`). More candidates than `finalists`: a screen at
    `screen_fraction` of the run keeps `finalists` (`pick_finalists`), which train the full
    run.
    Otherwise, or when the screen would be the full run anyway (a tiny epoch), one round at
    the full length. One candidate: nothing to compare, nothing to train.

    >>> [(r.candidates, r.epochs, r.batches) for r in verify_schedule(5, 10, 8)]
    [(5, 2, None), (2, 10, None)]
    """
    if not _whole(n_candidates) or n_candidates < 1:
        raise ConfigError(
            f"verify needs at least one candidate rate, got {n_candidates!r} candidates."
        )
    if not _whole(finalists) or finalists < 1:
        raise ConfigError(f"finalists must be a whole number >= 1, got {finalists!r}.")
    floor = max(MIN_SCREEN_BATCHES, 4 * grad_accum)
    screen_epochs, screen_batches = run_length(screen_fraction, epochs, batches_per_epoch, floor)
    if n_candidates == 1:
        return []
    full = Round(n_candidates, epochs, None, float(epochs))
    if n_candidates <= finalists or (screen_epochs, screen_batches) == (epochs, None):
        return [full]
    screen_run = screen_epochs if screen_batches is None else screen_batches / batches_per_epoch
    screen_run = float(screen_run)
    return [
        Round(n_candidates, screen_epochs, screen_batches, screen_run),
        Round(finalists, epochs, None, float(epochs)),
    ]


def pick_finalists(
    rates: Sequence[float], winner: float, finalists: int = FINALISTS
) -> list[float]:
    """The screen's winner and the next lower candidates, `finalists` in all, smallest first.

    The screen's short cycles favour high rates, so the real best is at the winner or below
    it. When there are not enough lower rates, the next higher ones fill the places.

    >>> pick_finalists([0.01, 0.03, 0.1, 0.3, 1.0], 0.3)
    [0.1, 0.3]
    >>> pick_finalists([0.01, 0.03, 0.1, 0.3, 1.0], 0.01)
    [0.01, 0.03]
    """
    ordered = sorted(rates)
    i = ordered.index(winner)
    low = max(0, min(i - (finalists - 1), len(ordered) - finalists))
    return ordered[low : low + finalists]


def schedule_epochs(schedule: Sequence[Round]) -> float:
    """Total epochs a completed schedule trains (widenings apart): candidates x run length."""
    return sum(r.cost_epochs for r in schedule)


def _diverged(score: float | None) -> bool:
    # An infinite loss is as diverged as a NaN one, and an infinite accuracy is impossible.
    return score is None or not math.isfinite(score)


def survivors(
    scores: dict[float, float | None],
    keep: int,
    higher_is_better: bool,
    val_losses: dict[float, float | None] | None = None,
) -> list[float]:
    """The `keep` best rates, best first: how the screen ranks.

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


def within_noise(score: float, best: float, higher_is_better: bool) -> bool:
    """Is `score` as good as `best` up to the noise of a validation score?

    Accuracy: within ACCURACY_TOLERANCE (0.25 points). A loss: within LOSS_TOLERANCE (0.5%)
    of the best loss's size.
    """
    if higher_is_better:
        return score >= best - ACCURACY_TOLERANCE
    return score <= best + LOSS_TOLERANCE * abs(best)


def rank_lower_within_noise(
    scores: dict[float, float | None], higher_is_better: bool
) -> list[float]:
    """How full-length runs rank, best first: the lowest rate within noise of the best wins.

    Too high a rate costs more than too low (the best often sits just under the divergence
    cliff), so a higher rate must beat a lower one by more than the noise (`within_noise`).
    Repeated on what is left for the next places; diverged runs last, smaller rate first.
    """
    finite = {lr: s for lr, s in scores.items() if not _diverged(s)}
    ranked: list[float] = []
    while finite:
        pick = max if higher_is_better else min
        best = pick(finite.values())
        winner = min(lr for lr, s in finite.items() if within_noise(s, best, higher_is_better))
        ranked.append(winner)
        del finite[winner]
    return ranked + sorted(lr for lr in scores if lr not in ranked)


def clear_win(scores: dict[float, float | None], higher_is_better: bool) -> bool:
    """Did the best full-length score beat every other one by more than the noise?

    A winner chosen only because ties go to the lower rate says the scores are flat there:
    widening past it would only find more ties (each won by a still lower rate).
    """
    finite = [s for s in scores.values() if not _diverged(s)]
    if not finite:
        return False
    best = (max if higher_is_better else min)(finite)
    return sum(within_noise(s, best, higher_is_better) for s in finite) == 1


def widened_rate(tried: Sequence[float], winner: float) -> float | None:
    """The next rate to try when `winner` sits at the edge of the rates tried, else None.

    The edge is the smallest or the largest rate tried; the step is the spacing of the two
    rates at that edge (a factor of 10/3 between the default candidates). A winner below a
    higher rate that diverged is not at the edge: that rate was tried, and found the cliff.
    """
    rates = sorted(tried)
    if len(rates) < 2 or winner not in rates:
        return None
    if winner == rates[0]:
        return rates[0] / (rates[1] / rates[0])
    if winner == rates[-1]:
        return rates[-1] * (rates[-1] / rates[-2])
    return None


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


def loss_minimum(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """The rate at the lowest point of a range test's raw loss, robust to its noise: the
    zero-lag minimum before the first blow-up of `suggest.view_curve` (the view the default
    rule reads). None when the curve has too few usable points or the rates do not increase.
    """
    view = view_curve(lr, loss)
    return None if isinstance(view, str) else float(view.lr[view.lowest])


def bracket_centre(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """The centre of the candidates when the finder gives no suggestion (`bracket`)."""
    return bracket(lr, loss)[0]


def bracket(lr: ArrayLike, loss: ArrayLike) -> tuple[float | None, str]:
    """The centre of the candidates when the finder gives no suggestion, and what it is
    ("sweep_end" or "loss_minimum").

    1) A flat sweep (the loss neither fell clearly nor rose to twice its start): training was
       stable at every rate tried, so the cliff lies beyond the last one; the candidates
       centre where the default rule would land if the cliff were there (last rate /
       `CLIFF_DIVISOR`), and widening climbs from there if higher rates win.
    2) Otherwise (the loss rose from the start): loss_minimum / 3. A third, because the best
       one-cycle peak sits below the loss minimum of a range test and too high costs more
       than too low.
    None when the curve has too few usable points.
    """
    view = view_curve(lr, loss)
    if isinstance(view, str):
        return None, "loss_minimum"
    if view.learned_at is None and view.cliff is None and not view.rose_at_once:
        return float(view.lr[-1] / CLIFF_DIVISOR), "sweep_end"
    return float(view.lr[view.lowest]) / BRACKET_DIVISOR, "loss_minimum"


def parse_lrs(text: str) -> list[float]:
    """`--lrs 1e-3,3e-3,1e-2`: at least two distinct positive rates, returned smallest first."""
    expected = f"{LRS_KEY} expects comma-separated positive learning rates (1e-3,3e-3,1e-2)"
    pieces = [p.strip() for p in str(text).split(",")]
    if len(pieces) > 1 and not pieces[-1]:
        pieces.pop()  # a trailing comma
    if len(pieces) > 1 and not all(pieces):
        raise ConfigError(f"{expected}; {text!r} has an empty item between commas (a typo?).")
    pieces = [p for p in pieces if p]
    rates: list[float] = []
    for piece in pieces:
        try:
            rate = float(piece)
        except ValueError:
            raise ConfigError(f"{expected}; {piece!r} in {text!r} is not a number.") from None
        if not _positive(rate):
            raise ConfigError(f"{expected}; {piece!r} in {text!r} is not positive and finite.")
        if rate > FLOAT32_MAX:
            raise ConfigError(
                f"{expected}; {piece!r} in {text!r} is above {FLOAT32_MAX:.1e}, the largest "
                "float32 (the precision of torch's optimizers): its run would overflow at the "
                "first step."
            )
        rates.append(rate)
    if len(set(rates)) != len(rates):
        raise ConfigError(f"{LRS_KEY} lists a rate twice: {text!r}.")
    if len(rates) < 2:
        raise ConfigError(
            f"{expected}, at least two to compare; got {text!r}. To train at one rate, use "
            "`lrtool train --lr-max`."
        )
    return sorted(rates)


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


class _Search:
    """The state of one verify: every run's record, the budget spent, the full-length pool."""

    def __init__(
        self,
        exp: Experiment,
        metric: str,
        higher: bool,
        on_run: OnRun | None,
        full_epochs: int,
        max_batches: int | None = None,
    ) -> None:
        self.exp = exp
        self.max_batches = max_batches
        self.metric = metric
        self.higher = higher
        self.on_run = on_run
        self.records: dict[float, list[dict[str, Any]]] = {}
        self.budget = 0.0
        self.batches_per_epoch: int | None = None
        self.built: Any = None  # the first build, kept for the first run
        self.full: dict[float, float | None] = {}  # rate -> full-length score
        self.best_lr: float | None = None  # the last completed round's winner
        self.widened: list[float] = []  # rates added at the edge, in order
        self.full_epochs = full_epochs  # the real run: its runs' weights are the trained model
        # The weights of the best full-length run so far, on the CPU: the trained model.
        self.states: dict[float, dict[str, Any]] = {}

    def first_build(self) -> Any:
        self.built = self._cut(checked_build(self.exp))  # model and data fit, or a clear error
        self.batches_per_epoch = len(self.built.train_data)
        return self.built

    def _cut(self, built: Any) -> Any:
        if self.max_batches is not None:
            built.train_data.limit(self.max_batches)
            built.val_data.limit(self.max_batches)
        return built

    def train(self, number: int, lr: float, rnd: Round) -> float | None:
        """One fresh run; records it and returns its score (None: diverged)."""
        if self.on_run is not None:
            self.on_run(number, lr, _tidy(rnd.run_epochs))
        built, self.built = self.built or self._cut(build(self.exp)), None
        if rnd.batches is not None:
            built.train_data.limit(min(rnd.batches, self.max_batches or rnd.batches))
        result = train_built(built, lr, epochs=rnd.epochs, freeze_epochs=0)
        self.budget += rnd.run_epochs * self._share_trained(result, built, rnd)
        if result.stop_reason == "interrupted":
            raise KeyboardInterrupt  # fit_one_cycle caught Ctrl-C itself
        # After a NaN loss the last evaluation predates the blow-up: not a result.
        finished = result.stop_reason == "completed"
        if finished and (rnd.epochs, rnd.batches) == (self.full_epochs, None):
            self.states[lr] = _cpu_state(built.model)
        values = {k: _finite_or_none(v) if finished else None for k, v in result.final.items()}
        self.records.setdefault(lr, []).append(
            {
                "round": number,
                "epochs": _tidy(rnd.run_epochs),
                "batches": rnd.batches,
                **values,
                "stop_reason": result.stop_reason,
                "elapsed_s": result.elapsed_s,
                "rank": None,
                "kept": None,
            }
        )
        return values.get(self.metric)

    def _share_trained(self, result: Any, built: Any, rnd: Round) -> float:
        """The share of the planned run that trained: 1 when it completed, else its optimizer
        steps over the planned ones (a run stopped by a NaN loss or Ctrl-C costs what it
        trained, not its plan)."""
        if result.stop_reason == "completed":
            return 1.0
        steps = len(result.history.get("step") or [])
        per_epoch = steps_per_epoch(len(built.train_data), self.exp.train.grad_accum)
        return min(1.0, steps / max(1, per_epoch * rnd.epochs))

    def _mark(
        self,
        ranked: Sequence[float],
        scores: dict[float, float | None],
        kept: Sequence[float],
        trained: Sequence[float],
    ) -> dict[float, dict[str, Any]]:
        """Ranks and kept flags of this round (a diverged run has no rank), stored on the
        records of the runs it `trained`: an earlier round's records keep the ranks printed
        with that round. Returns every rate's, for this round's table."""
        finite = [lr for lr in ranked if not _diverged(scores[lr])]
        marks = {
            lr: {"rank": finite.index(lr) + 1 if lr in finite else None, "kept": lr in kept}
            for lr in ranked
        }
        for lr in trained:
            self.records[lr][-1].update(marks[lr])
        return marks

    def rank_full(self, trained: Sequence[float]) -> tuple[float | None, list[dict[str, Any]]]:
        """Rank every full-length run so far: the winner (None when all diverged) and the
        round's table, whose rows for runs of earlier rounds carry this round's ranks."""
        ranked = rank_lower_within_noise(self.full, self.higher)
        winner = [] if _diverged(self.full[ranked[0]]) else ranked[:1]
        marks = self._mark(ranked, self.full, winner, trained)
        # Keep only the winner's weights: a model per full-length run would pile up.
        self.states = {lr: s for lr, s in self.states.items() if lr == ranked[0]}
        best = None if _diverged(self.full[ranked[0]]) else ranked[0]
        return best, self.rows(self.full, marks)

    def rows(
        self, rates: Sequence[float], marks: dict[float, dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        marks = marks or {}
        return [{"lr": lr, **self.records[lr][-1], **marks.get(lr, {})} for lr in sorted(rates)]

    def play(self, schedule: Sequence[Round], rates: list[float], on_round: OnRound | None) -> int:
        """The planned rounds, the screen then the final; the last round's number."""
        alive, number = list(rates), 0
        for number, rnd in enumerate(schedule, start=1):
            scores = {lr: self.train(number, lr, rnd) for lr in alive}
            if number == len(schedule):  # the final: the real length
                self.full.update(scores)
                self.best_lr, rows = self.rank_full(list(scores))
            else:  # the screen: its winner and the next lower rate go on to the final
                val_losses = {lr: self.records[lr][-1].get("val_loss") for lr in alive}
                ranked = survivors(scores, len(scores), self.higher, val_losses)
                trained = list(scores)
                alive = pick_finalists(alive, ranked[0], schedule[number].candidates)
                self._mark(ranked, scores, alive, trained)
                self.best_lr = None if _diverged(scores[ranked[0]]) else ranked[0]
                rows = self.rows(scores)
            if on_round is not None:
                on_round(number, rows)
        return number

    def widen(self, number: int, max_widenings: int, on_round: OnRound | None) -> None:
        """A winner at the edge of the rates tried means the best may lie beyond it: try it."""
        full_run = Round(1, self.full_epochs, None, float(self.full_epochs))
        while self.best_lr is not None and len(self.widened) < max_widenings:
            new = widened_rate(list(self.records), self.best_lr)
            if new is None or not clear_win(self.full, self.higher) or new > FLOAT32_MAX:
                break  # (a rate above float32's largest would overflow at its first step)
            number += 1
            self.full[new] = self.train(number, new, full_run)
            self.widened.append(new)  # only once its run finished (Ctrl-C may stop it)
            self.best_lr, rows = self.rank_full([new])
            if on_round is not None:
                on_round(number, rows)


def _cpu_state(model: Any) -> dict[str, Any]:
    """A copy of the model's state_dict on the CPU (the device copy is trained over next)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def _tidy(epochs: float) -> float | int:
    # 2.0 epochs reads as 2; a cut epoch keeps three decimals (0.783).
    return int(epochs) if float(epochs).is_integer() else round(epochs, 3)


def _checked_rates(rates: Sequence[float], max_widenings: int) -> list[float]:
    """The candidate rates as floats, smallest first, or a ConfigError saying what is wrong."""
    rates = [float(r) for r in rates]
    if not rates or not all(_positive(r) for r in rates):
        raise ConfigError(f"verify needs positive, finite candidate rates; got {rates!r}.")
    if len(set(rates)) != len(rates):
        raise ConfigError(f"verify: a candidate rate appears twice in {rates!r}.")
    if not _whole(max_widenings) or max_widenings < 0:
        raise ConfigError(f"max_widenings must be a whole number >= 0, got {max_widenings!r}.")
    return sorted(rates)


def verify_rates(
    exp: Experiment,
    rates: Sequence[float],
    *,
    max_epochs: int | None = None,
    suggested_lr: float | None = None,
    screen_fraction: float = SCREEN_FRACTION,
    finalists: int = FINALISTS,
    max_widenings: int = MAX_WIDENINGS,
    on_round: OnRound | None = None,
    on_run: OnRun | None = None,
    max_batches: int | None = None,
) -> VerifyResult:
    """The rate whose one-cycle run at the real length validates best (see the module doc).

    `max_epochs` is the real run the final round trains (default `train.epochs`). Every run
    is `train_built(build(exp), lr, epochs=..., freeze_epochs=0)`: a fresh build with the
    experiment's seed and its `train:` settings, the main cycle only, its training data cut
    to the round's batches when the round is shorter than an epoch. `on_run(round_number, lr,
    epochs)` is called before each run (epochs: the run's length, a fraction for a cut epoch)
    and `on_round(round_number, rows)` after each completed round (numbers start at 1; the
    screen, the final, then one round per widening). Rows are run records (see VerifyResult)
    with the candidate's "lr" added, smallest rate first: the screen's candidates, or after a
    full-length round every full-length run so far.

    Ctrl-C (between runs, in a callback or inside training) stops the search: the result
    keeps every finished run, stop_reason is "interrupted" and best_lr is the best of the
    last completed round (None when round 1 did not complete). Nothing is raised.

    A single rate is returned as best_lr without training: there is nothing to compare.
    `max_batches` cuts every run's training and validation data to that many batches (a
    smoke run's few batches; every run is a fresh build, so the cut is made on each).
    """
    started = time.perf_counter()
    rates = _checked_rates(rates, max_widenings)
    full_epochs = exp.train.epochs if max_epochs is None else max_epochs
    metric, higher = ranking_metric(exp)
    search = _Search(exp, metric, higher, on_run, full_epochs, max_batches)
    built = search.first_build()
    schedule = verify_schedule(
        len(rates),
        full_epochs,
        search.batches_per_epoch,
        screen_fraction,
        finalists,
        grad_accum=exp.train.grad_accum,
    )
    search.records = {lr: [] for lr in rates}
    search.best_lr = rates[0] if not schedule else None
    stop_reason = "completed"
    try:
        number = search.play(schedule, rates, on_round)
        if schedule:
            search.widen(number, max_widenings, on_round)
    except KeyboardInterrupt:
        stop_reason = "interrupted"

    budget = round(search.budget, 6)
    model_state = search.states.get(search.best_lr) if search.best_lr is not None else None
    result = VerifyResult(
        candidates=[{"lr": lr, "rounds": search.records[lr]} for lr in sorted(search.records)],
        best_lr=search.best_lr,
        suggested_lr=suggested_lr,
        budget_epochs_total=budget,
        cost_vs_one_training=round(budget / full_epochs, 4),
        full_epochs=full_epochs,
        metric=metric,
        stop_reason=stop_reason,
        seed=exp.seed,
        elapsed_s=round(time.perf_counter() - started, 3),
        schedule=schedule,
        widened=search.widened,
        centre="suggestion" if suggested_lr is not None else "lrs",
        centre_lr=suggested_lr,
        device=str(built.device),
        world_size=built.world_size,
        effective_batch_size=built.batch_size * built.world_size * exp.train.grad_accum,
        model_lr=search.best_lr if model_state is not None else None,
    )
    result.model_state = model_state
    return result
