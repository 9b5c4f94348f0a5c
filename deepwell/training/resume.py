"""Resuming ``fit`` from a saved snapshot: the live model, optimiser, schedule, generators and callbacks
take the saved state; the spec's optimiser settings (weight decay, momentum, ...) apply except those a
schedule sets itself, and a changed ``train.lr`` applies where no schedule owns the learning rate (or
becomes a LambdaLR schedule's new peak).

``fit`` (deepwell.training.loop) writes the snapshots; this module reads one back into a fit that is
about to start.

Example::

    start_epoch = restore(load_state(path), state, scheduler, shuffle, callbacks, device)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from deepwell.training.callbacks import Callback, FitState

__all__ = ["restore", "callback_keys"]


def _rescale_schedule(scheduler, peaks: list[float]) -> None:
    """The spec's learning rate is a LambdaLR schedule's peak: a resume under another ``train.lr`` goes on at the
    same point of the schedule, scaled to the new peak (unchanged lr: the very value the schedule had set).

    torch's OneCycleLR keeps its own peak in its saved state: there the saved learning rate wins.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        return
    scheduler.base_lrs = list(peaks)
    for group, peak, factor in zip(scheduler.optimizer.param_groups, peaks, scheduler.lr_lambdas):
        group["initial_lr"], group["lr"] = peak, peak * factor(scheduler.last_epoch)  # LambdaLR's own formula
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def _schedule_owned(scheduler) -> set[str]:
    """The optimiser settings a schedule sets itself (a resume keeps them from the snapshot; the spec's others win)."""
    if scheduler is None:
        return set()
    owned = {"lr", "initial_lr"}
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        owned |= {"max_lr", "min_lr"}
        if scheduler.cycle_momentum:
            owned |= {"momentum", "betas", "max_momentum", "base_momentum"}
    return owned


def restore(saved: dict[str, Any], state: FitState, scheduler, shuffle: torch.Generator,
             callbacks: Sequence[Callback], device: torch.device) -> int:
    """Load a snapshot into the live objects; return the epoch to start from."""
    state.model.load_state_dict(saved["model"])
    settings = [{k: v for k, v in group.items() if k != "params"} for group in state.optimizer.param_groups]
    state.optimizer.load_state_dict(saved["optimizer"])
    owned = _schedule_owned(scheduler)
    for group, setting in zip(state.optimizer.param_groups, settings):  # the spec's settings win (a resume with
        group.update({k: v for k, v in setting.items() if k not in owned})  # --set train.weight_decay=... applies it)
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
        _rescale_schedule(scheduler, [setting.get("initial_lr", setting["lr"]) for setting in settings])
    shuffle.set_state(saved["rng"]["shuffle"])
    torch.set_rng_state(saved["rng"]["torch"])
    if saved["rng"]["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(saved["rng"]["cuda"], device)
    for key, callback in callback_keys(callbacks):
        if key in saved["callbacks"]:
            callback.load_state_dict(saved["callbacks"][key])
    state.step, state.epoch = saved["step"], saved["epoch"]
    state.history = list(saved["history"])
    return saved["epoch"] + 1


def callback_keys(callbacks: Sequence[Callback]) -> list[tuple[str, Callback]]:
    """Stable checkpoint keys: class name and its count among callbacks of that class ("EarlyStopping:0").

    Not the position in the list, which shifts when a resumed run is given other callbacks
    (a progress bar, a probe) and would silently drop, say, early stopping's state.
    """
    seen: dict[str, int] = {}
    keys = []
    for callback in callbacks:
        name = type(callback).__name__
        keys.append((f"{name}:{seen.get(name, 0)}", callback))
        seen[name] = seen.get(name, 0) + 1
    return keys
