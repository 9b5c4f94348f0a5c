"""Run control from another thread: hold training between epochs, run one epoch, or stop.

:class:`Controller` is a callback for the one loop (:func:`deepwell.training.loop.fit`) run in a
worker thread, driven from elsewhere (the playground's web server, a notebook widget). It holds
the worker at fit start and at epoch ends, so a paused run computes nothing and wakes on a
condition variable, not by polling. Everything it does happens at an epoch boundary, where the
whole training state is consistent: a stop there ends the fit as any other stop does (an
accompanying :class:`~deepwell.training.loop.CheckpointSaver` saves, so a new fit can resume from
it with changed settings and the same weights, optimiser state and history).

Example::

    controller = Controller()                  # starts held: nothing runs until play() or step()
    worker = threading.Thread(target=fit, args=(model, data, spec), kwargs={"callbacks": [controller]})
    worker.start()
    controller.step()                          # exactly one epoch, then held again
    controller.wait_held(timeout=60)
    controller.stop("settings changed")        # fit returns with StopReason.REQUESTED
    worker.join()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from deepwell.training.callbacks import Callback, FitState, StopReason

__all__ = ["Controller"]


class Controller(Callback):
    """Holds a fit between epochs until told to play, step or stop; thread-safe.

    Args:
        playing: start running (True) or held before the first epoch (False, the default).
        on_hold: functions of the fit state called in the worker just before each hold.

    ``epochs_allowed`` is None while playing, else the epochs left before the next hold.
    Put it after the callbacks whose epoch-end work must be visible while held (metrics
    writers, probes, streams); fit runs early stopping and checkpoints after it anyway.
    """

    def __init__(self, playing: bool = False, on_hold: Sequence[Callable[[FitState], None]] = ()) -> None:
        self.on_hold = list(on_hold)  # called in the worker just before it holds (e.g. to publish its latest state)
        self._condition = threading.Condition()
        self.epochs_allowed: int | None = None if playing else 0
        self._stop_message: str | None = None
        self.held = False

    # --- commands (any thread) ---------------------------------------------------------------
    def play(self) -> None:
        """Run epochs until paused or stopped."""
        self._set(None)

    def pause(self) -> None:
        """Hold at the end of the current epoch (or before the first one)."""
        self._set(0)

    def step(self, epochs: int = 1) -> None:
        """Run exactly ``epochs`` more epochs, then hold."""
        self._set(epochs)

    def stop(self, message: str = "Stopped by the controller.") -> None:
        """End the fit at the next epoch boundary (at once when held), with StopReason.REQUESTED."""
        with self._condition:
            self._stop_message = message
            self.held = False  # released: wait_held now waits for the worker's next hold
            self._condition.notify_all()

    def wait_held(self, timeout: float | None = None) -> bool:
        """Block until the worker is held (True) or ``timeout`` seconds passed (False)."""
        with self._condition:
            return self._condition.wait_for(lambda: self.held, timeout)

    @property
    def playing(self) -> bool:
        return self.epochs_allowed is None and self._stop_message is None

    def _set(self, allowed: int | None) -> None:
        with self._condition:
            self.epochs_allowed = allowed
            if allowed != 0:
                self.held = False  # released: wait_held now waits for the worker's next hold
            self._condition.notify_all()

    # --- events (the worker) -------------------------------------------------------------------
    def on_fit_start(self, state: FitState) -> None:
        self._hold(state)  # fit checks for a stop before each epoch: a stop here runs nothing

    def on_epoch_end(self, state: FitState) -> None:
        with self._condition:
            if self.epochs_allowed is not None:
                self.epochs_allowed = max(0, self.epochs_allowed - 1)
        self._hold(state)

    def _hold(self, state: FitState) -> None:
        with self._condition:
            holding = self.epochs_allowed == 0 and self._stop_message is None
        if holding:
            for listener in self.on_hold:  # outside the lock: a listener may take its time
                listener(state)
        with self._condition:
            self.held = self.epochs_allowed == 0 and self._stop_message is None
            self._condition.notify_all()
            self._condition.wait_for(lambda: self.epochs_allowed != 0 or self._stop_message is not None)
            self.held = False
            if self._stop_message is not None:
                state.request_stop(StopReason.REQUESTED, self._stop_message)
