"""Probes: per-layer health measurements taken while a network trains, cheaply.

Every ``every`` optimisation steps (and once at initialisation, before the first step) the
:class:`Probes` callback records, for each hidden block of a :class:`~deepwell.models.Network`:

================  ==========================================================================
act_mean/act_std  mean and std of the block's activations on a fixed probe batch (eval mode)
saturated         fraction of sigmoid/tanh outputs within ``SATURATION`` of an asymptote
linear            fraction of sigmoid/tanh units in the linear region (derivative >= ``LINEAR``
                  of its maximum), where the network is close to a linear model
dead              fraction of ReLU units that output 0 for every example of the probe batch
grad_norm         L2 norm of the gradient of the block's weights (the training step's own)
signal_grad_norm  L2 norm of dL/d(block output), the back-propagated signal, per example
weight_norm       L2 norm of the block's weights
update_ratio      ||W_after - W_before|| / ||W_before|| of that optimisation step
================  ==========================================================================

and once per epoch ``dead_epoch``: the fraction of ReLU units that never fired (output > 0) on
any training example during the epoch. Histograms of the activations, and of each block's weight
gradient (the training step's own; at initialisation the probe batch's), are kept at
initialisation and at the first sample of each epoch.

Everything is reduced on the device and kept there until the epoch ends; then one transfer
writes the epoch's rows to ``probes.jsonl`` (schema below), so no ``.item()`` runs per layer per
step. The gradient quantities come from the training step itself; only the activation statistics
cost an extra forward pass of the probe batch.

probes.jsonl rows::

    {"kind": "sample", "step": 120, "epoch": 2, "layers": ["features.0", ...],
     "act_mean": [...], "act_std": [...], "saturated": [...], "linear": [...], "dead": [...],
     "grad_norm": [...], "signal_grad_norm": [...], "weight_norm": [...], "update_ratio": [...],
     "hist": {"edges": [[...] per layer], "counts": [[...] per layer]},      # hist, grad_hist: some samples only
     "grad_hist": {"edges": [[...] per layer], "counts": [[...] per layer]}}  # dL/dW over (-max|g|, max|g|)
    {"kind": "epoch", "epoch": 2, "step": 171, "layers": [...], "dead_epoch": [...]}

``step`` is the number of optimisation steps taken; the initial sample has step 0 and epoch -1
and ``update_ratio`` null. The statistics themselves are deepwell.diagnostics.layer_stats'.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# re-exported: what Probes measures (layer_stats) and the reader of what it writes (probe_log)
from deepwell.diagnostics.layer_stats import (HISTOGRAM_BINS, LINEAR, SATURATION, Layer, activation_histograms,
                                              activation_stats, fired_units, gradient_histograms, measure_activations,
                                              probe_blocks, watched_layers)
from deepwell.diagnostics.probe_log import ProbeLog, load_probes
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.checkpoint import append_lines, atomic_write_text, json_line, read_jsonl

__all__ = ["Probes", "ProbeLog", "SATURATION", "LINEAR", "HISTOGRAM_BINS", "measure_activations", "gradient_histograms",
           "load_probes", "probe_blocks"]

QUANTITIES = ("act_mean", "act_std", "saturated", "linear", "dead", "grad_norm", "signal_grad_norm", "weight_norm",
              "update_ratio")


class Probes(Callback):
    """Samples per-layer health every ``every`` steps and writes ``probes.jsonl`` (see module docstring).

    Args:
        path: the JSONL file to append to (rewritten on a fresh fit, kept up to the resume point otherwise).
        x_probe, y_probe: the fixed probe batch (a slice of the training data), on the model's device.
        loss_fn: the training loss, used once at initialisation to measure the initial gradients.
        every: sampling period in optimisation steps.

    Other consumers of the measurements (a TensorBoard tracker) add themselves to ``listeners``:
    each is called with the rows as they are written (once per epoch), so nothing is measured twice.
    """

    def __init__(self, path: Path, x_probe: torch.Tensor, y_probe: torch.Tensor,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], every: int = 10) -> None:
        self.path, self.x_probe, self.y_probe, self.loss_fn, self.every = Path(path), x_probe, y_probe, loss_fn, every
        self.layers: list[Layer] = []
        self.rows: list[dict[str, Any]] = []
        self.pending: list[tuple[int, int, torch.Tensor, dict]] = []  # (step, epoch, values (L, Q) on device, hist keys)
        self.grad_hist: dict[str, list] | None = None
        self.sampling = False
        self.signal: dict[str, torch.Tensor] = {}
        self.before: list[torch.Tensor] = []
        self.fired: list[torch.Tensor] = []
        self.autocast: Callable[[], Any] = contextlib.nullcontext  # the run's train.precision (set at fit start)
        self.handles: list[Any] = []
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []

    # --- hooks -------------------------------------------------------------------------------
    def _attach(self) -> None:
        for index, layer in enumerate(self.layers):
            self.handles.append(layer.block.register_forward_hook(self._signal_hook(layer.name)))
            if layer.kind == "relu":
                self.handles.append(layer.block.activation.register_forward_hook(self._fired_hook(index)))

    def _signal_hook(self, name: str):
        def hook(module, inputs, output):
            if self.sampling and output.requires_grad:
                # in float32: a bf16 gradient (train.precision=bf16) would give a bf16 norm, rounded to ~3 digits
                output.register_hook(lambda grad: self.signal.__setitem__(name, grad.float().flatten(1).norm(dim=1).mean()))
        return hook

    def _fired_hook(self, index: int):
        def hook(module, inputs, output):
            if module.training:  # a unit fired when it is positive for some example (and position)
                self.fired[index] |= fired_units(output.detach())
        return hook

    def _weights(self) -> list[torch.Tensor]:
        return [layer.block.transform.weight for layer in self.layers]

    @staticmethod
    def _grads(weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """The weights' gradients (zeros for a layer without one: no loss reached it)."""
        return [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]

    # --- events ------------------------------------------------------------------------------
    def on_fit_start(self, state: FitState) -> None:
        self.layers = watched_layers(state.model)
        self.autocast = state.autocast
        device = self.x_probe.device
        # allocated once and cleared in place each epoch: a CUDA-graphed step updates them at a fixed address
        self.fired = [torch.zeros(layer.block.transform.weight.shape[0], dtype=torch.bool, device=device) for layer in self.layers]
        if device.type == "cuda":  # torch's CUDA graphs write in place only into inputs known to stay put
            for fired in self.fired:
                torch._dynamo.mark_static_address(fired)
        self._attach()
        if state.history:  # resuming: keep the rows written up to the checkpoint
            self._truncate(state.step)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
            self._measure_initial(state)
        self.sampling = state.step % self.every == 0

    def _measure_initial(self, state: FitState) -> None:
        """At initialisation: activations and gradients of the probe batch (eval mode, no update)."""
        model = state.model
        was_training = model.training
        model.eval()
        self.sampling = True
        try:
            with self.autocast():
                loss = self.loss_fn(model(self.x_probe), self.y_probe)
            loss.backward()
            weight_grads = self._grads(self._weights())
            grads = torch._foreach_norm(weight_grads)
            grad_hist = gradient_histograms(weight_grads)
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
        values, hist = self._sample_values(model, grads, update=None, histograms=True)
        self.pending.append((0, -1, values, {"hist": hist, "grad_hist": grad_hist}))
        self._flush(state, epoch_row=False)

    def on_epoch_start(self, state: FitState) -> None:
        for fired in self.fired:
            fired.zero_()
        self.first_of_epoch = True

    def needs_eager_step(self, state: FitState) -> bool:
        """A sampling step runs eagerly: its hooks register gradient hooks, which a CUDA graph cannot replay."""
        return self.sampling

    def after_backward(self, state: FitState) -> None:
        if not self.sampling:
            return
        weights = self._weights()
        weight_grads = self._grads(weights)
        self.grads = torch._foreach_norm(weight_grads)
        if self.first_of_epoch:  # with the activation histograms of this sample
            self.grad_hist = gradient_histograms(weight_grads)
        self.before = [w.detach().clone() for w in weights]

    def on_batch_end(self, state: FitState) -> None:
        if self.sampling:
            weights = [w.detach() for w in self._weights()]
            update = torch.stack(torch._foreach_norm(torch._foreach_sub(weights, self.before))) / \
                torch.stack(torch._foreach_norm(self.before)).clamp_min(1e-30)
            values, hist = self._sample_values(state.model, self.grads, update, histograms=self.first_of_epoch)
            self.pending.append((state.step, state.epoch, values, {"hist": hist, "grad_hist": self.grad_hist}))  # None: dropped
            self.grad_hist = None
            self.first_of_epoch = False
        self.sampling = state.step % self.every == 0

    def _sample_values(self, model: nn.Module, grads: list[torch.Tensor], update: torch.Tensor | None,
                       histograms: bool) -> tuple[torch.Tensor, dict | None]:
        """(layers, quantities) on the device in QUANTITIES order, and histograms when asked."""
        activations, captured = self._activation_rows(model)
        hist = activation_histograms(self.layers, captured) if histograms else None  # a few per epoch: syncs are fine here
        signal = torch.stack([self.signal.get(layer.name, torch.tensor(float("nan"), device=activations.device))
                              for layer in self.layers])
        weight_norm = torch.stack(torch._foreach_norm([w.detach() for w in self._weights()]))
        if update is None:
            update = torch.full_like(weight_norm, float("nan"))
        self.signal = {}
        return torch.cat([activations, torch.stack([torch.stack(grads), signal, weight_norm, update], 1)], 1), hist

    @torch.no_grad()
    def _activation_rows(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        captured: dict[str, torch.Tensor] = {}
        handles = [layer.block.activation.register_forward_hook(
            lambda module, inputs, output, name=layer.name: captured.__setitem__(name, output)) for layer in self.layers]
        was_training = model.training
        model.eval()
        sampling, self.sampling = self.sampling, False
        try:
            with self.autocast():
                model(self.x_probe)
        finally:
            self.sampling = sampling
            model.train(was_training)
            for handle in handles:
                handle.remove()
        return torch.stack([activation_stats(captured[layer.name], layer.kind) for layer in self.layers]), captured

    def on_epoch_end(self, state: FitState) -> None:
        self._flush(state, epoch_row=True)

    def _flush(self, state: FitState, epoch_row: bool) -> None:
        names = [layer.name for layer in self.layers]
        lines = []
        if self.pending:
            values = torch.stack([v for _, _, v, _ in self.pending]).tolist()  # one transfer per epoch
            for (step, epoch, _, hist), rows in zip(self.pending, values):
                record: dict[str, Any] = {"kind": "sample", "step": step, "epoch": epoch, "layers": names}
                for q, key in enumerate(QUANTITIES):
                    record[key] = [_finite_or_none(row[q]) for row in rows]
                record |= {key: value for key, value in hist.items() if value is not None}
                lines.append(record)
        if epoch_row:
            relu = [layer.kind == "relu" for layer in self.layers]
            fired = [f.float().mean() if r else None for f, r in zip(self.fired, relu)]
            measured = iter(torch.stack([f for f in fired if f is not None]).tolist()) if any(relu) else iter(())
            dead = [1.0 - next(measured) if r else 0.0 for r in relu]
            lines.append({"kind": "epoch", "epoch": state.epoch, "step": state.step, "layers": names, "dead_epoch": dead})
        append_lines(self.path, [json_line(line) for line in lines])
        self.pending = []
        for listener in self.listeners:
            listener(lines)

    def _truncate(self, step: int) -> None:
        if not self.path.is_file():
            return
        keep = [row for row in read_jsonl(self.path, repair=True) if row["step"] <= step]  # a torn last line (a kill) is dropped
        atomic_write_text(self.path, "".join(json_line(row) for row in keep))

    def on_fit_end(self, state: FitState) -> None:
        if self.pending:
            self._flush(state, epoch_row=False)
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _finite_or_none(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None
