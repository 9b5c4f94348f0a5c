"""Study ``layers-converge``: do the first and last layers reach their final weights before the middle
ones? (lecture: "earlier layers and late layers converge to their final weights first", after Boaz
Barak's blog posts).

A 5-hidden-layer MLP (128 units, ReLU, He init, no normalisation) trains on MNIST-1D with SGD and
momentum. After every epoch a callback copies each dense layer's weight matrix; at the end the
relative distance of each layer to its own final weights,

    d_l(t) = ||W_l(t) - W_l(T)||_F / ||W_l(T)||_F,

is computed for every epoch t. A layer has *settled* at the first epoch after which d_l stays below
``SETTLE_THRESHOLD`` for the rest of training. The claim holds when the first and the last (output)
layer settle earlier than the mean of the middle layers, beyond seed noise.

Verdict: layers-converge.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch
from torch import nn

from deepwell.config import ModelSpec, TrainSpec
from deepwell.models import build_model
from deepwell.runtime import resolve_device
from deepwell.studies.base import StudyOutput, Verdict, status_from, write_table
from deepwell.studies.dropout import overfit_data
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import TensorData, fit

__all__ = ["WeightRecorder", "relative_distances", "settle_epoch", "layers_converge_verdict", "run"]

SETTLE_THRESHOLD = 0.1     # "settled": relative distance to the final weights below 10% from then on
MIN_EPOCHS_EARLIER = 1.0   # first/last must settle at least one epoch before the middle mean ...
NOISE_FACTOR = 2.0         # ... and by more than 2 standard errors over seeds
DEPTH = 5


class WeightRecorder(Callback):
    """Copies every ``nn.Linear`` weight at the start and after each epoch (CPU copies; small nets)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.snapshots: list[list[torch.Tensor]] = []

    def _record(self, model: nn.Module) -> None:
        layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        self.names = [name for name, _ in layers]
        self.snapshots.append([m.weight.detach().to("cpu", copy=True) for _, m in layers])

    def on_fit_start(self, state: FitState) -> None:
        self._record(state.model)

    def on_epoch_end(self, state: FitState) -> None:
        self._record(state.model)


def relative_distances(snapshots: list[list[torch.Tensor]]) -> list[list[float]]:
    """``[t][l] = ||W_l(t) - W_l(T)|| / ||W_l(T)||`` with T the last snapshot."""
    final = snapshots[-1]
    return torch.stack([torch.stack([(w - f).norm() / f.norm() for w, f in zip(snap, final)]) for snap in snapshots]).tolist()


def settle_epoch(distances: list[float], threshold: float = SETTLE_THRESHOLD) -> int:
    """First index after which every distance is below ``threshold`` (the last index always qualifies)."""
    settle = len(distances) - 1
    for index in range(len(distances) - 1, -1, -1):
        if distances[index] >= threshold:
            break
        settle = index
    return settle


def layers_converge_verdict(numbers: dict[str, float]) -> Verdict:
    """layers-converge: first and last layers settle before the middle ones."""
    checks = []
    for end in ("first", "last"):
        lead, se = numbers[f"{end}_lead"], numbers[f"{end}_lead_se"]
        checks.append(lead >= MIN_EPOCHS_EARLIER and lead > NOISE_FACTOR * se)
    evidence = (f"Settle epoch (relative distance to final weights stays < {SETTLE_THRESHOLD:g}), mean over "
                f"{numbers['seeds']:.0f} seeds of {numbers['epochs']:.0f} epochs: first layer {numbers['first_settle']:.1f}, "
                f"middle layers {numbers['middle_settle']:.1f}, last layer {numbers['last_settle']:.1f}. Lead over the middle: "
                f"first {numbers['first_lead']:+.1f} ± {numbers['first_lead_se']:.1f}, last {numbers['last_lead']:+.1f} ± "
                f"{numbers['last_lead_se']:.1f} epochs (s.e.; needs >= {MIN_EPOCHS_EARLIER:g} and > {NOISE_FACTOR:g} s.e.). "
                "Per layer, input to output: "
                + ", ".join(f"{value:.1f}" for key, value in numbers.items() if key.startswith("settle_")) + ".")
    return Verdict("layers-converge", "Early and late layers converge to their final weights first.",
                   status_from(all(checks)), evidence, numbers)


def _train(splits, seed: int, epochs: int) -> WeightRecorder:
    model = build_model(ModelSpec(arch="mlp", depth=DEPTH, width=128, norm="none"), splits.input_shape, splits.output_size,
                        generator=torch.Generator().manual_seed(seed)).to(splits.x_train.device)
    recorder = WeightRecorder()
    fit(model, TensorData(splits.x_train, splits.y_train, splits.x_val, splits.y_val),
        TrainSpec(epochs=epochs, batch_size=32, optimizer="sgd:momentum=0.9", lr=0.01, schedule="constant"),
        seed=seed, callbacks=[recorder])
    return recorder


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    epochs, seeds, n_train = (25, [seed, seed + 1, seed + 2], 1000) if quick else (60, [seed + i for i in range(5)], 3600)
    splits = overfit_data(n_train, seed, device)
    recorders = {s: _train(splits, s, epochs) for s in seeds}
    names = recorders[seed].names
    distances = {s: relative_distances(r.snapshots) for s, r in recorders.items()}
    settle = {s: [settle_epoch([row[layer] for row in d]) for layer in range(len(names))] for s, d in distances.items()}
    middle = {s: statistics.fmean(v[1:-1]) for s, v in settle.items()}
    numbers: dict[str, float] = {"seeds": len(seeds), "epochs": epochs,
                                 "middle_settle": statistics.fmean(middle.values())}
    for end, index in (("first", 0), ("last", -1)):
        leads = [middle[s] - settle[s][index] for s in seeds]
        numbers[f"{end}_settle"] = statistics.fmean(settle[s][index] for s in seeds)
        numbers[f"{end}_lead"] = statistics.fmean(leads)
        numbers[f"{end}_lead_se"] = statistics.stdev(leads) / math.sqrt(len(leads)) if len(leads) > 1 else 0.0
    for layer, name in enumerate(names):
        numbers[f"settle_{name}"] = statistics.fmean(settle[s][layer] for s in seeds)
    figures = [(_figure(folder, distances, settle, names, seeds), f"Relative distance of each layer's weights to their "
                f"final values per epoch (mean over {len(seeds)} seeds; {DEPTH} x 128 ReLU MLP, MNIST-1D, {n_train} examples, "
                f"SGD). Dotted: the settle threshold {SETTLE_THRESHOLD:g}; right: settle epoch per layer (mean ± std).")]
    rows = [{"seed": s, "epoch": t, "layer": names[layer], "quantity": "relative_distance", "value": value}
            for s, d in distances.items() for t, row in enumerate(d) for layer, value in enumerate(row)]
    rows += [{"seed": s, "layer": names[layer], "quantity": "settle_epoch", "value": value}
             for s, values in settle.items() for layer, value in enumerate(values)]
    write_table(folder / "layers_converge.csv", rows, ["seed", "epoch", "layer", "quantity", "value"])
    tables = [("layers_converge.csv", "Relative distance to the final weights per seed, epoch and layer; settle epochs.")]
    return StudyOutput([layers_converge_verdict(numbers)], figures, tables)


def _figure(folder: Path, distances: dict, settle: dict, names: list[str], seeds: list[int]) -> str:
    figure, axes = new_figure(11, 4.5, 1, 2)
    ax = axes[0][0]
    epochs = range(len(distances[seeds[0]]))
    for layer, name in enumerate(names):
        mean = [statistics.fmean(distances[s][t][layer] for s in seeds) for t in epochs]
        ax.plot(epochs, mean, color=COLORS[layer % len(COLORS)], label=f"layer {layer + 1} ({name})")
    ax.axhline(SETTLE_THRESHOLD, color="black", linestyle=":", linewidth=1)
    ax.set(title="Distance to final weights", xlabel="epoch (0 = init)", ylabel="||W(t) - W(T)|| / ||W(T)||", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[0][1]
    means = [statistics.fmean(settle[s][layer] for s in seeds) for layer in range(len(names))]
    stds = [statistics.stdev([settle[s][layer] for s in seeds]) if len(seeds) > 1 else 0.0 for layer in range(len(names))]
    ax.bar(range(1, len(names) + 1), means, yerr=stds, capsize=3, color=[COLORS[i % len(COLORS)] for i in range(len(names))])
    ax.set(title=f"Settle epoch (distance < {SETTLE_THRESHOLD:g} from then on)", xlabel="layer (1 = first, last = output)",
           ylabel="epoch")
    ax.grid(alpha=0.3, axis="y")
    save_figure(figure, folder / "layers_converge.png")
    return "layers_converge.png"
