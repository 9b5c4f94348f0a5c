"""The padded layout: MLPs of one depth and activation, different widths, as width buckets of batched matmuls.

Members are grouped into buckets (:func:`deepwell.sweep.layouts.plan_buckets`); inside a bucket
each member is zero-padded to the bucket's widest layers, and a layer of the bucket is one batched
matmul. Its training step is written out by hand (:meth:`_Padded.train_step`, which says why). Chosen by
:func:`deepwell.sweep.layouts.ensemble_layout`, trained by :func:`deepwell.sweep.ensemble.train_ensemble`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepwell import native
from deepwell.errors import ConfigError
from deepwell.models.network import Network
from deepwell.sweep.layouts import aligned_numel, ensemble_layout

__all__ = ["compiled_step"]

# the activations whose derivative the hand-written step knows, numbered as padded_step.cpp's Activation
ACTIVATIONS = {nn.Identity: 0, nn.ReLU: 1, nn.LeakyReLU: 2, nn.Tanh: 3, nn.Sigmoid: 4}


def compiled_step(models: Sequence[nn.Module]) -> bool:
    """Whether these members train in the padded layout with the compiled step (C++, no GIL held: shards may be threads)."""
    try:
        padded = ensemble_layout(models) == "padded"
    except ConfigError:
        return False
    activation = models[0].dense[0].activation if len(models[0].dense) else nn.Identity()
    return padded and type(activation) in ACTIVATIONS and native.extension("padded_step") is not None


class _Padded(nn.Module):
    """MLPs of one depth, padded to their bucket's widths: per bucket, one batched matmul per layer.

    Layer ``l`` of a bucket of G members is one (G, out, in + 1) block ``[weight | bias]`` (the bias is
    its last column), a view of one flat parameter. The hand-written step (:meth:`train_step`) runs
    features-major: a layer's input is (G, in + 1, B), its last row ones, so one ``bmm`` gives the
    layer's output with the bias added, and one more gives the weight and bias gradients together.
    """

    def __init__(self, models: Sequence[Network], buckets: list[list[int]]) -> None:
        super().__init__()
        self.buckets = buckets
        self.activation = models[0].dense[0].activation if len(models[0].dense) else nn.Identity()
        zero = torch.zeros(1, requires_grad=True)
        out = self.activation(zero)
        (grad,) = torch.autograd.grad(out.sum(), zero)
        self.needs_mask = bool(out.item() != 0 or grad.item() != 0)  # ReLU: padded units are exactly 0 already
        self.relu = isinstance(self.activation, nn.ReLU)  # a plain flag: the step reads it without nn.Module's attribute lookup
        blocks, self.masks, self.widths = [], [], []
        for bucket in buckets:
            layers = [list(_linears(models[k])) for k in bucket]
            widths = [max(layer[i].weight.shape[0] for layer in layers) for i in range(len(layers[0]))]
            fan_in = [layers[0][0].weight.shape[1]] + widths[:-1]
            for i, (rows, cols) in enumerate(zip(widths, fan_in)):
                block = torch.zeros(len(bucket), rows, cols + 1, device=layers[0][i].weight.device)
                for g, member in enumerate(layers):
                    w, b = member[i].weight.detach(), member[i].bias.detach()
                    block[g, :w.shape[0], :w.shape[1]] = w
                    block[g, :b.shape[0], cols] = b
                blocks.append(block)
            masks = []  # per hidden layer, (G, width): 1 for a member's own units, 0 for its padding
            for i in range(len(widths) - 1):
                mask = torch.zeros(len(bucket), widths[i], device=block.device)
                for g, member in enumerate(layers):
                    mask[g, :member[i].weight.shape[0]] = 1.0
                masks.append(mask)
            self.masks.append(masks)
            self.widths.append(widths)
        self.depth = len(self.widths[0])
        self.flat_masks = [mask for masks in self.masks for mask in masks] if self.needs_mask else []
        self.kind = ACTIVATIONS.get(type(self.activation), -1)
        self.slope = float(getattr(self.activation, "negative_slope", 0.0))
        # Every block lives in one flat parameter (they are views of it): the optimiser then updates
        # one tensor per step instead of 6 per bucket (its per-tensor overhead was ~15% of a step).
        # Zero-padded to OPTIMIZER_ALIGN elements: no member's weights fall in the fused optimiser's scalar tail.
        flat = torch.cat([t.flatten() for t in blocks])
        self.flat = nn.Parameter(torch.cat([flat, flat.new_zeros(aligned_numel(len(flat)) - len(flat))]))
        self._shapes = [t.shape for t in blocks]
        self._offsets = [0]
        for t in blocks:
            self._offsets.append(self._offsets[-1] + t.numel())
        self._views: dict[tuple, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self._workspaces: dict[tuple, _Workspace] = {}
        starts = [0]
        for bucket in buckets:
            starts.append(starts[-1] + len(bucket))
        if [k for bucket in buckets for k in bucket] != list(range(starts[-1])):
            raise ValueError(f"_Padded needs buckets of consecutive members in order (train_ensemble's slots); got {buckets}")
        self.ranges = [slice(a, b) for a, b in zip(starts, starts[1:])]  # bucket -> its members, as a slice
        self.compiled = True  # train_step runs the C++ build when it is available (deepwell.native)
        self._native = native.extension("padded_step") if self.kind >= 0 else None  # looked up once, not at every step
        self._bmm = self._native.bmm if self._native is not None else torch.bmm      # the compiled step's own sgemm

    def _blocks(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per bucket and layer (bucket-major), the (G, out, in + 1) [weight | bias] views of a flat tensor."""
        return [flat[self._offsets[s]:self._offsets[s + 1]].view(self._shapes[s]) for s in range(len(self._shapes))]

    @property
    def weights(self) -> list[torch.Tensor]:
        """Per bucket and layer (bucket-major), the (G, out, in) weights: views of ``flat``."""
        return [block[..., :-1] for block in self._blocks(self.flat)]

    @property
    def biases(self) -> list[torch.Tensor]:
        """Per bucket and layer, the (G, out) biases: views of ``flat``."""
        return [block[..., -1] for block in self._blocks(self.flat)]

    def forward(self, x: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        """x: (B, D) shared by all members, or (S, B, D) with ``source[k]`` the row of member k -> logits (K, B, C)."""
        outputs = []
        blocks = self._blocks(self.flat)
        for index, members in enumerate(self.ranges):
            h = x if source is None else x[source[members]]                # (B, D) shared, or (G, B, D)
            for layer in range(self.depth):
                block = blocks[index * self.depth + layer]                 # (G, out, in + 1)
                h = torch.baddbmm(block[..., -1:].transpose(1, 2), h.expand(len(block), *h.shape[-2:]),
                                  block[..., :-1].transpose(1, 2))          # (G, B, out)
                if layer < self.depth - 1:
                    h = self.activation(h)
                    if self.needs_mask:
                        h = h * self.masks[index][layer].unsqueeze(1)
            outputs.append(h)
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def train_step(self, x: torch.Tensor, source: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        """One training step's forward and backward, by hand: sets ``.grad`` of every parameter; returns losses (K,).

        The same numbers autograd gives for ``cross_entropy(self(x, source), y).mean(1).sum()``, written
        out because on a CPU these small batched matmuls are overhead-bound and autograd's bookkeeping
        (graph nodes, transposed copies, gradient accumulation) doubled the step time (measured: 12.6 vs
        5.3 ms a step on the double-descent sweep). Features-major, (G, units, B): the output layer's
        (G, B, 10) product ran at a quarter of the speed of its transpose, and the narrow buckets'
        products gain too. Gradients are written in place into one flat buffer (``flat.grad``, kept
        from step to step) by the matmuls' ``out=``; activations, logits and their views live in a
        workspace kept between steps (:class:`_Workspace`). Only activations whose derivative is known
        in closed form take this path (``self.manual``); others use autograd. When the C++ build of
        this step is available (:mod:`deepwell.native`; ``compiled``, on by default) it runs
        instead: the same calls, the same numbers; this Python step then multiplies through its
        ``bmm`` too (OpenBLAS's sgemm where linked), so the two stay equal bit for bit.
        """
        flat = self.flat
        blocks, weights_t = self._split(flat)
        grad = flat.grad
        if grad is None or grad.shape != flat.shape:
            grad = flat.grad = torch.zeros_like(flat)  # zeros: the padding at the end is never written
        grads = self._split(grad)[0]
        work = self._workspace(x, source, y.shape[0])
        if source is None:
            work.shared.copy_(x.t())                                   # the one input every bucket reads (broadcast)
        else:
            for index, members in enumerate(self.ranges):              # each member's own batch
                work.hidden[index][0].copy_(x[source[members]].transpose(1, 2))
        if self.compiled and self._native is not None:                 # the same calls in C++ (padded_step.cpp)
            return self._native.train_step(blocks, weights_t, grads, work.all_inputs, work.all_hidden, work.all_transposed,
                                           work.logits.parts, work.log_p.parts, work.log_p.full, work.logits.full,
                                           work.minus_ones, self.flat_masks, y, self.depth, self.kind, self.slope)
        for index in range(len(self.ranges)):                          # forward, bucket by bucket
            inputs, hidden = work.inputs[index], work.hidden[index]
            for layer in range(self.depth):
                last = layer == self.depth - 1
                h = self._bmm(blocks[index * self.depth + layer], inputs[layer], out=work.logits[index] if last else None)
                if not last:
                    self._activate_into(h, hidden[layer + 1], index, layer)
        # cross-entropy, mean over the batch, per member, all buckets at once: d loss / d logits = (softmax - onehot) / B
        log_p = torch.log_softmax(work.logits.full, 1, out=work.log_p.full)                      # (K, C, B)
        target = y.unsqueeze(1)                                                                   # (K, 1, B)
        losses = -log_p.gather(1, target).squeeze(1).mean(1)
        log_p.exp_().scatter_add_(1, target, work.minus_ones).div_(y.shape[1])                   # in place: the deltas
        for index in range(len(self.ranges)):                           # backward, output layer first
            delta, transposed, hidden = work.log_p[index], work.transposed[index], work.hidden[index]  # delta: (G, out, B)
            for layer in range(self.depth - 1, -1, -1):
                self._bmm(delta, transposed[layer], out=grads[index * self.depth + layer])        # [dW | db]
                if layer:
                    back = self._bmm(weights_t[index * self.depth + layer], delta)                 # d loss / d activation
                    delta = self._derivative(back, hidden[layer], index, layer - 1)
        return losses

    def _workspace(self, x: torch.Tensor, source: torch.Tensor | None, members: int) -> _Workspace:
        """The buffers and views of a step with this batch shape (built once, kept; a few shapes at most)."""
        key = (x.shape[-2], source is None, x.dtype, x.device)
        if key not in self._workspaces:
            if len(self._workspaces) > 2:  # a new batch size (an epoch's short last batch) or dtype: keep a few
                self._workspaces.pop(next(iter(self._workspaces)))
            fan_ins = [[x.shape[-1]] + widths[:-1] for widths in self.widths]
            self._workspaces[key] = _Workspace(x, source is None, self.ranges, fan_ins, members, self.widths[0][-1])
        return self._workspaces[key]

    def _split(self, flat: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(blocks, transposed weights without the bias column) of a detached flat tensor, cached per storage."""
        key = (flat.data_ptr(), flat.shape)
        if key not in self._views:
            blocks = self._blocks(flat.detach())
            self._views[key] = blocks, [block[..., :-1].transpose(1, 2) for block in blocks]
            while len(self._views) > 2:  # the parameter and its gradient
                self._views.pop(next(iter(self._views)))
        return self._views[key]

    def _activate_into(self, h: torch.Tensor, out: torch.Tensor, bucket: int, layer: int) -> None:
        """The activation of (G, units, B) pre-activations ``h``, written into the next layer's input ``out``."""
        if self.relu:
            torch.clamp_min(h, 0, out=out)
        elif self.needs_mask:
            torch.mul(self.activation(h), self.masks[bucket][layer].unsqueeze(2), out=out)
        else:
            out.copy_(self.activation(h))

    def _derivative(self, grad: torch.Tensor, out: torch.Tensor, bucket: int, layer: int) -> torch.Tensor:
        """d loss / d pre-activation from d loss / d activation and the activation's output, both (G, units, B)."""
        if self.relu:  # in place: grad is the step's own temporary
            return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)
        act = self.activation
        if isinstance(act, nn.LeakyReLU):
            grad = grad * torch.where(out > 0, 1.0, act.negative_slope)
        elif isinstance(act, nn.Tanh):
            grad = grad * (1 - out * out)
        elif isinstance(act, nn.Sigmoid):
            grad = grad * out * (1 - out)   # padded units' out is 0 after the mask, so their gradient is 0
        return grad * self.masks[bucket][layer].unsqueeze(2) if self.needs_mask else grad

    @property
    def manual(self) -> bool:
        """Whether :meth:`train_step` knows this activation's derivative (else: autograd)."""
        return self.kind >= 0

    @torch.no_grad()
    def export_(self, models: Sequence[Network]) -> None:
        """Copy each member's (unpadded) trained weights back into its Network."""
        weights, biases = self.weights, self.biases
        for index, bucket in enumerate(self.buckets):
            for g, k in enumerate(bucket):
                for layer, linear in enumerate(_linears(models[k])):
                    rows, cols = linear.weight.shape
                    linear.weight.copy_(weights[index * self.depth + layer][g, :rows, :cols])
                    linear.bias.copy_(biases[index * self.depth + layer][g, :rows])


class _Bucketed:
    """One (K, ...) tensor and its per-bucket slices (G, ...)."""

    def __init__(self, full: torch.Tensor, ranges: Sequence[slice]) -> None:
        self.full, self.parts = full, [full[members] for members in ranges]

    def __getitem__(self, bucket: int) -> torch.Tensor:
        return self.parts[bucket]


class _Workspace:
    """What :meth:`_Padded.train_step` writes each step for one batch shape, with the views it reads.

    ``inputs[b][l]``: bucket b's input to layer l, (G, in + 1, B), its last row ones (set here, once);
    with one shared batch, layer 0's is the one ``shared`` (in, B) buffer broadcast over members.
    ``hidden[b][l]``: the same without the ones row (what the activation writes); ``transposed[b][l]``:
    ``inputs[b][l]`` as (G, B, in + 1), for the weight gradient. ``logits`` and ``log_p``: (K, C, B).
    """

    def __init__(self, x: torch.Tensor, shared: bool, ranges: Sequence[slice], fan_ins: list[list[int]], members: int,
                 classes: int) -> None:
        batch, options = x.shape[-2], {"dtype": x.dtype, "device": x.device}
        common = torch.ones(x.shape[-1] + 1, batch, **options)
        self.shared = common[:-1]
        self.inputs, self.hidden, self.transposed = [], [], []
        for part, fan_in in zip(ranges, fan_ins):
            count = part.stop - part.start
            first = [common.expand(count, *common.shape)] if shared else [torch.ones(count, fan_in[0] + 1, batch, **options)]
            inputs = first + [torch.ones(count, n + 1, batch, **options) for n in fan_in[1:]]
            self.inputs.append(inputs)
            self.hidden.append([t[:, :-1] for t in inputs])
            self.transposed.append([t.transpose(1, 2) for t in inputs])
        # the same, bucket-major in one list each, as the C++ step reads them
        self.all_inputs, self.all_hidden, self.all_transposed = ([t for part in parts for t in part]
                                                                  for parts in (self.inputs, self.hidden, self.transposed))
        self.logits = _Bucketed(torch.empty(members, classes, batch, **options), ranges)
        self.log_p = _Bucketed(torch.empty(members, classes, batch, **options), ranges)
        self.minus_ones = torch.full((members, 1, batch), -1.0, **options)  # subtracts the one-hot from the softmax


def _linears(model: Network) -> list[nn.Linear]:
    return [block.transform for block in model.dense] + [model.head]
