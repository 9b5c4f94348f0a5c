"""Callbacks: the six events of the one training loop, and the state they see.

Events: fit start, epoch start, after backward (gradients are there to read), batch end, epoch
end, fit end. A callback stops training with ``state.request_stop(reason, message)`` and
implements ``state_dict()`` / ``load_state_dict()`` so a resumed run continues where it was.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepwell.config import EarlyStoppingSpec
from deepwell.errors import ConfigError, did_you_mean
from deepwell.training.checkpoint import append_lines, atomic_write_text, json_line

__all__ = ["Callback", "FitState", "EarlyStopping", "StopReason", "MetricsWriter", "GradualUnfreezing"]


class StopReason(str, enum.Enum):
    """Why training ended."""

    COMPLETED = "completed"          # every epoch ran
    EARLY_STOPPING = "early_stopping"  # the monitored metric stopped improving
    NON_FINITE = "non_finite"        # the loss became NaN or infinite
    REQUESTED = "requested"          # a callback asked for another reason


@dataclass
class FitState:
    """What callbacks see. Tensors stay on the device; ``metrics`` holds this epoch's floats."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    steps_per_epoch: int
    metric_names: list[str]
    epoch: int = 0                   # 0-based index of the current epoch
    step: int = 0                    # optimisation steps taken so far
    loss: torch.Tensor | None = None  # the current batch's loss (after backward)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_message: str = ""
    # a fresh context for each forward pass a callback runs itself (the probes'): the run's train.precision
    autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext

    def request_stop(self, reason: StopReason, message: str) -> None:
        """Ask the loop to stop after this epoch (the first request wins)."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message


class Callback:
    """Base class: override the events you need. Hooks left as-is cost nothing per batch."""

    def on_fit_start(self, state: FitState) -> None: ...
    def on_epoch_start(self, state: FitState) -> None: ...
    def after_backward(self, state: FitState) -> None: ...
    def on_batch_end(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState) -> None: ...
    def on_fit_end(self, state: FitState) -> None: ...

    def needs_eager_step(self, state: FitState) -> bool:
        """Whether the coming step must run eagerly: this callback reads inside it (forward hooks that sample).

        A CUDA-graphed fit (deepwell.training.graphs) replays kernels captured once: a hook's tensor
        work is captured with them, but its Python side effects (the probes register a gradient hook
        on the steps they sample) are not. The fit asks this before each step and runs the steps
        asked for as plain PyTorch.
        """
        return False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def overrides(callback: Callback, event: str) -> bool:
    """Whether ``callback`` implements ``event`` (so the loop can skip no-op calls per batch)."""
    return getattr(type(callback), event) is not getattr(Callback, event)


@dataclass(frozen=True)
class Decision:
    """One early-stopping decision: whether to stop, whether the metric improved, and why."""

    stop: bool
    improved: bool
    reason: StopReason | None
    message: str


# Metrics that improve upwards (accuracy, R^2): mode=auto maximises them, and minimises the rest (losses, MAE).
_HIGHER_IS_BETTER = ("acc", "r2")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` evaluations in a row.

    As in Keras and Lightning, training stops at the ``patience``-th evaluation without improvement
    (patience 0 and 1 both stop at the first).

    With ``restore_best`` the best weights are put back at the end of training, also when
    patience never ran out (the last epoch is not always the best).
    """

    def __init__(self, spec: EarlyStoppingSpec) -> None:
        self.spec = spec
        higher_is_better = any(word in spec.monitor for word in _HIGHER_IS_BETTER)
        self.mode = spec.mode if spec.mode != "auto" else ("max" if higher_is_better else "min")
        self.best: float = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int = -1
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None
        self.restored = False

    def decide(self, value: float) -> Decision:
        """Pure decision for a new value of the monitored metric (updates nothing)."""
        if not math.isfinite(value):
            return Decision(True, False, StopReason.NON_FINITE, f"{self.spec.monitor} is {value}; stopping.")
        delta = (self.best - value) if self.mode == "min" else (value - self.best)
        if delta > self.spec.min_delta:
            return Decision(False, True, None, f"{self.spec.monitor} improved to {value:.4g}.")
        if self.wait + 1 >= max(self.spec.patience, 1):  # Keras/Lightning: stop at the patience-th miss
            return Decision(
                True, False, StopReason.EARLY_STOPPING,
                f"{self.spec.monitor} did not improve for {self.wait + 1} evaluation(s) "
                f"(best {self.best:.4g} at epoch {self.best_epoch + 1}; patience {self.spec.patience}).",
            )
        return Decision(False, False, None, f"{self.spec.monitor} did not improve ({self.wait + 1}/{self.spec.patience}).")

    def on_fit_start(self, state: FitState) -> None:
        if self.spec.monitor not in state.metric_names:
            raise ConfigError(
                f"early_stopping.monitor '{self.spec.monitor}' is not a metric of this run."
                f"{did_you_mean(self.spec.monitor, state.metric_names)} Known: {', '.join(state.metric_names)}."
                + (" (val/* needs data.val_fraction > 0.)"
                   if self.spec.monitor.startswith("val/") and not any(n.startswith("val/") for n in state.metric_names) else "")
            )

    def on_epoch_end(self, state: FitState) -> None:
        if self.spec.monitor not in state.metrics:  # not evaluated this epoch (eval_every > 1)
            return
        decision = self.decide(state.metrics[self.spec.monitor])
        if decision.improved:
            self.best, self.best_epoch, self.wait = state.metrics[self.spec.monitor], state.epoch, 0
            if self.spec.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        else:
            self.wait += 1
        if decision.stop:
            self.stopped_epoch = state.epoch
            state.request_stop(decision.reason, decision.message)

    def on_fit_end(self, state: FitState) -> None:
        if self.spec.restore_best and self.best_weights is not None and self.best_epoch != state.epoch:
            state.model.load_state_dict(self.best_weights)
            self.restored = True

    def summary(self) -> dict[str, Any]:
        """What happened, for the run summary."""
        return {"monitor": self.spec.monitor, "mode": self.mode, "best": self.best, "best_epoch": self.best_epoch + 1,
                "stopped_epoch": None if self.stopped_epoch is None else self.stopped_epoch + 1, "restored_best": self.restored}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_weights": self.best_weights,
                "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights, self.stopped_epoch = state["best_weights"], state["stopped_epoch"]


class MetricsWriter(Callback):
    """Appends one JSON line per epoch to ``metrics.jsonl`` (rewritten from history on resume).

    NaN and infinite values (the epoch a loss diverged) are written as ``null``: the file stays JSON.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_fit_start(self, state: FitState) -> None:
        atomic_write_text(self.path, "".join(json_line(row) for row in state.history))

    def on_epoch_end(self, state: FitState) -> None:
        append_lines(self.path, [json_line(state.history[-1])])  # a non-finite loss is written as null


class GradualUnfreezing(Callback):
    """Unfreeze one more frozen block of a transfer model, nearest the head first, every ``every`` epochs.

    The model gives ``frozen_units`` (frozen blocks, input side first) and ``unfreeze_next()``
    (:class:`deepwell.models.transfer.TransferModel` does).

    Stateless by design: at the start of epoch e, ``e // every`` blocks are unfrozen (counting from
    training's start), so a resumed run is in the same state as the uninterrupted one.
    ``events`` lists ``(epoch, block)`` as they happen (1-based epochs, as the history).

    Example::

        model = build_network(ModelSpec(backbone="run:runs/src", freeze="head_only"), (1, 40), 5)
        fit(model, data, TrainSpec(epochs=9), callbacks=[GradualUnfreezing(model, every=3)])
    """

    def __init__(self, model: torch.nn.Module, every: int) -> None:
        self.model, self.every = model, every
        self.initial = len(model.frozen_units)
        self.events: list[tuple[int, str]] = []

    def on_epoch_start(self, state: FitState) -> None:
        target = min(self.initial, state.epoch // self.every)
        while self.initial - len(self.model.frozen_units) < target:
            name = self.model.unfreeze_next()
            self.events.append((state.epoch + 1, name))
