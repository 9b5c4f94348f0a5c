"""Benchmark: the loss landscape's batched path (``vmap`` over stacked parameter sets) against the
per-point path (one plain forward per grid point), same model, data, directions and points.

Both paths run interleaved in one process (batched, per-point, batched, ...), so they see the same
machine state; the printed figure is the ratio of median seconds (per-point / batched: > 1 means the
batched path wins) and the largest difference between their losses (target <= 1e-5).

    python bench/landscape.py [--steps 40] [--repeats 3] [--chunk 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from deepwell.config import DataSpec, ModelSpec
from deepwell.data import prepare_data
from deepwell.diagnostics import landscape
from deepwell.models import build_model
from deepwell.runtime import configure_cpu

MAX_DIFF = 1e-5


def plane(batched: bool, model, dx, dy, x, y, alphas, chunk: int) -> tuple[float, torch.Tensor]:
    """Seconds and the (steps, steps) grid of one path (``slice_2d``'s own parameter sets, evaluated one way)."""
    started = time.perf_counter()
    center = {name: p.detach() for name, p in model.named_parameters()}
    a, b = (g.reshape(-1) for g in torch.meshgrid(alphas, alphas, indexing="ij"))
    sets = {name: value + a.view((-1,) + (1,) * value.dim()) * dx[name] + b.view((-1,) + (1,) * value.dim()) * dy[name]
            for name, value in center.items()}
    losses = landscape.evaluate_parameter_sets(model, sets, x, y, F.cross_entropy, chunk=chunk, batched=batched)
    return time.perf_counter() - started, losses.view(len(alphas), len(alphas))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="points per side of the plane")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=64, help="points per batched call")
    args = parser.parse_args()
    configure_cpu()
    splits = prepare_data(DataSpec(source="mnist1d"), seed=0)
    x, y = splits.x_val, splits.y_val
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="mlp", hidden=[100, 100], norm="none", init="torch_default"), splits.input_shape, 10)
    generator = torch.Generator().manual_seed(1)
    dx, dy = landscape.random_direction(model, generator), landscape.random_direction(model, generator)
    alphas = torch.linspace(-1, 1, args.steps)
    plane(True, model, dx, dy, x, y, alphas[:4], args.chunk)   # warm-up: vmap's tracing, allocator
    batched, per_point, diff = [], [], 0.0
    for _ in range(args.repeats):
        seconds, grid_batched = plane(True, model, dx, dy, x, y, alphas, args.chunk)
        batched.append(seconds)
        seconds, grid_point = plane(False, model, dx, dy, x, y, alphas, args.chunk)
        per_point.append(seconds)
        diff = max(diff, float((grid_batched - grid_point).abs().max()))
    ratio = statistics.median(per_point) / statistics.median(batched)
    print(f"threads {torch.get_num_threads()}, MLP 40-100-100-10, {args.steps}x{args.steps} plane on {len(x)} examples, "
          f"chunk {args.chunk}, {args.repeats} repeats")
    print(f"per-point  {statistics.median(per_point):8.3f} s (median)")
    print(f"batched    {statistics.median(batched):8.3f} s (median)")
    print(f"speed-up per-point/batched {ratio:6.2f}x")
    print(f"max |batched - per-point| {diff:.2e}   (target <= {MAX_DIFF:g}: {'PASS' if diff <= MAX_DIFF else 'FAIL'})")


if __name__ == "__main__":
    main()
