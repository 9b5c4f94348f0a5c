"""Stop training cleanly on Ctrl-C or SIGTERM: at the next step boundary, with the checkpoint saved.

While :func:`stop_signals` is active, SIGINT and SIGTERM only set a flag; ``fit`` checks it between
optimisation steps (one attribute read a step) and raises :class:`~deepwell.errors.Interrupted`
there, after the checkpoint saver has written the last completed epoch. So a stop never lands
inside an optimiser step or a file write, and ``deepwell train --resume`` continues bitwise like
an uninterrupted run. A second signal stops at once (the usual "press Ctrl-C twice").

Only the main thread can own signal handlers; elsewhere (a worker thread) and in data-parallel
jobs (the processes would stop at different steps and wait on each other) the handlers are left
as they are.

Example::

    with stop_signals() as stop:
        for step in steps:
            if stop.signum is not None:
                raise Interrupted(stop.signum)
            ...
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from deepwell.errors import Interrupted

__all__ = ["StopFlag", "stop_signals", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopFlag:
    """The signal that asked training to stop (None while none has)."""

    signum: int | None = None

    def check(self, epoch: int = 0) -> None:
        """Raise Interrupted when a stop was asked for; ``epoch``: the last completed epoch."""
        if self.signum is not None:
            raise Interrupted(self.signum, epoch)


@contextmanager
def stop_signals(enabled: bool = True, on_stop: Callable[[Interrupted], None] | None = None) -> Iterator[StopFlag]:
    """SIGINT/SIGTERM set the yielded flag instead of interrupting; the previous handlers come back after.

    Args:
        enabled: False leaves the handlers alone (the flag then never gets set).
        on_stop: called with the Interrupted that leaves the block (to save a checkpoint, say), before it propagates.
    """
    flag = StopFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        with _calling(on_stop):
            yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag.signum is not None:
            raise Interrupted(signum)  # the second signal: at once
        flag.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        with _calling(on_stop):
            yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)  # None: a handler set from C


@contextmanager
def _calling(on_stop: Callable[[Interrupted], None] | None) -> Iterator[None]:
    try:
        yield
    except Interrupted as stop:
        if on_stop is not None:
            on_stop(stop)
        raise
