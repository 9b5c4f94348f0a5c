"""Benchmark: the overhead of every probe (sampling every 10 steps) on deepwell's ``fit``.

Trains the default network (1-D CNN with batch norm on MNIST-1D) and a deep MLP, each with and
without :class:`~deepwell.diagnostics.probes.Probes`, interleaved, and prints the median seconds
per epoch and the ratio: the median over rounds of (probed / plain median epoch in that round),
paired so that a shared machine's changing load distorts it less. Target: ratio <= 1.25; moonshot
<= 1.10. The probes' own measuring pass (an eval-mode forward of 256 examples every 10 steps) is
~14% of the MLP's training arithmetic at batch 64 (256 x 6 samplings an epoch against 3600 x 3),
which bounds how low that model's ratio can go without measuring less.

    python bench/probes.py [--epochs 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from deepwell.config import ModelSpec, RunSpec
from deepwell.data import prepare_data
from deepwell.diagnostics.probes import Probes
from deepwell.models import build_model
from deepwell.runtime import configure_cpu
from deepwell.training.loop import TensorData, fit, loss_function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    configure_cpu()
    spec = RunSpec()
    splits = prepare_data(spec.data, seed=0)
    data = TensorData(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    train = spec.train.model_copy(update={"epochs": args.epochs})
    models = {"default cnn1d": spec.model, "mlp 6x256 tanh": ModelSpec(arch="mlp", depth=6, width=256, activation="tanh")}
    print(f"threads {torch.get_num_threads()}, probes every {args.every} steps, {args.epochs} epochs x {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as folder:
        for label, model_spec in models.items():
            times: dict[bool, list[list[float]]] = {False: [], True: []}  # per round, its epochs
            for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
                for probed in (False, True):
                    torch.manual_seed(0)
                    model = build_model(model_spec, splits.input_shape, 10)
                    callbacks = [Probes(Path(folder) / "probes.jsonl", data.x_train[:256], data.y_train[:256],
                                        loss_function("classification", train), every=args.every)] if probed else []
                    result = fit(model, data, train, callbacks=callbacks)
                    if repeat:
                        times[probed].append([row["time/epoch_s"] for row in result.history])
            plain, probed = (statistics.median(t for epochs in times[key] for t in epochs) for key in (False, True))
            ratio = statistics.median(statistics.median(a) / statistics.median(b) for a, b in zip(times[True], times[False]))
            print(f"{label:16s} no probes {plain * 1e3:8.1f} ms/epoch   all probes {probed * 1e3:8.1f} ms/epoch   "
                  f"ratio {ratio:.3f} (target <= 1.25: {'PASS' if ratio <= 1.25 else 'FAIL'}; "
                  f"moonshot <= 1.10: {'PASS' if ratio <= 1.10 else 'FAIL'})")


if __name__ == "__main__":
    main()
