"""Benchmark: how deepwell's cost grows with the work, and how much memory a run takes.

Measured in one run on this machine (ratios and exponents, not absolute times):

1. ``fit`` seconds per epoch against n_train, width and depth (MLP, Adam, batch 100, no
   validation, clean-train metric on 1 example so the epoch is the steps); the landscape plane
   against its resolution (``slice_2d`` of a batch-norm MLP: the vmap path; points = resolution^2).
   Each is a log-log panel of bench/scaling.png with the least-squares exponent (time ~ work^k). Targets: k <= 1.15 in data,
   in depth and in grid points (linear); width is judged by GFLOP/s (its FLOPs grow as width^2).
2. For width: achieved GFLOP/s of the training step (6 x MACs per example: forward, input and weight
   gradients) against a plain ``torch.mm`` loop over the same matrix shapes, timed in the same run.
   Target: >= 50% of the matmul's rate for width >= 512.
3. Peak resident memory (the child's ru_maxrss) of ``deepwell train`` on the default spec (fewer
   epochs) and on the paper MLP, each against a hand-written loop on the same data and model, every
   one in a fresh process. Target <= 1.2x. And the probes' memory does not grow with epochs:
   ``deepwell train`` with probes for E and 4E epochs. Target: peak RSS ratio <= 1.05.

    python bench/scaling.py [--full] [--output bench/scaling.png]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepwell.config import ModelSpec, TrainSpec
from deepwell.diagnostics.landscape import random_direction, slice_2d
from deepwell.models import build_model
from deepwell.runtime import configure_cpu
from deepwell.training.loop import TensorData, fit

ROOT = Path(__file__).resolve().parent.parent
BATCH = 100
QUICK = {"n_train": [1000, 2000, 4000, 8000, 16000], "width": [32, 128, 512, 2048], "depth": [2, 4, 8, 16, 32],
         "resolution": [11, 21, 31, 41, 51], "memory_epochs": 3}
FULL = {"n_train": [1000, 4000, 16000, 64000], "width": [32, 64, 128, 256, 512, 1024, 2048], "depth": [2, 4, 8, 16, 32],
        "resolution": [11, 21, 41, 61, 81, 101], "memory_epochs": 10}
LINEAR_MAX, PEAK_SHARE, MEMORY_MAX, PROBE_GROWTH_MAX = 1.15, 0.5, 1.2, 1.05


def _data(n: int, features: int = 40, classes: int = 10) -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, features, generator=generator)
    return TensorData(x, torch.randint(0, classes, (n,), generator=generator))


def epoch_seconds(n: int, hidden: list[int], epochs: int = 2) -> float:
    """Median seconds per epoch of ``fit`` (the first epoch is a warm-up and dropped)."""
    model = build_model(ModelSpec(arch="mlp", hidden=hidden, init="torch_default"), (1, 40), 10,
                        generator=torch.Generator().manual_seed(0))
    spec = TrainSpec(epochs=epochs + 1, batch_size=BATCH, optimizer="adam", lr=1e-3, schedule="constant",
                     clean_train_examples=1)
    history = fit(model, _data(n), spec).history
    return statistics.median(row["time/epoch_s"] for row in history[1:])


def matmul_gflops(n: int, widths: list[int], repeats: int = 1) -> float:
    """GFLOP/s of plain ``torch.mm`` on a training step's shapes (forward, grad input, grad weight) for every layer."""
    shapes = list(zip([40] + widths, widths + [10]))
    mats = [(torch.randn(BATCH, i), torch.randn(i, o), torch.randn(BATCH, o)) for i, o in shapes]
    started, flops = time.perf_counter(), 0
    for _ in range(repeats * n // BATCH):
        for x, w, g in mats:
            torch.mm(x, w), torch.mm(g, w.T), torch.mm(x.T, g)
            flops += 6 * x.shape[0] * w.shape[0] * w.shape[1]
    return flops / (time.perf_counter() - started) / 1e9


def exponent(xs: list[float], ys: list[float]) -> float:
    """The slope k of log y = k log x + c (least squares)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def landscape_seconds(resolution: int) -> float:
    model = build_model(ModelSpec(arch="mlp", hidden=[100, 100], init="torch_default"), (1, 40), 10,
                        generator=torch.Generator().manual_seed(0))
    data = _data(400)
    generator = torch.Generator().manual_seed(1)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    alphas = torch.linspace(-1, 1, resolution)
    started = time.perf_counter()
    slice_2d(model, dx, dy, data.x_train, data.y_train, F.cross_entropy, alphas, alphas)
    return time.perf_counter() - started


def verdict(name: str, value: float, target: str, ok: bool) -> str:
    return f"{name}: {value:.3g} (target {target}) {'PASS' if ok else 'FAIL'}"


HAND = """
import resource, sys, time
from deepwell.config import load_spec
from deepwell.run import build_run
from deepwell.runtime import configure_cpu
sys.path.insert(0, {bench!r})
from loop import hand_written
configure_cpu()
spec = load_spec({spec!r}, {overrides!r})
parts = build_run(spec, __import__("torch").device("cpu"))
data = parts.data
if data.x_val is None:  # no validation split (the paper MLP): the loop validates on the first 1000 training examples
    data = type(data)(data.x_train, data.y_train, data.x_train[:1000], data.y_train[:1000])
hand_written(parts.model, data, spec.train.epochs, spec.train.batch_size, spec.train.lr)
"""
MEASURE = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); " \
          "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def peak_rss_mib(command: list[str]) -> float:
    """Peak resident memory of ``command`` run alone in a fresh process (its parent reads RUSAGE_CHILDREN)."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def memory_rows(epochs: int) -> list[str]:
    """``deepwell train`` vs the hand-written loop (peak RSS), and probes for E vs 4E epochs."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cases = {"default spec": None, "paper MLP": str(ROOT / "examples" / "mnist1d_paper_mlp.yaml")}
        for name, spec in cases.items():
            overrides = [f"train.epochs={epochs}", "diagnostics.probes=false"]
            train = [sys.executable, "-m", "deepwell.cli", "train", *([spec] if spec else []), "-q",
                     *[f"--set={o}" for o in overrides + [f"output.dir={folder}", f"output.name={name.replace(' ', '_')}"]]]
            hand = [sys.executable, "-c", HAND.format(bench=str(ROOT / "bench"), spec=spec, overrides=overrides)]
            ours, theirs = peak_rss_mib(train), peak_rss_mib(hand)
            rows.append(verdict(f"peak RSS deepwell train / hand-written, {name} ({ours:.0f} vs {theirs:.0f} MiB)",
                                ours / theirs, f"<= {MEMORY_MAX}", ours / theirs <= MEMORY_MAX))
        probe_rss = []
        for count in (epochs, 4 * epochs):
            probe_rss.append(peak_rss_mib([sys.executable, "-m", "deepwell.cli", "train", "-q", f"--set=train.epochs={count}",
                                           "--set=diagnostics.probes=true", "--set=diagnostics.every=1",
                                           f"--set=output.dir={folder}", f"--set=output.name=probes{count}"]))
        growth = probe_rss[1] / probe_rss[0]
        rows.append(verdict(f"peak RSS with probes, {4 * epochs} / {epochs} epochs ({probe_rss[1]:.0f} vs {probe_rss[0]:.0f} MiB)",
                            growth, f"<= {PROBE_GROWTH_MAX}", growth <= PROBE_GROWTH_MAX))
    return rows


def scaling(grid: dict) -> tuple[dict[str, tuple[list, list, float]], list[str]]:
    """Each panel's (work, seconds, exponent) and the verdict lines."""
    panels, lines = {}, []
    n = grid["n_train"]
    seconds = [epoch_seconds(count, [100, 100]) for count in n]
    panels["fit epoch vs n_train (MLP 40-100-100-10)"] = (n, seconds, exponent(n, seconds))
    widths, width_n = grid["width"], 2000
    seconds = [epoch_seconds(width_n, [w, w], epochs=1) for w in widths]
    panels["fit epoch vs width (2 hidden layers, 2000 examples)"] = (widths, seconds, exponent(widths, seconds))
    for w, s in zip(widths, seconds):
        achieved = 6 * (40 * w + w * w + w * 10) * width_n / s / 1e9
        peak = matmul_gflops(width_n, [w, w])
        line = f"width {w}: fit {achieved:.1f} GFLOP/s, plain matmul at the same shapes {peak:.1f} GFLOP/s"
        lines.append(verdict(line, achieved / peak, f">= {PEAK_SHARE}", achieved / peak >= PEAK_SHARE) if w >= 512
                     else f"{line}: {achieved / peak:.3g} of it")
    depths = grid["depth"]
    seconds = [epoch_seconds(4000, [100] * d) for d in depths]
    panels["fit epoch vs depth (width 100, 4000 examples)"] = (depths, seconds, exponent(depths, seconds))
    points = [r * r for r in grid["resolution"]]
    seconds = [landscape_seconds(r) for r in grid["resolution"]]
    # a batch-norm MLP (the default norm): the vmap path every network but a plain MLP takes (the default CNN too)
    panels["landscape plane vs points (batch-norm MLP, vmap)"] = (points, seconds, exponent(points, seconds))
    for title, (_, _, k) in panels.items():
        if title.startswith("fit epoch vs width"):  # FLOPs grow as width^2 once the matmuls dominate: judged by GFLOP/s above, not by k
            lines.append(f"exponent of {title}: {k:.3g} (FLOPs ~ width^2 for large widths; small widths are overhead-bound)")
        else:
            lines.append(verdict(f"exponent of {title}", k, f"<= {LINEAR_MAX}", k <= LINEAR_MAX))
    return panels, lines


def figure(panels: dict[str, tuple[list, list, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (title, (xs, ys, k)) in zip(axes, panels.items()):
        ax.loglog(xs, ys, "o-", label=f"fitted exponent {k:.2f}")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("seconds")
        ax.set_xlabel(title.split(" vs ")[1].split(" (")[0])
        ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap on short ranges
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="64k examples, more widths, 101-point grids")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "scaling.png")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    args = parser.parse_args()
    configure_cpu()
    grid = FULL if args.full else QUICK
    print(f"threads {torch.get_num_threads()}, load average {' '.join(f'{v:.1f}' for v in __import__('os').getloadavg())}")
    panels, lines = scaling(grid)
    for title, (xs, ys, k) in panels.items():
        print(f"{title}: " + ", ".join(f"{x}: {y:.3f} s" for x, y in zip(xs, ys)) + f"  (exponent {k:.2f})")
    if not args.no_memory:
        lines += memory_rows(grid["memory_epochs"])
    print("\n".join(lines))
    figure(panels, args.output)
    print(f"figure: {args.output}")


if __name__ == "__main__":
    main()
