"""Benchmark: deepwell's ``fit`` against a hand-written PyTorch loop, same MLP, same data.

Both train the MNIST-1D paper's MLP (40-100-100-10, ReLU, Adam, batch 100) on the same
on-device tensors, evaluating on the validation split after every epoch. Runs are interleaved
(hand, deepwell, hand, deepwell, ...) so both see the same machine state; the printed figure is
the ratio of median seconds per epoch. Target: ratio <= 1.10.

A third row trains with ``train.compile=on`` (``torch.compile`` of the forward, inductor) in the
same rounds: its ratio to eager ``fit`` is printed without the compile (median epoch, the first
compiled epoch excluded) and with it (total seconds of the compiled runs, compile included).
``--no-compile`` skips it.

deepwell's epoch also computes the clean (eval-mode) training loss and accuracy, which the
hand-written loop does not; that extra forward pass is part of the measured ratio.

    python bench/loop.py [--epochs 5] [--repeats 5] [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.models import build_model
from deepwell.runtime import configure_cpu
from deepwell.training.loop import TensorData, fit


def hand_written(model: nn.Module, data: TensorData, epochs: int, batch_size: int, lr: float, eps: float = 1e-8) -> list[float]:
    """The loop a PyTorch user writes by hand (Adam, shuffled batches, a validation pass per epoch);
    returns seconds per epoch. bench/peers.py times the same loop."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=eps)
    generator = torch.Generator().manual_seed(0)
    n, times = len(data.x_train), []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            index = order[i:i + batch_size]
            loss = F.cross_entropy(model(data.x_train[index]), data.y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            out = model(data.x_val)
            val = (F.cross_entropy(out, data.y_val).item(), (out.argmax(1) == data.y_val).float().mean().item())
        times.append(time.perf_counter() - started)
    assert all(v == v for v in val)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip the train.compile=on row")
    args = parser.parse_args()
    configure_cpu()
    splits = prepare_data(DataSpec(source="mnist1d"), seed=0)
    data = TensorData(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    model_spec = ModelSpec(arch="mlp", hidden=[100, 100], activation="relu", init="torch_default")
    train_spec = TrainSpec(epochs=args.epochs, batch_size=100, optimizer="adam", lr=1e-2)

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return build_model(model_spec, splits.input_shape, 10)

    hand, ours, compiled, compiled_total, eager_total = [], [], [], [], []
    compiled_spec = train_spec.model_copy(update={"compile": "on"})
    hand_written(fresh(), data, 1, 100, 1e-2)  # warm-up: allocator, kernels
    fit(fresh(), data, train_spec.model_copy(update={"epochs": 1}))
    for _ in range(args.repeats):
        hand += hand_written(fresh(), data, args.epochs, 100, 1e-2)
        started = time.perf_counter()
        result = fit(fresh(), data, train_spec)
        eager_total.append(time.perf_counter() - started)
        ours += [row["time/epoch_s"] for row in result.history]
        if not args.no_compile:
            torch._dynamo.reset()  # every compiled run pays its compile, as a fresh process would (no warm cache in memory)
            started = time.perf_counter()
            result = fit(fresh(), data, compiled_spec)
            compiled_total.append(time.perf_counter() - started)
            compiled += [row["time/epoch_s"] for row in result.history[1:]]  # the first epoch holds the compile
    hand_median, ours_median = statistics.median(hand), statistics.median(ours)
    print(f"threads {torch.get_num_threads()}, {len(hand)} epochs each, MLP 40-100-100-10 on MNIST-1D ({len(data.x_train)} train)")
    print(f"hand-written loop   {hand_median * 1e3:8.2f} ms/epoch (median)")
    print(f"deepwell fit        {ours_median * 1e3:8.2f} ms/epoch (median)")
    ratio = ours_median / hand_median
    print(f"ratio deepwell/hand {ratio:8.3f}   (target <= 1.10: {'PASS' if ratio <= 1.10 else 'FAIL'})")
    if compiled:
        steady = statistics.median(compiled)
        print(f"deepwell fit, compile=on {steady * 1e3:8.2f} ms/epoch (median, first epoch excluded)")
        print(f"ratio compiled/eager {steady / ours_median:8.3f} per epoch without the compile; "
              f"{statistics.median(compiled_total) / statistics.median(eager_total):.3f} for the whole {args.epochs}-epoch run "
              f"with it ({statistics.median(compiled_total):.1f} s vs {statistics.median(eager_total):.1f} s)")


if __name__ == "__main__":
    main()
