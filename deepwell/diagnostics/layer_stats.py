"""Per-layer statistics of a network's activations and weight gradients: what the probes record.

:class:`~deepwell.diagnostics.probes.Probes` samples them while a network trains; the studies
(initialisation, activations) call :func:`measure_activations` on a network directly. Quantities:
mean and std of a block's activations, the fraction of sigmoid/tanh outputs saturated (within
``SATURATION`` of an asymptote) or in the linear region (derivative >= ``LINEAR`` of its maximum),
the fraction of ReLU units dead on a batch, and ``HISTOGRAM_BINS``-bin histograms of activations
and of weight gradients (on the CPU: CUDA's histc has no deterministic kernel).

Example::

    stats = measure_activations(model, x, histograms=True)
    stats["layers"], stats["saturated"], stats["hist"]["counts"][0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepwell.models.network import Block

__all__ = ["SATURATION", "LINEAR", "HISTOGRAM_BINS", "Layer", "watched_layers", "probe_blocks", "activation_stats",
           "fired_units", "activation_histograms", "gradient_histograms", "measure_activations"]

SATURATION = 0.01      # sigmoid output within 0.01 of 0 or 1; tanh output within 0.01 of -1 or 1
LINEAR = 0.8           # derivative >= 80% of its maximum: tanh |y| <= 0.447, sigmoid y in [0.28, 0.72]
HISTOGRAM_BINS = 50


def _kind(activation: nn.Module) -> str:
    if isinstance(activation, nn.Sigmoid):
        return "sigmoid"
    if isinstance(activation, nn.Tanh):
        return "tanh"
    if isinstance(activation, nn.ReLU):
        return "relu"
    return "other"


def fired_units(post: torch.Tensor) -> torch.Tensor:
    """ReLU outputs (B, C, *spatial) or (B, F) -> (C or F,): whether each unit (channel, for convs) is positive
    for some example and position. The outputs are >= 0, so that is a sum > 0 (2-4x faster than a max on a CPU)."""
    return post.sum(dim=[0, *range(2, post.dim())]) > 0


def activation_stats(post: torch.Tensor, kind: str) -> torch.Tensor:
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
    dead = fraction(~fired_units(post)) if kind == "relu" else zero  # dead: zero for every example
    mean = post.mean()
    # the two-pass sample std (what torch.std gives), ~5x faster on a CPU than torch.std's kernel
    std = torch.linalg.vector_norm(post - mean) / math.sqrt(max(n - 1, 1))
    return torch.stack([mean, std, saturated, linear, dead])


def _histogram_range(kind: str, post: torch.Tensor) -> tuple[float, float] | torch.Tensor:
    return {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}.get(kind) or post.abs().max()


@dataclass
class Layer:
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


def watched_layers(model: nn.Module) -> list[Layer]:
    blocks = probe_blocks(model)
    if not blocks:
        raise TypeError("Probes need trainable deepwell blocks (a Network from build_model, or a transfer model with a "
                        f"deepwell backbone not wholly frozen); {type(model).__name__} has none.")
    return [Layer(name, block, _kind(block.activation)) for name, block in blocks]


@torch.no_grad()
def measure_activations(model: nn.Module, x: torch.Tensor, histograms: bool = False) -> dict[str, Any]:
    """Per-layer activation statistics of ``model`` on ``x`` in eval mode (the mode is restored).

    Returns a dict with ``layers`` (names) and, per quantity, a list aligned with it: act_mean,
    act_std, saturated, linear, dead; with ``histograms`` also ``hist`` (edges, counts).
    """
    layers = watched_layers(model)
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
    stats = torch.stack([activation_stats(captured[layer.name], layer.kind) for layer in layers]).tolist() if layers else []
    result: dict[str, Any] = {"layers": [layer.name for layer in layers]}
    for i, key in enumerate(("act_mean", "act_std", "saturated", "linear", "dead")):
        result[key] = [row[i] for row in stats]
    if histograms:
        result["hist"] = activation_histograms(layers, captured)
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


def activation_histograms(layers: list[Layer], captured: dict[str, torch.Tensor]) -> dict[str, list]:
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
