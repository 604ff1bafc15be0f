"""Learning-rate suggestions from a range-test curve.

Every function here is pure: it takes the swept learning rates ``lr`` (increasing, usually
exponentially spaced) and a loss recorded at each (fastai's rules: the smoothed loss; lrtool's:
the raw loss), and returns a learning rate, or ``None`` when the curve does not support a
sensible suggestion. Nothing raises on a bad curve (given lr and loss of one length: two
lengths are a caller's mistake, a ValueError); ``why_no_suggestion`` says in words what is
wrong with it.

The four fastai rules (``valley``, ``steep``, ``minimum``, ``slide``) follow
``fastai.callback.schedule``. ``robust_minimum``, lrtool's default, and the judgement of
whether a sweep learned at all (``view_curve``) were chosen on the design tasks of
``python -m lrtool.bench suggest`` and checked on its held-out tasks; ``centered_minimum`` was
0.1's default. All slopes are taken on the log10(lr) axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

Suggester = Callable[[np.ndarray, np.ndarray], float | None]

# Fewer usable points than this and no rule can tell a descent from noise.
MIN_POINTS = 4
# The rule `lrtool find` reports unless told otherwise, chosen by the one-cycle benchmark.
DEFAULT_METHOD = "robust_minimum"


@dataclass(frozen=True)
class _Curve:
    """The usable part of a range-test curve: finite, trimmed, at least MIN_POINTS long."""

    lr: np.ndarray
    loss: np.ndarray
    log_lr: np.ndarray


def _prepare(lr: ArrayLike, loss: ArrayLike) -> _Curve | str:
    """Return the curve every rule works on, or a sentence saying why there is none."""
    not_positive = _not_positive(lr)
    if not_positive:
        return not_positive
    # 1) Cut at the first non-finite point. Doing this *before* the end trim below means the
    #    trim drops the blow-up that led to the NaN.
    lr, loss, recorded = _finite_prefix(lr, loss)
    finite = lr.size

    # 2) Trim like fastai's lr_find (recorder[num_it//10:-5]): the first n//10 points are
    #    noisy (the EMA is still warming up), the last ones are the blow-up. We trim the end
    #    by min(5, n//10), so a 100-point sweep is trimmed exactly as fastai does, while a
    #    short sweep loses only a tenth at each end and one under 10 points loses nothing.
    n = lr.size
    start, end = n // 10, n - min(5, n // 10)
    lr, loss = lr[start:end], loss[start:end]

    if lr.size < MIN_POINTS:
        details = [f"{recorded} recorded"]
        if finite < recorded:
            details.append(f"only the first {finite} finite")
        if n - lr.size:
            details.append(f"{n - lr.size} trimmed from the ends")
        advice = "run the range test with more steps"
        if finite < recorded:
            advice += " or a lower end_lr, so the loss stays finite longer"
        return (
            f"too few usable points: {lr.size} left, at least {MIN_POINTS} needed "
            f"({', '.join(details)}); {advice}."
        )

    not_increasing = _not_increasing(lr)
    if not_increasing:
        return not_increasing
    return _Curve(lr=lr, loss=loss, log_lr=np.log10(lr))


def _finite_prefix(lr: ArrayLike, loss: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """Both as float arrays, cut at the first non-finite point, and how many were recorded.

    As fastai does at the first NaN: after it the weights are garbage, so later finite values
    say nothing.
    """
    lr = np.asarray(lr, dtype=float).reshape(-1)
    loss = np.asarray(loss, dtype=float).reshape(-1)
    if lr.shape != loss.shape:
        raise ValueError(
            f"lr and loss must have the same length; got {lr.size} learning rates "
            f"and {loss.size} losses"
        )
    usable = np.isfinite(lr) & np.isfinite(loss) & (lr > 0)
    finite = lr.size if usable.all() else int(np.argmin(usable))
    return lr[:finite], loss[:finite], lr.size


def _not_positive(lr: ArrayLike) -> str | None:
    """Rates at or below 0 have no place on the log axis every rule reads."""
    rates = np.asarray(lr, dtype=float).reshape(-1)
    bad = np.flatnonzero(np.isfinite(rates) & (rates <= 0))
    if bad.size:
        i = int(bad[0])
        return (
            f"the learning rates must be above 0 (the rules read them on a log axis), but "
            f"point {i + 1} has rate {rates[i]:g}."
        )
    return None


def _not_increasing(lr: np.ndarray) -> str | None:
    steps = np.diff(np.log10(lr))
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        return (
            f"the learning rates must increase strictly, but {lr[i + 1]:.3g} "
            f"follows {lr[i]:.3g}; the range test must sweep upward."
        )
    return None


def _curve(lr: ArrayLike, loss: ArrayLike) -> _Curve | None:
    prepared = _prepare(lr, loss)
    return None if isinstance(prepared, str) else prepared


def why_no_suggestion(lr: ArrayLike, loss: ArrayLike) -> str | None:
    """A sentence saying why no rule can suggest a rate for this curve, or None if they can.

    Give it the raw loss: whether the sweep learned anything is judged on the robust,
    unlagged view of it (`view_curve`), never on the lagging EMA, which may barely have moved
    by the time the raw loss has fallen and turned up again.
    """
    view = view_curve(lr, loss)
    if isinstance(view, str):
        return view
    return why_it_did_not_learn(view)


class Smoother:
    """Bias-corrected exponential moving average, as in Adam: avg / (1 - beta^t), one value at
    a time, with the best value so far for the divergence test."""

    def __init__(self, beta: float) -> None:
        self.beta, self.avg, self.t, self.best = beta, 0.0, 0, math.inf

    def update(self, loss: float) -> float:
        self.t += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        value = self.avg / (1 - self.beta**self.t)
        self.best = min(self.best, value)
        return value


def smooth(losses: Iterable[float], beta: float) -> list[float]:
    """The smoothed curve of a whole loss history (what the sweep records as it goes)."""
    smoother = Smoother(beta)
    return [smoother.update(loss) for loss in losses]


# --- fastai's rules --------------------------------------------------------------------


# Above this many points the O(n^2) DP gives way to the O(n log n) one (the same numbers).
VALLEY_DP_POINTS = 2000


def _decreasing_run_lengths(loss: np.ndarray) -> np.ndarray:
    """lds[i]: the length of the longest strictly decreasing subsequence ending at point i.

    fastai's O(n^2) DP (vectorised inner loop) for ordinary sweeps; for long ones (a sweep of
    200,000 steps took a minute) a Fenwick tree of running maxima over the values' ranks,
    largest value first, so "every earlier value above this one" is a prefix of ranks.
    """
    lds = np.ones(loss.size, dtype=int)
    if loss.size <= VALLEY_DP_POINTS:
        for i in range(1, loss.size):
            higher = loss[:i] > loss[i]
            if higher.any():
                lds[i] = lds[:i][higher].max() + 1
        return lds
    values = np.unique(loss)[::-1]  # largest first
    ranks = np.searchsorted(-values, -loss)  # rank 0: the largest value
    tree = [0] * (values.size + 1)
    for i, rank in enumerate(ranks.tolist()):
        best, j = 0, rank  # the best over ranks 0..rank-1: strictly larger values
        while j > 0:
            best = max(best, tree[j])
            j -= j & -j
        lds[i] = best + 1
        j = rank + 1
        while j <= values.size:
            tree[j] = max(tree[j], best + 1)
            j += j & -j
    return lds


def _valley_index(loss: np.ndarray) -> int:
    # 1) Longest strictly decreasing subsequence: lds[i] ends at point i.
    lds = _decreasing_run_lengths(loss)
    # 2) fastai keeps the *first* end reaching the longest length and sets its start to
    #    end - length (one before the first point of a contiguous run; may be -1).
    end = int(np.argmax(lds))
    start = end - int(lds[end])
    # 3) Split the section in thirds and step one third plus half a third in (about
    #    halfway), as fastai does. max(0, ...) only guards runs ending at point 0 or 1,
    #    where fastai's index goes negative and picks the *last* rate by accident.
    third = (end - start) / 3
    return max(0, start + int(third) + int(third / 2))


def valley(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """fastai's valley: the middle of the longest decreasing stretch of the loss."""
    curve = _curve(lr, loss)
    if curve is None:
        return None
    return float(curve.lr[_valley_index(curve.loss)])


def steep(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """fastai's steep: the rate where d loss / d log10(lr) is most negative."""
    curve = _curve(lr, loss)
    if curve is None:
        return None
    # Forward differences; the rate reported is the left end of the steepest segment.
    slopes = np.diff(curve.loss) / np.diff(curve.log_lr)
    return float(curve.lr[np.argmin(slopes)])


def minimum(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """fastai's minimum: one tenth of the rate at the lowest loss."""
    curve = _curve(lr, loss)
    if curve is None:
        return None
    return float(curve.lr[np.argmin(curve.loss)] / 10)


def slide(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """fastai's slide rule: walk left from the end until the slope `lr_diff` points apart
    stops changing; suggest the rate where it settles."""
    curve = _curve(lr, loss)
    if curve is None:
        return None
    n = curve.loss.size
    # 1) fastai's np.gradient(losses) is per sweep step. Taking it on the log10 axis and
    #    scaling by the mean step gives the same numbers for an exponential sweep and keeps
    #    the 0.005 threshold meaningful for a linear one.
    mean_step = (curve.log_lr[-1] - curve.log_lr[0]) / (n - 1)
    grad = np.gradient(curve.loss, curve.log_lr) * mean_step
    # 2) fastai compares points 15 steps apart on ~85 points; a short curve uses n//4.
    lr_diff, thresh = max(1, min(15, n // 4)), 0.005
    right, left = n - 1, n - 1 - lr_diff
    suggestion = curve.lr[left]
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        suggestion = curve.lr[left]
        right, left = right - 1, left - 1
    return float(suggestion)


# --- lrtool's rule ------------------------------------------------------------------------

# Measured by `python -m lrtool.bench suggest` (README, "Which suggestion?"): half the rate
# at the minimum of the zero-lag loss curve (0.3 decades below it).
CENTERED_DIVISOR = 2.0
# The curve has blown up once its zero-lag loss doubles from the lowest point so far.
BLOW_UP_FACTOR = 2.0
# Zero-lag smoothing widths, in decades of learning rate.
MEDIAN_DECADES = 0.5
GAUSSIAN_DECADES = 0.15


# The running median's window in points, at most: a sweep of thousands of steps per decade
# would otherwise need a points x window array (gigabytes); the Gaussian still smooths it.
MAX_MEDIAN_POINTS = 201


def _running_median(values: np.ndarray, width: int) -> np.ndarray:
    width = min(width, MAX_MEDIAN_POINTS)
    if width <= 1:
        return values
    half = width // 2
    padded = np.pad(values, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)


def _gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    # At most the curve's own length: a sweep over a sliver of a decade has millions of
    # points per decade, and its kernel would need terabytes; wider than the curve, the
    # edge-padded smoothing is a flat average all the same.
    sigma = min(sigma, float(values.size))
    if sigma <= 0:
        return values
    half = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    padded = np.pad(values, half, mode="edge")
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def centered_curve(log_lr: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """The loss smoothed without lag: a running median, then a Gaussian, on the log axis.

    The EMA the sweep records (beta 0.98, ~50 steps of memory) trails the raw loss by up to
    three decades of rate on a 100-step sweep, which drags every rule built on it to the
    right. Centred windows have no lag; the median first removes the spikes a regression
    loss throws. Both windows are measured in decades, so they do not depend on num_steps.
    """
    per_decade = (loss.size - 1) / max(log_lr[-1] - log_lr[0], 1e-12)
    values = np.log(loss) if np.all(loss > 0) else loss.astype(float)
    width = int(round(MEDIAN_DECADES * per_decade)) | 1
    return _gaussian(_running_median(values, width), GAUSSIAN_DECADES * per_decade)


def centered_minimum(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """lrtool's rule: half the rate at the minimum of the zero-lag loss curve, looking only
    before the curve first blows up. Give it the raw loss (`suggest_all` does)."""
    curve = _curve(lr, loss)
    if curve is None:
        return None
    centred = centered_curve(curve.log_lr, curve.loss)
    # 1) Cut at the first blow-up: the zero-lag loss twice its running minimum (log 2 in
    #    log space). Adam on a regression can blow up and then settle lower again at absurd
    #    rates; the minimum that matters is the one before the first blow-up.
    threshold = np.log(BLOW_UP_FACTOR) if np.all(curve.loss > 0) else 0.0
    if threshold:
        risen = np.flatnonzero(centred > np.minimum.accumulate(centred) + threshold)
        end = int(risen[0]) if risen.size else centred.size
    else:
        end = centred.size
    # 2) Half that rate: still on the fast-descending side (Smith takes the one-cycle peak
    #    near the minimum), with a margin so the peak does not diverge. Halving beat a third
    #    and a quarter on the benchmark's tasks; a tenth is far too low without the EMA lag.
    return float(curve.lr[int(np.argmin(centred[:end]))] / CENTERED_DIVISOR)


# --- the robust view of the raw loss: did it learn, where is it lowest, where did it blow up -

# "It learned" needs a fall of the zero-lag loss by more than this many step-to-step noise
# standard deviations of the raw loss (and by LEARNED_RELATIVE of its level).
LEARNED_NOISE_MULTIPLE = 2.0
LEARNED_RELATIVE = 0.005
START_POINTS = 5


@dataclass(frozen=True)
class CurveView:
    """A range-test curve as the robust rules see it: the raw loss, cut at its first
    non-finite value, smoothed without lag, with its noise level and landmarks.

    Indices refer to `lr`. Values are in log(loss) when every loss is positive (a loss is
    multiplicative: a fall from 2.3 to 1.15 means as much as one from 0.2 to 0.1), else raw.
    """

    lr: np.ndarray
    loss: np.ndarray  # the raw loss
    values: np.ndarray  # the raw loss (log when positive)
    zero_lag: np.ndarray  # centered_curve of the same
    start: float  # where the loss started: the median of the first tenth of `values`
    noise: float  # step-to-step standard deviation of `values` (robust: from the MAD)
    learned_at: int | None  # first point clearly below the starting level, or None
    blow_up: int  # first point of the blow-up (after learning when it learned; len(lr): none)
    cliff: int | None  # first point where the zero-lag loss stands BLOW_UP_FACTOR x its start
    lowest: int  # the zero-lag minimum before the blow-up
    log_scale: bool  # values are log(loss)

    @property
    def drop(self) -> float:
        return float(self.start - self.zero_lag[self.lowest])

    @property
    def rose_at_once(self) -> bool:
        """No fall, no cliff, yet the loss doubled from its start: within the first tenth,
        so the rates that work lie below the sweep."""
        if self.learned_at is not None or self.cliff is not None or not self.log_scale:
            return False
        return bool(np.any(self.zero_lag > self.start + np.log(BLOW_UP_FACTOR)))


def step_noise(values: np.ndarray) -> float:
    """Standard deviation of the noise on a curve, from its second differences.

    Second differences cancel a locally straight trend (the descent itself), so what is left
    is noise; the median absolute deviation (x 1.4826, as for a Gaussian) ignores the spikes
    of a blow-up; / sqrt(6) because a second difference of independent draws has variance 6.
    """
    second = np.diff(values, n=2)
    if second.size == 0:
        return 0.0
    mad = float(np.median(np.abs(second - np.median(second))))
    return 1.4826 * mad / np.sqrt(6)


def view_curve(lr: ArrayLike, loss: ArrayLike) -> CurveView | str:
    """The robust view of a raw range-test curve, or a sentence saying why there is none."""
    not_positive = _not_positive(lr)
    if not_positive:
        return not_positive
    lr, loss, recorded = _finite_prefix(lr, loss)
    if lr.size < MIN_POINTS:
        extra = f", only the first {lr.size} finite" if lr.size < recorded else ""
        return (
            f"too few usable points: {lr.size} left, at least {MIN_POINTS} needed "
            f"({recorded} recorded{extra}); run the range test with more steps"
            + (" or a lower end_lr, so the loss stays finite longer." if extra else ".")
        )
    not_increasing = _not_increasing(lr)
    if not_increasing:
        return not_increasing
    log_lr = np.log10(lr)
    positive = bool(np.all(loss > 0))
    values = np.log(loss) if positive else loss
    zero_lag = centered_curve(log_lr, loss)
    noise = step_noise(values)

    # 1) It learned once the zero-lag loss stands clearly below where it started: by more
    #    than the raw loss's step-to-step noise (the lagging EMA may barely have moved yet).
    #    Where it started is the median of the first tenth of the sweep (5 points at least):
    #    the first point alone is as noisy as any other.
    start = float(np.median(values[: max(START_POINTS, lr.size // 10)]))
    scale = 1.0 if positive else max(abs(start), 1e-12)
    needed = max(LEARNED_NOISE_MULTIPLE * noise, LEARNED_RELATIVE * scale)
    below = np.flatnonzero(start - zero_lag > needed)
    learned_at = int(below[0]) if below.size else None

    # 2) A blow-up counts only after learning: before it, a rise is the noise of the flat
    #    start (a regression loss throws spikes there). It is the zero-lag loss standing
    #    BLOW_UP_FACTOR above its running minimum (in log space), or above its start level.
    blow_up = lr.size
    rise = np.log(BLOW_UP_FACTOR) if positive else needed
    if learned_at is not None:
        running = np.minimum.accumulate(zero_lag)
        risen = np.flatnonzero((zero_lag > running + rise) | (zero_lag > start + needed))
        risen = risen[risen > learned_at]
        if risen.size:
            blow_up = int(risen[0])
    # 3) The cliff: where the zero-lag loss has doubled from its start (by `needed` when the
    #    loss can be negative). On a sweep that never clearly fell it is the only landmark:
    #    training is stable below it, whatever the noise hid.
    #    A loss that doubles within the first tenth rose from the start: no cliff (the
    #    sweep must start lower; the rates below it were never tried).
    above = np.flatnonzero(zero_lag > start + max(rise, needed))
    cliff = int(above[0]) if above.size else None
    if cliff is not None and cliff < max(START_POINTS, lr.size // 10):
        cliff = None
    if learned_at is None and cliff is not None:
        blow_up = cliff
    lowest = int(np.argmin(zero_lag[:blow_up])) if blow_up else 0
    return CurveView(
        lr, loss, values, zero_lag, start, noise, learned_at, blow_up, cliff, lowest, positive
    )


def why_it_did_not_learn(view: CurveView) -> str | None:
    """A sentence when the curve holds no landmark: the raw loss never falls clearly below
    its starting level, and never blows up either (a sweep that learned nothing visible but
    blew up still has its cliff, `robust_minimum` reads it)."""
    if view.learned_at is not None or view.cliff is not None:
        return None
    if view.lr.size < 2 * START_POINTS:
        # The starting level is read from the first START_POINTS points: on a sweep this short
        # that is half of it or more, and neither a fall nor a rise from it can be told.
        return (
            f"the sweep has only {view.lr.size} usable points, too few to tell a descent or a "
            f"blow-up from the starting level (read from its first {START_POINTS}): run it "
            "with more steps (find.num_steps: 100 is the default)."
        )
    if view.rose_at_once:
        return (
            "the loss blows up within the first tenth of the sweep, before it clearly "
            "decreases: "
            "the rates that work lie below find.start_lr "
            f"({view.lr[0]:.3g}); sweep again from a lower find.start_lr."
        )
    return (
        f"the loss never clearly decreases: its smoothed value falls by at most "
        f"{max(view.drop, 0.0):.3g} from the start, within the noise of the raw loss "
        f"(step-to-step noise {view.noise:.3g}{' in log(loss)' if view.log_scale else ''}), "
        f"and it does not blow up either up to {view.lr[-1]:.3g}; sweep a wider range (a "
        "higher find.end_lr if it stays flat, a lower find.start_lr if it rises from the "
        "start), use more steps (find.num_steps) or a larger batch (data.batch_size)."
    )


def learned_nothing_visible(lr: ArrayLike, loss: ArrayLike) -> bool:
    """True when the sweep never clearly fell but blew up: `robust_minimum` then reads its
    cliff, a less certain suggestion worth checking (`lrtool verify`)."""
    view = view_curve(lr, loss)
    return not isinstance(view, str) and view.learned_at is None and view.cliff is not None


# The EMA robust_minimum reads, whatever find.smoothing the sweep used: fastai's 0.98.
RULE_SMOOTHING = 0.98
# A sweep that never clearly fell but blew up: the suggestion is its cliff / this.
CLIFF_DIVISOR = 30.0


def robust_minimum(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """lrtool's default: fastai's `minimum` (a tenth of the rate where the EMA of the loss is
    lowest), looked for only where the raw loss has clearly learned. Give it the raw loss
    (`suggest_all` does).

    1) Whether the sweep learned, and from which rate, is judged on the raw loss against its
       own step noise (`view_curve`): a lagging EMA that has barely moved neither vetoes a
       curve that learned nor puts its minimum in the flat, noisy start.
    2) From there on, fastai's reading: the EMA trails the raw loss, so its minimum sits
       right of the real one, and a tenth of it lands a little below the best one-cycle peak.
       Being a little low costs little; being high diverges (the best rate often sits just
       under the cliff). On the benchmark's held-out tasks this plain rule held up better than
       every sharper reading of the zero-lag curve that won on the design tasks (README).
    """
    view = view_curve(lr, loss)
    if isinstance(view, str):
        return None
    if view.learned_at is None:
        # 3) No clear fall, but a cliff: the same distance below it as the rule lands on
        #    sweeps that learn (on the design tasks the cliff sits a median 1.4 decades above
        #    the suggestion, 1.6 above the best rate: a factor 30 is 1.5).
        #    Never above the last rate before the cliff: on a sweep coarser than a factor 30
        #    per step, cliff / 30 would be a rate nobody saw train.
        if view.cliff is None:
            return None
        return float(min(view.lr[view.cliff] / CLIFF_DIVISOR, view.lr[view.cliff - 1]))
    ema = np.asarray(smooth(view.loss, RULE_SMOOTHING))
    # fastai's trims (the EMA's warm-up, the blow-up's last points), starting no earlier
    # than the point where the raw loss had clearly fallen.
    n = ema.size
    start, end = max(n // 10, view.learned_at), n - min(5, n // 10)
    if start >= end:
        start, end = view.learned_at, n
    return float(view.lr[start + int(np.argmin(ema[start:end]))] / 10)


def still_falling(lr: ArrayLike, loss: ArrayLike, tail: float = 0.1) -> bool:
    """True when the zero-lag loss is lowest in the last `tail` of the sweep: the curve has
    not turned up yet, so its minimum (and the right rate) may lie beyond the last rate."""
    lr = np.asarray(lr, dtype=float).reshape(-1)
    loss = np.asarray(loss, dtype=float).reshape(-1)
    keep = np.isfinite(lr) & np.isfinite(loss) & (lr > 0)
    lr, loss = lr[keep], loss[keep]
    if lr.size < MIN_POINTS or np.any(np.diff(lr) <= 0):
        return False
    lowest = int(np.argmin(centered_curve(np.log10(lr), loss)))
    if lowest < lr.size * (1 - tail) - 1:
        return False
    # On a coarse sweep the last tenth spans decades: a raw loss that blew up after the
    # smoothed minimum there is no longer falling.
    after = loss[lowest:]
    return not (np.all(loss > 0) and after.max() > BLOW_UP_FACTOR * loss[lowest])


SUGGESTERS: dict[str, Suggester] = {
    "robust_minimum": robust_minimum,
    "centered_minimum": centered_minimum,
    "valley": valley,
    "steep": steep,
    "minimum": minimum,
    "slide": slide,
}

# Rules that smooth for themselves and want the raw loss rather than the lagging EMA.
RAW_LOSS_RULES = {"robust_minimum", "centered_minimum"}


def suggest_all(
    lr: ArrayLike, smoothed_loss: ArrayLike, loss: ArrayLike | None = None
) -> dict[str, float | None]:
    """Every rule in SUGGESTERS by name: fastai's on the smoothed loss, lrtool's on the raw
    loss when given. A curve `why_no_suggestion` rejects (judged on the raw loss when given)
    gets None everywhere."""
    if why_no_suggestion(lr, smoothed_loss if loss is None else loss) is not None:
        return dict.fromkeys(SUGGESTERS)
    return {
        name: rule(lr, loss if name in RAW_LOSS_RULES and loss is not None else smoothed_loss)
        for name, rule in SUGGESTERS.items()
    }


def consensus(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """The median of the suggestions in log space, and their spread (largest / smallest).

    None (and anything not a positive finite number) is ignored; with nothing left both
    results are None. An even count gives the geometric mean of the middle two.
    """
    rates = np.array([v for v in values if v is not None], dtype=float)
    rates = rates[np.isfinite(rates) & (rates > 0)]
    if rates.size == 0:
        return None, None
    # Learning rates live on a log scale: 1e-3 and 1e-1 should agree on 1e-2, not 5e-2.
    median = float(10 ** np.median(np.log10(rates)))
    return median, float(rates.max() / rates.min())
