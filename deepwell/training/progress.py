"""Progress output: a live display in a notebook, a rich bar on a terminal, one plain line per epoch otherwise,
nothing when quiet. :func:`make_progress` picks the callback from the ``progress`` option."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from deepwell.training.callbacks import Callback, FitState

__all__ = ["ProgressReporter", "make_progress", "PROGRESS_MODES"]

PROGRESS_MODES = ("auto", "notebook", "bar", "lines", "none")

_SHOWN = ("train/loss", "val/loss", "val/acc", "val/r2", "train/acc_clean")


def _line(metrics: dict[str, float]) -> str:
    return "  ".join(f"{key} {metrics[key]:.4f}" for key in _SHOWN if key in metrics)


class ProgressReporter(Callback):
    """Shows epochs and the latest metrics. ``mode``: ``auto`` (bar if a terminal), ``bar``, ``lines``, ``none``."""

    def __init__(self, mode: str = "auto", console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        if mode == "auto":
            mode = "bar" if self.console.is_terminal and sys.stderr.isatty() else "lines"
        self.mode = mode
        self.progress: Progress | None = None
        self.task = None

    def on_fit_start(self, state: FitState) -> None:
        if self.mode != "bar":
            return
        self.progress = Progress(
            TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.epochs, completed=len(state.history), metrics="")

    def on_epoch_end(self, state: FitState) -> None:
        if self.mode == "bar" and self.progress is not None:
            self.progress.update(self.task, completed=state.epoch + 1, metrics=_line(state.metrics))
        elif self.mode == "lines":
            self.console.print(f"epoch {state.epoch + 1}/{state.epochs}  {_line(state.metrics)}", highlight=False, soft_wrap=True)

    def on_fit_end(self, state: FitState) -> None:
        if self.progress is not None:
            self.progress.stop()


def make_progress(mode: str = "auto") -> Callback:
    """The progress callback for ``mode``: ``auto`` (the notebook display in a Jupyter kernel, else a bar on a
    terminal, else lines), ``notebook``, ``bar``, ``lines`` or ``none``.

    Example::

        callbacks = [make_progress("lines")]

    Raises:
        ConfigError: an unknown mode (the message lists the known ones).
    """
    from deepwell.errors import unknown_name
    from deepwell.notebook.live import NotebookProgress, in_notebook

    if mode not in PROGRESS_MODES:
        raise unknown_name("progress mode", mode, PROGRESS_MODES)
    if mode == "notebook" or (mode == "auto" and in_notebook()):
        return NotebookProgress()
    return ProgressReporter(mode)
