"""Benchmark: deepwell's default spec on a small tabular regression CSV against scikit-learn's MLPRegressor.

Friedman #1 (``sklearn.datasets.make_friedman1``: 10 features, 5 of them informative, 2000 rows,
no noise) is written to a CSV, as a user's own table would be. deepwell trains on it with the
default spec (only ``data.source`` given: ``arch=auto`` picks an MLP, the target is standardised);
the reference is ``make_pipeline(StandardScaler(), MLPRegressor())``, trained until it converges,
on deepwell's own train+validation rows, both scored on deepwell's test split in the same run.
Target: deepwell's test R^2 within 0.01 of the reference.

    python bench/tabular.py [--rows 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import deepwell
from deepwell.data import build_dataset

TOLERANCE = 0.01  # R^2 points deepwell may trail the reference by


def write_friedman_csv(path: Path, rows: int, seed: int) -> None:
    """Friedman #1 as a CSV with a header (x0..x9, y)."""
    x, y = make_friedman1(n_samples=rows, n_features=10, random_state=seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"x{i}" for i in range(x.shape[1])] + ["y"])
        writer.writerows(np.column_stack([x, y]).tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "friedman1.csv"
        write_friedman_csv(path, args.rows, args.seed)
        source = f"csv:path={path},target=y"
        started = time.perf_counter()
        run = deepwell.train(overrides=[f"data.source={source}", f"seed={args.seed}", f"output.dir={folder}/runs",
                                        "output.report=false"], progress="none")
        deepwell_seconds = time.perf_counter() - started
        dataset = build_dataset(source, seed=args.seed)  # the same test split the run was scored on
        x_train, y_train = dataset.x_train.numpy(), dataset.y_train.numpy().ravel()
        x_test, y_test = dataset.x_test.numpy(), dataset.y_test.numpy().ravel()
        ours = r2_score(y_test, run.predict(x_test).numpy().ravel())
        started = time.perf_counter()
        reference = make_pipeline(StandardScaler(), MLPRegressor(max_iter=5000, random_state=args.seed)).fit(x_train, y_train)
        reference_seconds = time.perf_counter() - started
        theirs = r2_score(y_test, reference.predict(x_test))
        spec = run.spec
        print(f"Friedman #1: {args.rows} rows, {len(x_train)} train+val / {len(x_test)} test; deepwell default spec -> "
              f"{spec.model.arch} width {spec.model.width}x{spec.model.depth}, norm {spec.model.norm}, "
              f"{spec.train.epochs} epochs of batch {spec.train.batch_size}")
        print(f"deepwell       test R^2 {ours:.4f} (summary: {run.summary['test']['test/r2']:.4f}, "
              f"MAE {run.summary['test']['test/mae']:.4f})  {deepwell_seconds:6.1f} s")
        print(f"scikit-learn   test R^2 {theirs:.4f} (StandardScaler + MLPRegressor, {reference[-1].n_iter_} epochs)  "
              f"{reference_seconds:6.1f} s")
        gap = theirs - ours
        print(f"gap {gap:+.4f} (target <= {TOLERANCE}: {'PASS' if gap <= TOLERANCE else 'FAIL'})")


if __name__ == "__main__":
    main()
