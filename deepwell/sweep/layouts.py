"""Ensemble layouts: how K networks become one batched module, and which layout fits which networks.

- :class:`_Stacked` (one architecture): parameters stacked, forward by ``vmap`` over ``functional_call``.
- :class:`_Padded` (MLPs of one depth, different widths): width buckets of batched matmuls, a
  hand-written training step (:meth:`_Padded.train_step`).
- :class:`_PaddedStacked` (any networks that differ only in width): zero-padded into the widest, stacked.
- :class:`_Buckets`: several of these side by side, one per bucket of members.

:func:`ensemble_layout` picks the layout, :func:`plan_buckets` the buckets. Every layout has
``forward(x, source) -> (K, B, C)`` and ``export_(models)`` (trained weights back into each member);
:func:`deepwell.sweep.ensemble.train_ensemble` trains them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from deepwell.errors import ConfigError
from deepwell.models.network import Network

__all__ = ["ensemble_layout", "plan_buckets", "plan_cost"]


def ensemble_layout(models: Sequence[nn.Module]) -> str:
    """``stacked`` for one architecture, ``padded`` for MLPs of one depth that differ in width.

    Raises:
        ConfigError: a model the batched engine cannot train exactly (batchnorm, dropout, ...).
    """
    for model in models:
        if not isinstance(model, Network):
            raise ConfigError(f"The batched ensemble trains deepwell Networks (build_model); got {type(model).__name__}.")
        bad = [name for name, m in model.named_modules()
               if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)) or type(m).__name__ in ("Dropout", "DropConnectLinear")]
        if bad or any(True for _ in model.buffers()):
            raise ConfigError("The batched ensemble needs stateless, deterministic networks: no batchnorm, dropout or "
                              f"DropConnect (found {bad[:3] or 'buffers'}). Use model.norm=none, dropout=none, or the "
                              "in-process/process executor.")
    reference = _structure(models[0])
    if all(_structure(m) == reference for m in models):
        return "stacked"
    if all(_is_plain_mlp(m) for m in models):
        depths = {len(m.dense) for m in models}
        activations = {repr(m.dense[0].activation) for m in models if len(m.dense)}
        shapes = {(m.dense[0].transform.in_features if len(m.dense) else m.head.in_features, m.head.out_features) for m in models}
        if len(depths) == 1 and len(activations) <= 1 and len(shapes) == 1:
            return "padded"
    if _widest(models) is not None:
        return "padded_stacked"
    raise ConfigError("The batched ensemble needs one architecture for all members, or networks that differ only in "
                      "width (same layers, kernels, activation with f(0) = 0, inputs and outputs; one member the widest "
                      "everywhere). Group the runs, or use the in-process executor.")


def _widest(models: Sequence[nn.Module]) -> int | None:
    """The member every other one fits into by zero-padding (same layers up to widths), or None.

    Zero padding is exact when each padded unit/channel stays zero: its weights and bias start at
    zero, the activation maps 0 to 0, pooling keeps zeros, and flattening is channel-major (so a
    narrower member's flattened features are a prefix of the widest's). Then every padded
    weight's gradient is zero and elementwise optimisers leave it at zero.
    """
    def skeleton(model: nn.Module) -> list:
        parts = []
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                parts.append((type(module).__name__, module.bias is not None) + (
                    (module.kernel_size, module.stride, module.padding, module.dilation, module.groups)
                    if isinstance(module, (nn.Conv1d, nn.Conv2d)) else ()))
            elif not list(module.children()):
                parts.append(repr(module))
        return parts

    reference = skeleton(models[0])
    if any(skeleton(m) != reference for m in models) or any(getattr(m, "input_shape", None) != getattr(models[0], "input_shape", None)
                                                            for m in models):
        return None
    for module in models[0].modules():
        if not list(module.children()) and not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Flatten, nn.Identity)):
            try:
                with torch.no_grad():
                    zero = module(torch.zeros(1, 1, 4)).abs().max() == 0   # activations and pools: f(0) must be 0
            except (RuntimeError, ValueError):  # a reshape that cannot take the probe: moves values, keeps zeros
                continue
            if not zero:
                return None
    shapes = [[tuple(p.shape) for p in m.parameters()] for m in models]
    widest = max(range(len(models)), key=lambda k: sum(math.prod(s) for s in shapes[k]))
    fits = all(all(a <= b for a, b in zip(small, big)) for member in shapes for small, big in zip(member, shapes[widest]))
    return widest if fits else None


def _structure(model: nn.Module) -> tuple:
    return tuple((name, tuple(p.shape)) for name, p in model.named_parameters()) + (repr(model),)


def _is_plain_mlp(model: Network) -> bool:
    return (len(model.features) == 0 and isinstance(model.reshape, nn.Flatten)
            and all(isinstance(b.transform, nn.Linear) and b.transform.bias is not None and not b.residual
                    and isinstance(b.norm, nn.Identity) and isinstance(b.dropout, nn.Identity) for b in model.dense))


def plan_buckets(shapes: Sequence[Sequence[tuple[int, ...]]], overhead: float) -> list[list[int]]:
    """Group members (given as their parameters' shapes) into buckets that minimise padded work + per-bucket overhead.

    Members are sorted by size; a bucket is a contiguous run of that order, padded to its widest
    member (per parameter, the largest size of each dimension). Cost of a bucket = members x
    parameters of the padded member + ``overhead`` (in parameter-equivalents). Exact dynamic
    programme over the sorted order, O(K^2).

    Args:
        shapes: for each member, the shapes of its parameters, in one order for all members.
        overhead: what one more bucket costs, in parameters (CPU ~2e4, GPU: huge, i.e. one bucket).

    Returns:
        lists of member indices, one per bucket.
    """
    return _plan(shapes, overhead)[0]


def plan_cost(shapes: Sequence[Sequence[tuple[int, ...]]], overhead: float) -> float:
    """What a step of :func:`plan_buckets`' buckets costs, in parameter-equivalents (padded parameters + overheads)."""
    return _plan(shapes, overhead)[1]


def _plan(shapes: Sequence[Sequence[tuple[int, ...]]], overhead: float) -> tuple[list[list[int]], float]:
    order = sorted(range(len(shapes)), key=lambda k: (sum(math.prod(s) for s in shapes[k]), tuple(shapes[k])))
    best = [0.0] + [math.inf] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        widest = [tuple(s) for s in shapes[order[end - 1]]]  # of order[start:end], grown as start moves left
        for start in range(end - 1, -1, -1):
            widest = [tuple(map(max, a, b)) for a, b in zip(widest, shapes[order[start]])]
            cost = best[start] + (end - start) * sum(math.prod(s) for s in widest) + overhead
            if cost <= best[end]:  # a tie goes to the longer bucket
                best[end], cut[end] = cost, start
    buckets, end = [], len(order)
    while end > 0:
        buckets.append(order[cut[end]:end])
        end = cut[end]
    return buckets[::-1], best[-1]


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
        # Every block lives in one flat parameter (they are views of it): the optimiser then updates
        # one tensor per step instead of 6 per bucket (its per-tensor overhead was ~15% of a step).
        self.flat = nn.Parameter(torch.cat([t.flatten() for t in blocks]))
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
        in closed form take this path (``self.manual``); others use autograd.
        """
        flat = self.flat
        blocks, weights_t = self._split(flat)
        grad = flat.grad
        if grad is None or grad.shape != flat.shape:
            grad = flat.grad = torch.empty_like(flat)
        grads = self._split(grad)[0]
        work = self._workspace(x, source, y.shape[0])
        if source is None:
            work.shared.copy_(x.t())                                   # the one input every bucket reads (broadcast)
        for index, members in enumerate(self.ranges):                  # forward, bucket by bucket
            inputs, hidden = work.inputs[index], work.hidden[index]
            if source is not None:                                     # each member's own batch
                hidden[0].copy_(x[source[members]].transpose(1, 2))
            for layer in range(self.depth):
                last = layer == self.depth - 1
                h = torch.bmm(blocks[index * self.depth + layer], inputs[layer], out=work.logits[index] if last else None)
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
                torch.bmm(delta, transposed[layer], out=grads[index * self.depth + layer])        # [dW | db]
                if layer:
                    back = torch.bmm(weights_t[index * self.depth + layer], delta)                 # d loss / d activation
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
        return isinstance(self.activation, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity))

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
        self.logits = _Bucketed(torch.empty(members, classes, batch, **options), ranges)
        self.log_p = _Bucketed(torch.empty(members, classes, batch, **options), ranges)
        self.minus_ones = torch.full((members, 1, batch), -1.0, **options)  # subtracts the one-hot from the softmax


def _linears(model: Network) -> list[nn.Linear]:
    return [block.transform for block in model.dense] + [model.head]


class _Stacked(nn.Module):
    """Members of one architecture: parameters stacked (K, ...), forward by vmap over functional_call."""

    def __init__(self, models: Sequence[Network]) -> None:
        super().__init__()
        params, _ = stack_module_state(list(models))
        self.names = list(params)
        self.params = nn.ParameterList([nn.Parameter(params[name].detach().clone()) for name in self.names])
        base = models[0]

        def call(values: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
            return functional_call(base, dict(zip(self.names, values)), (x,))

        self._shared = vmap(call, in_dims=(0, None))
        self._own = vmap(call, in_dims=(0, 0))

    def forward(self, x: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        values = tuple(self.params)
        return self._shared(values, x) if source is None else self._own(values, x[source])

    @torch.no_grad()
    def export_(self, models: Sequence[Network]) -> None:
        for k, model in enumerate(models):
            own = dict(model.named_parameters())
            for name, value in zip(self.names, self.params):
                own[name].copy_(value[k])


class _PaddedStacked(_Stacked):
    """Networks that differ only in width: each zero-padded into a copy of the widest, then stacked (vmap)."""

    def __init__(self, models: Sequence[Network]) -> None:
        widest = models[_widest(models)]
        padded = []
        for model in models:
            copy_ = copy.deepcopy(widest)
            with torch.no_grad():
                for target, source in zip(copy_.parameters(), model.parameters()):
                    target.zero_()
                    target[tuple(slice(0, n) for n in source.shape)] = source
            padded.append(copy_)
        super().__init__(padded)

    @torch.no_grad()
    def export_(self, models: Sequence[Network]) -> None:
        for k, model in enumerate(models):
            for value, own in zip(self.params, model.parameters()):
                own.copy_(value[k][tuple(slice(0, n) for n in own.shape)])


class _Buckets(nn.Module):
    """Several ensembles side by side (one per bucket of members): outputs concatenated in slot order."""

    def __init__(self, nets: Sequence[nn.Module], buckets: list[list[int]]) -> None:
        super().__init__()
        self.nets, self.buckets = nn.ModuleList(nets), buckets
        self.index = [torch.tensor(bucket) for bucket in buckets]

    def forward(self, x: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        outputs = [net(x, None if source is None else source[index.to(source.device)])
                   for net, index in zip(self.nets, self.index)]
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def export_(self, models: Sequence[Network]) -> None:
        for net, bucket in zip(self.nets, self.buckets):
            net.export_([models[k] for k in bucket])
