"""Benchmark: the MNIST-1D double-descent sweep, batched ensemble vs a loop of separate ``fit`` calls.

The reference sweep (the MNIST-1D notebook's): MLP 40-h-h-10 with torch's default init for the 19
widths of np.unique(np.geomspace(2, 300, 20, dtype=int)), 15% label noise ('uniform', as the
notebook), 4000 train / 12000 test, SGD lr 0.01 momentum 0.9, batch 100, 500 epochs, test error
measured at the end. Both paths run the same tasks (same seeds, init, batch order):

- batched: ``BatchedExecutor`` — all 19 models train as one batched computation per step;
- loop: ``InProcessExecutor`` — one ``fit`` per width. By default the loop runs a measured subset
  of the epochs (``--loop-epochs``) and its time is extrapolated linearly (labelled as such);
  the batched engine runs the same subset too, so the two are also checked run against run.

Targets: batched >= 4x faster than the loop; full sweep <= 60 s on 2 CPU cores. The notebook took
12.7 min; a NumPy re-implementation 64 s.

    python bench/double_descent.py [--epochs 500] [--loop-epochs 10] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import torch

from deepwell.runtime import resolve_device
from deepwell.studies.double_descent import FULL, mlp_params, reference_rows
from deepwell.sweep import BatchedExecutor, InProcessExecutor, SweepTask, run_sweep

SPEEDUP_TARGET = 4.0
SWEEP_TARGET_S = 60.0


def tasks(epochs: int, device: str) -> list[SweepTask]:
    train = FULL.train(epochs).model_copy(update={"eval_every": epochs})
    return [SweepTask(FULL.data("uniform"), FULL.model(w), train, seed=0, params={"width": w}, device=device)
            for w in FULL.widths]


def timed(executor, work: list[SweepTask]) -> tuple[float, list[dict]]:
    if work and str(resolve_device(work[0].device)).startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    records = run_sweep(work, executor)
    return time.perf_counter() - started, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=FULL.epochs)
    parser.add_argument("--loop-epochs", type=int, default=10, help="epochs the loop of fit runs (extrapolated to --epochs)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, widths {list(FULL.widths)}")
    run_sweep(tasks(1, args.device)[:2], BatchedExecutor())  # warm-up: data generation, kernels

    loop_s, loop_records = timed(InProcessExecutor(), tasks(args.loop_epochs, args.device))
    subset_s, subset_records = timed(BatchedExecutor(), tasks(args.loop_epochs, args.device))
    agree = max(abs(a["test_error"] - b["test_error"]) for a, b in zip(loop_records, subset_records))
    full_s, full_records = timed(BatchedExecutor(), tasks(args.epochs, args.device))

    scale = args.epochs / args.loop_epochs
    loop_label = "measured" if args.loop_epochs == args.epochs else f"measured {args.loop_epochs} epochs x {scale:g}, extrapolated"
    print(f"loop of fit, {args.loop_epochs} epochs: {loop_s:.1f} s; batched, same runs: {subset_s:.1f} s "
          f"-> {loop_s / subset_s:.1f}x (same-run test errors differ by at most {agree:.4f})")
    print(f"loop of fit, full sweep ({loop_label}): {loop_s * scale:.0f} s")
    print(f"batched full sweep (19 widths x {args.epochs} epochs): {full_s:.1f} s "
          f"(target <= {SWEEP_TARGET_S:.0f} s: {'met' if full_s <= SWEEP_TARGET_S else 'NOT met'})")
    speedup = loop_s * scale / full_s
    print(f"speed-up batched vs loop: {speedup:.1f}x (target >= {SPEEDUP_TARGET:g}x: "
          f"{'met' if speedup >= SPEEDUP_TARGET else 'NOT met'})")
    print("width  params  train_err  test_err")
    for record in full_records:
        print(f"{record['width']:5d} {mlp_params(record['width']):7d}  {record['train_error']:.3f}      {record['test_error']:.3f}")
    if args.epochs == FULL.epochs:
        rows = [{"width": r["width"], "params": mlp_params(r["width"]), "test_error_mean": r["test_error"], "test_error_std": 0.0,
                 "train_error_mean": r["train_error"]} for r in full_records]
        for row in reference_rows(rows):
            print(f"{row['landmark']}: notebook {row['reference']:.3f} near h={row['reference_width']}, measured "
                  f"{row['measured']:.3f} at h={row['width']} ({row['difference']:+.3f}; within 2 points and near: "
                  f"{row['within_tolerance']})")


if __name__ == "__main__":
    main()
