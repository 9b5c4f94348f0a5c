"""Loss landscapes (Li, Xu, Taylor, Studer, Goldstein: "Visualizing the Loss Landscape of Neural
Nets", NeurIPS 2018): filter-normalised random directions, 1-D and 2-D slices, interpolation
between two weight vectors, and a measure of how non-convex a 2-D slice is.

The caller's model is never modified: every evaluation runs on a deep copy in eval mode, many grid
points per call, in chunks. A slice or path of a chain MLP under cross-entropy (linear, activation,
..., linear head) takes :class:`~deepwell.diagnostics.chain_losses.ChainLosses` (compiled, one point
per thread, each point's activations in the core's cache; all points in one call, so ``chunk``
applies only to the Python paths); any other MLP (every parameter in an ``nn.Linear``)
:class:`~deepwell.diagnostics.point_batch.PointBatch` (the points become the batch, the first layer
is computed once per slice); any other network ``vmap`` of ``torch.func.functional_call`` over
stacked parameter sets. ``batched=False`` is the per-point reference (one plain forward per point);
bench/landscape.py times the paths (same values within 1e-5).

Example::

    generator = torch.Generator().manual_seed(0)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    alphas = torch.linspace(-1, 1, 21)
    grid = slice_2d(model, dx, dy, x, y, cross_entropy, alphas, alphas)   # (21, 21) losses
    print(nonconvexity(grid, alphas, alphas)["nonconvex_fraction"])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from deepwell.diagnostics.chain_losses import ChainLosses
from deepwell.diagnostics.point_batch import PointBatch
from deepwell.runtime import forward_measuring, keep_freed_memory
from deepwell.training.callbacks import Callback, FitState

__all__ = ["Direction", "random_direction", "evaluate_parameter_sets", "slice_1d", "slice_2d", "interpolate",
           "path_barrier", "discrete_hessian_eigenvalues", "nonconvexity", "WeightSnapshots", "Trajectory",
           "trajectory_pca"]

Direction = dict[str, torch.Tensor]   # parameter name -> tensor of the parameter's shape
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

NONCONVEX_RATIO = 0.05   # a grid point is non-convex when lambda_min < 0 and |lambda_min / lambda_max| > 5%
NORM_EPS = 1e-10         # guards the division when a direction's filter is all zeros


def random_direction(model: nn.Module, generator: torch.Generator) -> Direction:
    """A Gaussian direction in weight space, filter-normalised as Li et al. (2018), section 4.

    Every parameter with two or more dimensions (a dense layer's (out, in) weight, a conv's
    (out, in, *kernel) weight) gets d ~ N(0, 1), then each output unit / filter ``d[i]`` is rescaled
    to the norm of the corresponding weight unit / filter: ``d[i] <- d[i] / ||d[i]|| * ||w[i]||``.
    One-dimensional parameters -- biases, BatchNorm/LayerNorm scales and shifts -- get zeros
    (Li et al.'s ``ignore='biasbn'``): moving them would change the picture without a meaning.

    Args:
        model: the network; only read.
        generator: a CPU generator, so the same seed gives the same direction on every device.
    """
    direction = {}
    for name, parameter in model.named_parameters():
        weight = parameter.detach()
        if weight.dim() <= 1:
            direction[name] = torch.zeros_like(weight)
            continue
        d = torch.randn(weight.shape, generator=generator, dtype=weight.dtype).to(weight.device)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(NORM_EPS)   # (out,)
        w_norm = weight.flatten(1).norm(dim=1)                  # (out,)
        direction[name] = d * (w_norm / d_norm).view(-1, *([1] * (weight.dim() - 1)))
    return direction


def _frozen_copy(model: nn.Module) -> nn.Module:
    frozen = copy.deepcopy(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


ChunkMaker = Callable[[int, int], tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]


@torch.no_grad()
def evaluate_parameter_sets(model: nn.Module, parameter_sets: dict[str, torch.Tensor], x: torch.Tensor,
                            y: torch.Tensor, loss: LossFunction, buffer_sets: dict[str, torch.Tensor] | None = None,
                            chunk: int | None = None, batched: bool = True) -> torch.Tensor:
    """The loss of ``model``'s architecture, in eval mode, at P parameter sets: a (P,) tensor.

    Args:
        model: supplies the architecture and the buffers; never modified (a deep copy is evaluated).
        parameter_sets: name -> (P, *shape) stacked values of every parameter.
        x, y: the evaluation data, one batch on the model's device.
        loss: ``loss(output, y)`` -> scalar (mean over the batch).
        buffer_sets: optional name -> (P, *shape) stacked buffers (e.g. interpolated BatchNorm
            statistics); by default every point uses the model's own buffers.
        chunk: points per vectorised call; None sizes it to :data:`CHUNK_ELEMENTS` (memory ~ chunk x batch x width).
        batched: True evaluates ``chunk`` points per call (``vmap`` of ``functional_call``);
            False is the per-point reference: one plain forward per point, each point's values copied
            into the frozen copy's own tensors (what bench/landscape.py compares the batched path with).

    Example::

        sets = {name: torch.stack([p.detach(), 2 * p.detach()]) for name, p in model.named_parameters()}
        evaluate_parameter_sets(model, sets, x, y, F.cross_entropy)   # losses at theta and 2 theta
    """
    count = next(iter(parameter_sets.values())).shape[0]

    def make(start: int, stop: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return ({name: value[start:stop] for name, value in parameter_sets.items()},
                {name: value[start:stop] for name, value in (buffer_sets or {}).items()})

    return _evaluate(model, count, make, x, y, loss, chunk, batched)


# Activations per call (points x examples x largest layer). vmap's per-call cost wants large chunks
# (~8 MiB of float32); PointBatch's is small, and its chunk stays nearer the cache (~2 MiB).
CHUNK_ELEMENTS = 1 << 21
POINT_BATCH_ELEMENTS = 1 << 19


def _chunk_size(activation: int, count: int, budget: int) -> int:
    """Points per call so that one call's largest activation holds about ``budget`` numbers (>= 1 point).

    Larger chunks amortise the per-call cost; once the activations leave the cache a larger chunk
    buys nothing (bench/landscape.py --chunk measures it)."""
    return max(1, min(count, budget // max(1, activation)))


def _evaluate(model: nn.Module, count: int, make: ChunkMaker, x: torch.Tensor, y: torch.Tensor, loss: LossFunction,
              chunk: int | None, batched: bool, family: _Family | None = None) -> torch.Tensor:
    """Losses at ``count`` points whose stacked (parameters, buffers) ``make(start, stop)`` builds chunk by chunk.

    Building each chunk on demand keeps memory at chunk x parameters (not points x parameters).
    An affine ``family`` without per-point buffers takes :class:`ChainLosses` (a chain MLP under
    cross-entropy, every point in one compiled call) or :class:`PointBatch` (any other MLP, points
    as the batch); anything else ``vmap`` of ``functional_call``."""
    frozen = _frozen_copy(model)
    if not batched:
        return _evaluate_per_point(frozen, count, make, x, y, loss)
    if x.device.type == "cpu":
        keep_freed_memory()   # same-sized chunk temporaries stay in the heap (see keep_freed_memory)
    fast = None
    if family is not None and not make(0, 1)[1]:
        fused = ChainLosses.build(frozen, x, y, loss, family.center, family.directions)
        if fused is not None:   # every point at once: the kernel's threads take whole points
            return fused.losses(family.coefficients)
        fast = PointBatch.build(frozen, x, family.center, family.directions)
    activation = len(x) * forward_measuring(frozen, x[:1])[1]   # numbers in the largest layer output for all of x
    if fast is not None:
        chunk = chunk or _chunk_size(activation, count, POINT_BATCH_ELEMENTS)
        return torch.cat([fast.losses(family.coefficients[start:start + chunk], y, loss) for start in range(0, count, chunk)])
    buffers = {name: b for name, b in frozen.named_buffers()}
    chunk = chunk or _chunk_size(activation, count, CHUNK_ELEMENTS)

    def point_loss(params: dict[str, torch.Tensor], point_buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss(functional_call(frozen, {**buffers, **point_buffers, **params}, (x,)), y)

    losses = []
    for start in range(0, count, chunk):
        params, point_buffers = make(start, min(count, start + chunk))
        in_dims = (0, 0) if point_buffers else (0, None)
        losses.append(vmap(point_loss, in_dims=in_dims, randomness="same")(params, point_buffers))
    return torch.cat(losses)


def _evaluate_per_point(frozen: nn.Module, count: int, make: ChunkMaker, x: torch.Tensor, y: torch.Tensor,
                        loss: LossFunction) -> torch.Tensor:
    # copy_ into the module's own tensors: no functional_call re-binding per point, the cheapest plain loop
    targets = {**dict(frozen.named_parameters()), **dict(frozen.named_buffers())}
    losses = torch.empty(count, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    for point in range(count):
        params, buffers = make(point, point + 1)
        for name, values in {**params, **buffers}.items():
            targets[name].copy_(values[0])
        losses[point] = loss(frozen(x), y)
    return losses


@dataclass
class _Family:
    """The points center + sum_k coefficients[p, k] directions[k] (every slice and path here is one).

    :meth:`sets` stacks them on demand, chunk by chunk: no call holds more than one chunk's
    parameter sets (a 101 x 101 plane of a 1M-parameter net would need 40 GB at once)."""

    center: dict[str, torch.Tensor]
    directions: list[dict[str, torch.Tensor]]
    coefficients: torch.Tensor   # (P, K)

    def sets(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        sets = {}
        for name, value in self.center.items():
            shape = (-1,) + (1,) * value.dim()
            stacked = value.expand(stop - start, *value.shape)
            for k, direction in enumerate(self.directions):
                stacked = stacked + self.coefficients[start:stop, k].to(value).view(shape) * direction[name]
            sets[name] = stacked
        return sets


def _center(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


def slice_2d(model: nn.Module, dx: Direction, dy: Direction, x: torch.Tensor, y: torch.Tensor, loss: LossFunction,
             alphas: torch.Tensor, betas: torch.Tensor, chunk: int | None = None, batched: bool = True) -> torch.Tensor:
    """Loss on the plane theta + a dx + b dy: an (len(alphas), len(betas)) grid, [i, j] at (alphas[i], betas[j]).

    ``batched=False`` takes the per-point reference path of :func:`evaluate_parameter_sets`."""
    a, b = torch.meshgrid(alphas, betas, indexing="ij")
    family = _Family(_center(model), [dx, dy], torch.stack([a.reshape(-1), b.reshape(-1)], 1).to(x.device))
    losses = _evaluate(model, a.numel(), lambda start, stop: (family.sets(start, stop), {}), x, y, loss, chunk, batched,
                       family)
    return losses.view(len(alphas), len(betas))


def slice_1d(model: nn.Module, direction: Direction, x: torch.Tensor, y: torch.Tensor, loss: LossFunction,
             alphas: torch.Tensor, chunk: int | None = None, batched: bool = True) -> torch.Tensor:
    """Loss along the line theta + a d: a (len(alphas),) tensor (``batched=False``: the per-point reference)."""
    family = _Family(_center(model), [direction], alphas.view(-1, 1).to(x.device))
    return _evaluate(model, len(alphas), lambda start, stop: (family.sets(start, stop), {}), x, y, loss, chunk, batched,
                     family)


def interpolate(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: LossFunction,
                alphas: torch.Tensor, chunk: int | None = None, batched: bool = True) -> torch.Tensor:
    """Loss along the straight path (1 - a) theta_a + a theta_b (Goodfellow et al. 2015): a (len(alphas),) tensor.

    Floating-point buffers (BatchNorm running statistics) are interpolated the same way, so a = 0
    and a = 1 reproduce the two models exactly; integer buffers come from ``model_a``.
    Both models must share one architecture; neither is modified. ``batched=False``: the per-point reference.
    """
    weights = torch.stack([1 - alphas, alphas], 1).to(x.device)  # (P, 2): (1 - a) theta_a + a theta_b
    params_a, params_b = _center(model_a), _center(model_b)
    family = _Family({name: torch.zeros_like(value) for name, value in params_a.items()}, [params_a, params_b], weights)
    floats_b = dict(model_b.named_buffers())
    floats = {name: value for name, value in model_a.named_buffers() if value.is_floating_point()}
    buffers = _Family({name: torch.zeros_like(value) for name, value in floats.items()}, [floats, floats_b], weights)
    return _evaluate(model_a, len(alphas), lambda start, stop: (family.sets(start, stop), buffers.sets(start, stop)),
                     x, y, loss, chunk, batched, family)


def path_barrier(losses: torch.Tensor) -> float:
    """The barrier on a path: max loss along it minus the larger endpoint loss (0 when the path never rises above both)."""
    return float(losses.max() - torch.maximum(losses[0], losses[-1]))


def discrete_hessian_eigenvalues(grid: torch.Tensor, alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending) of the central-difference 2x2 Hessian at every interior grid point: (I-2, J-2, 2)."""
    f = grid.double()
    ha, hb = float(alphas[1] - alphas[0]), float(betas[1] - betas[0])
    faa = (f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]) / ha ** 2
    fbb = (f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]) / hb ** 2
    fab = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / (4 * ha * hb)
    hessian = torch.stack([torch.stack([faa, fab], -1), torch.stack([fab, fbb], -1)], -2)  # (I-2, J-2, 2, 2)
    return torch.linalg.eigvalsh(hessian)


def nonconvexity(grid: torch.Tensor, alphas: torch.Tensor, betas: torch.Tensor,
                 ratio_threshold: float = NONCONVEX_RATIO) -> dict[str, float | torch.Tensor]:
    """How non-convex a 2-D slice is, after Li et al.'s |lambda_min / lambda_max| maps.

    Returns ``ratio`` (the (I-2, J-2) map of |lambda_min / lambda_max| where lambda_min < 0, else 0),
    ``nonconvex_fraction`` (interior points with ratio > ``ratio_threshold``), ``mean_ratio`` and
    ``center_ratio`` (at the grid's centre point, the trained weights when the grid is symmetric).
    """
    eigenvalues = discrete_hessian_eigenvalues(grid, alphas, betas)
    lam_min, lam_max = eigenvalues[..., 0], eigenvalues[..., 1]
    scale = torch.maximum(lam_max.abs(), lam_min.abs()).clamp_min(1e-30)
    ratio = torch.where(lam_min < 0, lam_min.abs() / scale, torch.zeros_like(lam_min))
    i, j = ratio.shape[0] // 2, ratio.shape[1] // 2
    return {"ratio": ratio, "nonconvex_fraction": float((ratio > ratio_threshold).double().mean()),
            "mean_ratio": float(ratio.mean()), "center_ratio": float(ratio[i, j])}


class WeightSnapshots(Callback):
    """A ``fit`` callback keeping a copy of every parameter at the start and after each epoch (CPU, float32).

    Memory: (epochs + 1) x parameters x 4 bytes -- meant for the small networks whose path one plots.

    Example::

        snapshots = WeightSnapshots()
        fit(model, data, spec, callbacks=[snapshots])
        path = trajectory_pca(snapshots.snapshots)
    """

    def __init__(self) -> None:
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def _take(self, model: nn.Module) -> None:
        self.snapshots.append({name: p.detach().to("cpu", torch.float32, copy=True) for name, p in model.named_parameters()})

    def on_fit_start(self, state: FitState) -> None:
        self._take(state.model)

    def on_epoch_end(self, state: FitState) -> None:
        self._take(state.model)


@dataclass
class Trajectory:
    """An optimisation path projected on its own two principal directions (Li et al. 2018, section 7).

    ``coords[t]`` is snapshot t's position relative to the last one, in units of the directions
    ``dx``/``dy`` (unit vectors over all parameters); ``explained`` is the share of the path's
    variance each direction captures.
    """

    dx: Direction
    dy: Direction
    coords: torch.Tensor       # (T, 2)
    explained: torch.Tensor    # (2,)


def trajectory_pca(snapshots: Sequence[dict[str, torch.Tensor]]) -> Trajectory:
    """PCA of the path theta_0 .. theta_n around the final weights: the plane that shows the most of it.

    Li et al.'s point: random directions are nearly orthogonal to an optimisation path in high
    dimensions, so a path only shows on a plane built from the path itself. The matrix
    M = [theta_i - theta_n] (one row per snapshot) is decomposed by SVD; its first two right
    singular vectors are the directions and M's projections on them the path's coordinates.
    Directions are plain unit vectors (not filter-normalised): a path has a scale of its own.

    Args:
        snapshots: parameter dicts in training order (e.g. :class:`WeightSnapshots`), at least 3.

    Returns:
        the two directions (parameter-shaped), every snapshot's coordinates and the explained variance ratios.
    """
    if len(snapshots) < 3:
        raise ValueError(f"A trajectory needs at least 3 snapshots (got {len(snapshots)}): train for 2 or more epochs.")
    names = list(snapshots[-1])
    final = torch.cat([snapshots[-1][n].flatten() for n in names]).double()
    rows = torch.stack([torch.cat([s[n].flatten() for n in names]).double() - final for s in snapshots])  # (T, P)
    _, singular, vh = torch.linalg.svd(rows, full_matrices=False)
    basis = vh[:2]                                                                                    # (2, P)
    coords = rows @ basis.T                                                                           # (T, 2)
    variance = singular ** 2
    explained = variance[:2] / variance.sum().clamp_min(1e-300)
    directions = []
    for vector in basis:
        direction, offset = {}, 0
        for name in names:
            reference = snapshots[-1][name]
            direction[name] = vector[offset:offset + reference.numel()].view_as(reference).to(reference.dtype)
            offset += reference.numel()
        directions.append(direction)
    return Trajectory(directions[0], directions[1], coords.float(), explained.float())
