"""Terminal charts of lrtool histories, and PNG export.

Every chart function returns a string of exactly ``height`` lines, each ``width`` columns wide
(plus ANSI color codes when ``color=True``); nothing here prints, reads files or imports rich or
typer, so the CLI decides where a chart goes and tests can look at it.

The charts are drawn with plotext (6.x API: ``plotext.figure``, ``.signal``, ``.build``).
plotext keeps one global figure, so each chart clears it before drawing and again after
building; a chart never sees what the previous one drew.

Conventions shared by all charts:

- Learning rates go on a log axis: we plot ``log10(lr)`` on a linear plotext axis and write our
  own tick labels ("1e-04", "2e-04", ...), which reads better than plotext's log scale labels.
- The legend is a footer under the plot (one line, wrapped when needed) rather than plotext's
  boxed legend, which takes two rows per entry and covers the curve.
- NaN, inf and (on log axes) non-positive values are dropped; empty input gives an empty frame
  saying "no data"; marks outside the plotted range are skipped. Nothing raises on bad data.
- ``color=False`` gives plain text: no ANSI escape codes at all.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import plotext

INSTALL_HINT = 'saving PNG charts needs matplotlib: pip install "lrtool[plot]"'

# Smallest chart we draw: below this plotext has no room for ticks and frame.
MIN_WIDTH = 30
MIN_HEIGHT = 8

# Colors are plotext color names (bright "+" variants read well on dark and light terminals).
CURVE_COLOR = "blue+"
RAW_COLOR = "gray"  # dim grey: the raw loss is context, the smoothed curve is the message
DEFAULT_COLOR = "red+"
SUGGESTION_COLORS = ["green+", "magenta+", "cyan+", "orange+", "green", "magenta", "cyan"]
# Braille dots (2x4 per cell) draw a thinner, lighter trace than the default "hd" blocks (2x2):
# right for context such as raw loss and band edges.
FAINT = "braille"
# Red is kept for the one mark that matters (default suggestion, consensus, best).
SERIES_COLORS = [
    "blue+",
    "green+",
    "orange+",
    "magenta+",
    "cyan+",
    "blue",
    "green",
    "orange",
    "cyan",
]
# Without color, several curves are told apart by their marker instead.
SERIES_MARKERS = ["hd", "•", "+", "x", "*", "o", "#", "%", "@"]

# Values beyond this are treated like inf (see _points).
HUGE = 1e100

# How far above its starting value a loss-vs-lr curve may rise before the chart clips it,
# as a fraction of how far the curve dropped (see _clip_top).
TAIL_HEADROOM = 0.5


# --- public charts ---------------------------------------------------------------------------


def find_chart(
    lr: Sequence[float],
    loss: Sequence[float],
    smoothed_loss: Sequence[float],
    suggestions: Mapping[str, float | None],
    default: str | None,
    *,
    width: int = 80,
    height: int = 22,
    color: bool = True,
    title: str | None = None,
) -> str:
    """Smoothed loss against learning rate (log x), raw loss faint, suggestions marked.

    Each suggestion inside the swept range is a vertical line labelled with its method name at
    the top of the chart and listed with its value in the legend; the ``default`` method gets a
    heavy red line, a ``●`` on the curve and "(default)" in the legend, the others dotted lines.
    """
    width, height = _clamp_size(width, height)
    x, y = _points(lr, smoothed_loss, log_x=True)
    raw_x, raw_y = _points(lr, loss, log_x=True)
    if not x.size and not raw_x.size:
        return _empty_chart("no finite loss values to plot", width, height, color, title)

    xlo, xhi = _data_range([x, raw_x])
    # The cap comes from the smoothed curve alone: raw noise should not decide the scale.
    ylo, yhi = _y_limits([y if y.size else raw_y], extra=[raw_y], clip=True)

    marks = []
    others = iter(SUGGESTION_COLORS * 4)  # more methods than that is not a real case
    for name, value in _finite_suggestions(suggestions, xlo, xhi):
        text = f"{name} {10**value:.1e}"
        if name == default:
            marks.append(_Mark(name, value, DEFAULT_COLOR, True, text + " (default)"))
        else:
            marks.append(_Mark(name, value, next(others, "gray"), False, text))

    legend = [_Entry("hd", "smoothed loss", CURVE_COLOR)]
    if raw_x.size:
        legend.append(_Entry("⠒", "raw loss", RAW_COLOR))
    legend += [m.entry() for m in marks]

    with _chart(width, height, color, legend) as canvas:
        fig, rows = canvas.fig, canvas.rows
        _frame(fig, title, "learning rate", "loss")
        xlim = _set_log_x(fig, xlo, xhi, width)
        fig.ruler("y").lim(ylo, yhi)
        # The default's heavy line last: another rule at the same rate (robust_minimum and
        # minimum agree whenever the sweep clearly learned) must not dot over it.
        for m in sorted(marks, key=lambda m: m.heavy):
            _vline(fig, m, ylo, yhi, rows, color)
        if raw_x.size:
            _dots(fig, raw_x, raw_y, (ylo, yhi), FAINT, RAW_COLOR, color)
        if x.size:
            _curve(fig, x, y, (ylo, yhi), CURVE_COLOR, "hd", color)
            for m in marks:
                if m.heavy:  # a dot on the curve says which loss the default rate lands on
                    at = np.interp([m.x], *_sorted(x, y))
                    _dots(fig, np.array([m.x]), at, (ylo, yhi), "●", m.color, color)
        _label_marks(fig, marks, xlim, (ylo, yhi), width, rows, color)
        return canvas.render()


def multi_find_chart(
    curves: Sequence[Mapping[str, Any]],
    *,
    band: bool = True,
    suggestions: Sequence[float | None] | None = None,
    consensus: float | None = None,
    width: int = 80,
    height: int = 22,
    color: bool = True,
    title: str | None = None,
) -> str:
    """Several finds of the same setup (e.g. seeds) on one log-lr chart.

    ``curves`` are ``{"label", "lr", "smoothed_loss"}`` dicts. With ``band=True`` the chart shows
    their median on a common log-lr grid and the min-max band around it (two faint lines);
    with ``band=False`` each curve is drawn in its own color. ``suggestions[i]`` (curve i's
    suggested lr) is a ``▲`` along the bottom edge; ``consensus`` is a heavy vertical line.
    Every curve label appears in the legend, with its suggestion when it has one.
    """
    width, height = _clamp_size(width, height)
    labels, xs, ys = [], [], []
    for i, curve in enumerate(curves):
        x, y = _points(curve.get("lr"), curve.get("smoothed_loss", curve.get("y")), log_x=True)
        labels.append(str(curve.get("label", f"curve {i + 1}")))
        xs.append(x)
        ys.append(y)
    seeds = list(suggestions or [])
    present = [x.size > 0 for x in xs]
    if not any(present):
        return _empty_chart("no finite loss values to plot", width, height, color, title)

    xlo, xhi = _data_range(xs)
    grid, median, low, high = _median_band(xs, ys, present)
    if band:
        ylo, yhi = _y_limits([median], extra=[low, high], clip=True)
    else:
        ylo, yhi = _y_limits([y for y in ys if y.size], clip=True)

    legend: list[_Entry] = []
    if band:
        legend.append(_Entry("hd", f"median of {sum(present)}", CURVE_COLOR))
        legend.append(_Entry("⠤", "min-max", RAW_COLOR))
    entries, rug = _series_entries(labels, seeds, (xlo, xhi), band, color)
    legend += entries
    marks = []
    cx = _log_or_none(consensus)
    if _within(cx, xlo, xhi):
        marks.append(_Mark("consensus", cx, DEFAULT_COLOR, True, f"consensus {10**cx:.1e}"))
        legend.append(marks[0].entry())

    with _chart(width, height, color, legend) as canvas:
        fig, rows = canvas.fig, canvas.rows
        _frame(fig, title, "learning rate", "smoothed loss")
        xlim = _set_log_x(fig, xlo, xhi, width)
        fig.ruler("y").lim(ylo, yhi)
        # The default's heavy line last: another rule at the same rate (robust_minimum and
        # minimum agree whenever the sweep clearly learned) must not dot over it.
        for m in sorted(marks, key=lambda m: m.heavy):
            _vline(fig, m, ylo, yhi, rows, color)
        if band:
            _curve(fig, grid, low, (ylo, yhi), RAW_COLOR, FAINT, color)
            _curve(fig, grid, high, (ylo, yhi), RAW_COLOR, FAINT, color)
            _curve(fig, grid, median, (ylo, yhi), CURVE_COLOR, "hd", color)
        else:
            for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
                if x.size:
                    marker = _series_marker(i, color)
                    series_color = SERIES_COLORS[i % len(SERIES_COLORS)]
                    _curve(fig, x, y, (ylo, yhi), series_color, marker, color)
        for rx, rug_color, glyph in rug:
            # A rug along the bottom edge keeps the marks off the curves.
            fig.draw(fig.signal([rx], [ylo], marker=_marker(glyph, rug_color, color)))
        _label_marks(fig, marks, xlim, (ylo, yhi), width, rows, color)
        return canvas.render()


def _series_entries(
    labels: Sequence[str],
    seeds: Sequence[float | None],
    xrange: tuple[float, float],
    band: bool,
    color: bool,
) -> tuple[list[_Entry], list[tuple[float, str, str]]]:
    """Each curve's legend entry, and its suggestion's rug mark (x, color, glyph) when shown."""
    entries, rug = [], []
    for i, label in enumerate(labels):
        # With a band the curves are not drawn one by one; their marks skip the median's blue.
        palette = SERIES_COLORS[1:] if band else SERIES_COLORS
        series_color = palette[i % len(palette)]
        lx = _log_or_none(seeds[i] if i < len(seeds) else None)
        on_chart = _within(lx, *xrange)
        # Without colour each curve's mark needs a glyph of its own (not the curves' "hd").
        glyph = "▲" if color else SERIES_MARKERS[1 + i % (len(SERIES_MARKERS) - 1)]
        if on_chart:
            rug.append((lx, series_color, glyph))
        if band:
            symbol = glyph if on_chart else "·"
        else:
            symbol = _series_marker(i, color)
        text = f"{label} {10**lx:.1e}" if on_chart else label
        entries.append(_Entry(symbol, text, series_color))
    return entries, rug


def compare_chart(
    curves: Sequence[Mapping[str, Any]],
    *,
    x: str = "lr",
    width: int = 80,
    height: int = 22,
    color: bool = True,
    title: str | None = None,
) -> str:
    """Overlay labelled curves ``{"label", <x>: [...], "y": [...]}`` on one chart.

    ``x="lr"`` puts the x values on a log axis (and clips a blown-up loss tail as find_chart
    does); any other key, e.g. ``"step"``, on a linear one. A curve without ``"y"`` falls back
    to its ``"smoothed_loss"``. Each curve has its own color (and, without color, its own
    marker), and every label appears in the legend.
    """
    width, height = _clamp_size(width, height)
    log_x = x == "lr"
    labels, xs, ys = [], [], []
    for i, curve in enumerate(curves):
        cx, cy = _points(curve.get(x), curve.get("y", curve.get("smoothed_loss")), log_x=log_x)
        labels.append(str(curve.get("label", f"curve {i + 1}")))
        xs.append(cx)
        ys.append(cy)
    legend = [
        _Entry(_series_marker(i, color), label, SERIES_COLORS[i % len(SERIES_COLORS)])
        for i, label in enumerate(labels)
    ]
    if not any(cx.size for cx in xs):
        return _empty_chart("no finite values to plot", width, height, color, title, legend)

    xlo, xhi = _data_range(xs)
    ylo, yhi = _y_limits([cy for cy in ys if cy.size], clip=log_x)
    with _chart(width, height, color, legend) as canvas:
        fig = canvas.fig
        _frame(fig, title, "learning rate" if log_x else x, None)
        if log_x:
            _set_log_x(fig, xlo, xhi, width)
        else:
            _set_linear_x(fig, xlo, xhi, width)
        fig.ruler("y").lim(ylo, yhi)
        for i, (cx, cy) in enumerate(zip(xs, ys, strict=True)):
            if cx.size:
                series_color = SERIES_COLORS[i % len(SERIES_COLORS)]
                _curve(fig, cx, cy, (ylo, yhi), series_color, _series_marker(i, color), color)
        return canvas.render()


def train_charts(
    step: Sequence[float],
    loss: Sequence[float],
    lr: Sequence[float],
    momentum: Sequence[float] | None,
    *,
    width: int = 80,
    height: int = 30,
    color: bool = True,
    cycle_starts: Sequence[float] = (),
) -> str:
    """Two charts stacked: training loss per step, then the lr (left axis) and momentum (right
    axis) schedules. ``momentum`` may be None or empty for optimizers without one.
    ``cycle_starts``: the first step of each cycle (train.json's cycles); with several, a
    dotted line named "cycle k" marks where each after the first begins."""
    width, height = _clamp_size(width, max(height, 10 + MIN_HEIGHT))
    # The loss gets the larger share: it is what the user watches; the schedule is a check,
    # but needs about 10 rows to show its shape under a title, ticks and a legend.
    schedule_height = max(10, height * 9 // 20)
    loss_height = height - schedule_height

    sx, sy = _points(step, loss, log_x=False)
    if sx.size:
        with _chart(width, loss_height, color, []) as canvas:
            fig = canvas.fig
            _frame(fig, "training loss", "step", "loss")
            xlim = _data_range([sx])
            _set_linear_x(fig, *xlim, width)
            ylim = _y_limits([sy])
            fig.ruler("y").lim(*ylim)
            _curve(fig, sx, sy, ylim, CURVE_COLOR, "hd", color)
            marks = _cycle_marks(cycle_starts, xlim)
            for mark in marks:
                _vline(fig, mark, *ylim, canvas.rows, color)
            _label_marks(fig, marks, xlim, ylim, width, canvas.rows, color)
            top = canvas.render()
    else:
        top = _empty_chart("no training loss to plot", width, loss_height, color, "training loss")

    lx, ly = _points(step, lr, log_x=False)
    mx, my = _points(step, momentum, log_x=False)
    legend = [_Entry("hd", "lr (left axis)", CURVE_COLOR)] if lx.size else []
    if mx.size:
        legend.append(_Entry(_series_marker(1, color), "momentum (right axis)", "orange+"))
    if lx.size or mx.size:
        with _chart(width, schedule_height, color, legend) as canvas:
            fig = canvas.fig
            _frame(fig, "schedule", "step", "lr" if lx.size else None)
            _set_linear_x(fig, *_data_range([lx, mx]), width)
            if lx.size:
                ylim = _y_limits([ly])
                fig.ruler("y").lim(*ylim)
                _curve(fig, lx, ly, ylim, CURVE_COLOR, "hd", color)
            if mx.size:
                ylim = _y_limits([my])
                fig.ruler("y", "right").lim(*ylim)
                fig.label("momentum", "y", "right")
                marker = _series_marker(1, color)
                _curve(fig, mx, my, ylim, "orange+", marker, color, yside="right")
            bottom = canvas.render()
    else:
        bottom = _empty_chart("no schedule to plot", width, schedule_height, color, "schedule")
    return top + "\n" + bottom


def _cycle_marks(starts: Sequence[float], xlim: tuple[float, float]) -> list[_Mark]:
    """A dotted line at the first step of every cycle after the first, inside the chart."""
    if len(starts) < 2:
        return []
    return [
        _Mark(f"cycle {k}", float(x), "gray", False, f"cycle {k}")
        for k, x in enumerate(starts, start=1)
        if k > 1 and xlim[0] <= x <= xlim[1]
    ]


def metric_vs_lr_chart(
    lrs: Sequence[float],
    values: Sequence[float],
    *,
    metric: str,
    best: float | None = None,
    width: int = 80,
    height: int = 20,
    color: bool = True,
) -> str:
    """A validation metric against candidate peak learning rates (log x), ``best`` marked with a
    heavy vertical line and a ``●`` on its point."""
    width, height = _clamp_size(width, height)
    x, y = _sorted(*_points(lrs, values, log_x=True))
    title = f"{metric} vs peak learning rate"
    if not x.size:
        return _empty_chart(f"no finite {metric} values to plot", width, height, color, title)
    xlo, xhi = _data_range([x])
    ylo, yhi = _y_limits([y])
    marks = []
    bx = _log_or_none(best)
    if _within(bx, xlo, xhi):
        marks.append(_Mark("best", bx, DEFAULT_COLOR, True, f"best {10**bx:.1e}"))
    legend = [_Entry("●", metric, CURVE_COLOR)] + [m.entry() for m in marks]

    with _chart(width, height, color, legend) as canvas:
        fig, rows = canvas.fig, canvas.rows
        _frame(fig, title, "peak learning rate", metric)
        xlim = _set_log_x(fig, xlo, xhi, width)
        fig.ruler("y").lim(ylo, yhi)
        # The default's heavy line last: another rule at the same rate (robust_minimum and
        # minimum agree whenever the sweep clearly learned) must not dot over it.
        for m in sorted(marks, key=lambda m: m.heavy):
            _vline(fig, m, ylo, yhi, rows, color)
        _curve(fig, x, y, (ylo, yhi), CURVE_COLOR, "hd", color)
        # Candidates are few and far apart: a dot on each shows where the measurements are.
        _dots(fig, x, y, (ylo, yhi), "●", CURVE_COLOR, color)
        for m in marks:
            _dots(fig, np.array([m.x]), np.interp([m.x], x, y), (ylo, yhi), "●", m.color, color)
        _label_marks(fig, marks, xlim, (ylo, yhi), width, rows, color)
        return canvas.render()


def round_one(candidates: Sequence[Mapping[str, Any]], metric: str) -> list[tuple[Any, Any]]:
    """(lr, metric) of every candidate that ran round 1, the round all of the first ones ran
    alike; a rate widening added has full-length rounds only, not comparable with these."""
    pairs = []
    for candidate in candidates:
        first = next((r for r in candidate.get("rounds") or [] if r.get("round") == 1), None)
        if first is not None:
            pairs.append((candidate.get("lr"), first.get(metric)))
    return pairs


def verify_chart(
    candidates: Sequence[Mapping[str, Any]],
    *,
    metric: str,
    best: float | None = None,
    width: int = 80,
    height: int = 20,
    color: bool = True,
) -> str:
    """verify.json's chart: every candidate's ``metric`` after the first round against its
    peak rate, the best rate marked (rates widening added ran full-length only: not shown)."""
    first = round_one(candidates, metric)
    return metric_vs_lr_chart(
        [lr for lr, _ in first],
        [value for _, value in first],
        metric=f"{metric} after round 1",
        best=best,
        width=width,
        height=height,
        color=color,
    )


def _plain(text: str) -> str:
    """Text matplotlib draws as written: between two `$` it would parse mathtext (a file
    named `budget_$5_vs_$10.json` failed to plot)."""
    return text.replace("$", r"\$")


def save_png(
    path: str | os.PathLike[str],
    curves: Sequence[Mapping[str, Any]],
    *,
    suggestions: Mapping[str, float | None] | None = None,
    x: str = "lr",
    title: str | None = None,
) -> None:
    """Write the curves (same dicts as compare_chart) to a PNG with matplotlib.

    ``x="lr"`` gives a log x axis and the same tail clipping as the terminal chart; suggestions
    inside the plotted range are dashed vertical lines named in the legend. The file is written
    to a temporary name in the same folder and moved into place, so a reader never sees half a
    PNG. Raises ImportError with the install hint when matplotlib is missing.
    """
    try:
        # The Figure class with its own Agg canvas: no pyplot, so no global figure or GUI backend.
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err

    log_x = x == "lr"
    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.subplots()
    plotted: list[np.ndarray] = []  # x of every curve drawn, log10 on the lr axis
    ys: list[np.ndarray] = []
    for i, curve in enumerate(curves):
        cx, cy = _points(curve.get(x), curve.get("y", curve.get("smoothed_loss")), log_x=log_x)
        if cx.size:
            label = _plain(str(curve.get("label", f"curve {i + 1}")))
            ax.plot(10**cx if log_x else cx, cy, label=label)
            plotted.append(cx)
            ys.append(cy)
    if ys:
        ax.set_ylim(*_y_limits(ys, clip=log_x))
        # Suggestions are learning rates: they only have a place on the lr axis.
        marks = _finite_suggestions(suggestions or {}, *_data_range(plotted)) if log_x else []
        for name, value in marks:
            lr = 10**value
            label = _plain(f"{name} {lr:.1e}")
            ax.axvline(lr, linestyle="--", linewidth=1, color="0.3", label=label)
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("learning rate" if log_x else x)
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(_plain(title))
    fig.tight_layout()

    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        from .history import publish

        publish(tmp, target)  # mkstemp's 0600 would hide the PNG from everyone else
    except BaseException:
        # Leave nothing half-written behind, whatever went wrong (including Ctrl-C).
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- data helpers ------------------------------------------------------------------------------


def _as_array(values: Any) -> np.ndarray:
    """Values as a flat float array; None or anything non-numeric becomes empty."""
    if values is None:
        return np.empty(0)
    try:
        return np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return np.empty(0)


def _points(x: Any, y: Any, *, log_x: bool) -> tuple[np.ndarray, np.ndarray]:
    """Paired finite points, x as log10 when ``log_x`` (non-positive x dropped then)."""
    xs, ys = _as_array(x), _as_array(y)
    n = min(xs.size, ys.size)  # histories cut short by an early stop may differ in length
    xs, ys = xs[:n], ys[:n]
    # Beyond HUGE is no real loss or rate, only a run that blew up; treating it like inf keeps
    # the range arithmetic (max - min, padding) from overflowing.
    keep = (np.abs(xs) < HUGE) & (np.abs(ys) < HUGE)
    if log_x:
        keep &= xs > 0
    xs, ys = xs[keep], ys[keep]
    return (np.log10(xs) if log_x else xs), ys


def _sorted(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


def _log_or_none(value: Any) -> float | None:
    """log10 of a usable learning rate; None for None, NaN, inf, zero, negative or non-numbers."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return math.log10(value)


def _finite_suggestions(
    suggestions: Mapping[str, float | None], lo: float, hi: float
) -> Iterator[tuple[str, float]]:
    """(name, log10 lr) of each suggestion inside [lo, hi] (log10 units); others are skipped."""
    for name, value in suggestions.items():
        lx = _log_or_none(value)
        if _within(lx, lo, hi):
            yield str(name), lx


def _within(lx: float | None, lo: float, hi: float) -> bool:
    # A hair of tolerance: a suggestion is often exactly the first or last swept rate, and
    # math.log10 and np.log10 may disagree in the last bit.
    return lx is not None and lo - 1e-9 <= lx <= hi + 1e-9


def _data_range(arrays: Sequence[np.ndarray]) -> tuple[float, float]:
    values = np.concatenate([a for a in arrays if a.size]) if any(a.size for a in arrays) else None
    if values is None:
        return 0.0, 1.0
    return float(values.min()), float(values.max())


def _clip_top(y: np.ndarray) -> float:
    """Highest loss worth showing on a loss-vs-lr curve.

    A range test ends by blowing up: the last few points can be 10x the starting loss, which
    would squash the interesting descent into a couple of rows. So when the curve first dips
    below its start and only later reaches its maximum (the loss shape), the top is capped at
    the starting loss plus half the dip (at least 10% of the start), i.e. the descent fills
    about two thirds of the height and the tail runs off the top. A curve that never dips, or
    peaks before its minimum (an accuracy collapsing at high lr), is not clipped.
    """
    start, low, high = float(y[0]), float(y.min()), float(y.max())
    drop = start - low
    if drop <= 0 or int(np.argmax(y)) <= int(np.argmin(y)):
        return high
    return min(high, start + max(TAIL_HEADROOM * drop, 0.1 * abs(start)))


def _y_limits(
    curves: Sequence[np.ndarray], *, extra: Sequence[np.ndarray] = (), clip: bool = False
) -> tuple[float, float]:
    """y range covering ``curves`` and ``extra`` (raw loss, band edges), the top clipped by
    _clip_top of each curve when ``clip``, with a little padding so lines don't sit on the
    frame. A flat or single-valued curve gets a band around its value."""
    curves = [c for c in curves if c.size]
    everything = [a for a in [*curves, *extra] if a.size]
    if not everything:
        return 0.0, 1.0
    values = np.concatenate(everything)
    lo, hi = float(values.min()), float(values.max())
    if clip and curves:
        hi = min(hi, max(_clip_top(c) for c in curves))
    span = hi - lo
    if span <= 1e-12 * max(1.0, abs(hi)):
        pad = max(0.05 * abs(hi), 0.05)
    else:
        pad = 0.04 * span
    # Losses and learning rates are never negative: don't let padding invent a "-0.1" tick.
    bottom = max(lo - pad, 0.0) if lo >= 0 else lo - pad
    return bottom, hi + pad


def _median_band(
    xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], present: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median, min and max of the curves on a common log-lr grid.

    Each curve is interpolated linearly in log10(lr) and counts only inside its own swept
    range (runs that stopped early don't drag the tail), so near the ends fewer curves vote.
    """
    lo, hi = _data_range(xs)
    points = max(max(x.size for x in xs), 2)
    grid = np.linspace(lo, hi, min(points, 400)) if hi > lo else np.array([lo])
    stack = np.full((len(xs), grid.size), np.nan)
    for row, (x, y, ok) in enumerate(zip(xs, ys, present, strict=True)):
        if ok:
            sx, sy = _sorted(x, y)
            inside = (grid >= sx[0] - 1e-12) & (grid <= sx[-1] + 1e-12)
            stack[row, inside] = np.interp(grid[inside], sx, sy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # grid points no curve covers
        median = np.nanmedian(stack, axis=0)
        low, high = np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
    keep = np.isfinite(median)
    return grid[keep], median[keep], low[keep], high[keep]


# --- plotext helpers -------------------------------------------------------------------------


class _Entry:
    """One legend item: a marker symbol ("hd" for a curve), its text and color."""

    def __init__(self, symbol: str, text: str, color: str, bold: bool = False) -> None:
        self.symbol = "▚" if symbol == "hd" else symbol
        self.text, self.color, self.bold = text, color, bold


class _Mark:
    """A vertical line at log10 lr ``x``: heavy for the default pick, dotted otherwise."""

    def __init__(self, name: str, x: float, color: str, heavy: bool, legend: str) -> None:
        self.name, self.x, self.color, self.heavy, self.legend = name, x, color, heavy, legend

    def entry(self) -> _Entry:
        return _Entry("┃" if self.heavy else "┊", self.legend, self.color, bold=self.heavy)


def _clamp_size(width: int, height: int) -> tuple[int, int]:
    return max(int(width), MIN_WIDTH), max(int(height), MIN_HEIGHT)


def _pixel(color_name: str | None, color: bool, bold: bool = False) -> Any:
    if not color:
        return plotext.pixel()
    return plotext.pixel(foreground=color_name, style="bold" if bold else None)


def _marker(symbol: str, color_name: str, color: bool) -> Any:
    return plotext.marker(symbol, _pixel(color_name, color))


def _series_marker(i: int, color: bool) -> str:
    # With color, every curve uses the fine "hd" blocks; without, the marker tells them apart.
    return "hd" if color else SERIES_MARKERS[i % len(SERIES_MARKERS)]


def _curve(
    fig: Any,
    x: np.ndarray,
    y: np.ndarray,
    ylim: tuple[float, float],
    color_name: str,
    symbol: str,
    color: bool,
    yside: str = "left",
) -> None:
    """A connected line, cut where it leaves ``ylim`` (see _clip_runs).

    Drawn with plotext's default "simple" line density. Never density("full"): in plotext 6.1
    it aborts the whole process (a C++ assertion) when a segment leaves the y limits.
    """
    marker = _marker(symbol, color_name, color)
    for run_x, run_y in _clip_runs(x, y, *ylim):
        fig.draw(fig.signal(run_x, run_y, marker=marker, yside=yside).lines(True))


def _dots(
    fig: Any,
    x: np.ndarray,
    y: np.ndarray,
    ylim: tuple[float, float],
    symbol: str,
    color_name: str,
    color: bool,
) -> None:
    """Unconnected points; those outside ``ylim`` are left out rather than handed to plotext."""
    inside = (y >= ylim[0]) & (y <= ylim[1])
    if inside.any():
        signal = fig.signal(x[inside], y[inside], marker=_marker(symbol, color_name, color))
        fig.draw(signal.lines(False))


def _clip_runs(
    x: np.ndarray, y: np.ndarray, lo: float, hi: float
) -> list[tuple[list[float], list[float]]]:
    """The parts of the polyline (x, y) inside lo <= y <= hi, cut exactly at the limits.

    plotext walks a segment cell by cell even where it runs off the canvas, so a single point
    far above the limits (a loss of 1e20 at the end of a range test) makes it allocate without
    end and abort the process with std::bad_alloc. Handing it only the visible pieces avoids
    that; where a segment leaves the range the run ends on the frame, as a clipped line should.
    """
    if x.size == 1:
        return [([float(x[0])], [float(y[0])])] if lo <= y[0] <= hi else []
    runs: list[tuple[list[float], list[float]]] = []
    open_run = False  # does the last run end at the previous point, still inside the range?
    for x0, y0, x1, y1 in zip(x[:-1], y[:-1], x[1:], y[1:], strict=True):
        # 1) the stretch t0..t1 of the segment (t from 0 at point 0 to 1 at point 1) in range
        dy = y1 - y0
        if dy == 0:
            if not lo <= y0 <= hi:
                open_run = False
                continue
            t0, t1 = 0.0, 1.0
        else:
            ta, tb = (lo - y0) / dy, (hi - y0) / dy
            t0, t1 = max(0.0, min(ta, tb)), min(1.0, max(ta, tb))
            if t0 > t1:
                open_run = False
                continue
        # 2) its end points, pinned inside the limits against rounding
        ends = [(float(x0 + t * (x1 - x0)), float(min(max(y0 + t * dy, lo), hi))) for t in (t0, t1)]
        # 3) extend the current run when the segment starts where it stopped, else start one
        if open_run and t0 == 0.0:
            runs[-1][0].append(ends[1][0])
            runs[-1][1].append(ends[1][1])
        else:
            runs.append(([ends[0][0], ends[1][0]], [ends[0][1], ends[1][1]]))
        open_run = t1 == 1.0
    return runs


def _vline(fig: Any, mark: _Mark, ylo: float, yhi: float, rows: int, color: bool) -> None:
    # A column of points with a line glyph rather than fig.line(), which paints a white
    # background behind the line whatever pixel it is given (glaring on dark terminals);
    # two points per row leave no gaps, which a two-point segment would.
    style = "heavy" if mark.heavy else "dotted"
    glyph = plotext.line(1, _pixel(mark.color, color, bold=mark.heavy), style)
    ys = np.linspace(ylo, yhi, 2 * rows + 1)
    fig.draw(fig.signal(np.full(ys.size, mark.x), ys, marker=glyph))


def _label_marks(
    fig: Any,
    marks: Sequence[_Mark],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    width: int,
    rows: int,
    color: bool,
) -> None:
    """Write each mark's name beside the top of its line, one row lower per mark so names of
    nearby marks don't overwrite each other; names right of 70% of the width go to the left
    of their line so they stay inside the frame."""
    if not marks:
        return
    # Data units per character, from the canvas size (width less y ticks and frame, roughly).
    char_x = (xlim[1] - xlim[0]) / max(width - 10, 1)
    row_y = (ylim[1] - ylim[0]) / max(rows - 1, 1)
    for i, mark in enumerate(marks):
        right_side = (mark.x - xlim[0]) / (xlim[1] - xlim[0]) > 0.7
        tx = mark.x - 2 * char_x if right_side else mark.x + 2 * char_x
        ty = ylim[1] - (i % max(rows - 1, 1)) * row_y
        text = plotext.colorize(mark.name, _pixel(mark.color, color, bold=mark.heavy))
        fig.draw(fig.text(tx, ty, text, alignment="right" if right_side else "left"))


def _set_log_x(fig: Any, lo: float, hi: float, width: int) -> tuple[float, float]:
    """x limits (log10 units, padded when the data has a single lr) and decade tick labels."""
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    positions, labels = _log_ticks(lo, hi, max_ticks=max(2, (width - 10) // 7))
    ruler = fig.ruler("x")
    ruler.lim(lo, hi)
    ruler.ticks(positions, labels)
    return lo, hi


def _log_ticks(lo: float, hi: float, max_ticks: int) -> tuple[list[float], list[str]]:
    """Tick positions (log10) and labels like "1e-04": decades, thinned to fit ``max_ticks``;
    for a narrow range, 1-2-5 or 1..9 multiples so there are at least three ticks."""
    eps = 1e-9
    first, last = math.floor(lo + eps), math.ceil(hi - eps)
    decades = [d for d in range(first, last + 1) if lo - eps <= d <= hi + eps]
    if len(decades) >= 3:
        step = math.ceil(len(decades) / max_ticks)
        chosen = [d for d in decades if d % step == 0] or decades[::step]
        return [float(d) for d in chosen], [f"1e{d:+03d}" for d in chosen]
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):
        ticks = [
            d + math.log10(m)
            for d in range(first - 1, last + 1)
            for m in mantissas
            if lo - eps <= d + math.log10(m) <= hi + eps
        ]
        if 3 <= len(ticks) <= max_ticks:
            return ticks, [f"{10**t:.0e}" for t in ticks]
    if len(decades) == 2:
        return [float(d) for d in decades], [f"1e{d:+03d}" for d in decades]
    # Less than a factor of ~1.5 between ends: plain values, enough digits to differ.
    ticks = [lo, (lo + hi) / 2, hi]
    return ticks, [f"{10**t:.2e}" for t in ticks]


def _set_linear_x(fig: Any, lo: float, hi: float, width: int) -> None:
    """Linear x limits with round ticks (1-2-5 steps); whole numbers written without decimals,
    which suits step counts."""
    if hi - lo <= 1e-9 * max(1.0, abs(lo)):  # a single step: widen so it sits mid-chart
        pad = max(1.0, 0.05 * abs(lo))
        lo, hi = lo - pad, hi + pad
    max_ticks = max(2, (width - 10) // 10)
    raw_step = (hi - lo) / (max_ticks - 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    first = math.ceil(lo / step)
    ticks = [(first + k) * step for k in range(max_ticks + 1) if (first + k) * step <= hi]
    labels = [f"{t:.0f}" if float(t).is_integer() and abs(t) < 1e6 else f"{t:.3g}" for t in ticks]
    ruler = fig.ruler("x")
    ruler.lim(lo, hi)
    ruler.ticks(ticks, labels)


def _frame(fig: Any, title: str | None, xlabel: str | None, ylabel: str | None) -> None:
    if title:
        fig.title(title)
    if xlabel:
        fig.label(xlabel, "x")
    if ylabel:
        fig.label(ylabel, "y")


class _Canvas:
    """The cleared plotext figure of one chart, and the legend footer that goes under it."""

    def __init__(self, fig: Any, width: int, rows: int, footer: list[str], color: bool) -> None:
        self.fig, self.width, self.rows, self.footer, self.color = fig, width, rows, footer, color

    def render(self) -> str:
        """Build the figure and append the footer: exactly the size asked of _chart."""
        text = self.fig.build().string(colorless=not self.color)
        body = text.rstrip("\n").split("\n")
        if not self.color:
            body = [line[: self.width].ljust(self.width) for line in body]
        return "\n".join(body + self.footer)


@contextmanager
def _chart(width: int, height: int, color: bool, legend: Sequence[_Entry]) -> Iterator[_Canvas]:
    """The global plotext figure, cleared and sized to leave room for the legend footer; it is
    cleared again on the way out so the next chart starts from nothing."""
    footer = _legend_lines(legend, width, color, max_lines=max(height - MIN_HEIGHT, 0))
    plot_height = height - len(footer)
    terminal = plotext.terminal
    # plotext shrinks the master figure to the terminal size by default (24 rows in a pipe or
    # under pytest); the caller asked for a size, so lift the limit while drawing.
    saved_limit = list(getattr(terminal, "_limit", (True, True)))
    fig = plotext.figure
    fig.clear()
    terminal.limit(False, False)
    try:
        fig.plot_size(width, plot_height)
        # "simple": a plain frame and no background, so the chart sits on the terminal's own
        # colors; "colorless": no color codes at all.
        fig.theme("simple" if color else "colorless")
        # Canvas rows, roughly: the plot less frame (2), tick labels (1) and axis labels (1).
        yield _Canvas(fig, width, max(plot_height - 4, 1), footer, color)
    finally:
        fig.clear()
        terminal.limit(*saved_limit)


def _legend_lines(legend: Sequence[_Entry], width: int, color: bool, max_lines: int) -> list[str]:
    """Legend entries laid out left to right, wrapped at ``width``, each line padded to it."""
    if not legend or max_lines <= 0:
        return []
    lines: list[list[tuple[str, str]]] = [[]]  # per line: (plain text, rendered text) pieces
    used = 0
    for entry in legend:
        plain = f"{entry.symbol} {entry.text}"
        if len(plain) > width - 2:
            plain = plain[: width - 3] + "…"
        gap = "   " if lines[-1] else " "
        if lines[-1] and used + len(gap) + len(plain) > width:
            lines.append([])
            gap, used = " ", 0
        rendered = plain
        if color:
            symbol = plotext.colorize(entry.symbol, _pixel(entry.color, True)).string()
            text = plain[len(entry.symbol) :]
            if entry.bold:
                text = plotext.colorize(text, plotext.pixel(style="bold")).string()
            rendered = symbol + text
        lines[-1].append((gap + plain, gap + rendered))
        used += len(gap) + len(plain)
    out = []
    for pieces in lines[:max_lines]:
        plain = "".join(p for p, _ in pieces)
        rendered = "".join(r for _, r in pieces)
        out.append(rendered + " " * (width - len(plain)))
    return out


def _empty_chart(
    message: str,
    width: int,
    height: int,
    color: bool,
    title: str | None,
    legend: Sequence[_Entry] = (),
) -> str:
    """An empty frame with ``message`` in the middle, the same size as a real chart."""
    with _chart(width, height, color, legend) as canvas:
        fig = canvas.fig
        _frame(fig, title, None, None)
        fig.ruler("x").lim(0, 1)
        fig.ruler("y").lim(0, 1)
        fig.ruler("x").ticks([])
        fig.ruler("y").ticks([])
        fig.draw(fig.text(0.5, 0.5, message, alignment="center"))
        return canvas.render()
