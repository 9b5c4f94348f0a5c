"""Many parameter points of one MLP in one forward: the points become the batch.

A loss landscape evaluates one architecture at hundreds of parameter points on the same data, and
every slice or path of it is an affine family of points, theta_p = c + sum_k a_pk d_k (a plane:
c = theta, d = (dx, dy); an interpolation: c = 0, d = (theta_a, theta_b), a_p = (1 - t, t)).
``vmap`` of ``functional_call`` (deepwell.diagnostics.landscape's general path) handles any module,
but for a multi-layer perceptron its batching rules cost more than the arithmetic. When every
parameter lives in an ``nn.Linear``, :class:`PointBatch` runs the network's own ``forward`` on the
data tiled P times (points x examples as one batch, the batched-members trick of the
double-descent sweep) with each ``nn.Linear`` swapped for a twin that gives each point's rows that
point's weights: one ``baddbmm`` per layer (bias fused). Everything between the linear layers
(activations, flattening, residual sums, eval-mode dropout) is per-example already.

Two things are computed once per family instead of once per point:

- each point's weights are (1, a_p) @ [c; d_1; ...; d_K]: one (P, K+1) x (K+1, weights) product per
  layer and chunk, not K scaled copies summed;
- the first linear layer's input is the data itself, the same at every point, so its output is
  affine in the coefficients too: W_p x + b_p = (W_c x + b_c) + sum_k a_pk (D_k x + e_k). The K+1
  outputs are computed once; per chunk the layer is one (P, K+1) x (K+1, N x out) product.

A network that reads its linear weights outside the layers' own ``forward`` (weight tying, a
custom ``F.linear``) is refused (``build`` returns None): its parameters are shared, or its output
at the centre does not match the plain forward. bench/landscape.py times this path against one plain
forward per point; tests compare the two within 1e-5.

Example::

    batch = PointBatch.build(model, x, center, [dx, dy])   # None: not an MLP
    losses = batch.losses(torch.tensor([[0.0, 0.0], [0.5, -1.0]]), y, F.cross_entropy)  # (2,)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

__all__ = ["PointBatch"]

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IGNORE_INDEX = -100      # F.cross_entropy's default: such targets count for nothing
CENTER_TOLERANCE = 1e-4   # max |twin output - plain output| at the centre, relative to the output's scale


class _PointLinear(nn.Module):
    """An ``nn.Linear`` whose input is P points' batches stacked point-major: point p's rows get point p's weights.

    Set per chunk: ``point_weight`` (P, in, out) and ``point_bias`` (P, 1, out); a ``class_major``
    layer gets ``point_weight`` (P, out, in) and ``point_bias`` (P, out, 1) and keeps its (P, out, N)
    result in ``logits``; a shared first layer gets its whole ``output`` (P, N * out) instead. It has
    no ``weight`` or ``bias``: a forward that reads them (weight tying) fails on the twin, and
    :meth:`PointBatch.build` refuses that model."""

    def __init__(self, in_features: int, out_features: int, class_major: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features, self.class_major = in_features, out_features, class_major
        self.point_weight: torch.Tensor | None = None
        self.point_bias: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self.returned: torch.Tensor | None = None
        self.version = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.output is not None:
            return self.output.view(*h.shape[:-1], self.out_features)
        points = self.point_weight.shape[0]
        rows = h.reshape(points, -1, self.in_features)   # (P, N, in)
        if self.class_major:  # (P, out, in) @ (P, in, N): a narrow output is a wide GEMM this way round
            columns = rows.transpose(1, 2)
            self.logits = _batched_affine(self.point_bias, self.point_weight, columns)   # (P, out, N)
            self.returned = self.logits.transpose(1, 2).reshape(*h.shape[:-1], self.out_features)
            self.version = self.returned._version   # an in-place change after this makes ``logits`` stale
            return self.returned
        return _batched_affine(self.point_bias, rows, self.point_weight).view(*h.shape[:-1], self.out_features)


def _batched_affine(bias: torch.Tensor | None, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """bias + left @ right per point, the bias added inside the GEMM (``baddbmm``)."""
    return torch.bmm(left, right) if bias is None else torch.baddbmm(bias, left, right)


class PointBatch:
    """A frozen copy of an MLP that evaluates an affine family of parameter points P at a time.

    Build it with :meth:`build` (which says whether the model qualifies), then call :meth:`losses`
    with each chunk's coefficients. See the module docstring for what is computed once.

    Example::

        batch = PointBatch.build(model, x, center, [dx, dy])
        grid = batch.losses(coefficients, y, F.cross_entropy)   # coefficients (P, 2) -> (P,) losses
    """

    def __init__(self, frozen: nn.Module, x: torch.Tensor, twins: dict[str, _PointLinear],
                 stacks: dict[str, tuple[torch.Tensor, torch.Tensor | None]], first: tuple[str, torch.Tensor] | None) -> None:
        self.frozen, self.x, self.twins, self.stacks, self.first = frozen, x, twins, stacks, first
        self.last = next((twin for twin in twins.values() if twin.class_major), None)
        self._tiled = x[:0]   # empty: the first forward tiles x (a copy), so an in-place op of the model's never reaches x

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, x: torch.Tensor, center: dict[str, torch.Tensor],
              directions: Sequence[dict[str, torch.Tensor]]) -> PointBatch | None:
        """A copy of ``model`` in eval mode with per-point twins of its linear layers; None when it does not qualify.

        Args:
            model: the network, only read; qualifies when every parameter belongs to exactly one
                ``nn.Linear`` and the twins reproduce its plain forward at the centre.
            x: the data every point is evaluated on.
            center: name -> tensor, c of the family.
            directions: K dicts name -> tensor, d_1 .. d_K (K >= 1).

        Example::

            batch = PointBatch.build(model, x, center, [dx, dy])
        """
        frozen = copy.deepcopy(model).eval()
        linears = {name: m for name, m in frozen.named_modules() if type(m) is nn.Linear}
        owned = [f"{name}.{p}" for name, m in linears.items() for p, _ in m.named_parameters(recurse=False)]
        names = [name for name, _ in frozen.named_parameters()]
        if not linears or not directions or sorted(owned) != sorted(names):
            return None  # convolutions, norms, or a parameter shared between layers
        for name, parameter in frozen.named_parameters():   # the reference output is the family's centre's
            parameter.copy_(center[name])
        calls: list[tuple[str, torch.Tensor]] = []
        hooks = [m.register_forward_pre_hook(lambda m, args, name=name: calls.append((name, args[0])))
                 for name, m in linears.items()]
        try:
            plain = frozen(x)
        finally:
            for hook in hooks:
                hook.remove()
        once = [name for name, _ in calls if sum(other == name for other, _ in calls) == 1]
        first = calls[0][0] if calls and calls[0][0] in once else None
        last = calls[-1][0] if calls and calls[-1][0] in once and calls[-1][0] != first else None
        last = last if last is not None and linears[last].out_features < linears[last].in_features else None
        points = [center, *directions]
        twins, stacks = {}, {}
        for name, linear in linears.items():   # (K+1, in * out): (P, in, out) per chunk, (P, out, in) class-major
            twins[name] = _PointLinear(linear.in_features, linear.out_features, class_major=name == last)
            weight = torch.stack([p[f"{name}.weight"] if name == last else p[f"{name}.weight"].T for p in points])
            bias = torch.stack([p[f"{name}.bias"] for p in points]) if linear.bias is not None else None
            stacks[name] = (weight.flatten(1), bias)
        shared = None
        if first is not None:   # the data's own output at c and along each d: (K+1, N * out)
            inputs = calls[0][1]
            outputs = torch.stack([F.linear(inputs, p[f"{first}.weight"], p.get(f"{first}.bias")) for p in points])
            shared = (first, outputs.flatten(1))
        for name, twin in twins.items():
            frozen.set_submodule(name, twin)
        batch = cls(frozen, x, twins, stacks, shared)
        # ReLUs in place: the twins' outputs are this copy's own temporaries (a plane 1.1x faster on two
        # threads, 1.2x on one, than with each ReLU writing a fresh copy of a chunk's activations). A model
        # that reads a layer's output again after its ReLU would see the change: the check at the centre
        # catches that, and then the ReLUs stay as they were. ReLU is idempotent, so one applied twice to a
        # cached input is harmless.
        relus = [m for m in frozen.modules() if type(m) is nn.ReLU and not m.inplace]
        for inplace in ([True, False] if relus else [False]):
            for relu in relus:
                relu.inplace = inplace
            matches = batch._matches(plain, len(directions))
            if matches is not False:
                return batch if matches else None
        return None

    def _matches(self, plain: torch.Tensor, directions: int) -> bool | None:
        """Whether the twins reproduce the plain forward at the centre; None: they cannot run (weight tying)."""
        try:
            at_center = self._forward(torch.zeros(2, directions))   # two copies of the centre
        except AttributeError:  # the forward reads a layer's ``weight``/``bias`` itself (weight tying)
            return None
        expected = plain.unsqueeze(0).expand(2, *plain.shape)
        scale = plain.abs().max().clamp_min(1.0)
        return at_center.shape == expected.shape and bool(((at_center - expected).abs() <= CENTER_TOLERANCE * scale).all())

    def _forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        """The network's output at P points: (P, N, *out)."""
        points = len(coefficients)
        reference = next(iter(self.stacks.values()))[0]
        mix = torch.cat([torch.ones(points, 1, dtype=reference.dtype, device=reference.device),
                         coefficients.to(reference)], 1)   # (P, K+1): 1 for the centre, then a_p
        for name, twin in self.twins.items():
            if self.first is not None and name == self.first[0]:
                twin.output = mix @ self.first[1]   # (P, N * out)
                continue
            weight, bias = self.stacks[name]
            shape = (twin.out_features, twin.in_features) if twin.class_major else (twin.in_features, twin.out_features)
            twin.point_weight = (mix @ weight).view(points, *shape)
            twin.point_bias = None if bias is None else (mix @ bias).unsqueeze(2 if twin.class_major else 1)
        if len(self._tiled) < points * len(self.x):   # tiled once for the largest chunk, sliced after
            self._tiled = self.x.repeat(points, *([1] * (self.x.dim() - 1)))
        out = self.frozen(self._tiled[:points * len(self.x)])
        return out.view(points, len(self.x), *out.shape[1:])

    def _is_last_output(self, out: torch.Tensor) -> bool:
        """Whether ``out`` (P, N, C) is the class-major last layer's result, unchanged since."""
        returned = self.last.returned if self.last is not None else None
        return (returned is not None and out.dim() == 3 and out.is_contiguous() and out.data_ptr() == returned.data_ptr()
                and out.shape[2:] == returned.shape[1:] and returned._version == self.last.version)

    @torch.no_grad()
    def losses(self, coefficients: torch.Tensor, y: torch.Tensor, loss: LossFunction) -> torch.Tensor:
        """The (P,) losses at the points center + coefficients[p] @ directions.

        Args:
            coefficients: (P, K), one row per point, K = the number of directions.
            y: the targets of ``x``.
            loss: ``loss(output, y)`` -> scalar (batched over points with ``vmap``).

        Example::

            batch.losses(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), y, F.cross_entropy)  # centre, centre + dx
        """
        out = self._forward(coefficients)
        if loss is F.cross_entropy and not y.is_floating_point() and self._is_last_output(out):
            # The network's output is the last layer's own: cross-entropy over the class-major
            # (P, C, N) logits. Same value; torch's log_softmax over a contiguous last dim narrower
            # than a vector register runs ~7x slower per row (bench/landscape.py).
            per_example = F.cross_entropy(self.last.logits, y.expand(len(out), len(y)), reduction="none")  # (P, N)
            return per_example.sum(1) / (y != IGNORE_INDEX).sum()
        return vmap(loss, in_dims=(0, None))(out, y)
