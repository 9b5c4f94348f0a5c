"""A callback that stands for a killed process: raises KeyboardInterrupt at the end of an epoch.

``fit`` runs the checkpoint saver last, so the epoch it stops in is not checkpointed: resuming
redoes it, as after a real kill between two checkpoints.
"""

from __future__ import annotations

from deepwell.training.callbacks import Callback


class Kill(Callback):
    """Raises KeyboardInterrupt at the end of epoch ``after`` (1-based)."""

    def __init__(self, after: int) -> None:
        self.after = after

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.after:
            raise KeyboardInterrupt
