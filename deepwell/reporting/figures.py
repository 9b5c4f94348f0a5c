"""Figures of a run, drawn from its files alone: learning curves, layer health, activation histograms.

Each ``*_figure`` function takes plain data (metrics rows, a :class:`ProbeLog`) and returns a
matplotlib :class:`~matplotlib.figure.Figure`, or None when the run has nothing to draw.
:func:`png_data_uri` turns a figure into a ``data:image/png;base64,...`` URI so the HTML report
embeds it and stays one self-contained file.

Figures are built with the object API (``Figure`` + the Agg canvas), never ``pyplot``, so
drawing a report holds no global state and needs no display.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: reports are written on servers and in tests

from matplotlib import colormaps  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from deepwell.diagnostics.probes import ProbeLog  # noqa: E402

__all__ = ["learning_curves_figure", "layer_health_figure", "histograms_figure", "png_data_uri", "layer_label",
           "MAX_LEGEND_LAYERS", "MAX_HISTOGRAM_LAYERS"]

MAX_LEGEND_LAYERS = 10     # more layers than this: a colour bar (depth) replaces the legend
MAX_HISTOGRAM_LAYERS = 8   # more layers than this: show evenly spaced ones, first and last included
MAX_EPOCH_LINES = 30       # more epochs than this: no epoch-boundary lines (they would grey the plot)
DPI = 110

_STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
          "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}
_CURVES = {  # metric key -> (label, colour, line style)
    "train/loss": ("train, as trained (dropout etc. on)", "#9ecae1", "--"),
    "train/loss_clean": ("train, clean (eval mode)", "#1f77b4", "-"),
    "train/acc_clean": ("train, clean (eval mode)", "#1f77b4", "-"),
    "val/loss": ("validation", "#ff7f0e", "-"),
    "val/acc": ("validation", "#ff7f0e", "-"),
}


def png_data_uri(figure: Figure) -> str:
    """The figure as a base64 PNG ``data:`` URI (no metadata, so no links inside the file)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def layer_label(index: int, name: str) -> str:
    """'layer 1 (dense.0)': depth first, for readers who don't know the module names."""
    return f"layer {index + 1} ({name})"


def _new_figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(width, height), layout="constrained")
    return figure


def _styled(figure: Figure, rows: int, cols: int, **kwargs: Any) -> Any:
    with matplotlib.rc_context(_STYLE):
        return figure.subplots(rows, cols, squeeze=False, **kwargs)


def _values(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


# --- learning curves ----------------------------------------------------------------------------
def learning_curves_figure(history: Sequence[dict[str, Any]], test: dict[str, float] | None = None) -> Figure | None:
    """Loss (and accuracy, for classification) per epoch: train as trained, train clean, validation.

    Args:
        history: metrics.jsonl rows (``epoch``, ``train/loss``, ``train/loss_clean``, ``val/acc`` ...).
        test: summary.json's ``test`` dict; drawn as a dotted reference line when given.
    """
    if not history:
        return None
    panels = [("loss", "Loss (lower is better)", ["train/loss", "train/loss_clean", "val/loss"])]
    if any("train/acc_clean" in row or "val/acc" in row for row in history):
        panels.append(("acc", "Accuracy (higher is better)", ["train/acc_clean", "val/acc"]))
    figure = _new_figure(4.6 * len(panels) + 0.4, 3.4)
    axes = _styled(figure, 1, len(panels))[0]
    markers = "o" if len(history) <= 30 else None
    with matplotlib.rc_context(_STYLE):
        for ax, (metric, title, keys) in zip(axes, panels):
            for key in keys:
                points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
                if points:
                    label, colour, style = _CURVES[key]
                    ax.plot(*zip(*points), style, color=colour, marker=markers, markersize=3, label=label)
            value = (test or {}).get(f"test/{metric}")
            if value is not None and math.isfinite(value):
                ax.axhline(value, color="#2ca02c", linestyle=":", linewidth=1.5, label=f"test, final model ({value:.3g})")
            if metric == "acc":
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
            ax.set(title=title, xlabel="epoch", ylabel=metric if metric == "loss" else "accuracy")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.legend(loc="best", frameon=False)
    return figure


# --- layer health -------------------------------------------------------------------------------
_HEALTH = [  # quantity, title, y label, log scale
    ("grad_norm", "Gradient norm of each layer's weights", "‖∂loss/∂W‖ (log scale)", True),
    ("act_std", "Activation spread (std)", "std of activations", False),
    ("dead", "Dead ReLU units (probe batch)", "fraction of units", False),
    ("saturated", "Saturated sigmoid/tanh units", "fraction of activations", False),
]


def _layer_colours(count: int) -> list[Any]:
    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(count - 1, 1)) for i in range(count)]  # stop before viridis' pale yellow


def layer_health_figure(probes: ProbeLog) -> Figure | None:
    """Per-layer gradient norms (log scale), activation std, dead and saturated fractions over training steps."""
    if not probes.samples or not probes.layers:
        return None
    layers = probes.layers
    colours = _layer_colours(len(layers))
    figure = _new_figure(9.6, 6.4)
    axes = _styled(figure, 2, 2).ravel()
    epoch_ends = [row["step"] for row in probes.epochs][:-1] if len(probes.epochs) <= MAX_EPOCH_LINES else []
    with matplotlib.rc_context(_STYLE):
        for ax, (quantity, title, ylabel, log) in zip(axes, _HEALTH):
            everything: list[float] = []
            for index, (name, colour) in enumerate(zip(layers, colours)):
                steps, values = probes.series(quantity, index)
                values = _values(values)
                if log:
                    values = [v if v > 0 else math.nan for v in values]
                everything += [v for v in values if not math.isnan(v)]
                ax.plot(steps, values, color=colour, marker="o" if len(steps) <= 30 else None, markersize=3,
                        linewidth=1.4, label=layer_label(index, name))
            for step in epoch_ends:
                ax.axvline(step, color="0.6", linewidth=0.6, linestyle=":", zorder=0)
            if log and everything:
                ax.set_yscale("log")
            if not log:
                ax.set_ylim(bottom=0)
            if quantity in ("dead", "saturated"):
                ax.set_ylim(0, 1.02)
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
                if everything and max(everything) == 0:
                    ax.text(0.5, 0.5, "0% in every layer throughout", transform=ax.transAxes, ha="center",
                            va="center", color="0.35")
            ax.set(title=title, xlabel="training step", ylabel=ylabel)
        _layer_key(figure, axes, colours)
    return figure


def _layer_key(figure: Figure, axes: Sequence[Axes], colours: list[Any]) -> None:
    """A legend for few layers; a depth colour bar for many."""
    if len(colours) <= MAX_LEGEND_LAYERS:
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), frameon=False)
        return
    norm = matplotlib.colors.Normalize(1, len(colours))
    cmap = matplotlib.colors.ListedColormap(colours)
    bar = figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), location="right", shrink=0.8)
    bar.set_label("layer depth (1 = nearest the input)")


# --- activation histograms ----------------------------------------------------------------------
def _histogram_samples(probes: ProbeLog) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The sample with histograms at initialisation and the latest trained one (None where absent)."""
    with_hist = [s for s in probes.samples if s.get("hist")]
    initial = next((s for s in with_hist if s["epoch"] == -1), None)
    trained = [s for s in with_hist if s["epoch"] >= 0]
    return initial, (trained[-1] if trained else None)


def _shown_layers(count: int) -> list[int]:
    if count <= MAX_HISTOGRAM_LAYERS:
        return list(range(count))
    return sorted({round(i * (count - 1) / (MAX_HISTOGRAM_LAYERS - 1)) for i in range(MAX_HISTOGRAM_LAYERS)})


def _density(edges: Sequence[float], counts: Sequence[float]) -> list[float]:
    total = sum(counts) or 1.0
    return [c / (total * max(b - a, 1e-30)) for a, b, c in zip(edges[:-1], edges[1:], counts)]


def histograms_figure(probes: ProbeLog) -> tuple[Figure | None, int | None]:
    """Activation distributions per layer at initialisation and at the last epoch that has them.

    Returns:
        (figure, that epoch counted from 1) — (None, None) when no sample holds histograms.
    """
    initial, trained = _histogram_samples(probes)
    if initial is None and trained is None:
        return None, None
    layers = probes.layers
    shown = _shown_layers(len(layers))
    cols = min(len(shown), 4)
    rows = math.ceil(len(shown) / cols)
    figure = _new_figure(2.5 * cols + 0.6, 2.2 * rows + 0.5)
    axes = _styled(figure, rows, cols).ravel()
    epoch = trained["epoch"] + 1 if trained is not None else None
    late = f"epoch {epoch} (step {trained['step']})" if trained is not None else ""
    series = [(initial, "at initialisation", "0.55", True), (trained, late, "#d62728", False)]
    with matplotlib.rc_context(_STYLE):
        for ax, index in zip(axes, shown):
            for sample, label, colour, filled in series:
                if sample is None:
                    continue
                edges, counts = sample["hist"]["edges"][index], sample["hist"]["counts"][index]
                ax.stairs(_density(edges, counts), edges, fill=filled, color=colour, alpha=0.45 if filled else 1.0,
                          linewidth=1.4, label=label)
            ax.set_title(layer_label(index, layers[index]))
            ax.set_yticks([])
            ax.set_xlabel("activation value")
        for ax in axes[len(shown):]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    return figure, epoch
