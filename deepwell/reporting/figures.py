"""Figures of a run, drawn from its files alone: learning curves, layer health, activation histograms.

Each ``*_figure`` function takes plain data (metrics rows, a :class:`ProbeLog`) and returns a
matplotlib :class:`~matplotlib.figure.Figure`, or None when the run has nothing to draw.
:func:`png_data_uri` turns a figure into a ``data:image/png;base64,...`` URI so the HTML report
embeds it and stays one self-contained file.

Figures are built with the object API (``Figure`` drawn by the Agg canvas), never ``pyplot`` and
without ``matplotlib.use``: drawing a report needs no display and leaves the caller's backend
(a notebook's, say) and global state alone.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.cm
import matplotlib.colors
import matplotlib.ticker
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deepwell.diagnostics.probe_log import ProbeLog
from deepwell.reporting.style import check_figure, tidy

__all__ = ["learning_curves_figure", "layer_health_figure", "histograms_figure", "png_data_uri", "image_file_uri", "layer_label",
           "applies", "MAX_LEGEND_LAYERS", "MAX_HISTOGRAM_LAYERS"]

MAX_LEGEND_LAYERS = 10     # more layers than this: a colour bar (depth) replaces the legend
MAX_HISTOGRAM_LAYERS = 8   # more layers than this: show evenly spaced ones, first and last included
SPIKE_RATIO = 3.0          # a first histogram bin this many times the tallest other bin is cut off (ReLU zeros)
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
    "train/r2_clean": ("train, clean (eval mode)", "#1f77b4", "-"),
    "val/r2": ("validation", "#ff7f0e", "-"),
}


def png_data_uri(figure: Figure) -> str:
    """The figure as a base64 PNG ``data:`` URI (no metadata, so no links inside the file)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    tidy(figure)           # the one style: ticks sized to the axes, legends clear of the data
    check_figure(figure)   # and its check (strict in tests)
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_file_uri(path: Any) -> str | None:
    """A PNG or GIF file (by its magic bytes) as a base64 ``data:`` URI; None for any other content."""
    with open(path, "rb") as handle:
        data = handle.read()
    kind = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "gif" if data[:6] in (b"GIF87a", b"GIF89a") else None
    return None if kind is None else f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


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


def _integer_ticks() -> matplotlib.ticker.Locator:
    """Epochs and steps are whole numbers: never a tick at 0.5, even when one epoch is all there is."""
    return matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1)


def _plain(value: float, _position: Any = None) -> str:
    """Tick labels people read: 0.3, 12, 5000; powers of ten outside that range (1e-05, 1e+06)."""
    return f"{value:g}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.0e}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


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
    if any("train/r2_clean" in row or "val/r2" in row for row in history):  # regression
        panels.append(("r2", "R² (higher is better, 1 = perfect)", ["train/r2_clean", "val/r2"]))
    figure = _new_figure(4.6 * len(panels) + 0.4, 3.9)
    axes = _styled(figure, 1, len(panels))[0]
    markers = "o" if len(history) <= 30 else None
    diverged = [row["epoch"] for row in history if "train/loss" in row and not _finite(row["train/loss"])][:1]
    with matplotlib.rc_context(_STYLE):
        for ax, (metric, title, keys) in zip(axes, panels):
            for key in keys:
                points = [(row["epoch"], row[key]) for row in history if _finite(row.get(key))]
                if points:
                    label, colour, style = _CURVES[key]
                    ax.plot(*zip(*points), style, color=colour, marker=markers, markersize=3, label=label)
            for epoch in diverged:
                ax.axvline(epoch, color="#d62728", linewidth=1.2, label="loss became NaN/inf")
            ax.set_xlim(0.5, max(row["epoch"] for row in history) + 0.5)
            value = (test or {}).get(f"test/{metric}")
            if value is not None and math.isfinite(value):
                shown = f"{value:.1%}" if metric == "acc" else f"{value:.3g}"
                ax.axhline(value, color="#2ca02c", linestyle=":", linewidth=1.5, label=f"test, final model ({shown})")
            if metric == "acc":
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
            ax.set(title=title, xlabel="epoch", ylabel={"loss": "loss", "acc": "accuracy", "r2": "R²"}[metric])
            ax.xaxis.set_major_locator(_integer_ticks())
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # below: never over a curve
    return figure


# --- layer health -------------------------------------------------------------------------------
LOG_SPAN = 100.0            # activation std spanning more than this factor (vanishing/exploding) goes on a log axis
_HEALTH = [  # quantity, title, y label, log scale (None: when the values span more than LOG_SPAN)
    ("grad_norm", "Gradient norm of each layer's weights", "‖∂loss/∂W‖ (log scale)", True),
    ("act_std", "Activation spread (std)", "std of activations", None),
    ("dead", "Dead ReLU units (probe batch)", "fraction of units", False),
    ("saturated", "Saturated sigmoid/tanh units", "fraction of activations", False),
]


def _layer_colours(count: int) -> list[Any]:
    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(count - 1, 1)) for i in range(count)]  # stop before viridis' pale yellow


_APPLIES = {"dead": ("relu",), "saturated": ("sigmoid", "tanh")}  # the units each fraction is measured for


def activation_name(activation: str | None) -> str | None:
    """'leaky_relu:0.1' -> 'leaky_relu' (the spec's activation option, parameters dropped)."""
    return None if activation is None else str(activation).split(":", 1)[0].strip().lower()


def applies(quantity: str, activation: str | None) -> bool:
    """Whether ``dead``/``saturated`` is measured for this activation (unknown activation: assume it is)."""
    name = activation_name(activation)
    return name is None or quantity not in _APPLIES or name in _APPLIES[quantity]


def layer_health_figure(probes: ProbeLog, activation: str | None = None) -> Figure | None:
    """Per-layer gradient norms (log scale), activation std, dead and saturated fractions over training steps.

    Args:
        probes: the run's probe log.
        activation: the spec's activation option; says "not applicable" in the dead/saturated panels it
            does not apply to (tanh units cannot be dead, ReLU units do not saturate).
    """
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
            if log is None:
                spread = [v for i in range(len(layers)) for v in _values(probes.series(quantity, i)[1]) if v > 0]
                log = bool(spread) and max(spread) > LOG_SPAN * min(spread)
                ylabel += " (log scale)" if log else ""
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
            ax.grid(False, axis="x")  # the dotted epoch lines are the only vertical lines
            if log and everything:
                _log_axis(ax, min(everything), max(everything))
            if not log:
                ax.set_ylim(bottom=0)
            if quantity in ("dead", "saturated"):
                ax.set_ylim(0, 1.02)
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
                note = None
                if not applies(quantity, activation):
                    wanted = " or ".join(_APPLIES[quantity])
                    note = f"not applicable: only {wanted} units\nare measured; this network uses {activation_name(activation)}"
                elif everything and max(everything) == 0:
                    note = "0% in every layer throughout"
                if note:
                    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="0.35")
            ax.set(title=title, xlabel="training step", ylabel=ylabel)
            ax.xaxis.set_major_locator(_integer_ticks())
        _layer_key(figure, axes, colours)
    return figure


def _log_axis(ax: Axes, low: float, high: float) -> None:
    """Log y axis with plain tick labels (0.3, 0.01, 1e-05); minor ticks labelled when under a decade is shown."""
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(_plain)
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain if high / low < 10 else matplotlib.ticker.NullFormatter())


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


def _cut_zero_spike(ax: Axes, drawn: list[tuple[Sequence[float], Sequence[float], list[float]]]) -> None:
    """ReLU layers put their 'off' units in the first bin; a spike that tall hides the rest of the shape.

    Cut the y axis above the other bins and write the share of the first bin instead.
    """
    if not drawn or any(edges[0] != 0 for edges, _, _ in drawn):
        return
    rest = max((max(density[1:], default=0.0) for _, _, density in drawn), default=0.0)
    spike = max(density[0] for _, _, density in drawn)
    if rest <= 0 or spike <= SPIKE_RATIO * rest:
        return
    ax.set_ylim(0, rest * 1.35)
    shares = " → ".join(f"{counts[0] / (sum(counts) or 1):.0%}" for _, counts, _ in drawn)
    ax.text(0.98, 0.95, f"first bin (≈0, cut off):\n{shares} of values", transform=ax.transAxes, ha="right", va="top",
            fontsize=8, color="0.3")


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
            drawn = []
            for sample, label, colour, filled in series:
                if sample is None:
                    continue
                edges, counts = sample["hist"]["edges"][index], sample["hist"]["counts"][index]
                density = _density(edges, counts)
                ax.stairs(density, edges, fill=filled, color=colour, alpha=0.45 if filled else 1.0,
                          linewidth=1.4, label=label)
                drawn.append((edges, counts, density))
            _cut_zero_spike(ax, drawn)
            ax.set_title(layer_label(index, layers[index]))
            ax.set_yticks([])
            ax.set_xlabel("activation value")
        for ax in axes[len(shown):]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    return figure, epoch
