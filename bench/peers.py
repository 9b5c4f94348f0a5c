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
2. Loss landscapes: deepwell (:mod:`deepwell.diagnostics.landscape`, vectorised over grid points)
   against the ``loss-landscapes`` library (one forward pass per point) on the same trained MLP,
   data and points: the linear interpolation from the initial to the trained weights, and a 2-D
   plane through the trained weights along two of deepwell's filter-normalised random directions
   handed to the library as end points (``planar_interpolation``). Reported: max |difference|
   and seconds.
3. The double-descent sweep, batched ensemble vs a loop of ``fit`` (runs bench/double_descent.py).

bench/RESULTS.md is regenerated from the run, with the versions, the machine and the commands.

    .venv-bench/bin/python bench/peers.py [--epochs 5] [--repeats 7] [--quick] [--output bench/RESULTS.md]
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # read when keras is first imported

import argparse  # noqa: E402
import copy  # noqa: E402
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
from deepwell.diagnostics.landscape import interpolate, random_direction, slice_2d  # noqa: E402
from deepwell.models import build_model  # noqa: E402
from deepwell.runtime import configure_cpu  # noqa: E402
from deepwell.training.callbacks import Callback  # noqa: E402
from deepwell.training.checkpoint import atomic_write_text  # noqa: E402
from deepwell.training.loop import TensorData, fit  # noqa: E402
from loop import hand_written  # noqa: E402  (bench/loop.py, beside this script)

ROOT = Path(__file__).resolve().parent.parent
PEERS = {"keras": "keras", "lightning": "lightning", "skorch": "skorch", "loss-landscapes": "loss_landscapes"}
HAND_TARGET = 1.10  # deepwell's epoch may cost at most 10% more than the hand-written loop's
BATCH, LR, EPS = 100, 1e-2, 1e-8
QUICK = {"epochs": 2, "repeats": 2, "landscape_steps": 8, "dd_epochs": 1, "dd_loop_epochs": 1}  # --quick: a smoke run


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


# ----- loss landscapes: deepwell vs the loss-landscapes library ----------------------------------------------------

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


def bench_landscape(data: TensorData, epochs: int, steps: int) -> list[dict]:
    """Both libraries on the same points; rows of (what, points, max |diff|, seconds each)."""
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    initial = build_model(WORKLOADS[0].spec, (1, 40), 10, generator=torch.Generator().manual_seed(0)).eval()
    trained = copy.deepcopy(initial)
    fit(trained, data, TrainSpec(epochs=epochs, batch_size=BATCH, optimizer="adam", lr=LR, schedule="constant"))
    trained.eval()
    x, y = data.x_val, data.y_val
    metric = Loss(F.cross_entropy, x, y)
    rows = []

    # 1-D: the library evaluates alpha = 1/steps, 2/steps, ..., 1 (it never evaluates the start itself).
    alphas = torch.arange(1, steps + 1) / steps
    ours_s, ours = _timed(lambda: interpolate(initial, trained, x, y, F.cross_entropy, alphas))
    theirs_s, theirs = _timed(lambda: loss_landscapes.linear_interpolation(initial, trained, metric, steps, deepcopy_model=True))
    rows.append({"what": "interpolation initial -> trained", "points": steps,
                 "max_abs_diff": float(np.abs(ours.numpy() - theirs).max()), "deepwell_s": ours_s, "library_s": theirs_s})

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
    ours_s, grid = _timed(lambda: slice_2d(trained, dx, dy, x, y, F.cross_entropy, grid_alphas, grid_betas))
    theirs_s, theirs = _timed(lambda: loss_landscapes.planar_interpolation(start, end_one, end_two, metric, steps,
                                                                            deepcopy_model=True))
    ours = torch.stack([grid[i, 1:] if i % 2 == 0 else grid[i, :-1] for i in range(steps)]).numpy()
    rows.append({"what": "plane along 2 filter-normalised directions", "points": steps * steps,
                 "max_abs_diff": float(np.abs(ours - theirs).max()), "deepwell_s": ours_s, "library_s": theirs_s})
    # the same plane through deepwell's per-point path (one plain forward per point): what batching buys
    point_s, grid = _timed(lambda: slice_2d(trained, dx, dy, x, y, F.cross_entropy, grid_alphas, grid_betas, batched=False))
    ours = torch.stack([grid[i, 1:] if i % 2 == 0 else grid[i, :-1] for i in range(steps)]).numpy()
    rows.append({"what": "plane, deepwell per-point path (batched=False)", "points": steps * steps,
                 "max_abs_diff": float(np.abs(ours - theirs).max()), "deepwell_s": point_s, "library_s": theirs_s})
    return rows


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
                        f"{'met' if ours <= HAND_TARGET else 'NOT met'}; without the clean-train pass "
                        f"{ratio[SAME_WORK]:.2f}x)")
        for peer in ("Keras 3 (torch)", "Lightning", "skorch"):
            slower = statistics.median(a / b for a, b in zip(rounds[peer], rounds["deepwell fit"]))
            verdicts.append(f"{work}: deepwell faster than {peer} ({peer} takes {slower:.2f}x deepwell's time "
                            f"per epoch, median of rounds): {'met' if slower > 1 else 'NOT met'}")
    return lines, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (one fit per framework each)")
    parser.add_argument("--landscape-steps", type=int, default=40, help="points per side of the landscape grids")
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
    architecture_lines = check_architectures()
    print("\n".join(architecture_lines))
    times = bench_training(data, args.epochs, args.repeats)
    table, verdicts = training_table(times)
    print("\n".join(table + [""] + verdicts))
    landscape = bench_landscape(data, args.epochs, args.landscape_steps)
    for row in landscape:
        print(f"landscape {row['what']}: {row['points']} points, max |deepwell - loss-landscapes| {row['max_abs_diff']:.2e}, "
              f"deepwell {row['deepwell_s']:.3f} s, loss-landscapes {row['library_s']:.3f} s")
    dd_command, dd_output = bench_double_descent(args.dd_epochs, args.dd_loop_epochs)
    print(dd_output)
    load_after = os.getloadavg()
    if output is None:
        return
    versions = _versions()
    settings = [f"{key}={os.environ[key]}" for key in ("KERAS_BACKEND", "DEEPWELL_THREADS") if os.environ.get(key)]
    command = " ".join(shlex.quote(a) for a in [*settings, os.path.relpath(sys.executable, ROOT), "bench/peers.py", *sys.argv[1:]])
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
        "## Loss landscape: deepwell vs loss-landscapes (same trained MLP, data, directions and points)",
        "",
        "| slice | points | max abs difference | deepwell s | loss-landscapes s |",
        "|---|---|---|---|---|",
        *[f"| {r['what']} | {r['points']} | {r['max_abs_diff']:.2e} | {r['deepwell_s']:.3f} | {r['library_s']:.3f} |"
          for r in landscape],
        "",
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
