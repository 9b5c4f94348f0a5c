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
and ``update_ratio`` null.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepwell.models.network import Block
from deepwell.training.callbacks import Callback, FitState
from deepwell.diagnostics.probe_log import ProbeLog, load_probes  # re-exported: the reader of what Probes writes
from deepwell.training.checkpoint import append_lines, atomic_write_text, json_line, read_jsonl

__all__ = ["Probes", "ProbeLog", "SATURATION", "LINEAR", "HISTOGRAM_BINS", "measure_activations", "gradient_histograms",
           "load_probes", "probe_blocks"]

SATURATION = 0.01      # sigmoid output within 0.01 of 0 or 1; tanh output within 0.01 of -1 or 1
LINEAR = 0.8           # derivative >= 80% of its maximum: tanh |y| <= 0.447, sigmoid y in [0.28, 0.72]
HISTOGRAM_BINS = 50
QUANTITIES = ("act_mean", "act_std", "saturated", "linear", "dead", "grad_norm", "signal_grad_norm", "weight_norm",
              "update_ratio")


def _kind(activation: nn.Module) -> str:
    if isinstance(activation, nn.Sigmoid):
        return "sigmoid"
    if isinstance(activation, nn.Tanh):
        return "tanh"
    if isinstance(activation, nn.ReLU):
        return "relu"
    return "other"


def _fired(post: torch.Tensor) -> torch.Tensor:
    """ReLU outputs (B, C, *spatial) or (B, F) -> (C or F,): whether each unit (channel, for convs) is positive
    for some example and position. The outputs are >= 0, so that is a sum > 0 (2-4x faster than a max on a CPU)."""
    return post.sum(dim=[0, *range(2, post.dim())]) > 0


def _activation_stats(post: torch.Tensor, kind: str) -> torch.Tensor:
    """[mean, std, saturated, linear, dead] of one layer's activations, on the device."""
    post = post.float()  # bf16 activations (train.precision=bf16): statistics in float32 (a no-op in fp32)
    zero = torch.zeros((), device=post.device)
    n = post.numel()

    def fraction(mask: torch.Tensor) -> torch.Tensor:
        return torch.count_nonzero(mask) / mask.numel()

    if kind == "sigmoid":
        saturated = fraction((post < SATURATION) | (post > 1 - SATURATION))
        linear = fraction(post * (1 - post) >= LINEAR * 0.25)
    elif kind == "tanh":
        size = post.abs()
        saturated = fraction(size > 1 - SATURATION)
        linear = fraction(size <= math.sqrt(1 - LINEAR))  # 1 - tanh^2 >= LINEAR
    else:
        saturated, linear = zero, zero
    dead = fraction(~_fired(post)) if kind == "relu" else zero  # dead: zero for every example
    mean = post.mean()
    # the two-pass sample std (what torch.std gives), ~5x faster on a CPU than torch.std's kernel
    std = torch.linalg.vector_norm(post - mean) / math.sqrt(max(n - 1, 1))
    return torch.stack([mean, std, saturated, linear, dead])


def _histogram_range(kind: str, post: torch.Tensor) -> tuple[float, float] | torch.Tensor:
    return {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}.get(kind) or post.abs().max()


@dataclass
class _Layer:
    name: str
    block: Block
    kind: str


def probe_blocks(model: nn.Module) -> list[tuple[str, Block]]:
    """The deepwell blocks probes watch: every trainable hidden Block, by qualified name, input to output.

    A Network's hidden blocks; in a transfer model, the trainable blocks of a deepwell backbone
    (frozen ones are left out: no gradient flows there by design, which the doctor must not read as
    a vanishing gradient). A torchvision backbone has no deepwell blocks: nothing to probe.
    """
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, Block) and module.transform.weight.requires_grad]


def _layers(model: nn.Module) -> list[_Layer]:
    blocks = probe_blocks(model)
    if not blocks:
        raise TypeError("Probes need trainable deepwell blocks (a Network from build_model, or a transfer model with a "
                        f"deepwell backbone not wholly frozen); {type(model).__name__} has none.")
    return [_Layer(name, block, _kind(block.activation)) for name, block in blocks]


@torch.no_grad()
def measure_activations(model: nn.Module, x: torch.Tensor, histograms: bool = False) -> dict[str, Any]:
    """Per-layer activation statistics of ``model`` on ``x`` in eval mode (the mode is restored).

    Returns a dict with ``layers`` (names) and, per quantity, a list aligned with it: act_mean,
    act_std, saturated, linear, dead; with ``histograms`` also ``hist`` (edges, counts).
    """
    layers = _layers(model)
    captured: dict[str, torch.Tensor] = {}
    handles = [layer.block.activation.register_forward_hook(
        lambda module, inputs, output, name=layer.name: captured.__setitem__(name, output)) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    stats = torch.stack([_activation_stats(captured[layer.name], layer.kind) for layer in layers]).tolist() if layers else []
    result: dict[str, Any] = {"layers": [layer.name for layer in layers]}
    for i, key in enumerate(("act_mean", "act_std", "saturated", "linear", "dead")):
        result[key] = [row[i] for row in stats]
    if histograms:
        result["hist"] = _histograms(layers, captured)
    return result


def _edges(low: float, high: float) -> list[float]:
    step = (high - low) / HISTOGRAM_BINS
    return [low + i * step for i in range(HISTOGRAM_BINS + 1)]


def gradient_histograms(grads: list[torch.Tensor]) -> dict[str, list]:
    """Histograms of weight gradients, one per layer over (-max|g|, max|g|) of its finite entries.

    Example: ``gradient_histograms([w.grad for w in weights])["counts"][0]`` (HISTOGRAM_BINS counts).
    """
    finite = [g.detach().float().nan_to_num(0.0, 0.0, 0.0) for g in grads]
    tops = torch.stack([g.abs().max() for g in finite]).tolist() if finite else []  # one sync for all layers
    return _histogram_rows(finite, [(-max(top, 1e-30), max(top, 1e-30)) for top in tops])


def _histograms(layers: list[_Layer], captured: dict[str, torch.Tensor]) -> dict[str, list]:
    ranges = [_histogram_range(layer.kind, captured[layer.name]) for layer in layers]
    dynamic = [r for r in ranges if isinstance(r, torch.Tensor)]
    maxima = iter(torch.stack(dynamic).tolist()) if dynamic else iter(())  # one sync for all layers
    bounds = []
    for layer, bound in zip(layers, ranges):
        if isinstance(bound, torch.Tensor):
            top = max(next(maxima), 1e-12)
            bound = (-top, top) if layer.kind != "relu" else (0.0, top)
        bounds.append(bound)
    return _histogram_rows([captured[layer.name] for layer in layers], bounds)


def _histogram_rows(tensors: list[torch.Tensor], bounds: list[tuple[float, float]]) -> dict[str, list]:
    """HISTOGRAM_BINS counts of each tensor over its (low, high), and the bin edges.

    On the CPU: a few histograms per epoch, and CUDA's histc has no deterministic kernel.
    """
    counts = [torch.histc(t.detach().float().cpu(), HISTOGRAM_BINS, low, high).tolist()
              for t, (low, high) in zip(tensors, bounds)]
    return {"edges": [_edges(low, high) for low, high in bounds], "counts": counts}


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
        self.layers: list[_Layer] = []
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
                self.fired[index] |= _fired(output.detach())
        return hook

    def _weights(self) -> list[torch.Tensor]:
        return [layer.block.transform.weight for layer in self.layers]

    @staticmethod
    def _grads(weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """The weights' gradients (zeros for a layer without one: no loss reached it)."""
        return [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]

    # --- events ------------------------------------------------------------------------------
    def on_fit_start(self, state: FitState) -> None:
        self.layers = _layers(state.model)
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
        hist = _histograms(self.layers, captured) if histograms else None  # a few per epoch: syncs are fine here
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
        return torch.stack([_activation_stats(captured[layer.name], layer.kind) for layer in self.layers]), captured

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
