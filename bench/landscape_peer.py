"""bench/peers.py's loss-landscape part: deepwell against the ``loss-landscapes`` library (3.0.6).

Same trained MLP (40-100-100-10, trained by deepwell's ``fit``), data (MNIST-1D validation, 400
examples) and points: the linear interpolation from the initial to the trained weights, and a 2-D
plane through the trained weights along two of deepwell's filter-normalised random directions,
handed to the library as end points (``planar_interpolation``). The library runs one forward pass
per point; deepwell many points per forward (:mod:`deepwell.diagnostics.point_batch`). Two more
rows: the plane with both sides on one thread (when torch runs more), and deepwell's own per-point
path on the plane. Each row is timed after one warm-up call of each
side, over interleaved rounds (the order alternates each round); reported are the median seconds,
the median over rounds of the paired ratio loss-landscapes / deepwell, and the max |difference|.

``.venv-bench/bin/python bench/peers.py --only landscape`` reruns this part alone and replaces
the landscape section of bench/RESULTS.md, leaving the rest of the report as it was.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import ModelSpec, TrainSpec
from deepwell.diagnostics.landscape import interpolate, random_direction, slice_2d
from deepwell.models import build_model
from deepwell.runtime import torch_threads
from deepwell.training.loop import TensorData, fit

HEADING = "## Loss landscape: deepwell vs loss-landscapes (same trained MLP, data, directions and points)"
PLANE = "plane along 2 filter-normalised directions"
SPEED_TARGET = 2.0   # the plane: loss-landscapes takes at least 2x deepwell's time
DIFF_TARGET = 1e-5   # and the same values


def _timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def _moved(model: nn.Module, steps: list[tuple[float, dict[str, torch.Tensor]]]) -> nn.Module:
    """A copy of ``model`` with parameters theta + sum(a * d)."""
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in moved.named_parameters():
            for scale, direction in steps:
                parameter.add_(scale * direction[name])
    return moved


def _paired(ours: Callable[[], np.ndarray], theirs: Callable[[], np.ndarray], repeats: int) -> dict:
    """Median seconds of each side, the median paired ratio theirs / ours and the max |difference|."""
    ours(), theirs()   # warm-up: the allocator, the library's first deep copies
    ours_s, theirs_s, diff = [], [], 0.0
    for round_ in range(repeats):
        order = [(ours, ours_s), (theirs, theirs_s)]
        values = {}
        for function, times in order if round_ % 2 == 0 else order[::-1]:
            seconds, values[id(function)] = _timed(function)
            times.append(seconds)
        diff = max(diff, float(np.abs(values[id(ours)] - values[id(theirs)]).max()))
    return {"max_abs_diff": diff, "deepwell_s": statistics.median(ours_s), "library_s": statistics.median(theirs_s),
            "ratio": statistics.median(b / a for a, b in zip(ours_s, theirs_s)), "repeats": repeats}


def bench_landscape(spec: ModelSpec, data: TensorData, epochs: int, steps: int, repeats: int, batch: int,
                    lr: float) -> list[dict]:
    """Both libraries on the same points; rows of (what, points, max |diff|, median seconds each, paired ratio)."""
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    initial = build_model(spec, (1, 40), 10, generator=torch.Generator().manual_seed(0)).eval()
    trained = copy.deepcopy(initial)
    fit(trained, data, TrainSpec(epochs=epochs, batch_size=batch, optimizer="adam", lr=lr, schedule="constant"))
    trained.eval()
    x, y = data.x_val, data.y_val
    metric = Loss(F.cross_entropy, x, y)
    rows = []

    # 1-D: the library evaluates alpha = 1/steps, 2/steps, ..., 1 (it never evaluates the start itself).
    alphas = torch.arange(1, steps + 1) / steps
    rows.append({"what": "interpolation initial -> trained", "points": steps, **_paired(
        lambda: interpolate(initial, trained, x, y, F.cross_entropy, alphas).numpy(),
        lambda: np.asarray(loss_landscapes.linear_interpolation(initial, trained, metric, steps, deepcopy_model=True)),
        repeats)})

    # 2-D: deepwell's filter-normalised directions dx, dy over [-1, 1)^2. The library walks
    # start + i/steps (end_one - start) + j'/steps (end_two - start) with start = theta - dx - dy,
    # end_one = theta + dx - dy, end_two = theta - dx + dy. Its snake-order walk evaluates rows
    # with even i at j' = j + 1 and rows with odd i at j' = j (an off-by-one in loss-landscapes
    # 3.0.6), so deepwell evaluates the grid with one more column and the same points are picked.
    generator = torch.Generator().manual_seed(1)
    dx, dy = random_direction(trained, generator), random_direction(trained, generator)
    start = _moved(trained, [(-1.0, dx), (-1.0, dy)])
    end_one, end_two = _moved(trained, [(1.0, dx), (-1.0, dy)]), _moved(trained, [(-1.0, dx), (1.0, dy)])
    grid_alphas, grid_betas = -1 + 2 * torch.arange(steps) / steps, -1 + 2 * torch.arange(steps + 1) / steps

    def plane(batched: bool) -> np.ndarray:
        grid = slice_2d(trained, dx, dy, x, y, F.cross_entropy, grid_alphas, grid_betas, batched=batched)
        return torch.stack([grid[i, 1:] if i % 2 == 0 else grid[i, :-1] for i in range(steps)]).numpy()

    def library_plane() -> np.ndarray:
        return np.asarray(loss_landscapes.planar_interpolation(start, end_one, end_two, metric, steps, deepcopy_model=True))

    rows.append({"what": PLANE, "points": steps * steps, **_paired(lambda: plane(True), library_plane, repeats)})
    if torch.get_num_threads() > 1:  # the same plane on one thread: what the many-points-per-forward arithmetic buys
        with torch_threads(1):
            rows.append({"what": "plane, both on 1 thread", "points": steps * steps,
                         **_paired(lambda: plane(True), library_plane, repeats)})
    # the same plane through deepwell's per-point path (one plain forward per point): what batching buys
    rows.append({"what": "plane, deepwell per-point path (batched=False)", "points": steps * steps,
                 **_paired(lambda: plane(False), library_plane, repeats)})
    return rows


def landscape_section(rows: list[dict], provenance: str = "") -> list[str]:
    """The report's landscape section (Markdown lines), with the plane's verdicts."""
    lines = [HEADING, ""] + ([provenance, ""] if provenance else []) + [
        "| slice | points | max abs difference | deepwell s (median) | loss-landscapes s (median) "
        "| loss-landscapes / deepwell (median of rounds) |",
        "|---|---|---|---|---|---|",
        *[f"| {r['what']} | {r['points']} | {r['max_abs_diff']:.2e} | {r['deepwell_s']:.3f} | {r['library_s']:.3f} "
          f"| {r['ratio']:.2f}x |" for r in rows], ""]
    plane = next(r for r in rows if r["what"] == PLANE)
    lines += [f"- plane: loss-landscapes takes {plane['ratio']:.2f}x deepwell's time (median of {plane['repeats']} "
              f"interleaved rounds; target >= {SPEED_TARGET:g}x: {'PASS' if plane['ratio'] >= SPEED_TARGET else 'FAIL'})",
              f"- plane: max |deepwell - loss-landscapes| {plane['max_abs_diff']:.2e} (target <= {DIFF_TARGET:g}: "
              f"{'PASS' if plane['max_abs_diff'] <= DIFF_TARGET else 'FAIL'})", "",
              "Both sides do the same multiply-adds in the 100x100 layer, which dominate the plane: one per-point "
              "(400x100)x(100x100) GEMM. deepwell runs each point whole on one thread (compiled, "
              "deepwell/diagnostics/chain_losses.cpp), its activations in the core's cache, that GEMM in oneDNN with the "
              "ReLU fused (~1.5x the MKL sgemm torch's own linear calls where MKL runs its AVX2 path, as on AMD CPUs), "
              "the first layer computed "
              "once per plane, the head and the log-softmax over 10 classes class-major; bench/landscape.py times its own paths.", ""]
    return lines


def replace_section(report: str, section: list[str]) -> str:
    """``report`` with its landscape section (heading to the next ``## ``) replaced by ``section``."""
    lines = report.split("\n")
    start = lines.index(HEADING)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + section + lines[end:])
