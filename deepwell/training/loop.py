"""``fit``: the one training loop. Studies, the CLI and tests all train through it.

Data lives on the device as tensors and batches are index slices of a shuffled permutation (no
DataLoader: for in-memory data it only adds overhead). The per-step work is exactly that of a
hand-written loop — forward, loss, backward, step — plus one in-place write of the detached loss;
everything else (metrics, checks, callbacks that are not per-batch) runs once per epoch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepwell.config import TrainSpec
from deepwell.errors import Interrupted
from deepwell.training.callbacks import Callback, EarlyStopping, FitState, StopReason, overrides
from deepwell.training.checkpoint import load_state, save_state
from deepwell.training.compile import compile_forward, should_compile
from deepwell.training.distributed import BatchPlan, DataParallel, plan_batches
from deepwell.training.evaluation import EVAL_BATCH, Task, evaluate, loss_function  # re-exported: fit's own metrics
from deepwell.training.graphs import graph_step, graphs_apply
from deepwell.training.interrupt import StopFlag, stop_signals
from deepwell.training.optim import OPTIMIZERS, build_schedule
from deepwell.training.penalties import PENALTIES
from deepwell.training.precision import autocast_factory, tf32_context
from deepwell.training.resume import callback_keys, restore

__all__ = ["fit", "evaluate", "loss_function", "FitResult", "TensorData", "CheckpointSaver", "EVAL_BATCH"]



@dataclass
class TensorData:
    """The minimum ``fit`` needs: training tensors and optional validation tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None


@dataclass
class FitResult:
    """What a fit produced: per-epoch history and how it ended."""

    history: list[dict[str, float]]
    stop_reason: StopReason
    stop_message: str
    epochs_run: int
    steps: int
    early_stopping: dict[str, Any] | None = None


class CheckpointSaver(Callback):
    """Saves the whole training state every ``every`` epochs and at the end (atomic; resumable).

    Between saves (``every`` > 1) it keeps the last completed epoch's state in memory, so that an
    interrupted run (:meth:`flush`, called when a signal stops ``fit``) saves it too and loses nothing.
    """

    def __init__(self, path: Path, every: int = 1) -> None:
        self.path, self.every = Path(path), every
        self.snapshot: Callable[[], dict[str, Any]] | None = None
        self.pending: dict[str, Any] | None = None  # the last completed epoch's state, when not yet on disk
        self.saved_epochs = 0  # completed epochs in the checkpoint on disk (this fit's saves)

    def on_epoch_end(self, state: FitState) -> None:
        last = state.epoch + 1 == state.epochs or state.stop_reason is not None
        if state.stop_reason is StopReason.NON_FINITE or self.snapshot is None:
            return  # keep the last good checkpoint
        if (state.epoch + 1) % self.every == 0 or last:
            save_state(self.path, self.snapshot())
            self.pending, self.saved_epochs = None, state.epoch + 1
        else:  # copies: the live tensors go on changing. History rows are complete when appended and never
            # change after: the list is copied, not the rows (a deep copy of every row made each epoch cost
            # O(epochs so far), quadratic in a long run: half the time of a 3,000-epoch playground session)
            snapshot = self.snapshot()
            history = snapshot.pop("history")
            self.pending = copy.deepcopy(snapshot) | {"history": list(history)}

    def flush(self) -> int:
        """Write the kept state (if any); return the completed epochs the checkpoint on disk holds."""
        if self.pending is not None:
            save_state(self.path, self.pending)
            self.pending, self.saved_epochs = None, self.pending["epoch"] + 1
        return self.saved_epochs


def _metric_names(task: Task, has_val: bool, penalty: bool) -> list[str]:
    names = ["train/loss", "train/loss_clean", "lr", "time/epoch_s"]
    if task == "classification":
        names.append("train/acc_clean")
    if penalty:
        names.append("train/penalty")
    if task == "regression":
        names += ["train/r2_clean", "train/mae_clean"]
    if has_val:
        names += ["val/loss"] + (["val/acc"] if task == "classification" else ["val/r2", "val/mae"])
    return names


def fit(
    model: nn.Module,
    data: TensorData,
    spec: TrainSpec,
    *,
    task: Task = "classification",
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    resume_from: str | Path | None = None,
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    distributed: DataParallel | None = None,
    target_scale: torch.Tensor | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` as ``spec`` says; the only training loop in deepwell.

    Args:
        model: any ``nn.Module``, already on the device of ``data``; trained in place.
        data: training (and optional validation) tensors on one device.
        spec: optimiser, schedule, penalty, epochs, batch size, early stopping, ...
        task: ``classification`` (integer labels) or ``regression`` (float targets).
        seed: seeds batch order and dropout masks; the same seed gives the same run.
        callbacks: extra callbacks (probes, progress, checkpoints, metrics writers).
        resume_from: a checkpoint written by :class:`CheckpointSaver`; training continues from it
            and ends where the uninterrupted run would have.
        batch_transform: applied to each training batch only (augmentation).
        distributed: this process of a data-parallel job (:class:`DataParallel.from_env`): trains on
            its shard of every global batch of ``spec.batch_size`` examples, with gradients averaged
            over processes (see deepwell.training.distributed for the exact semantics).
        target_scale: regression on standardised targets: the std per target column, so that the
            MAE metrics are in the target's units (see :func:`evaluate`).

    Returns:
        FitResult with the per-epoch history and the stop reason.
    """
    device = data.x_train.device
    n = len(data.x_train)
    has_val = data.x_val is not None and len(data.x_val) > 0
    # A last batch too small to give each process 2 examples is dropped (a lone example breaks BatchNorm).
    plan = distributed.plan(n, spec.batch_size) if distributed is not None else plan_batches(n, spec.batch_size)
    steps_per_epoch = plan.steps
    total_steps = steps_per_epoch * spec.epochs
    loss_fn = loss_function(task, spec)
    penalty = PENALTIES.build(spec.penalty)
    penalized = penalty.parameters(model) if penalty.active else []
    # A model may ask for its own parameter groups (transfer: a lower backbone lr, frozen parameters left out).
    params = model.param_groups(spec.lr) if callable(getattr(model, "param_groups", None)) else model.parameters()
    optimizer = OPTIMIZERS.build(spec.optimizer, params=params, lr=spec.lr)
    warmup_steps = round(spec.warmup_epochs * steps_per_epoch)
    scheduler = None
    if spec.schedule.name != "constant" or warmup_steps:
        scheduler = build_schedule(spec.schedule, optimizer, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                                   warmup_steps=warmup_steps)
    early = EarlyStopping(spec.early_stopping) if spec.early_stopping is not None else None
    # Checkpoints run last so that they capture this epoch's decisions of every other callback
    # (early stopping's count, a stop request): a resumed run then continues exactly.
    callbacks = ([cb for cb in callbacks if not isinstance(cb, CheckpointSaver)] + ([early] if early is not None else [])
                 + [cb for cb in callbacks if isinstance(cb, CheckpointSaver)])
    state = FitState(model, optimizer, spec.epochs, steps_per_epoch, _metric_names(task, has_val, penalty.active))
    shuffle = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout / DropConnect masks come from the global generator

    def snapshot() -> dict[str, Any]:
        return {
            "epoch": state.epoch, "step": state.step, "history": state.history,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": {"shuffle": shuffle.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
            "callbacks": {key: cb.state_dict() for key, cb in callback_keys(callbacks)},
        }

    for callback in callbacks:
        if isinstance(callback, CheckpointSaver):
            callback.snapshot = snapshot
    start_epoch = 0
    if resume_from is not None:
        start_epoch = restore(load_state(resume_from), state, scheduler, shuffle, callbacks, device)
    clean_count = n if spec.clean_train_examples is None else min(n, spec.clean_train_examples)  # a fixed sample
    last_good = copy.deepcopy(model.state_dict())
    savers = [cb for cb in callbacks if isinstance(cb, CheckpointSaver)]
    for saver in savers:
        saver.saved_epochs = start_epoch

    def stopped(interrupted: Interrupted) -> None:  # a signal stopped the loop: save what a resume needs
        interrupted.epoch = max([saver.flush() for saver in savers], default=0)

    state.autocast = autocast = autocast_factory(spec.precision, device)  # bf16: every forward pass under autocast
    # Ctrl-C / SIGTERM stop at the next step boundary (deepwell.training.interrupt); not in data-parallel jobs,
    # whose processes would stop at different steps and wait on each other. tf32: TF32 kernels until fit ends.
    with stop_signals(enabled=distributed is None, on_stop=stopped) as stop, tf32_context(spec.precision, device):
        for callback in callbacks:
            callback.on_fit_start(state)
        forward, unwrap = (model, None) if distributed is None else distributed.wrap(model, spec.sync_batchnorm)
        graphed = graphs_apply(spec.cuda_graphs, device, distributed is not None)  # graphs compile the step already
        if spec.compile == "on" and not graphed:
            forward = compile_forward(forward)
        stepper = _Stepper(model, forward, data, spec, loss_fn, penalty, penalized, optimizer, scheduler, batch_transform,
                           [cb for cb in callbacks if overrides(cb, "after_backward")],
                           [cb for cb in callbacks if overrides(cb, "on_batch_end")], plan, autocast,
                           [cb for cb in callbacks if overrides(cb, "needs_eager_step")], stop)
        if graphed:
            stepper.graphed = graph_step(stepper.step_loss)
        for epoch in range(start_epoch, spec.epochs):
            if state.stop_reason is not None:  # a callback stopped training before it began (a Controller held at fit start)
                break
            state.epoch = epoch
            for callback in callbacks:
                callback.on_epoch_start(state)
            started = time.perf_counter()
            if distributed is not None:
                distributed.seed_epoch(seed, epoch)
            step_losses, penalty_sum = stepper.epoch(state, torch.randperm(n, generator=shuffle).to(device))
            if distributed is not None:
                step_losses = distributed.reduce_step_losses(step_losses, plan)
                distributed.sync_buffers(model)
            metrics: dict[str, float] = {"epoch": epoch + 1, "step": state.step}
            metrics["train/loss"] = train_loss = ((step_losses * stepper.sizes).sum() / plan.examples).item()
            if not math.isfinite(train_loss):
                model.load_state_dict(last_good)
                state.request_stop(StopReason.NON_FINITE, _non_finite_message(step_losses, epoch, steps_per_epoch))
            else:
                metrics["lr"] = optimizer.param_groups[0]["lr"]
                if penalized:
                    metrics["train/penalty"] = (penalty_sum / steps_per_epoch).item()
                if (epoch + 1) % spec.eval_every == 0 or epoch + 1 == spec.epochs:
                    clean = evaluate(model, data.x_train[:clean_count], data.y_train[:clean_count], task, loss_fn,
                                     distributed=distributed, target_scale=target_scale, precision=spec.precision)
                    metrics |= {f"train/{k}_clean": v for k, v in clean.items()}
                    if has_val:
                        val = evaluate(model, data.x_val, data.y_val, task, loss_fn, distributed=distributed,
                                       target_scale=target_scale, precision=spec.precision)
                        metrics |= {f"val/{k}": v for k, v in val.items()}
                last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
            metrics["time/epoch_s"] = time.perf_counter() - started
            if (spec.compile == "auto" and not graphed and epoch == start_epoch
                    and should_compile(spec.epochs - epoch - 1, metrics["time/epoch_s"])):
                stepper.forward = compile_forward(stepper.forward)
            state.metrics = metrics
            state.history.append(metrics)
            for callback in callbacks:
                callback.on_epoch_end(state)
            if distributed is not None:  # a stop asked for on rank 0 only (its callbacks) stops every process
                state.stop_reason, state.stop_message = distributed.broadcast_object((state.stop_reason, state.stop_message))
            if state.stop_reason is not None:
                break

    if unwrap is not None:
        unwrap()
    for callback in callbacks:
        callback.on_fit_end(state)
    return FitResult(
        history=state.history,
        stop_reason=state.stop_reason or StopReason.COMPLETED,
        stop_message=state.stop_message or f"Trained all {spec.epochs} epochs.",
        epochs_run=len(state.history),
        steps=state.step,
        early_stopping=early.summary() if early is not None else None,
    )


def _non_finite_message(step_losses: torch.Tensor, epoch: int, steps_per_epoch: int) -> str:
    bad = int(torch.nonzero(~torch.isfinite(step_losses))[0])
    return (
        f"The training loss became non-finite at epoch {epoch + 1}, step {bad + 1} of {steps_per_epoch} "
        f"(global step {epoch * steps_per_epoch + bad + 1}). The weights of the last good epoch were kept. "
        "Usual causes: a learning rate too high (try train.lr 10x lower), exploding gradients "
        "(try train.clip_grad_norm=1.0 or a smaller init), or NaN/Inf in the data."
    )


@dataclass
class _Stepper:
    """The per-step work of one fit: exactly a hand-written loop's, plus one write of the detached loss."""

    model: nn.Module
    forward: nn.Module  # the model, or its DistributedDataParallel wrapper
    data: TensorData
    spec: TrainSpec
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    penalty: Callable[..., torch.Tensor]
    penalized: list[torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None
    after_backward: list[Callback]
    on_batch_end: list[Callback]
    plan: BatchPlan
    autocast: Callable[[], Any] = contextlib.nullcontext  # train.precision's context for the forward
    watchers: list[Callback] = field(default_factory=list)  # callbacks that may ask for an eager step
    stop: StopFlag = field(default_factory=StopFlag)  # set by a signal; checked between steps
    graphed: Callable[..., torch.Tensor] | None = None  # step_loss captured as CUDA graphs (deepwell.training.graphs)

    def __post_init__(self) -> None:
        self.steps = self.plan.steps
        self.sizes = torch.tensor(self.plan.sizes, dtype=torch.float32, device=self.data.x_train.device)  # examples per step

    def step_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The step's forward and loss in the run's precision: the function CUDA graphs capture (with its backward)."""
        with self.autocast():
            return self.loss_fn(self.forward(x), y)

    def epoch(self, state: FitState, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over the shuffled training data; returns (per-step losses, summed penalty) on the device."""
        bounds, full = self.plan.bounds, self.plan.bounds[1] - self.plan.bounds[0]
        if self.plan.positions is not None:  # data-parallel: this process's shard of every global batch
            order = order[self.plan.positions.to(order.device)]
        self.model.train()
        step_losses = []  # detached losses, stacked once at the end (cheaper than an indexed write a step)
        penalty_sum = torch.zeros((), device=order.device)
        for i in range(self.steps):
            self.stop.check(state.epoch)  # a step boundary: a stop asked for by a signal happens here
            index = order[bounds[i]:bounds[i + 1]]
            x, y = self.data.x_train[index], self.data.y_train[index]
            if self.batch_transform is not None:
                x, y = self.batch_transform(x, y)
            # graphs replay full batches no callback looks inside; their output memory is reused: keep a copy
            graph = self.graphed is not None and len(index) == full and not any(w.needs_eager_step(state) for w in self.watchers)
            loss = self.graphed(x, y).clone() if graph else self.step_loss(x, y)
            term = self.update(state, loss, i)
            if term is not None:
                penalty_sum += term
            step_losses.append(loss.detach())
            state.step += 1
            for callback in self.on_batch_end:
                callback.on_batch_end(state)
        return torch.stack(step_losses).float(), penalty_sum

    def update(self, state: FitState, loss: torch.Tensor, i: int) -> torch.Tensor | None:
        """Backward and optimiser step for step ``i``'s loss; returns its penalty term, detached (None without one)."""
        total, term = loss, None
        if self.plan.scales is not None:  # data-parallel: DDP averages, so weigh this shard as its share of the global batch
            total = loss * self.plan.scales[i]
        if self.penalized:
            term = self.penalty(self.model, self.penalized)
            total = total + term
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        state.loss = loss
        for callback in self.after_backward:
            callback.after_backward(state)
        if self.spec.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.clip_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return term.detach() if term is not None else None
