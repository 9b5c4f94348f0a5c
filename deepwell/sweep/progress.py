"""Progress of a sweep: runs done of the total, and the epoch of what is training now.

``deepwell train`` shows a bar (or one line per epoch); a sweep shows the same kind of output at
its own level: a bar of runs done / total with the current training's epoch beside it on a
terminal, otherwise one line per finished run and a few epoch lines per training. Executors
that train in this process (in-process, batched) report epochs through ``on_epoch``; the
others (process pool, Ray) report finished runs only.

Example::

    progress = SweepProgress("lines")
    records = run_sweep(tasks, InProcessExecutor(), "sweeps/w/records.jsonl", progress=progress)
    # run 1/6 done (model.width=8, seed 0): test_error 0.41
    # training model.width=32, seed 0: epoch 5/10 ...
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deepwell.training.callbacks import Callback, FitState

__all__ = ["SweepProgress", "EpochListener", "describe"]

EPOCH_LINES = 5  # in lines mode, epoch lines per training (the last epoch's is the run's own line)


def describe(params: Mapping[str, Any], seed: int | None = None) -> str:
    """'model.width=8, seed 0': a run (or a group's first run) as people read it."""
    parts = [f"{key}={value}" for key, value in params.items()]
    return ", ".join(parts + ([f"seed {seed}"] if seed is not None else [])) or "run"


class EpochListener(Callback):
    """A ``fit`` callback that passes each finished epoch to ``on_epoch(epoch, epochs)``."""

    def __init__(self, on_epoch: Any) -> None:
        self.on_epoch = on_epoch

    def on_epoch_end(self, state: FitState) -> None:
        self.on_epoch(state.epoch + 1, state.epochs)


class SweepProgress:
    """Shows a sweep's progress on stderr. ``mode``: ``auto`` (bar on a terminal, else lines), ``bar``, ``lines``, ``none``."""

    def __init__(self, mode: str = "auto", console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        if mode == "auto":
            mode = "bar" if self.console.is_terminal and sys.stderr.isatty() else "lines"
        if mode not in ("bar", "lines", "none"):
            from deepwell.errors import ConfigError

            raise ConfigError(f"Unknown progress mode '{mode}'. Known: auto, bar, lines, none.")
        self.mode = mode
        self.total = self.done = 0
        self.current = ""
        self._bar: Progress | None = None
        self._runs = self._epochs = None

    def start(self, total: int, done: int = 0) -> None:
        """The sweep has ``total`` runs, ``done`` of them already recorded (a resumed sweep)."""
        self.total, self.done = total, done
        if self.mode == "bar":
            self._bar = Progress(TextColumn("{task.description}"), MofNCompleteColumn(), BarColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=False)
            self._bar.start()
            self._runs = self._bar.add_task("runs", total=total, completed=done)
            self._epochs = self._bar.add_task("epoch", total=1, completed=0, visible=False)
        elif self.mode == "lines":
            resumed = f" ({done} already done)" if done else ""
            self._print(f"sweep: {total} runs{resumed}")

    def training(self, label: str) -> None:
        """What trains now: one run, or a batched group of runs."""
        self.current = label
        if self._bar is not None:
            self._bar.update(self._epochs, description=f"epoch ({label})", completed=0, visible=True)

    def epoch(self, epoch: int, epochs: int) -> None:
        """The current training finished ``epoch`` of ``epochs``."""
        if self._bar is not None:
            self._bar.update(self._epochs, total=epochs, completed=epoch)
        elif self.mode == "lines" and epoch < epochs and epoch % max(1, epochs // EPOCH_LINES) == 0:
            self._print(f"  training {self.current}: epoch {epoch}/{epochs}")

    def run_done(self, record: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        """One run finished; its record has been stored."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._runs, completed=self.done)
        elif self.mode == "lines":
            metric = next((f"{key} {record[key]:.4g}" for key in ("test_error", "test_loss") if record.get(key) is not None), "")
            self._print(f"run {self.done}/{self.total} done ({describe(params, record.get('seed'))}): {metric}")

    def note(self, text: str) -> None:
        """A remark the user should see now (printed in every mode but none)."""
        if self.mode != "none":
            self.console.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)
