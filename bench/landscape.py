"""Benchmark: the loss landscape's paths on one 2-D plane, same model, data, directions and points.

- ``slice_2d``: what users call; this chain MLP under cross-entropy takes ChainLosses (compiled,
  one point per thread in the core's cache, oneDNN's linear with the ReLU fused).
- PointBatch: the Python path every other MLP takes (the points as the batch, the first layer
  computed once per plane, the class-major head and cross-entropy), here with the compiled
  kernels switched off (``DEEPWELL_NATIVE=off``).
- vmap: ``vmap`` of ``functional_call`` over stacked parameter sets (``evaluate_parameter_sets``,
  the path every non-MLP network takes, and the MLP's path before PointBatch).
- per-point: one plain forward per point (``slice_2d(..., batched=False)``), the reference values.

All run interleaved in one process (slice_2d, PointBatch, vmap, per-point, slice_2d, ...) after one warm-up
each, so they see the same machine state; printed are median seconds, the ratios of medians
(> 1: slice_2d wins) and the largest difference from the per-point values (target <= 1e-5).
``--chunk`` times PointBatch at several chunk sizes (points per call) against its default.

    python bench/landscape.py [--steps 40] [--repeats 5] [--chunk 4 8 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from deepwell.config import DataSpec, ModelSpec
from deepwell.data import prepare_data
from deepwell.diagnostics import landscape
from deepwell.models import build_model
from deepwell.runtime import configure_cpu

MAX_DIFF = 1e-5


def timed(function: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="points per side of the plane")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, nargs="*", default=[], help="also time slice_2d at these chunk sizes")
    args = parser.parse_args()
    configure_cpu()
    splits = prepare_data(DataSpec(source="mnist1d"), seed=0)
    x, y = splits.x_val, splits.y_val
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="mlp", hidden=[100, 100], norm="none", init="torch_default"), splits.input_shape, 10)
    generator = torch.Generator().manual_seed(1)
    dx, dy = landscape.random_direction(model, generator), landscape.random_direction(model, generator)
    alphas = torch.linspace(-1, 1, args.steps)
    a, b = (g.reshape(-1) for g in torch.meshgrid(alphas, alphas, indexing="ij"))
    center = {name: p.detach() for name, p in model.named_parameters()}

    def vmap_path() -> torch.Tensor:  # slice_2d's points, stacked up front as before PointBatch
        sets = {name: value + a.view((-1,) + (1,) * value.dim()) * dx[name] + b.view((-1,) + (1,) * value.dim()) * dy[name]
                for name, value in center.items()}
        return landscape.evaluate_parameter_sets(model, sets, x, y, F.cross_entropy, chunk=64).view(args.steps, args.steps)

    def point_batch(chunk: int | None = None) -> torch.Tensor:   # the compiled kernels off for this call only
        before = os.environ.get("DEEPWELL_NATIVE")
        os.environ["DEEPWELL_NATIVE"] = "off"
        try:
            return landscape.slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, alphas, chunk=chunk)
        finally:
            os.environ.pop("DEEPWELL_NATIVE") if before is None else os.environ.update(DEEPWELL_NATIVE=before)

    paths = {"slice_2d": lambda: landscape.slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, alphas),
             "PointBatch": point_batch,
             "vmap (chunk 64)": vmap_path,
             "per-point": lambda: landscape.slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, alphas, batched=False)}
    for chunk in args.chunk:
        paths[f"PointBatch chunk {chunk}"] = (lambda chunk=chunk: point_batch(chunk))
    for path in paths.values():
        path()  # warm-up: vmap's tracing, the allocator
    seconds = {name: [] for name in paths}
    reference, diff = None, dict.fromkeys(paths, 0.0)
    for _ in range(args.repeats):
        grids = {}
        for name, path in paths.items():
            took, grids[name] = timed(path)
            seconds[name].append(took)
        reference = grids["per-point"]
        for name, grid in grids.items():
            diff[name] = max(diff[name], float((grid - reference).abs().max()))
    fast = statistics.median(seconds["slice_2d"])
    print(f"threads {torch.get_num_threads()}, MLP 40-100-100-10, {args.steps}x{args.steps} plane on {len(x)} examples, "
          f"{args.repeats} interleaved repeats")
    for name, times in seconds.items():
        verdict = "PASS" if diff[name] <= MAX_DIFF else "FAIL"
        print(f"{name:22s} {statistics.median(times):7.3f} s (median)  {statistics.median(times) / fast:5.2f}x slice_2d's  "
              f"max |diff| vs per-point {diff[name]:.2e} ({verdict}, target <= {MAX_DIFF:g})")
    print(f"speed-up per-point/slice_2d {statistics.median(seconds['per-point']) / fast:.2f}x, "
          f"PointBatch/slice_2d {statistics.median(seconds['PointBatch']) / fast:.2f}x, "
          f"vmap/slice_2d {statistics.median(seconds['vmap (chunk 64)']) / fast:.2f}x")


if __name__ == "__main__":
    main()
