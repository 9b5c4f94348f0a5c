"""One figure style for studies and reports: constrained layout, tick locators that cannot collide,
and a check that no two pieces of text overlap.

:func:`new_figure` makes a Figure on an Agg canvas (no pyplot, no global state) inside the style's
rc parameters; :func:`tidy` (called by every save) replaces each numeric axis' locator by one that
sizes the number of ticks to the axis (``MaxNLocator("auto")``, ``LogLocator(numticks="auto")``)
and hides minor-tick labels on log axes, which is where labels used to collide (the "2x10^3 3x10^3"
clutter). :func:`overlapping_text` draws the figure and returns every pair of visible text artists
whose window extents overlap, and any text that sticks out of the figure; and
:func:`legends_over_data` every legend drawn over its axes' data points; with
``DEEPWELL_STRICT_FIGURES=1`` (the test suite sets it) :func:`check_figure` raises on them, so
every figure a test renders is checked.

Example::

    figure, axes = new_figure(6, 3)
    axes[0][0].plot([1, 10, 100], [3, 2, 1])
    tidy(figure)
    overlapping_text(figure)     # []
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib
import numpy as np
import matplotlib.ticker as ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = ["STYLE", "COLORS", "new_figure", "tidy", "legend_outside", "overlapping_text", "legends_over_data", "check_figure",
           "FigureLayoutError"]

STYLE: dict[str, Any] = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.titlelocation": "center", "figure.dpi": 110}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
STRICT_ENV = "DEEPWELL_STRICT_FIGURES"
TOLERANCE_PX = 1.0   # extents touching by a pixel (antialiasing) are not an overlap


class FigureLayoutError(AssertionError):
    """A figure has overlapping or cut-off text, or a legend over its data."""


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A constrained-layout Figure on an Agg canvas, in the style, and its axes (always 2-D: ``axes[row][col]``)."""
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(rows, cols, squeeze=False, **kwargs)
    return figure, axes


def tidy(figure: Figure) -> Figure:
    """Make ``figure`` read: every numeric axis with matplotlib's default locator gets one sized to its length
    (chosen ticks are kept), and a legend drawn over its axes' data moves to the corner matplotlib finds least
    covered (``loc="best"``) or, when that is covered too, outside, to the axes' right."""
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            locator = axis.get_major_locator()
            if axis.get_scale() == "log" and type(locator) is ticker.LogLocator:
                axis.set_major_locator(ticker.LogLocator(base=locator._base, numticks="auto"))
                axis.set_minor_formatter(ticker.NullFormatter())
            elif axis.get_scale() == "linear" and type(locator) is ticker.AutoLocator:
                axis.set_major_locator(ticker.MaxNLocator("auto", steps=[1, 2, 2.5, 5, 10]))
    # A legend over the data moves to matplotlib's least-covered corner, else outside. Moving one outside makes
    # constrained layout resize every panel, which can put another legend over its data: look again, at most 3 times.
    # The legend itself moves (set_loc), so its entries and every setting of its author stay.
    tried: dict[Axes, str] = {}
    for _ in range(3):
        legended = [ax for ax in figure.axes if ax.get_legend() is not None and tried.get(ax) != "outside"]
        if not legended:
            break
        _draw(figure)
        covered = [ax for ax in legended if _covered(ax, figure.canvas.get_renderer())]
        if not covered:
            break
        for ax in covered:
            legend = ax.get_legend()
            if ax not in tried and legend._loc != 0:   # 0: matplotlib's code for "best", which is where it already is
                legend.set_loc("best")
                tried[ax] = "best"
            else:
                _place_outside(legend)
                tried[ax] = "outside"
    return figure


def _draw(figure: Figure) -> None:
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """The axes' legend to its right, outside the data (constrained layout makes room)."""
    _place_outside(ax.legend(**kwargs))


def _place_outside(legend: Any) -> None:
    legend.set_loc("upper left")
    legend.set_bbox_to_anchor((1.01, 1.0))
    legend.borderaxespad = 0.0


def _texts(figure: Figure) -> list[Text]:
    """Every text artist that is drawn: titles, labels, the tick labels of drawn ticks, legends, annotations."""
    texts: list[Text] = [*figure.texts, *([figure._suptitle] if figure._suptitle else [])]
    for legend in figure.legends:
        texts += [*legend.get_texts(), legend.get_title()]
    for ax in figure.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.name == "3d":   # mplot3d places its tick labels while drawing, not where _update_ticks says
            continue
        for axis in (ax.xaxis, ax.yaxis):
            texts += [axis.label, axis.offsetText]
            for tick in axis._update_ticks():   # the ticks actually drawn (in view), not every tick object
                texts += [tick.label1, tick.label2]
        if ax.get_legend() is not None:
            texts += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
    unique = {id(t): t for t in texts if t is not None}.values()   # the suptitle is also among figure.texts
    return [t for t in unique if t.get_visible() and t.get_text().strip()]


def overlapping_text(figure: Figure) -> list[str]:
    """Draw ``figure`` and describe every overlapping pair of texts and every text outside the figure."""
    _draw(figure)
    renderer = figure.canvas.get_renderer()
    extents = [(t, t.get_window_extent(renderer)) for t in _texts(figure)]
    frame = figure.bbox
    problems = []
    for i, (text, box) in enumerate(extents):
        shrunk = box.padded(-TOLERANCE_PX)
        if box.x0 < frame.x0 - TOLERANCE_PX or box.x1 > frame.x1 + TOLERANCE_PX or box.y0 < frame.y0 - TOLERANCE_PX \
                or box.y1 > frame.y1 + TOLERANCE_PX:
            problems.append(f"'{text.get_text()}' sticks out of the figure")
        for other, other_box in extents[i + 1:]:
            if shrunk.overlaps(other_box.padded(-TOLERANCE_PX)):
                problems.append(f"'{text.get_text()}' overlaps '{other.get_text()}'")
    return problems


def _data_points(ax: Axes) -> np.ndarray:
    """Display coordinates of the axes' data: line vertices and scatter offsets inside the axes' box."""
    points = [line.get_transform().transform(line.get_xydata()) for line in ax.get_lines()
              if line.get_visible() and len(line.get_xydata())]
    points += [c.get_offset_transform().transform(c.get_offsets()) for c in ax.collections
               if c.get_visible() and len(c.get_offsets())]
    if not points:
        return np.empty((0, 2))
    xy = np.concatenate(points)
    box = ax.bbox
    inside = np.isfinite(xy).all(1) & (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)
    return xy[inside]


def legends_over_data(figure: Figure) -> list[str]:
    """Describe every axes legend drawn over that axes' data (a line vertex or a scatter point under its box).

    ``figure`` must have been drawn (:func:`overlapping_text` draws it). A legend outside the axes
    (:func:`legend_outside`) or over empty space passes."""
    renderer = figure.canvas.get_renderer()
    return [f"the legend of '{ax.get_title() or ax.get_ylabel() or 'an axes'}' covers {covered} data point(s)"
            for ax in figure.axes if (covered := _covered(ax, renderer))]


def _covered(ax: Axes, renderer: Any) -> int:
    """How many of the axes' data points its legend's box covers (0 without a visible legend)."""
    legend = ax.get_legend()
    if legend is None or not legend.get_visible() or not ax.get_visible():
        return 0
    box = legend.get_window_extent(renderer).padded(-TOLERANCE_PX)
    xy = _data_points(ax)
    return int(((xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) & (xy[:, 1] < box.y1)).sum())


def check_figure(figure: Figure, name: str = "figure") -> None:
    """Raise :class:`FigureLayoutError` on overlapping text or a legend over data when ``DEEPWELL_STRICT_FIGURES``
    is set (tests set it)."""
    if os.environ.get(STRICT_ENV, "") in ("", "0"):
        return
    problems = overlapping_text(figure) + legends_over_data(figure)
    if problems:
        raise FigureLayoutError(f"{name}: {len(problems)} text problem(s): " + "; ".join(problems[:8]))
