"""Study ``augmentation``: does data augmentation help generalisation on small training sets?
(lecture: Regularisation, data augmentation; Figure 7 shows augmented copies of one example.)

Two tasks, each trained from the same seeds with and without augmentation (paired: the same
data split, initial weights and batch order per seed; the augmenter has its own generator):

- *images*: sklearn digits (8 x 8, pixels in [0, 1], no preprocessing), ``DIGITS_N_TRAIN``
  training examples, augmented with random resized crops (``DIGITS_AUGMENT``). Measured on 3
  seeds, n=150, 60 epochs: crop:0.8 +1.7 points; rotate:8 + scale:0.1 +0.2; translate +0.3;
  rotations with translations hurt (8 x 8 pixels leave little room).
- *signals*: MNIST-1D (standardised), ``MNIST1D_N_TRAIN`` training examples, augmented with
  shifts, stretches and amplitude changes (``MNIST1D_AUGMENT``).

The network is a 2 x 256 MLP without normalisation for both (no built-in translation invariance,
so the augmentation has something to teach; batch norm would also see augmented statistics in
training but clean ones at test). Augmentation runs after preprocessing, on training batches only.

Verdict ``augmentation`` holds when at least one task's test accuracy gain (with - without, mean
over seeds) is at least ``MIN_GAIN`` and beyond ``NOISE_FACTOR`` standard errors of the paired
differences, and no task loses beyond the same bounds.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import Splits, prepare_data
from deepwell.data.augment import build_augmentation
from deepwell.models import build_model
from deepwell.runtime import resolve_device
from deepwell.studies.base import StudyOutput, Verdict, status_from, write_table
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.loop import TensorData, evaluate, fit

__all__ = ["TASKS", "train_task", "gain", "augmentation_verdict", "run"]

# --- thresholds: what "holds" means --------------------------------------------------------------
MIN_GAIN = 0.02      # test accuracy must rise by at least 2 points ...
NOISE_FACTOR = 2.0   # ... and by more than 2 standard errors of the paired (same seed) differences

DIGITS_N_TRAIN, MNIST1D_N_TRAIN = 150, 500
DIGITS_AUGMENT = ("crop:0.8",)
MNIST1D_AUGMENT = ("shift:4", "stretch:0.1", "amplitude:0.2")
TASKS: dict[str, dict[str, Any]] = {
    "digits": {"data": DataSpec(source="digits", n_train=DIGITS_N_TRAIN, val_fraction=0.1, preprocess="none"),
               "augment": DIGITS_AUGMENT, "label": f"digits images, n={DIGITS_N_TRAIN}"},
    "mnist1d": {"data": DataSpec(source="mnist1d", n_train=MNIST1D_N_TRAIN, val_fraction=0.1, preprocess="standardize"),
                "augment": MNIST1D_AUGMENT, "label": f"MNIST-1D signals, n={MNIST1D_N_TRAIN}"},
}
MODEL = ModelSpec(arch="mlp", hidden=[256, 256], norm="none")


def _settings(quick: bool) -> dict[str, int]:
    return {"seeds": 3 if quick else 5, "epochs": 60 if quick else 120}


def _load(task: str, seed: int, device: torch.device) -> Splits:
    splits = prepare_data(TASKS[task]["data"], seed=seed)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        setattr(splits, name, getattr(splits, name).to(device))
    return splits


def train_task(splits: Splits, augment: tuple[str, ...], epochs: int, seed: int) -> dict[str, float]:
    """Train the MLP on ``splits`` (with ``augment`` if non-empty); final clean train and test accuracy."""
    model = build_model(MODEL, splits.input_shape, splits.output_size,
                        generator=torch.Generator().manual_seed(seed)).to(splits.x_train.device)
    transform = build_augmentation(augment, splits.input_shape, seed) if augment else None
    fit(model, TensorData(splits.x_train, splits.y_train), TrainSpec(epochs=epochs, batch_size=32, lr=3e-3),
        seed=seed, batch_transform=transform)
    train = evaluate(model, splits.x_train, splits.y_train, "classification")
    test = evaluate(model, splits.x_test, splits.y_test, "classification")
    return {"train_acc": train["acc"], "test_acc": test["acc"], "test_loss": test["loss"]}


def gain(without: list[float], with_: list[float]) -> dict[str, float]:
    """Mean accuracies, the mean paired gain and its standard error (0 for one seed)."""
    differences = [b - a for a, b in zip(without, with_)]
    se = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else 0.0
    return {"acc_without": statistics.fmean(without), "acc_with": statistics.fmean(with_),
            "acc_without_std": statistics.stdev(without) if len(without) > 1 else 0.0,
            "acc_with_std": statistics.stdev(with_) if len(with_) > 1 else 0.0,
            "gain": statistics.fmean(differences), "gain_se": se, "seeds": len(differences)}


def _beyond_noise(value: float, se: float) -> bool:
    return value >= MIN_GAIN and value > NOISE_FACTOR * se


def augmentation_verdict(per_task: dict[str, dict[str, float]]) -> Verdict:
    """augmentation: higher test accuracy with augmentation (beyond noise) on some task, worse on none."""
    helped = [task for task, n in per_task.items() if _beyond_noise(n["gain"], n["gain_se"])]
    hurt = [task for task, n in per_task.items() if _beyond_noise(-n["gain"], n["gain_se"])]
    parts = [f"{TASKS[task]['label']} with {', '.join(TASKS[task]['augment'])}: test accuracy {n['acc_without']:.3f} ± "
             f"{n['acc_without_std']:.3f} -> {n['acc_with']:.3f} ± {n['acc_with_std']:.3f}, gain {n['gain']:+.3f} "
             f"(s.e. {n['gain_se']:.3f}, {n['seeds']:.0f} seeds)" for task, n in per_task.items()]
    evidence = ("; ".join(parts) + f". Holds when some task gains >= {MIN_GAIN} and > {NOISE_FACTOR:g} s.e. and none "
                f"loses that much: helped {', '.join(helped) or 'none'}, hurt {', '.join(hurt) or 'none'}.")
    numbers = {f"{task}/{key}": value for task, n in per_task.items() for key, value in n.items()}
    return Verdict("augmentation", "Data augmentation helps generalisation: higher test accuracy on a small training set.",
                   status_from(bool(helped) and not hurt), evidence, numbers)


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    settings = _settings(quick)
    seeds = [seed + i for i in range(settings["seeds"])]
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    for task, setup in TASKS.items():
        for s in seeds:
            splits = _load(task, s, device)
            results[(task, "without", s)] = train_task(splits, (), settings["epochs"], s)
            results[(task, "with", s)] = train_task(splits, setup["augment"], settings["epochs"], s)
    per_task = {task: gain([results[(task, "without", s)]["test_acc"] for s in seeds],
                           [results[(task, "with", s)]["test_acc"] for s in seeds]) for task in TASKS}
    figures = [
        (_accuracy_figure(folder, results, seeds), f"Test accuracy with and without augmentation, {len(seeds)} seeds "
         f"(dots), mean and standard deviation (bar, error bar); 2 x 256 MLP, {settings['epochs']} epochs."),
        (_samples_figure(folder, seed), "Augmented training examples (the lecture's Figure 7 idea): top, digits "
         f"(first row original, then three draws of {', '.join(DIGITS_AUGMENT)}); bottom, MNIST-1D signals (black "
         f"original, coloured three draws of {', '.join(MNIST1D_AUGMENT)})."),
    ]
    rows = [{"task": task, "variant": variant, "seed": s, "quantity": key, "value": value}
            for (task, variant, s), record in results.items() for key, value in record.items()]
    write_table(folder / "augmentation.csv", rows, ["task", "variant", "seed", "quantity", "value"])
    return StudyOutput([augmentation_verdict(per_task)], figures,
                       [("augmentation.csv", "Per task, variant and seed: final clean train accuracy, test accuracy and loss.")])


def _accuracy_figure(folder: Path, results: dict, seeds: list[int]) -> str:
    figure, axes = new_figure(7, 4.5, 1, 1)
    ax = axes[0][0]
    for offset, (variant, color) in enumerate((("without", COLORS[0]), ("with", COLORS[1]))):
        for index, task in enumerate(TASKS):
            values = [results[(task, variant, s)]["test_acc"] for s in seeds]
            x = index + (offset - 0.5) * 0.38
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            ax.bar(x, statistics.fmean(values), width=0.36, yerr=spread, capsize=4, color=color, alpha=0.6,
                   label=f"{variant} augmentation" if index == 0 else None)
            ax.scatter([x] * len(values), values, color=color, s=12, zorder=3)
    ax.set_xticks(range(len(TASKS)), [f"{TASKS[t]['label']}\n{', '.join(TASKS[t]['augment'])}" for t in TASKS], fontsize=8)
    ax.set(title="Augmentation on small training sets", ylabel="test accuracy", ylim=(0, 1.05))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower right")
    save_figure(figure, folder / "augmentation_accuracy.png")
    return "augmentation_accuracy.png"


def _samples_figure(folder: Path, seed: int, columns: int = 8, draws: int = 3) -> str:
    figure, axes = new_figure(10, 7.5, draws + 2, columns)
    digits = prepare_data(TASKS["digits"]["data"], seed=seed)
    images = digits.x_train[:columns]  # (8, 1, 8, 8)
    augment = build_augmentation(DIGITS_AUGMENT, digits.input_shape, seed)
    for row in range(draws + 1):
        shown = images if row == 0 else augment(images, digits.y_train[:columns])[0]
        for column in range(columns):
            ax = axes[row][column]
            ax.imshow(shown[column, 0].cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if column == 0:
                ax.set_ylabel("original" if row == 0 else f"draw {row}", fontsize=8)
    signals = prepare_data(TASKS["mnist1d"]["data"], seed=seed)
    originals = signals.x_train[:columns]  # (8, 1, 40)
    augment = build_augmentation(MNIST1D_AUGMENT, signals.input_shape, seed)
    drawn = [augment(originals, signals.y_train[:columns])[0] for _ in range(draws)]
    for column in range(columns):
        ax = axes[draws + 1][column]
        for index, version in enumerate(drawn):
            ax.plot(version[column, 0].cpu().numpy(), color=COLORS[1 + index], linewidth=0.8, alpha=0.8)
        ax.plot(originals[column, 0].cpu().numpy(), color="black", linewidth=1.2)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"label {int(signals.y_train[column])}", fontsize=7)
    figure.suptitle(f"Augmented samples: digits ({', '.join(DIGITS_AUGMENT)}) and MNIST-1D ({', '.join(MNIST1D_AUGMENT)})",
                    fontsize=10)
    save_figure(figure, folder / "augmentation_samples.png")
    return "augmentation_samples.png"
