"""Terminal charts return strings of the asked size, show what they promise, survive bad data."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest

from lrtool import plot

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def visible(text: str) -> list[str]:
    """Lines of a chart as the terminal shows them (color codes removed)."""
    return ANSI.sub("", text).split("\n")


def assert_size(text: str, width: int, height: int) -> None:
    lines = visible(text)
    assert len(lines) == height
    assert {len(line) for line in lines} == {width}


def find_curve(n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A range test: flat, a descent around 1e-3, then a blow-up past 1e-1."""
    lr = np.logspace(-7, 0, n)
    x = np.log10(lr)
    smoothed = 2.3 - 1.5 / (1 + np.exp(-(x + 3) * 2))
    smoothed = np.where(lr > 1e-1, smoothed + (x + 1) ** 2 * 30, smoothed)
    raw = smoothed + np.random.default_rng(0).normal(0, 0.05, n)
    return lr, raw, smoothed


SUGGESTIONS = {"valley": 3e-4, "steepest": 1e-3, "minimum": 1e-2, "slide": None}


# --- find_chart --------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", [(80, 22), (120, 40), (50, 12)])
def test_find_chart_has_the_requested_size(width: int, height: int) -> None:
    lr, raw, smoothed = find_curve()
    for color in (True, False):
        out = plot.find_chart(
            lr, raw, smoothed, SUGGESTIONS, "valley", width=width, height=height, color=color
        )
        assert_size(out, width, height)


def test_find_chart_without_color_has_no_escape_codes() -> None:
    lr, raw, smoothed = find_curve()
    out = plot.find_chart(lr, raw, smoothed, SUGGESTIONS, "valley", color=False)
    assert "\x1b[" not in out
    assert out.strip()


def test_find_chart_with_color_is_colored() -> None:
    lr, raw, smoothed = find_curve()
    assert "\x1b[" in plot.find_chart(lr, raw, smoothed, SUGGESTIONS, "valley", color=True)


def test_find_chart_labels_log_ticks_and_suggestions() -> None:
    lr, raw, smoothed = find_curve()
    out = plot.find_chart(lr, raw, smoothed, SUGGESTIONS, "valley", color=False, title="LR test")
    for tick in ("1e-07", "1e-05", "1e-03", "1e-01"):
        assert tick in out
    for name in ("valley", "steepest", "minimum"):
        assert name in out
    assert "valley 3.0e-04 (default)" in out  # the default stands out in the legend
    assert "steepest 1.0e-03" in out and out.count("(default)") == 1
    assert "slide" not in out  # a method without a suggestion is not drawn
    assert "LR test" in out.split("\n")[0]
    assert "┃" in out and "┊" in out  # heavy line for the default, dotted for the others


def test_find_chart_skips_suggestions_outside_the_sweep() -> None:
    lr, raw, smoothed = find_curve()
    out = plot.find_chart(
        lr, raw, smoothed, {"valley": 1e-3, "far": 10.0, "bad": -1.0}, "far", color=False
    )
    assert "valley" in out
    assert "far" not in out and "bad" not in out
    assert "┃" not in out  # the default is off the chart, so no heavy line


def test_find_chart_clips_the_blown_up_tail() -> None:
    lr, raw, smoothed = find_curve()
    out = plot.find_chart(lr, raw, smoothed, {}, None, color=False)
    # y tick labels sit left of the frame; the top one is near 2.3 + 0.5 * 1.5, not near 30.
    top = float(visible(out)[1].split("┤")[0])
    assert 2.3 < top < 3.5


def test_find_chart_does_not_leak_between_calls() -> None:
    lr, raw, smoothed = find_curve()
    first = plot.find_chart(lr, raw, smoothed, SUGGESTIONS, "valley", color=False)
    plot.compare_chart([{"label": "other", "step": [1, 2, 3], "y": [3, 2, 1]}], x="step")
    again = plot.find_chart(lr, raw, smoothed, SUGGESTIONS, "valley", color=False)
    assert again == first
    assert "other" not in again


@pytest.mark.parametrize(
    "lr,loss",
    [
        ([], []),
        ([1e-3], [2.0]),
        ([1e-4, 1e-3, 1e-2], [2.0, 2.0, 2.0]),
        ([1e-4, float("nan"), 1e-2, 1e-1], [2.0, 1.0, float("inf"), 1.5]),
        ([float("nan")] * 3, [1.0, 2.0, 3.0]),
        ([0.0, -1e-3, 1e-3], [1.0, 2.0, 3.0]),
        ([1e-4, 1e-3], [1.0]),  # lengths differ after an early stop
        ([1e-4, 1.1e-4, 1.2e-4], [3.0, 2.0, 1.0]),  # less than one decade
    ],
)
def test_find_chart_survives_degenerate_input(lr: list[float], loss: list[float]) -> None:
    for color in (True, False):
        out = plot.find_chart(
            lr, loss, loss, {"valley": 1e-3, "none": None}, "valley", color=color, width=60
        )
        assert_size(out, 60, 22)


def test_find_chart_empty_input_says_so() -> None:
    out = plot.find_chart([], [], [], {}, None, color=False)
    assert "no finite loss values" in out


def test_find_chart_narrow_range_still_has_lr_ticks() -> None:
    lr = np.linspace(1e-4, 5e-4, 20)
    out = plot.find_chart(lr, np.linspace(2, 1, 20), np.linspace(2, 1, 20), {}, None, color=False)
    assert "1e-04" in out and "2e-04" in out


def test_log_ticks_thin_out_to_fit() -> None:
    positions, labels = plot._log_ticks(-10.0, 2.0, max_ticks=5)
    assert len(positions) <= 5
    assert all(re.fullmatch(r"1e[+-]\d\d", label) for label in labels)
    assert [10**p for p in positions] == pytest.approx([float(s) for s in labels])


# --- multi_find_chart and compare_chart ---------------------------------------------------------


def seed_curves() -> list[dict]:
    curves = []
    for i in range(3):
        lr, _, smoothed = find_curve(100 + 10 * i)
        curves.append({"label": f"seed{i}", "lr": lr, "smoothed_loss": smoothed + 0.05 * i})
    return curves


@pytest.mark.parametrize("band", [True, False])
def test_multi_find_chart_lists_every_curve_and_the_consensus(band: bool) -> None:
    out = plot.multi_find_chart(
        seed_curves(),
        band=band,
        suggestions=[3e-4, None, 5e-4],
        consensus=4e-4,
        color=False,
        width=100,
    )
    assert_size(out, 100, 22)
    assert "\x1b[" not in out
    for label in ("seed0 3.0e-04", "seed1", "seed2 5.0e-04", "consensus 4.0e-04"):
        assert label in out
    assert "1e-05" in out
    if band:
        assert "median of 3" in out and "min-max" in out
        # Without colour each seed's rug mark has its own glyph, named in the legend.
        assert "• seed0 3.0e-04" in out and "x seed2 5.0e-04" in out
        body = "\n".join(out.splitlines()[:-1])
        assert "•" in body and "x" in body


def test_multi_find_chart_median_band_on_common_grid() -> None:
    xs = [np.array([-4.0, -3.0, -2.0]), np.array([-4.0, -2.0])]
    ys = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 1.0])]
    grid, median, low, high = plot._median_band(xs, ys, [True, True])
    mid = int(np.argmin(abs(grid + 3.0)))
    assert grid[mid] == pytest.approx(-3.0)
    assert (low[mid], high[mid], median[mid]) == pytest.approx((2.0, 2.0, 2.0))
    assert (low[0], high[0], median[0]) == pytest.approx((1.0, 3.0, 2.0))


def test_multi_find_chart_survives_empty_and_single_point_curves() -> None:
    curves = [
        {"label": "empty", "lr": [], "smoothed_loss": []},
        {"label": "one", "lr": [1e-3], "smoothed_loss": [2.0]},
    ]
    assert_size(plot.multi_find_chart(curves, suggestions=[None, 1e-3], color=False), 80, 22)
    assert_size(plot.multi_find_chart([], consensus=1e-3, color=False), 80, 22)


@pytest.mark.parametrize("x", ["lr", "step"])
def test_compare_chart_shows_every_label(x: str) -> None:
    values = np.logspace(-6, -1, 50) if x == "lr" else np.arange(50)
    curves = [
        {"label": name, x: values, "y": np.linspace(2, 1, 50) + i}
        for i, name in enumerate(["adamw", "sgd", "lion"])
    ]
    out = plot.compare_chart(curves, x=x, color=False, width=90, height=18)
    assert_size(out, 90, 18)
    for name in ("adamw", "sgd", "lion"):
        assert name in out
    if x == "lr":
        assert "1e-05" in out and "learning rate" in out
    else:
        assert "1e-05" not in out and "step" in out


def test_compare_chart_marks_curves_apart_without_color() -> None:
    curves = [{"label": f"c{i}", "step": [0, 1, 2], "y": [i, i + 1, i]} for i in range(3)]
    legend = visible(plot.compare_chart(curves, x="step", color=False))[-1]
    assert "▚ c0" in legend and "• c1" in legend and "+ c2" in legend


def test_compare_chart_survives_nan_only_curves() -> None:
    curves = [{"label": "broken", "lr": [1e-3, 1e-2], "y": [float("nan"), float("inf")]}]
    out = plot.compare_chart(curves, color=False)
    assert_size(out, 80, 22)
    assert "broken" in out


# --- train_charts and metric_vs_lr_chart -------------------------------------------------------


def test_train_charts_stack_loss_and_schedules() -> None:
    step = np.arange(200)
    lr = 1e-3 * np.sin(np.pi * step / 199) + 1e-6
    momentum = 0.95 - 0.1 * np.sin(np.pi * step / 199)
    loss = 2.0 * np.exp(-step / 50) + 0.1
    out = plot.train_charts(step, loss, lr, momentum, color=False, width=90, height=30)
    assert_size(out, 90, 30)
    assert "training loss" in out and "schedule" in out
    assert "lr (left axis)" in out and "momentum (right axis)" in out


@pytest.mark.parametrize("momentum", [None, []])
def test_train_charts_without_momentum(momentum: list | None) -> None:
    out = plot.train_charts([0, 1, 2], [2.0, 1.5, 1.2], [1e-3, 2e-3, 1e-3], momentum, color=False)
    assert_size(out, 80, 30)
    assert "momentum" not in out


def test_train_charts_survive_empty_history() -> None:
    for color in (True, False):
        assert_size(plot.train_charts([], [], [], None, color=color, height=24), 80, 24)


def test_metric_vs_lr_chart_marks_the_best() -> None:
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    out = plot.metric_vs_lr_chart(
        lrs, [0.7, 0.78, 0.83, 0.81, float("nan")], metric="val_acc", best=1e-3, color=False
    )
    assert_size(out, 80, 20)
    assert "val_acc" in out and "best 1.0e-03" in out and "1e-03" in out
    out = plot.metric_vs_lr_chart([], [], metric="val_loss", best=None, color=False)
    assert_size(out, 80, 20)


# --- save_png --------------------------------------------------------------------------------


def test_save_png_writes_a_png_atomically(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    lr, _, smoothed = find_curve()
    target = tmp_path / "find.png"
    plot.save_png(
        target,
        [{"label": "run", "lr": lr, "y": smoothed}],
        suggestions={"valley": 3e-4, "none": None, "outside": 1e3},
        title="find",
    )
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["find.png"]  # no temp file left behind


def test_save_png_handles_step_axis_and_no_data(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    plot.save_png(tmp_path / "a.png", [{"label": "x", "step": [0, 1, 2], "y": [3, 2, 1]}], x="step")
    plot.save_png(tmp_path / "b.png", [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_save_png_without_matplotlib_says_how_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "matplotlib.figure", raising=False)
    with pytest.raises(ImportError, match=re.escape('pip install "lrtool[plot]"')):
        plot.save_png(tmp_path / "x.png", [{"label": "x", "lr": [1e-3], "y": [1.0]}])
    assert list(tmp_path.iterdir()) == []


def test_clip_top_only_clips_loss_shaped_curves() -> None:
    loss = np.array([2.0, 1.0, 0.5, 8.0])  # dips, then blows up: capped at 2 + 0.5 * 1.5
    assert plot._clip_top(loss) == pytest.approx(2.75)
    accuracy = np.array([0.5, 0.9, 0.1])  # peaks before its minimum: left alone
    assert plot._clip_top(accuracy) == pytest.approx(0.9)
    rising = np.array([0.1, 0.2, 0.3])
    assert plot._clip_top(rising) == pytest.approx(0.3)
    assert not math.isnan(plot._clip_top(np.array([1.0])))


# --- guarding plotext -----------------------------------------------------------------------


def test_clip_runs_cut_lines_at_the_limits() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([0.0, 1.0, 3.0, 1.0, 1.0])
    runs = plot._clip_runs(x, y, 0.0, 2.0)
    # up to the crossing at x=1.5, then back in from x=2.5 to the end
    assert runs == [([0.0, 1.0, 1.5], [0.0, 1.0, 2.0]), ([2.5, 3.0, 4.0], [2.0, 1.0, 1.0])]
    assert plot._clip_runs(np.array([0.0, 1.0]), np.array([-5.0, 5.0]), 0.0, 1.0) == [
        ([0.5, 0.6], [0.0, 1.0])
    ]
    assert plot._clip_runs(np.array([0.0, 1.0]), np.array([5.0, 6.0]), 0.0, 1.0) == []
    assert plot._clip_runs(np.array([2.0]), np.array([0.5]), 0.0, 1.0) == [([2.0], [0.5])]


def test_extreme_values_do_not_abort_the_process() -> None:
    # plotext 6.1 aborts the interpreter (std::bad_alloc, a C++ assertion) on segments far
    # outside the y limits; run the worst cases in a child so a regression fails this test
    # instead of killing the test session.
    code = """
import numpy as np
from lrtool import plot
lr = np.full(60, 0.0287)
loss = np.exp(np.random.default_rng(0).normal(0, 30, 60))
plot.find_chart(lr, loss, loss, {"valley": 0.0287}, "valley", width=15, height=22)
lr = np.logspace(-7, 0, 100)
tail = np.where(lr > 1e-2, 1e40, 2.0)
tail[:50] = np.linspace(3, 1, 50)
plot.find_chart(lr, tail, tail, {}, None)
plot.compare_chart([{"label": "a", "lr": lr, "y": tail}, {"label": "b", "lr": lr, "y": -tail}])
plot.train_charts(np.arange(100), tail, tail, tail)
print("survived")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "survived" in done.stdout


def test_terminal_size_limit_is_restored() -> None:
    import plotext

    before = list(plotext.terminal._limit)
    plot.find_chart([1e-4, 1e-3], [2.0, 1.0], [2.0, 1.0], {}, None, width=200, height=60)
    assert list(plotext.terminal._limit) == before
