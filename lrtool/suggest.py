"""Learning-rate suggestions from a range-test curve.

Every function here is pure: it takes the swept learning rates ``lr`` (increasing, usually
exponentially spaced) and the *smoothed* loss recorded at each, and returns a learning rate,
or ``None`` when the curve does not support a sensible suggestion. Nothing raises on a bad
curve; ``why_no_suggestion`` says in words what is wrong with it.

The four fastai rules (``valley``, ``steep``, ``minimum``, ``slide``) follow
``fastai.callback.schedule``; the other rules are candidates to be benchmarked against real
one-cycle training. All slopes are taken on the log10(lr) axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

Suggester = Callable[[np.ndarray, np.ndarray], float | None]

# Fewer usable points than this and no rule can tell a descent from noise.
MIN_POINTS = 4
# The curve must fall by at least this fraction of its starting loss to count as a descent.
MIN_RELATIVE_DROP = 0.01
# The rule `lrtool find` reports unless told otherwise: fastai's default until the
# one-cycle benchmark picks one.
DEFAULT_METHOD = "valley"


@dataclass(frozen=True)
class _Curve:
    """The usable part of a range-test curve: finite, trimmed, at least MIN_POINTS long."""

    lr: np.ndarray
    loss: np.ndarray
    log_lr: np.ndarray


def _prepare(lr: ArrayLike, loss: ArrayLike) -> _Curve | str:
    """Return the curve every rule works on, or a sentence saying why there is none."""
    lr = np.asarray(lr, dtype=float).reshape(-1)
    loss = np.asarray(loss, dtype=float).reshape(-1)
    if lr.shape != loss.shape:
        raise ValueError(
            f"lr and loss must have the same length; got {lr.size} learning rates "
            f"and {loss.size} losses"
        )
    recorded = lr.size

    # 1) Cut at the first non-finite point, as fastai does at the first NaN: after it the
    #    weights are garbage, so later finite values say nothing. Doing this *before* the
    #    end trim below means the trim drops the blow-up that led to the NaN.
    usable = np.isfinite(lr) & np.isfinite(loss) & (lr > 0)
    finite = recorded if usable.all() else int(np.argmin(usable))
    lr, loss = lr[:finite], loss[:finite]

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

    log_lr = np.log10(lr)
    if np.any(np.diff(log_lr) <= 0):
        i = int(np.argmax(np.diff(log_lr) <= 0))
        return (
            f"the learning rates must increase strictly, but {lr[i + 1]:.3g} "
            f"follows {lr[i]:.3g}; the range test must sweep upward."
        )

    # 3) "Never decreases": loss[0] - min(loss) is zero, or under MIN_RELATIVE_DROP (1 %)
    #    of |loss[0]|, on the trimmed curve. This covers a curve that rises or stays flat
    #    from its first usable point; every rule would then only pick noise.
    drop = loss[0] - loss.min()
    if drop <= 0 or drop < MIN_RELATIVE_DROP * abs(loss[0]):
        percent = 100 * max(drop, 0.0) / abs(loss[0]) if loss[0] != 0 else 0.0
        return (
            f"the loss never decreases: it falls by only {percent:.2g}% from its starting "
            f"value {loss[0]:.4g} ({100 * MIN_RELATIVE_DROP:g}% needed); sweep a wider range "
            f"(a lower start_lr if it rises from the start, a higher end_lr if it stays flat)."
        )
    return _Curve(lr=lr, loss=loss, log_lr=log_lr)


def _curve(lr: ArrayLike, loss: ArrayLike) -> _Curve | None:
    prepared = _prepare(lr, loss)
    return None if isinstance(prepared, str) else prepared


def why_no_suggestion(lr: ArrayLike, loss: ArrayLike) -> str | None:
    """A sentence saying why no rule can suggest a rate for this curve, or None if they can."""
    prepared = _prepare(lr, loss)
    return prepared if isinstance(prepared, str) else None


# --- fastai's rules --------------------------------------------------------------------


def _valley_index(loss: np.ndarray) -> int:
    # 1) Longest strictly decreasing subsequence by the O(n^2) DP (vectorised inner loop):
    #    lds[i] is the length of the longest one ending at point i.
    lds = np.ones(loss.size, dtype=int)
    for i in range(1, loss.size):
        higher = loss[:i] > loss[i]
        if higher.any():
            lds[i] = lds[:i][higher].max() + 1
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


# --- candidate rules (benchmarked against one-cycle training) ---------------------------


def minimum_third(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """One third of the rate at the lowest loss: `minimum` moved half a decade up."""
    # 1) minimum/10 is the most robust rule measured, but when the band of good one-cycle
    #    peak rates is narrow a whole decade below the minimum falls off it. A third (0.48
    #    decades) stays clear of the turn-up of the smoothed loss, which the EMA drags to the
    #    right of where the raw loss turns.
    curve = _curve(lr, loss)
    if curve is None:
        return None
    return float(curve.lr[np.argmin(curve.loss)] / 3)


def valley_min_midpoint(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """Halfway on the log axis between `valley` and the rate at the lowest loss (their
    geometric mean), at most one third of the latter."""
    # 2) valley lands 0.6-1.4 decades below the best one-cycle peak rate, and that gap grows
    #    with the length of the descent; meeting the minimum halfway corrects the bias in
    #    proportion. The cap keeps a short, sharp descent from pushing the result up to
    #    where the loss already turns (steep's failure mode).
    curve = _curve(lr, loss)
    if curve is None:
        return None
    lr_min = curve.lr[np.argmin(curve.loss)]
    lr_valley = curve.lr[_valley_index(curve.loss)]
    return float(min(np.sqrt(lr_valley * lr_min), lr_min / 3))


def descent_two_thirds(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """The rate at which the loss has completed two thirds of its fall from the first point
    to the minimum (last crossing before the minimum, interpolated on the log axis), at most
    one third of the rate at the minimum."""
    # 3) A level crossing uses the loss values themselves, not their derivative, so noise
    #    moves it far less than `steep`. Two thirds down, the rate already trains fast but is
    #    still on the descending side; the last crossing ignores early dips, and the cap
    #    keeps it off the turn-up when the descent ends in a cliff.
    curve = _curve(lr, loss)
    if curve is None:
        return None
    lowest = int(np.argmin(curve.loss))
    level = curve.loss[0] - (2 / 3) * (curve.loss[0] - curve.loss[lowest])
    above = curve.loss[: lowest + 1] > level
    # The curve starts above the level and ends (at its minimum) below it, so a crossing
    # from point j (above) to j + 1 (at or below) exists; take the last one.
    j = int(np.flatnonzero(above[:-1] & ~above[1:])[-1])
    fraction = (curve.loss[j] - level) / (curve.loss[j] - curve.loss[j + 1])
    log_crossing = curve.log_lr[j] + fraction * (curve.log_lr[j + 1] - curve.log_lr[j])
    return float(min(10**log_crossing, curve.lr[lowest] / 3))


SUGGESTERS: dict[str, Suggester] = {
    "valley": valley,
    "steep": steep,
    "minimum": minimum,
    "slide": slide,
    "minimum_third": minimum_third,
    "valley_min_midpoint": valley_min_midpoint,
    "descent_two_thirds": descent_two_thirds,
}


def suggest_all(lr: ArrayLike, loss: ArrayLike) -> dict[str, float | None]:
    """Every rule in SUGGESTERS applied to the same curve, by name."""
    return {name: rule(lr, loss) for name, rule in SUGGESTERS.items()}


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


def rise_start(lr: ArrayLike, loss: ArrayLike, tolerance: float = 0.1) -> float | None:
    """Where a flat-then-rising curve (a re-find on a trained model) starts to rise.

    The first rate at which the loss stands above its running minimum by more than
    `tolerance` of the curve's whole range; None when it never does or the curve is too short.
    """
    lr = np.asarray(lr, dtype=float).reshape(-1)
    loss = np.asarray(loss, dtype=float).reshape(-1)
    keep = np.isfinite(lr) & np.isfinite(loss)
    lr, loss = lr[keep], loss[keep]
    if lr.size < MIN_POINTS:
        return None
    span = float(loss.max() - loss.min())
    if span <= 0:
        return None
    above = loss > np.minimum.accumulate(loss) + tolerance * span
    return float(lr[int(np.argmax(above))]) if above.any() else None
