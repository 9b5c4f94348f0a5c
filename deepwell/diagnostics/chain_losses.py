"""A chain MLP's cross-entropy at many parameter points, in compiled code, one point per thread.

:class:`~deepwell.diagnostics.point_batch.PointBatch` runs any MLP's own ``forward`` on the points
stacked as a batch, one op at a time over a chunk of points: its hidden GEMM is near the core's
peak, but each elementwise pass (bias, activation, softmax) walks a chunk that has left the core's
cache. Most networks a landscape is drawn for are plain chains (linear, activation, linear, ...,
linear head) trained with cross-entropy; for those, :class:`ChainLosses` hands the family to
``chain_losses.cpp`` (built by :mod:`deepwell.native`), where each thread runs whole points with a
point's activations in its cache, the activation fused into oneDNN's linear, the first layer
precomputed once per family as PointBatch does, and the head and softmax over the classes run
class-major. bench/landscape.py and bench/peers.py measure the plane (the same values as one plain
forward per point within 1e-5; tests/test_chain_losses.py).

A network qualifies when its forward, traced at the family's centre, is a chain of leaf modules
each reading the previous one's output: pass-throughs (Flatten, Identity, eval-mode dropout), at
least two ``nn.Linear`` layers each called once and owning every parameter, at most one supported
activation after each linear layer but the last, and the last linear layer's output returned; the
loss is ``F.cross_entropy`` over integer targets, float32 on the CPU. The compiled losses at the
centre must then equal the plain forward's. Anything else (residual sums, normalisation, a custom
loss, float64) is refused (``build`` returns None) and PointBatch or ``vmap`` runs it.

Example::

    fused = ChainLosses.build(model, x, y, F.cross_entropy, center, [dx, dy])   # None: not a chain
    losses = fused.losses(torch.tensor([[0.0, 0.0], [0.5, -1.0]]))               # (2,)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepwell import native
from deepwell.models.layers import Dropout

__all__ = ["ChainLosses"]

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Leaf modules that change nothing in eval mode. One counts only where its output is its input's own memory:
# deepwell's classic-mode dropout scales by 1 - p at test time (a new tensor), and is refused.
PASS_THROUGH = (nn.Identity, nn.Flatten, nn.Dropout, nn.AlphaDropout, Dropout)
CENTER_TOLERANCE = 1e-5   # max |compiled - plain| loss at the centre, relative to max(1, loss)


def _activation(module: nn.Module) -> tuple[str, list[float], str] | None:
    """The module as one of oneDNN's fused post-ops (name, scalars, algorithm); None when it is not one."""
    kind = type(module)
    if kind is nn.ReLU:
        return "relu", [], ""
    if kind is nn.LeakyReLU:
        return "leaky_relu", [module.negative_slope], ""
    if kind is nn.Tanh:
        return "tanh", [], ""
    if kind is nn.Sigmoid:
        return "sigmoid", [], ""
    if kind is nn.GELU:
        return "gelu", [], module.approximate
    if kind is nn.SiLU:
        return "swish", [], ""
    if isinstance(module, nn.Hardtanh):   # also ReLU6, a Hardtanh(0, 6)
        return "hardtanh", [module.min_val, module.max_val], ""
    return None


@dataclass
class _Call:
    module: nn.Module
    name: str
    input: torch.Tensor
    output: torch.Tensor


def _trace(frozen: nn.Module, x: torch.Tensor) -> tuple[list[_Call], torch.Tensor]:
    """Every leaf module call of one forward on ``x``, in order, and the forward's output."""
    calls: list[_Call] = []
    leaves = [(name, m) for name, m in frozen.named_modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(lambda m, args, out, name=name: calls.append(_Call(m, name, args[0], out)))
             for name, m in leaves]
    try:
        out = frozen(x)
    finally:
        for hook in hooks:
            hook.remove()
    return calls, out


def _chain(calls: list[_Call], x: torch.Tensor, out: torch.Tensor) -> list[tuple[_Call, tuple | None]] | None:
    """The linear layers in call order, each with the activation after it; None when the calls are not a chain."""
    if not calls or any(not isinstance(c.input, torch.Tensor) or not isinstance(c.output, torch.Tensor) for c in calls):
        return None
    previous = x
    layers: list[tuple[_Call, tuple | None]] = []
    for call in calls:   # each reads what the one before wrote (a view of it at most): no op between them
        if call.input.data_ptr() != previous.data_ptr() or call.input.numel() != previous.numel():
            return None
        previous = call.output
        if type(call.module) is nn.Linear:
            if call.input.dim() != 2 or any(call.module is done.module for done, _ in layers):
                return None
            layers.append((call, None))
        elif (isinstance(call.module, PASS_THROUGH) and not call.module.training
              and call.output.data_ptr() == call.input.data_ptr()):
            continue
        elif (activation := _activation(call.module)) is not None and layers and layers[-1][1] is None:
            layers[-1] = (layers[-1][0], activation)
        else:
            return None
    if len(layers) < 2 or layers[-1][1] is not None or out.data_ptr() != layers[-1][0].output.data_ptr():
        return None
    return layers


class ChainLosses:
    """An affine family of a chain MLP's parameter points, whose cross-entropy the compiled kernel evaluates.

    Build it with :meth:`build` (which says whether the model, loss and data qualify), then call
    :meth:`losses` with the points' coefficients.

    Example::

        fused = ChainLosses.build(model, x, y, F.cross_entropy, center, [dx, dy])
        grid = fused.losses(coefficients)   # (P, 2) -> (P,)
    """

    def __init__(self, kernel, y: torch.Tensor, first: torch.Tensor, weights: list[torch.Tensor],
                 biases: list[torch.Tensor | None], activations: list[tuple[str, list[float], str]]) -> None:
        self.kernel, self.y, self.first, self.weights, self.biases = kernel, y, first, weights, biases
        self.activations = activations

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: LossFunction,
              center: dict[str, torch.Tensor], directions: Sequence[dict[str, torch.Tensor]]) -> ChainLosses | None:
        """The family's evaluator; None when the model, loss, data or machine does not qualify.

        Args:
            model: the network, only read (a copy in eval mode is traced).
            x, y: the data and its class indices.
            loss: must be ``F.cross_entropy`` itself.
            center: name -> tensor, c of the family.
            directions: K dicts name -> tensor, d_1 .. d_K (K >= 1).

        Example::

            fused = ChainLosses.build(model, x, y, F.cross_entropy, center, [dx, dy])
        """
        if (loss is not F.cross_entropy or y.dim() != 1 or y.dtype != torch.long or x.dtype != torch.float32
                or x.device.type != "cpu" or not directions or not torch.backends.mkldnn.is_available()):
            return None
        kernel = native.extension("chain_losses")
        if kernel is None:
            return None
        frozen = copy.deepcopy(model).eval()
        for name, parameter in frozen.named_parameters():   # traced and checked at the family's centre
            parameter.copy_(center[name])
        calls, out = _trace(frozen, x)
        layers = _chain(calls, x, out)
        owned = sorted(f"{call.name}.{p}" for call, _ in layers or [] for p, _ in call.module.named_parameters())
        if layers is None or owned != sorted(name for name, _ in frozen.named_parameters()):
            return None   # not a chain, or a parameter outside its linear layers
        points = [center, *directions]
        (first, first_activation), *later = layers
        inputs = first.input
        outputs = torch.stack([F.linear(inputs, p[f"{first.name}.weight"], p.get(f"{first.name}.bias")) for p in points])
        weights = [torch.stack([p[f"{call.name}.weight"] for p in points]).contiguous() for call, _ in later]
        biases = [torch.stack([p[f"{call.name}.bias"] for p in points]).contiguous() if call.module.bias is not None
                  else None for call, _ in later]
        none = ("none", [], "")
        activations = [first_activation or none] + [activation or none for _, activation in later[:-1]]
        fused = cls(kernel, y.contiguous(), outputs.flatten(1).contiguous(), weights, biases, activations)
        at_center = fused.losses(torch.zeros(1, len(directions)))
        plain = F.cross_entropy(out, y)
        if not bool((at_center[0] - plain).abs() <= CENTER_TOLERANCE * max(1.0, abs(float(plain)))):
            return None   # an op the trace cannot see (an in-place change after the head) changed the output
        return fused

    def losses(self, coefficients: torch.Tensor) -> torch.Tensor:
        """The (P,) mean cross-entropies at the points center + coefficients[p] @ directions.

        Example::

            fused.losses(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))   # centre, centre + dx
        """
        mix = torch.cat([torch.ones(len(coefficients), 1), coefficients.to(torch.float32)], 1).contiguous()
        names, scalars, algorithms = (list(column) for column in zip(*self.activations))
        return self.kernel.losses(mix, self.y, self.first, self.weights, self.biases, names, scalars, algorithms)
