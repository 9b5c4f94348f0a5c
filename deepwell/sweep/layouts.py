"""Ensemble layouts: how K networks become one batched module, and which layout fits which networks.

- :class:`_Stacked` (one architecture): parameters stacked, forward by ``vmap`` over ``functional_call``.
- :class:`~deepwell.sweep.padded._Padded` (MLPs of one depth, different widths): width buckets of
  batched matmuls, a hand-written training step (its own module, :mod:`deepwell.sweep.padded`).
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


# Every tensor the ensemble's optimiser updates has a multiple of this many elements (zero padding at
# the end). torch's fused CPU optimisers (deepwell.training.optim) run a vectorised loop and finish
# the last numel % (vector width) elements in a scalar loop that rounds differently (no FMA); those
# last elements belong to the last member, so an identical network trained last in an ensemble
# drifted from its copies (measured: the paper MLP swept over an ignored width, seeds 1 and 2 at
# width 512). 64 covers AVX2 (8 floats) and AVX-512 (16) with unrolling.
OPTIMIZER_ALIGN = 64


def aligned_numel(numel: int) -> int:
    """``numel`` rounded up to a multiple of :data:`OPTIMIZER_ALIGN` (the padded length of an ensemble's flat parameter)."""
    return numel + (-numel) % OPTIMIZER_ALIGN


class _Stacked(nn.Module):
    """Members of one architecture: parameters stacked (K, ...), forward by vmap over functional_call.

    The stacked tensors are views of one flat parameter, zero-padded to :data:`OPTIMIZER_ALIGN`
    elements, so that every member's weights take the same path through the optimiser, whatever
    its position in the ensemble and however many members there are (and one tensor per step
    instead of one per layer).
    """

    def __init__(self, models: Sequence[Network]) -> None:
        super().__init__()
        params, _ = stack_module_state(list(models))
        self.names = list(params)
        self._shapes = [params[name].shape for name in self.names]
        self._offsets = [0]
        for name in self.names:
            self._offsets.append(self._offsets[-1] + params[name].numel())
        flat = torch.zeros(aligned_numel(self._offsets[-1]), device=params[self.names[0]].device)
        for name, start, end in zip(self.names, self._offsets, self._offsets[1:]):
            flat[start:end] = params[name].detach().flatten()
        self.flat = nn.Parameter(flat)
        base = models[0]

        def call(values: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
            return functional_call(base, dict(zip(self.names, values)), (x,))

        self._shared = vmap(call, in_dims=(0, None))
        self._own = vmap(call, in_dims=(0, 0))

    @property
    def params(self) -> list[torch.Tensor]:
        """The stacked (K, ...) parameters, in ``names`` order: views of ``flat``."""
        return [self.flat[start:end].view(shape) for start, end, shape in zip(self._offsets, self._offsets[1:], self._shapes)]

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
