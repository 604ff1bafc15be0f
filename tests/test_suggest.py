"""Suggestion rules on synthetic range-test curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lrtool.suggest import (
    DEFAULT_METHOD,
    SUGGESTERS,
    centered_curve,
    centered_minimum,
    consensus,
    learned_nothing_visible,
    minimum,
    robust_minimum,
    slide,
    steep,
    suggest_all,
    valley,
    view_curve,
    why_no_suggestion,
)

# --- curves ------------------------------------------------------------------------------

# Hand-checkable curves: one point per decade (1e-8 ... 1), under 10 points so nothing is
# trimmed, and every slope is a plain difference of neighbouring losses.
LR9 = np.logspace(-8, 0, 9)

# Smooth curves: 121 points, log10(lr) from -6 to 0 in steps of 0.05, trimmed to points
# 12..115 (121 // 10 = 12 at the start, 5 at the end).
X = np.linspace(-6, 0, 121)
LR = 10**X
# A sigmoid descent from 2.3 to 1 whose steepest forward segment is [X[49], X[50]] (centre
# -3.525, the segment's midpoint), then a sharp rise from X[80] = -2. The rise's slope at -2
# (3) beats the descent's (-0.04), so the minimum sits exactly at point 80.
_DESCENT = 1 + 1.3 / (1 + np.exp(3 * (X + 3.525)))
_PAST_MINIMUM = np.maximum(X + 2, 0)
CLEAN = _DESCENT + 3 * _PAST_MINIMUM + 10 * _PAST_MINIMUM**2
PLATEAU = _DESCENT  # never diverges: falls to a plateau and stays there


def ema(values: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Bias-corrected EMA, as the finder smooths the loss."""
    smoothed, average = [], 0.0
    for step, value in enumerate(values, start=1):
        average = beta * average + (1 - beta) * value
        smoothed.append(average / (1 - beta**step))
    return np.array(smoothed)


NOISY = ema(CLEAN + np.random.default_rng(0).normal(0, 0.05, X.size))
RISING = 1 + np.exp(X)  # the loss never decreases

INDEX_RULES = ("valley", "steep", "slide")  # these return one of the swept rates


def _index_of(lr: np.ndarray, value: float) -> int:
    """The position of `value` among the swept rates; fails if it is not one of them."""
    (matches,) = np.nonzero(np.isclose(lr, value, rtol=1e-12, atol=0))
    assert matches.size == 1, f"{value} is not one of the swept learning rates"
    return int(matches[0])


# --- fastai's rules on hand-built curves -------------------------------------------------


def test_minimum_is_a_tenth_of_the_rate_at_the_lowest_loss():
    loss = [5, 4, 4.5, 3, 2, 1.5, 1.2, 3, 9]
    assert minimum(LR9, loss) == pytest.approx(LR9[6] / 10, rel=1e-12)


def test_steep_is_the_left_end_of_the_steepest_segment():
    # Differences: -1, +0.5, -1.5, -1, -0.5, -0.3, +1.8, +6; the steepest starts at point 2.
    assert steep(LR9, [5, 4, 4.5, 3, 2, 1.5, 1.2, 3, 9]) == pytest.approx(LR9[2], rel=1e-12)


def test_valley_steps_halfway_into_the_longest_decreasing_run():
    # Longest decreasing subsequence 5,4,3,2,1.5,1.2 (points 0,1,3,4,5,6): length 6, ending
    # at 6, so fastai's start is 6 - 6 = 0; thirds of 6 are 2, index 0 + 2 + 1 = 3.
    assert valley(LR9, [5, 4, 4.5, 3, 2, 1.5, 1.2, 3, 9]) == pytest.approx(LR9[3], rel=1e-12)


def test_valley_uses_fastais_start_one_before_the_run():
    # Longest run 5,4,3,2,1 is points 1..5; fastai's start is 5 - 5 = 0 (not 1), thirds of 5
    # are 1.67, index 0 + 1 + 0 = 1. Starting at the run's first point would give 2.
    assert valley(LR9, [4, 5, 4, 3, 2, 1, 3, 8, 9]) == pytest.approx(LR9[1], rel=1e-12)


def test_valley_keeps_fastais_start_of_minus_one_for_a_run_from_the_first_point():
    # Run 5,4,3,2,1 is points 0..4: start 4 - 5 = -1, thirds of 5 are 1.67, index -1 + 1 = 0.
    assert valley(LR9[:8], [5, 4, 3, 2, 1, 2, 6, 9]) == pytest.approx(LR9[0], rel=1e-12)


def test_valley_never_wraps_to_the_last_rate():
    # Run 5,4 ends at point 1: fastai's index is -1 + 0 + 0 = -1, i.e. the last rate.
    assert valley(LR9[:5], [5, 4, 6, 7, 8]) == pytest.approx(LR9[0], rel=1e-12)


def test_slide_stops_where_the_slope_stops_changing():
    # Gradients (one decade per step): -1, -1, -1, -1, -0.75, 0.5, 2.75, 3.5, 3. With
    # lr_diff = 9 // 4 = 2 the walk compares (8,6), (7,5), (6,4), (5,3), (4,2), then (3,1)
    # agree exactly, so it stops and returns the last left point that differed: 2.
    # (lr_diff = 1 would give point 3.)
    assert slide(LR9, [5, 4, 3, 2, 1, 0.5, 2, 6, 9]) == pytest.approx(LR9[2], rel=1e-12)


@pytest.mark.parametrize("decades", [8, 2], ids=["decade-steps", "quarter-decade-steps"])
def test_slide_threshold_is_per_sweep_step_whatever_the_spacing(decades):
    # Gradients per step: -0.999, -0.998, -0.996, -0.994, -0.992, 0.492, 2.9875, 3.5, 3.
    # (4,2) differ by 0.004 <= 0.005: stop, return point 3. Per decade on the finer sweep
    # they would differ by 0.016 and the walk would run on to point 0.
    lr = np.logspace(-4, -4 + decades, 9)
    loss = [5, 4.001, 3.004, 2.009, 1.016, 0.025, 2, 6, 9]
    assert slide(lr, loss) == pytest.approx(lr[3], rel=1e-12)


def test_slide_walks_to_the_first_rate_when_the_slope_never_settles():
    assert slide(LR9, [5, 4, 4.5, 3, 2, 1.5, 1.2, 3, 9]) == pytest.approx(LR9[0], rel=1e-12)


# --- lrtool's rule: the zero-lag minimum ------------------------------------------------


def test_centered_curve_keeps_a_straight_line_and_removes_a_spike():
    # On a log-linear loss the centred windows are symmetric, so away from the edges and the
    # spike the smoothed log loss is the line itself. The median turns the spike (+3.9 in
    # log) into a shift of about one step (0.025) of the windows that contain it.
    loss = np.exp(-0.5 * X)
    loss[60] *= 50
    smoothed = centered_curve(X, loss)
    assert np.allclose(smoothed[20:40], -0.5 * X[20:40], atol=1e-9)
    assert np.allclose(smoothed[80:100], -0.5 * X[80:100], atol=1e-9)
    assert np.abs(smoothed[40:80] - (-0.5 * X[40:80])).max() < 0.05


def test_centered_minimum_is_half_the_zero_lag_minimum():
    got = centered_minimum(LR, CLEAN)
    trimmed = centered_curve(X[12:116], CLEAN[12:116])
    assert got == pytest.approx(LR[12 + int(np.argmin(trimmed))] / 2, rel=1e-12)
    # At or a little before the true minimum (point 80): smoothing the sharp rise after it
    # pulls the zero-lag minimum left, never right.
    assert -0.35 <= np.log10(got * 2) - X[80] <= 0


def test_centered_minimum_on_the_raw_loss_avoids_the_ema_lag():
    raw = CLEAN + np.random.default_rng(1).normal(0, 0.05, X.size)
    got = centered_minimum(LR, raw)
    assert -0.35 <= np.log10(got * 2) - X[80] <= 0
    # The EMA the finder records puts fastai's minimum well to the right of the true one.
    assert np.log10(minimum(LR, ema(raw)) * 10) > X[80]
    # suggest_all hands the raw loss to this rule and the EMA to fastai's.
    both = suggest_all(LR, ema(raw), raw)
    assert both["centered_minimum"] == pytest.approx(got, rel=1e-12)
    assert both["minimum"] == pytest.approx(minimum(LR, ema(raw)), rel=1e-12)


def test_centered_minimum_stops_at_the_first_blow_up():
    # Down to 1 at point 50, a blow-up to 8 around point 70, then an absurd second descent
    # to 0.5 at the end (Adam on a regression at huge rates): the answer is the first dip.
    loss = 3 - 2 * np.exp(-(((X - X[50]) / 0.4) ** 2)) * (X <= X[50])
    loss = np.where(X > X[50], 1 + 7 * np.exp(-(((X - X[70]) / 0.3) ** 2)), loss)
    loss = np.where(X > X[80], 1 - 0.5 * (X - X[80]) / (X[-1] - X[80]), loss)
    got = centered_minimum(LR, loss)
    assert abs(np.log10(got * 2) - X[50]) <= 0.2
    assert minimum(LR, loss) > LR[100] / 10  # the plain minimum falls for the late dip


# --- smooth and noisy curves -------------------------------------------------------------


def test_clean_valley_exact_positions():
    got = suggest_all(LR, CLEAN)
    assert got["minimum"] == pytest.approx(LR[80] / 10, rel=1e-12)
    assert _index_of(LR, got["steep"]) == 49
    # Trimmed curve = points 12..115; it decreases strictly from 12 to 80, a run of 69
    # ending at trimmed index 68: start -1, thirds of 69 are 23, index -1 + 23 + 11 = 33.
    assert _index_of(LR, got["valley"]) == 12 + 33


@pytest.mark.parametrize("loss", [CLEAN, NOISY, PLATEAU], ids=["clean", "noisy", "plateau"])
def test_every_rule_answers_within_the_swept_range(loss):
    assert why_no_suggestion(LR, loss) is None
    got = suggest_all(LR, loss)
    assert set(got) == set(SUGGESTERS)
    for name, value in got.items():
        assert type(value) is float, name
        assert LR[0] / 10 <= value <= LR[-1], name
    for name in INDEX_RULES:
        assert 12 <= _index_of(LR, got[name]) <= 115, name  # inside the trimmed curve
    lowest = 12 + int(np.argmin(loss[12:116]))
    assert got["minimum"] == pytest.approx(LR[lowest] / 10, rel=1e-12)
    assert got["centered_minimum"] <= LR[lowest] / 2  # at most half the (lagging) minimum


def test_noisy_curve_suggestions_stay_below_its_minimum():
    got = suggest_all(LR, NOISY)
    lowest = 12 + int(np.argmin(NOISY[12:116]))
    # The EMA drags the minimum right of the raw one (point 80), but not by a decade.
    assert 80 <= lowest <= 100
    for name in ("valley", "steep", "slide"):
        assert got[name] < LR[lowest], name


def test_plateau_minimum_ignores_the_last_five_points():
    # Still falling at the end: the lowest loss is the last point kept by the trim (115).
    assert minimum(LR, PLATEAU) == pytest.approx(LR[115] / 10, rel=1e-12)


def test_short_curves_are_trimmed_by_a_tenth_at_each_end():
    # 20 points: 2 dropped at each end, so the lowest kept loss is point 17, not 19.
    lr = np.logspace(-6, 0, 20)
    loss = np.linspace(3, 1, 20)
    assert minimum(lr, loss) == pytest.approx(lr[17] / 10, rel=1e-12)
    # Under 10 points nothing is dropped.
    assert minimum(lr[:9], loss[:9]) == pytest.approx(lr[8] / 10, rel=1e-12)


# --- curves with no sensible suggestion --------------------------------------------------


def test_loss_that_never_decreases_gives_none_and_says_so():
    assert all(value is None for value in suggest_all(LR, RISING).values())
    assert "never clearly decreases" in why_no_suggestion(LR, RISING)


def test_a_noiseless_drop_under_half_a_percent_is_not_a_descent():
    rise = 3 * _PAST_MINIMUM
    small = 1 - 0.003 / (1 + np.exp(-3 * (X + 3.525))) + rise  # falls 0.3 %
    assert view_curve(LR, small).learned_at is None
    enough = 1 - 0.04 / (1 + np.exp(-3 * (X + 3.525))) + rise  # falls 4 %
    assert view_curve(LR, enough).learned_at is not None
    assert why_no_suggestion(LR, enough) is None


def test_a_sweep_that_blew_up_without_a_clear_fall_is_read_from_its_cliff():
    """The 0.3 % fall is no descent, but the loss doubles from its start at a clear cliff:
    the suggestion is 1/30 of the rate there (about the distance the rule lands below the
    cliff on sweeps that learn), not None."""
    small = 1 - 0.003 / (1 + np.exp(-3 * (X + 3.525))) + 3 * _PAST_MINIMUM
    view = view_curve(LR, small)
    cliff = int(np.argmax(small > 2))  # the raw loss doubles from its start of 1
    assert abs(view.cliff - cliff) <= 2  # the zero-lag curve finds it within two steps
    assert why_no_suggestion(LR, small) is None
    assert robust_minimum(LR, small) == pytest.approx(LR[view.cliff] / 30)
    assert learned_nothing_visible(LR, small)
    assert not learned_nothing_visible(LR, CLEAN)


def test_a_cliff_on_a_coarse_sweep_is_never_read_above_the_last_rate_before_it():
    """30 steps over 600 decades: cliff / 30 would lie 19 decades above the last rate that
    trained; the suggestion is that rate."""
    lr = np.logspace(-300, 300, 30)
    loss = np.where(np.arange(30) < 16, 1.0, 1e6)
    view = view_curve(lr, loss)
    assert view.learned_at is None and view.cliff == 16
    assert robust_minimum(lr, loss) == pytest.approx(lr[15])


def test_a_noisy_flat_sweep_that_blows_up_gets_a_rate_well_below_the_blow_up():
    """Like a regression on raw targets: per-batch noise hides a small fall, then the loss
    explodes. The suggestion sits 1.5 decades under the explosion, never in the noise."""
    rng = np.random.default_rng(3)
    x = np.linspace(-7, -2, 60)
    loss = 1e4 * np.exp(rng.normal(0, 0.3, x.size)) * np.where(x > -3, 10 ** (4 * (x + 3)), 1)
    suggested = robust_minimum(10**x, loss)
    assert suggested is not None
    assert 10**-5.2 < suggested < 10**-4.1  # the explosion starts at 1e-3, doubling by ~1.1e-3


def test_a_flat_sweep_that_never_blows_up_gets_none_and_is_told_to_sweep_higher():
    rng = np.random.default_rng(0)
    flat = 2.3 * np.exp(rng.normal(0, 0.01, LR.size))
    assert all(value is None for value in suggest_all(LR, flat).values())
    why = why_no_suggestion(LR, flat)
    assert "does not blow up" in why and "find.end_lr" in why


def test_a_loss_that_doubles_at_the_start_has_no_cliff():
    early = 1 + np.where(X > -5.7, 5.0, 0.0)  # doubled after 6 of 121 points
    assert view_curve(LR, early).cliff is None
    assert robust_minimum(LR, early) is None


@pytest.mark.parametrize(
    ("lr", "loss"),
    [([], []), ([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0]), ([1e-3], [1.0])],
    ids=["empty", "three-points", "one-point"],
)
def test_too_few_points_give_none_without_raising(lr, loss):
    assert all(value is None for value in suggest_all(lr, loss).values())
    assert "too few usable points" in why_no_suggestion(lr, loss)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_loss_cuts_the_curve_there(bad):
    loss = CLEAN.copy()
    loss[100] = bad
    loss[101:] = CLEAN[101:]  # finite values after the cut must not count
    assert suggest_all(LR, loss) == suggest_all(LR[:100], CLEAN[:100])
    assert why_no_suggestion(LR, loss) is None


def test_a_non_finite_value_near_the_start_leaves_too_few_points():
    loss = [5, 4, np.nan, 3, 2, 1.5, 1.2, 3, 9]
    assert all(value is None for value in suggest_all(LR9, loss).values())
    assert "only the first 2 finite" in why_no_suggestion(LR9, loss)
    lr = LR9.copy()
    lr[3] = np.nan
    assert valley(lr, [5, 4, 4.5, 3, 2, 1.5, 1.2, 3, 9]) is None


def test_rates_that_do_not_increase_give_none():
    lr = [1e-4, 1e-3, 1e-3, 1e-2, 1e-1]
    assert steep(lr, [5, 4, 3, 2, 1]) is None
    assert "increase strictly" in why_no_suggestion(lr, [5, 4, 3, 2, 1])


def test_plain_lists_work_and_mismatched_lengths_raise():
    assert minimum(list(LR9), [5, 4, 4.5, 3, 2, 1.5, 1.2, 3, 9]) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="same length"):
        minimum(LR9, [1.0, 2.0])


# --- consensus ---------------------------------------------------------------------------


def test_consensus_is_the_median_in_log_space():
    median, spread = consensus([1e-3, 1e-2, 1e-1])
    assert median == pytest.approx(1e-2, rel=1e-12)  # an arithmetic median would agree...
    assert spread == pytest.approx(100, rel=1e-12)
    median, _ = consensus([1e-3, 1e-1])  # ...but here it would say 5.05e-2
    assert median == pytest.approx(1e-2, rel=1e-12)


def test_consensus_ignores_none():
    median, spread = consensus([None, 1e-4, None, 1e-2, 1e-3])
    assert median == pytest.approx(1e-3, rel=1e-12)
    assert spread == pytest.approx(100, rel=1e-12)
    assert consensus([None, 3e-3]) == (pytest.approx(3e-3), pytest.approx(1.0))


@pytest.mark.parametrize("values", [[], [None, None]])
def test_consensus_of_nothing_is_none(values):
    assert consensus(values) == (None, None)


def test_still_falling_flags_a_curve_that_never_turned_up():
    from lrtool.suggest import still_falling

    assert still_falling(LR, PLATEAU + np.linspace(0, -0.5, X.size))  # falling to the end
    assert not still_falling(LR, CLEAN)  # turned up at point 80 of 121
    assert not still_falling(LR9[:3], [3, 2, 1])  # too short to say


# --- "did it learn?" is judged on the raw loss, robustly ------------------------------------


def _sweep(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The default sweep's spacing: 1e-7 to 10 in n steps."""
    lr = np.geomspace(1e-7, 10, n)
    return lr, np.log10(lr)


def test_a_raw_fall_the_lagging_ema_barely_shows_still_gets_a_suggestion():
    # The 1-D CNN of issue 12: flat at 2.30, down 15 % over 0.3 decades up to 1e-1, then a
    # blow-up that ends the sweep. The EMA (50 steps of memory) has moved under 1 % by then.
    lr, x = _sweep()
    raw = 2.3 - 0.35 * np.clip((x + 1.3) / 0.3, 0, 1) + 60 * np.clip(x + 0.95, 0, None) ** 2
    raw = raw[:77] + np.random.default_rng(3).normal(0, 0.02, 77)
    lr = lr[:77]
    smoothed = ema(raw)
    trimmed = smoothed[7:]  # the old veto's view: EMA, first tenth trimmed
    assert trimmed.min() > 0.99 * trimmed[0]
    assert raw[74:76].mean() < 0.9 * raw[:60].mean()  # the raw loss fell by over 10 %
    assert why_no_suggestion(lr, raw) is None
    got = suggest_all(lr, smoothed, raw)
    assert got[DEFAULT_METHOD] is not None
    assert 1e-3 <= got[DEFAULT_METHOD] <= 1e-1


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_gets_no_suggestion(seed):
    lr, _ = _sweep()
    raw = 2.3 + np.random.default_rng(seed).normal(0, 0.05, lr.size)
    assert "never clearly decreases" in why_no_suggestion(lr, raw)
    assert all(v is None for v in suggest_all(lr, ema(raw), raw).values())


def test_step_noise_ignores_the_trend_and_the_spikes():
    from lrtool.suggest import step_noise

    x = np.linspace(0, 1, 400)
    noise = np.random.default_rng(0).normal(0, 0.1, x.size)
    trend = 5 * np.sin(3 * x)  # slow compared with the step
    assert step_noise(trend + noise) == pytest.approx(0.1, rel=0.15)
    spiky = trend + noise
    spiky[::25] += 50  # a spike every 25 steps
    assert step_noise(spiky) == pytest.approx(0.1, rel=0.25)


# --- the default: robust_minimum ------------------------------------------------------------


def test_robust_minimum_is_fastais_minimum_on_a_curve_that_learned_from_the_start():
    from lrtool.suggest import robust_minimum, smooth

    raw = CLEAN + np.random.default_rng(1).normal(0, 0.05, X.size)
    assert robust_minimum(LR, raw) == pytest.approx(minimum(LR, smooth(raw, 0.98)), rel=1e-12)
    assert suggest_all(LR, ema(raw), raw)["robust_minimum"] == robust_minimum(LR, raw)


def test_robust_minimum_ignores_an_ema_minimum_in_the_flat_start():
    # The curve of the lagging-EMA test: a long flat start, then a short descent the EMA
    # barely follows before the blow-up. The EMA's lowest point falls in the flat start's
    # noise, so fastai's minimum answers there; lrtool's looks from where the raw loss had
    # clearly fallen.
    from lrtool.suggest import robust_minimum, smooth

    lr, x = _sweep()
    raw = 2.3 - 0.35 * np.clip((x + 1.3) / 0.3, 0, 1) + 60 * np.clip(x + 0.95, 0, None) ** 2
    raw = raw[:77] + np.random.default_rng(3).normal(0, 0.02, 77)
    lr = lr[:77]
    assert minimum(lr, smooth(raw, 0.98)) < 1e-5
    assert 1e-3 <= robust_minimum(lr, raw) <= 1e-1


def test_robust_minimum_stays_on_the_safe_side_of_a_cliff():
    # A descent into a minimum at point 80 and a sheer cliff right after it: the EMA has no
    # time to lag, and the zero-lag smoothing pulls the minimum a little left of the cliff:
    # the suggestion lands between a tenth and a third of the minimum, never at it.
    from lrtool.suggest import robust_minimum

    cliff = _DESCENT + 200 * _PAST_MINIMUM**2
    got = robust_minimum(LR[:90], cliff[:90])
    assert LR[80] / 10 <= got <= LR[80] / 3


def test_a_noisy_flat_start_is_never_the_suggestion():
    # A regression-like curve: a flat, spiky start over five decades (MSE spikes in log
    # space), then a clear descent from 1e-2 to 1e-1 and a blow-up. A rule that takes the
    # lowest point of the noise would answer near the start.
    from lrtool.suggest import robust_minimum

    lr, x = _sweep()
    rng = np.random.default_rng(7)
    spikes = np.exp(rng.normal(0, 0.3, x.size))  # multiplicative, as MSE noise is
    loss = (200 - 190 * np.clip(x + 2, 0, 1) + 1e4 * np.clip(x + 0.9, 0, None) ** 2) * spikes
    got = robust_minimum(lr[:85], loss[:85])
    assert got is not None
    assert 1e-3 <= got <= 1e-1


def test_a_loss_that_blows_up_at_once_is_told_to_start_lower():
    early = 1 + np.where(X > -5.7, 5.0, 0.0)
    why = why_no_suggestion(LR, early)
    assert "blows up within the first tenth" in why and "lower find.start_lr" in why
    assert "does not blow up" not in why


def test_a_sweep_too_short_to_read_asks_for_more_steps_not_a_lower_start():
    # A 5-step linear sweep: fell at 5, blew up at 10. Its "first tenth" is all of it, so
    # it cannot say the loss rose from the start (it did not: it fell first).
    lr = [1e-5, 2.5, 5.0, 7.5, 10.0]
    loss = [2.29, 2.35, 1.51, 4.9, 54.0]
    reason = why_no_suggestion(lr, loss)
    assert reason is not None and "too few" in reason and "find.num_steps" in reason
    assert "start_lr" not in reason


def test_a_sweep_over_a_sliver_of_a_decade_is_read_without_a_huge_kernel():
    # A million points per decade made the Gaussian kernel ask for terabytes.
    lr = np.linspace(1e-3, 1e-3 * (1 + 1e-9), 100)
    loss = np.linspace(2.0, 1.0, 100)
    assert robust_minimum(lr, loss) is None or robust_minimum(lr, loss) > 0
    assert centered_curve(np.log10(lr), loss).shape == (100,)


def test_a_coarse_sweep_that_blew_up_in_its_last_tenth_is_not_still_falling():
    from lrtool.suggest import still_falling

    lr = np.logspace(-30, 1, 100)  # three steps a decade: the last tenth spans decades
    loss = np.full(100, 2.3)
    loss[-6:] = [1.2, 0.9, 0.69, 0.88, 2.98, 67.98]
    assert not still_falling(lr, loss)
    loss[-6:] = [1.2, 0.9, 0.8, 0.7, 0.6, 0.5]  # falling to the end: still falling
    assert still_falling(lr, loss)


def test_a_rate_of_zero_is_named_not_called_non_finite():
    lr, loss = np.linspace(0, 1, 100), np.linspace(2, 1, 100)
    reason = why_no_suggestion(lr, loss)
    assert reason is not None and "must be above 0" in reason and "finite" not in reason
    assert all(rule(lr, loss) is None for rule in SUGGESTERS.values())


def test_the_long_sweep_valley_dp_gives_the_same_runs_as_fastais():
    from lrtool import suggest

    rng = np.random.default_rng(0)
    for n in (2, 3, 50, 700, 2500):
        loss = np.round(rng.normal(size=n).cumsum(), 1)  # ties included
        fast = suggest._decreasing_run_lengths(loss) if n > suggest.VALLEY_DP_POINTS else None
        old_limit = suggest.VALLEY_DP_POINTS
        try:
            suggest.VALLEY_DP_POINTS = 0
            tree = suggest._decreasing_run_lengths(loss)
            suggest.VALLEY_DP_POINTS = 10**9
            dp = suggest._decreasing_run_lengths(loss)
        finally:
            suggest.VALLEY_DP_POINTS = old_limit
        assert (tree == dp).all() and (fast is None or (fast == dp).all())
