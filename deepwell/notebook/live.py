"""Live training in a notebook: one display, updated in place each epoch, left behind when training ends.

``deepwell.train(..., progress="auto")`` picks :class:`NotebookProgress` when it runs inside a
Jupyter kernel (JupyterLab, classic Notebook, VS Code, Colab). It shows one output -- progress,
the loss and accuracy curves, and the latest per-layer health the probes measured -- created with
``IPython.display.display(..., display_id=True)`` and replaced through its handle, so a cell ends
with exactly one display (no wall of lines) and needs no ipywidgets.

Drawing the curves costs ~50-150 ms, so an epoch of 10 ms must not redraw every time: redraws are
spaced at least :data:`MIN_INTERVAL` seconds and :data:`COST_FACTOR` times their own cost apart,
keeping the display under ~1/COST_FACTOR of the training time. The last epoch is always drawn.

Example (in a notebook cell)::

    run = deepwell.train(overrides=["train.epochs=5"])   # one display that updates each epoch
    run = deepwell.train(progress="none")                 # nothing
"""

from __future__ import annotations

import sys
import time
from typing import Any

from deepwell.training.callbacks import Callback, FitState

__all__ = ["NotebookProgress", "in_notebook", "show_figures_inline", "MIN_INTERVAL", "COST_FACTOR"]

MIN_INTERVAL = 0.5   # seconds between redraws at least
COST_FACTOR = 10.0   # ... and at least this many times the last redraw's cost (display <= ~10% of the time)
MAX_LAYERS = 12      # the health table shows at most this many layers (evenly spaced, first and last kept)
_KERNEL_SHELLS = ("ZMQInteractiveShell", "Shell")  # Jupyter / VS Code kernels; Colab's shell class is google.colab's Shell


def in_notebook() -> bool:
    """Whether this process is a notebook kernel (IPython imported and its shell is a kernel's, not a terminal's)."""
    if "IPython" not in sys.modules:  # never import IPython just to ask
        return False
    shell = sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ in _KERNEL_SHELLS and hasattr(shell, "kernel")


def show_figures_inline() -> None:
    """In a notebook, let a matplotlib Figure that ends a cell show as a PNG, as ``%matplotlib inline`` would.

    deepwell draws with the object API (no pyplot), so IPython's inline backend may never have been
    loaded; this registers the same kind of PNG formatter for Figure, unless one is there already.
    """
    if not in_notebook():
        return
    from matplotlib.figure import Figure

    formatter = sys.modules["IPython"].get_ipython().display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        from deepwell.reporting.figures import png_data_uri
        import base64

        formatter.for_type(Figure, lambda figure: base64.b64decode(png_data_uri(figure).partition(",")[2]))


class _View:
    """What the display shows: HTML for Jupyter, a line of text for anything else."""

    def __init__(self, html: str, text: str) -> None:
        self.html, self.text = html, text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


_LIVE = """<div style="{{ box }}" class="deepwell-live">
<div style="font-weight:600;">{{ title }} {{ badge(state, tone) }}</div>
<div style="display:flex; align-items:center; gap:10px; margin:4px 0;">
<div style="flex:0 0 260px; height:10px; border-radius:5px; background:rgba(128,128,128,.25); overflow:hidden;">
<div style="width:{{ percent }}%; height:100%; background:#4c8ed9;"></div></div>
<span>epoch {{ epoch }}/{{ epochs }} · {{ seconds }} s{% if metrics %} · {{ metrics }}{% endif %}</span></div>
{% if curves %}{{ image(curves, "learning curves") }}{% endif %}
{% if health %}<div><b>Latest health</b> (probe batch, step {{ health_step }}): {{ health_line }}</div>
{{ table(["layer", "grad norm", "activation std", "dead", "saturated"], health) }}{% endif %}
</div>"""


class NotebookProgress(Callback):
    """The live display callback (see the module docstring). ``display``: IPython's, or a stand-in for tests."""

    def __init__(self, title: str = "Training", display: Any = None) -> None:
        if display is None:
            try:
                from IPython.display import display
            except ImportError:
                from deepwell.errors import missing_extra

                raise missing_extra("ipython", "notebooks", "progress='notebook' (the live notebook display)") from None
        self.display, self.title = display, title
        self.handle: Any = None
        self.started = self.last_draw = 0.0
        self.draw_cost = 0.0
        self.sample: dict[str, Any] | None = None
        self.dead: list[float] | None = None

    def listen_to_probes(self, rows: list[dict[str, Any]]) -> None:
        """Keep the latest probe sample and the epoch's dead fractions (Probes calls this once per epoch)."""
        for row in rows:
            if row["kind"] == "sample":
                self.sample = row
            elif row["kind"] == "epoch":
                self.dead = row["dead_epoch"]

    def on_fit_start(self, state: FitState) -> None:
        self.started = time.perf_counter()
        self.handle = self.display(self._view(state, "starting", curves=False), display_id=True)

    def on_epoch_end(self, state: FitState) -> None:
        now = time.perf_counter()
        last = state.epoch + 1 >= state.epochs
        if last or now - self.last_draw >= max(MIN_INTERVAL, COST_FACTOR * self.draw_cost):
            self._draw(state, "training")

    def on_fit_end(self, state: FitState) -> None:
        status = state.stop_reason.value if state.stop_reason is not None else "completed"
        self._draw(state, status.replace("_", " "))

    def _draw(self, state: FitState, status: str) -> None:
        began = time.perf_counter()
        view = self._view(state, status, curves=True)
        if self.handle is not None:
            self.handle.update(view)
        self.last_draw = time.perf_counter()
        self.draw_cost = self.last_draw - began

    def _view(self, state: FitState, status: str, curves: bool) -> _View:
        from deepwell.notebook.html import figure_uri, fmt, render
        from deepwell.reporting.figures import learning_curves_figure

        done = len(state.history)
        metrics = state.history[-1] if state.history else {}
        shown = "  ".join(f"{key} {fmt(metrics[key], percent=key.endswith('acc'))}" for key in
                          ("train/loss", "val/loss", "val/acc") if key in metrics)
        uri = figure_uri(learning_curves_figure(state.history)) if curves and state.history else None
        health, line = self._health()
        tone = {"training": "info", "starting": "info", "completed": "good", "early stopping": "good"}.get(status, "bad")
        html = render(_LIVE, title=self.title, state=status, tone=tone, epoch=done, epochs=state.epochs,
                      percent=round(100 * done / max(state.epochs, 1)), seconds=f"{time.perf_counter() - self.started:.1f}",
                      metrics=shown, curves=uri, health=health, health_line=line,
                      health_step=self.sample["step"] if self.sample else 0)
        return _View(html, f"{self.title}: {status}, epoch {done}/{state.epochs}  {shown}".rstrip())

    def _health(self) -> tuple[list[list[str]], str]:
        """Rows of the latest probe sample (one per layer) and a one-line summary."""
        from deepwell.notebook.html import fmt

        if self.sample is None:
            return [], ""
        sample, layers = self.sample, self.sample["layers"]
        picked = sorted({round(i * (len(layers) - 1) / (MAX_LAYERS - 1)) for i in range(MAX_LAYERS)}) \
            if len(layers) > MAX_LAYERS else range(len(layers))
        dead = self.dead or [None] * len(layers)
        rows = [[layers[i], fmt(sample["grad_norm"][i]), fmt(sample["act_std"][i]), fmt(dead[i], percent=True),
                 fmt(sample["saturated"][i], percent=True)] for i in picked]
        grads = [g for g in sample["grad_norm"] if g]
        parts = [f"gradient norms span {max(grads) / min(grads):.3g}x across layers" if len(grads) > 1 else ""]
        if self.dead:
            parts.append(f"{max(self.dead):.0%} dead units at most")
        saturated = [s for s in sample["saturated"] if s is not None]
        if saturated and max(saturated) > 0:
            parts.append(f"{max(saturated):.0%} saturated at most")
        return rows, ", ".join(p for p in parts if p)
