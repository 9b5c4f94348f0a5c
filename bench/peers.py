"""Benchmark: deepwell against its peers (Keras 3, Lightning, skorch, loss-landscapes) and a hand-written loop.

Needs the benchmark environment (``make bench`` creates ``.venv-bench`` from constraints-bench.txt:
deepwell + keras + lightning + skorch + loss-landscapes, with the core's pinned torch).

1. Training speed. The same two networks on MNIST-1D (3600 train / 400 validation examples):
   the paper's MLP 40-100-100-10 (ReLU) and a small CNN (conv 32, conv 32, max-pool 2, conv 64,
   kernel 5, global average pool, linear 10), trained with Adam (lr 0.01, eps 1e-8, constant), batch
   100, cross-entropy, shuffled batches, one validation pass per epoch, on the CPU, by:
   deepwell ``fit``; a hand-written PyTorch loop; Keras 3 (``KERAS_BACKEND=torch``, ``model.fit``
   on NumPy arrays); Lightning (``Trainer`` with logger, checkpointing, progress bar and model
   summary off, a ``DataLoader`` over a ``TensorDataset``); skorch (``NeuralNetClassifier``). Each
   framework's usual way to feed data is part of its cost. Repetitions are interleaved (every
   framework once per round, the order rotated each round), after one warm-up fit each. An epoch
   is timed from one epoch start to the next (the last one to the end of ``fit``). Reported: the
   median seconds per epoch, and the ratio to the hand-written loop as the median over rounds of
   the ratio of the two medians in that round (paired, so a shared machine's changing load
   distorts it less); deepwell against a peer is paired the same way.
   deepwell's ``fit`` steps torch's fused optimiser kernel (``fused=True``, the same update), which
   the other entries leave at torch's default per-tensor loop: that is most of its lead on the MLP.
   deepwell's epoch also measures the clean (eval-mode) training loss and accuracy on a fixed
   sample of 1024 training examples (``train.clean_train_examples``), which no other entry does;
   that extra forward pass counts against deepwell (about 10% more work for the CNN). The row
   "same work" sets the sample to one example, so deepwell does what the others do.
2. Loss landscapes: deepwell (:mod:`deepwell.diagnostics.landscape`, many grid points per forward)
   against the ``loss-landscapes`` library (one forward pass per point) on the same trained MLP,
   data and points: the linear interpolation from the initial to the trained weights, and a 2-D
   plane through the trained weights along two of deepwell's filter-normalised random directions
   handed to the library as end points (``planar_interpolation``). Reported: max |difference|,
   median seconds and the paired ratio over interleaved rounds (bench/landscape_peer.py).
   ``--only landscape`` reruns this part alone and replaces its section of bench/RESULTS.md.
3. The double-descent sweep, batched ensemble vs a loop of ``fit`` (runs bench/double_descent.py).

bench/RESULTS.md is regenerated from the run, with the versions, the machine and the commands.

    .venv-bench/bin/python bench/peers.py [--epochs 5] [--repeats 7] [--quick] [--output bench/RESULTS.md]
    .venv-bench/bin/python bench/peers.py --only landscape [--landscape-repeats 7]
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # read when keras is first imported

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from deepwell.config import DataSpec, ModelSpec, TrainSpec  # noqa: E402
from deepwell.data import prepare_data  # noqa: E402
from deepwell.models import build_model  # noqa: E402
from deepwell.runtime import configure_cpu  # noqa: E402
from deepwell.training.callbacks import Callback  # noqa: E402
from deepwell.training.checkpoint import atomic_write_text  # noqa: E402
from deepwell.training.loop import TensorData, fit  # noqa: E402
from landscape_peer import bench_landscape, landscape_section, replace_section  # noqa: E402  (beside this script)
from loop import hand_written  # noqa: E402  (bench/loop.py, beside this script)

ROOT = Path(__file__).resolve().parent.parent
PEERS = {"keras": "keras", "lightning": "lightning", "skorch": "skorch", "loss-landscapes": "loss_landscapes"}
HAND_TARGET = 1.10  # deepwell's epoch may cost at most 10% more than the hand-written loop's
BATCH, LR, EPS = 100, 1e-2, 1e-8
# --quick: a smoke run
QUICK = {"epochs": 2, "repeats": 2, "landscape_steps": 8, "landscape_repeats": 2, "dd_epochs": 1, "dd_loop_epochs": 1}


def _require_peers() -> None:
    missing = [name for name, module in PEERS.items() if importlib.util.find_spec(module) is None]
    if missing:
        sys.exit(f"bench/peers.py needs {', '.join(missing)}, which this Python ({sys.executable}) lacks. "
                 "Run it through `make bench` (creates .venv-bench from constraints-bench.txt), or "
                 "`.venv-bench/bin/python bench/peers.py` after `make bench-env`.")


# ----- the two networks, as deepwell specs, plain torch modules and Keras models ---------------------------------

@dataclass(frozen=True)
class Workload:
    name: str
    spec: ModelSpec                      # deepwell's network
    torch_net: Callable[[], nn.Module]   # the same network for the hand-written loop, Lightning and skorch
    keras_net: Callable[[], object]      # the same network in Keras layers (channels last)
    keras_input: Callable[[np.ndarray], np.ndarray]


def _torch_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))


def _torch_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(), nn.Conv1d(32, 32, 5, padding=2), nn.ReLU(),
                         nn.MaxPool1d(2), nn.Conv1d(32, 64, 5, padding=2), nn.ReLU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 10))


def _keras_mlp():
    import keras

    return keras.Sequential([keras.Input((40,)), keras.layers.Dense(100, activation="relu"),
                             keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)])


def _keras_cnn():
    import keras
    from keras import layers

    return keras.Sequential([keras.Input((40, 1)), layers.Conv1D(32, 5, padding="same", activation="relu"),
                             layers.Conv1D(32, 5, padding="same", activation="relu"), layers.MaxPooling1D(2),
                             layers.Conv1D(64, 5, padding="same", activation="relu"), layers.GlobalAveragePooling1D(),
                             layers.Dense(10)])


WORKLOADS = [
    Workload("MLP 40-100-100-10", ModelSpec(arch="mlp", hidden=[100, 100], norm="none", init="torch_default"),
             _torch_mlp, _keras_mlp, lambda x: x.reshape(len(x), -1)),
    Workload("CNN 32-32-pool-64 (k5)", ModelSpec(arch="cnn1d", channels=[32, 32, "pool", 64], kernel_size=5, norm="none",
                                                 init="torch_default"),
             _torch_cnn, _keras_cnn, lambda x: x.transpose(0, 2, 1)),  # (N, 1, 40) -> (N, 40, 1)
]


# ----- one fit per framework; each returns seconds per epoch ---------------------------------------------------------

class EpochClock:
    """Timestamps of epoch starts (from each framework's callback) and of the end of ``fit``."""

    def __init__(self) -> None:
        self.ticks: list[float] = []

    def tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def epochs(self) -> list[float]:
        return [b - a for a, b in zip(self.ticks, self.ticks[1:])]


def run_deepwell(work: Workload, data: TensorData, epochs: int, clean_train_examples: int | None = 1024) -> list[float]:
    """deepwell's ``fit``; by default it also measures the clean training loss on 1024 examples each epoch."""
    clock = EpochClock()

    class Tick(Callback):
        def on_epoch_start(self, state) -> None:
            clock.tick()

    model = build_model(work.spec, (1, 40), 10)
    spec = TrainSpec(epochs=epochs, batch_size=BATCH, optimizer="adam", lr=LR, schedule="constant",
                     clean_train_examples=clean_train_examples)
    fit(model, data, spec, callbacks=[Tick()])
    clock.tick()
    return clock.epochs()


def run_hand(work: Workload, data: TensorData, epochs: int) -> list[float]:
    """The loop a PyTorch user writes by hand: bench/loop.py's."""
    return hand_written(work.torch_net(), data, epochs, BATCH, LR, eps=EPS)


def run_keras(work: Workload, data: TensorData, epochs: int) -> list[float]:
    import keras

    clock = EpochClock()

    class Tick(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None) -> None:
            clock.tick()

    model = work.keras_net()
    model.compile(optimizer=keras.optimizers.Adam(LR, epsilon=EPS),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = work.keras_input(data.x_train.numpy()), data.y_train.numpy()
    validation = (work.keras_input(data.x_val.numpy()), data.y_val.numpy())
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, validation_data=validation,
              validation_batch_size=len(data.x_val), verbose=0, callbacks=[Tick()])
    clock.tick()
    return clock.epochs()


def run_lightning(work: Workload, data: TensorData, epochs: int) -> list[float]:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    # Lightning sets its logger to INFO on import; its "GPU available" lines and tips would drown the figures.
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    clock = EpochClock()

    class Classifier(L.LightningModule):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx) -> None:
            x, y = batch
            out = self.net(x)
            self.log_dict({"val_loss": F.cross_entropy(out, y), "val_acc": (out.argmax(1) == y).float().mean()})

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR, eps=EPS)

    class Tick(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            clock.tick()

    train = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True)
    val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=len(data.x_val))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[Tick()])
    trainer.fit(Classifier(work.torch_net()), train, val)
    clock.tick()
    return clock.epochs()


def run_skorch(work: Workload, data: TensorData, epochs: int) -> list[float]:
    from skorch import NeuralNetClassifier
    from skorch.callbacks import Callback as SkorchCallback
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    clock = EpochClock()

    class Tick(SkorchCallback):
        def on_epoch_begin(self, net, **kwargs) -> None:
            clock.tick()

    net = NeuralNetClassifier(work.torch_net(), criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                              optimizer__eps=EPS, lr=LR, max_epochs=epochs, batch_size=BATCH,
                              iterator_train__shuffle=True, iterator_valid__batch_size=len(data.x_val),
                              train_split=predefined_split(Dataset(data.x_val.numpy(), data.y_val.numpy())),
                              device="cpu", verbose=0, callbacks=[Tick()])
    net.fit(data.x_train.numpy(), data.y_train.numpy())
    clock.tick()
    return clock.epochs()


SAME_WORK = "deepwell fit, same work (clean_train_examples=1)"
FRAMEWORKS = {"hand-written loop": run_hand, "deepwell fit": run_deepwell, "Keras 3 (torch)": run_keras,
              "Lightning": run_lightning, "skorch": run_skorch,
              SAME_WORK: lambda work, data, epochs: run_deepwell(work, data, epochs, clean_train_examples=1)}


def check_architectures() -> list[str]:
    """Every framework's network has the same parameter count (the same architecture)."""
    lines = []
    for work in WORKLOADS:
        counts = {"deepwell": sum(p.numel() for p in build_model(work.spec, (1, 40), 10).parameters()),
                  "torch": sum(p.numel() for p in work.torch_net().parameters()),
                  "keras": work.keras_net().count_params()}
        if len(set(counts.values())) != 1:
            raise SystemExit(f"{work.name}: the frameworks' networks differ: {counts}")
        lines.append(f"{work.name}: {counts['torch']} parameters in every framework")
    return lines


def bench_training(data: TensorData, epochs: int, repeats: int) -> dict[str, dict[str, list[list[float]]]]:
    """{workload: {framework: per round, the seconds of each epoch}}: interleaved rounds after a warm-up."""
    times = {work.name: {name: [] for name in FRAMEWORKS} for work in WORKLOADS}
    names = list(FRAMEWORKS)
    for work in WORKLOADS:
        for run in FRAMEWORKS.values():
            run(work, data, 1)  # warm-up: imports, kernels, allocator
        for round_ in range(repeats):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                torch.manual_seed(round_)
                times[work.name][name].append(FRAMEWORKS[name](work, data, epochs))
    return times


# ----- the double-descent sweep and the report ----------------------------------------------------------------------

def bench_double_descent(epochs: int, loop_epochs: int) -> tuple[list[str], str]:
    command = [sys.executable, "bench/double_descent.py", "--epochs", str(epochs), "--loop-epochs", str(loop_epochs)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    output = done.stdout + (f"\n(exit code {done.returncode})\n{done.stderr[-2000:]}" if done.returncode else "")
    return command, output.strip()


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("deepwell", "torch", "keras", "lightning", "skorch", "loss-landscapes", "numpy"):
        versions[name] = importlib.metadata.version(name)
    return versions


def _cpu() -> str:
    model = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores available, torch threads {torch.get_num_threads()}"


def training_table(times: dict[str, dict[str, list[list[float]]]]) -> tuple[list[str], list[str]]:
    """Markdown rows and target verdicts. A ratio is the median over rounds of (framework / hand-written
    median epoch in that round): paired within a round, it follows the load of a shared machine less.
    deepwell against a peer is paired the same way: the median over rounds of (peer / deepwell)."""
    lines, verdicts = [], []
    for work, by_framework in times.items():
        lines += [f"\n{work}\n", "| framework | ms / epoch (median) | ratio to hand-written (median of rounds) | epochs measured |",
                  "|---|---|---|---|"]
        rounds = {name: [statistics.median(epochs) for epochs in fits] for name, fits in by_framework.items()}
        hand = rounds["hand-written loop"]
        ratio = {name: statistics.median(a / b for a, b in zip(values, hand)) for name, values in rounds.items()}
        for name, fits in by_framework.items():
            all_epochs = [t for epochs in fits for t in epochs]
            lines.append(f"| {name} | {statistics.median(all_epochs) * 1e3:.2f} | {ratio[name]:.2f}x | {len(all_epochs)} |")
        ours = ratio["deepwell fit"]
        verdicts.append(f"{work}: deepwell / hand-written {ours:.2f}x (target <= {HAND_TARGET:.2f}x: "
                        f"{'PASS' if ours <= HAND_TARGET else 'FAIL'}; without the clean-train pass "
                        f"{ratio[SAME_WORK]:.2f}x)")
        for peer in ("Keras 3 (torch)", "Lightning", "skorch"):
            slower = statistics.median(a / b for a, b in zip(rounds[peer], rounds["deepwell fit"]))
            verdicts.append(f"{work}: deepwell faster than {peer} ({peer} takes {slower:.2f}x deepwell's time "
                            f"per epoch, median of rounds): {'PASS' if slower > 1 else 'FAIL'}")
    return lines, verdicts


def _command() -> str:
    """This run's command line, with the settings that change its numbers."""
    settings = [f"{key}={os.environ[key]}" for key in ("KERAS_BACKEND", "DEEPWELL_THREADS") if os.environ.get(key)]
    return " ".join(shlex.quote(a) for a in [*settings, os.path.relpath(sys.executable, ROOT), "bench/peers.py", *sys.argv[1:]])


def _landscape(args: argparse.Namespace, data: TensorData) -> list[dict]:
    rows = bench_landscape(WORKLOADS[0].spec, data, args.epochs, args.landscape_steps, args.landscape_repeats, BATCH, LR)
    for row in rows:
        print(f"landscape {row['what']}: {row['points']} points, max |deepwell - loss-landscapes| {row['max_abs_diff']:.2e}, "
              f"deepwell {row['deepwell_s']:.3f} s, loss-landscapes {row['library_s']:.3f} s (median), "
              f"loss-landscapes / deepwell {row['ratio']:.2f}x (median of {row['repeats']} rounds)")
    return rows


def _landscape_only(args: argparse.Namespace, data: TensorData, output: Path | None, load_before: tuple, started: float) -> None:
    """The landscape part alone; its section of the report is replaced, the rest kept as it was."""
    rows = _landscape(args, data)
    load_after = os.getloadavg()
    if output is None:
        return
    provenance = (f"This section regenerated alone on {datetime.date.today().isoformat()} in "
                  f"{time.perf_counter() - started:.0f} s: `{_command()}`; deepwell {importlib.metadata.version('deepwell')}, "
                  f"torch {importlib.metadata.version('torch')}, loss-landscapes {importlib.metadata.version('loss-landscapes')}; {_cpu()}; "
                  f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after.")
    atomic_write_text(output, replace_section(output.read_text(), landscape_section(rows, provenance)))
    print(f"replaced the landscape section of {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (one fit per framework each)")
    parser.add_argument("--landscape-steps", type=int, default=40, help="points per side of the landscape grids")
    parser.add_argument("--landscape-repeats", type=int, default=7, help="interleaved rounds of each landscape row")
    parser.add_argument("--only", choices=["landscape"], default=None,
                        help="run only this part and replace its section of the report (the rest stays as it was)")
    parser.add_argument("--dd-epochs", type=int, default=500, help="epochs of the double-descent sweep (the reference's)")
    parser.add_argument("--dd-loop-epochs", type=int, default=10, help="epochs the loop of fit runs (extrapolated)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    parser.add_argument("--output", type=Path, default=None,
                        help="the report (default: bench/RESULTS.md; none with --quick unless given)")
    args = parser.parse_args()
    _require_peers()
    if args.quick:  # smaller defaults; options given on the command line still win
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    output = args.output if args.output is not None or args.quick else ROOT / "bench" / "RESULTS.md"
    # Lightning warns that the DataLoaders have no worker processes: workers would only slow in-memory tensors down.
    warnings.filterwarnings("ignore", module=r"lightning\..*")
    configure_cpu()
    load_before = os.getloadavg()
    started = time.perf_counter()

    splits = prepare_data(DataSpec(source="mnist1d"), seed=0)
    data = TensorData(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    if args.only == "landscape":
        _landscape_only(args, data, output, load_before, started)
        return
    architecture_lines = check_architectures()
    print("\n".join(architecture_lines))
    times = bench_training(data, args.epochs, args.repeats)
    table, verdicts = training_table(times)
    print("\n".join(table + [""] + verdicts))
    landscape = _landscape(args, data)
    dd_command, dd_output = bench_double_descent(args.dd_epochs, args.dd_loop_epochs)
    print(dd_output)
    load_after = os.getloadavg()
    if output is None:
        return
    versions = _versions()
    command = _command()
    report = [
        "# deepwell benchmarks against its peers",
        "",
        f"Generated by `bench/peers.py` on {datetime.date.today().isoformat()} in {time.perf_counter() - started:.0f} s; "
        "regenerate with `make bench` (or the command below). Do not edit by hand.",
        "",
        f"- command: `{command}`; double descent: `{' '.join(dd_command[1:])}`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}",
        f"- machine: {_cpu()}; load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(other work on the machine makes timings noisy: compare ratios measured in one run)",
        "",
        f"## Training speed (MNIST-1D, Adam lr {LR}, batch {BATCH}, {args.epochs} epochs x {args.repeats} interleaved rounds)",
        *table,
        "",
        *[f"- {line}" for line in verdicts],
        "",
        "A ratio is the median over rounds of the two medians' ratio within a round (paired: the machine's load "
        "changes between rounds). deepwell's `fit` steps torch's fused optimiser kernel (`fused=True`, the same "
        "update), which the hand-written loop and the peers leave at torch's default per-tensor loop: most of its "
        "lead on the MLP. Its epoch also measures the clean training loss on 1024 examples, which no other entry does.",
        "",
        *landscape_section(landscape),
        "## Double-descent sweep: batched ensemble vs a loop of fit",
        "",
        "```",
        dd_output,
        "```",
        "",
    ]
    atomic_write_text(output, "\n".join(report))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
