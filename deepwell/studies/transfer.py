"""Study ``transfer``: when is tuning the head enough, and when must more layers be fine-tuned (lecture: Transfer learning).

Setup: a small 1-D CNN (3 conv blocks, flattened features) is pretrained on MNIST-1D digits 0-4
(the *similar* source), or on the same digits with every sequence's positions permuted by one fixed
permutation (MNIST-1D's ``shuffle_seq``: the *dissimilar* source, whose filters learn no local
shape). The target task is digits 5-9 (unpermuted) with only a few training examples. Three
strategies per source: head-only (backbone frozen, BatchNorm in eval mode), full fine-tune (all
layers), and scratch (the same network, randomly initialised). Accuracy is on the target's test
examples (digits 5-9 of MNIST-1D's test split), averaged over target sizes and seeds.

Verdicts: transfer-similar (head-only within ``HEAD_MARGIN`` of fine-tune, and both beat scratch),
transfer-dissimilar (fine-tuning all layers beats head-only by at least ``MIN_GAIN``).
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import Splits, prepare_data
from deepwell.models import build_model
from deepwell.models.transfer import TransferModel
from deepwell.runtime import resolve_device
from deepwell.studies.base import StudyOutput, Verdict, status_from, write_table
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.loop import TensorData, evaluate, fit

__all__ = ["pretrain", "target_accuracy", "similar_verdict", "dissimilar_verdict", "run"]

# --- thresholds: what "holds" means --------------------------------------------------------------
HEAD_MARGIN = 0.07        # head-only is "within a small margin" of fine-tune: at most 7 accuracy points below
MIN_GAIN = 0.02           # "beats": at least 2 accuracy points higher (seed and size mean)
MIN_SOURCE_ACC = 0.6      # a source net below this on its own test set did not learn: inconclusive
SOURCE_CLASSES, TARGET_CLASSES = (0, 5), (5, 10)
MODEL = ModelSpec(arch="cnn1d", channels=[32, "pool", 32, "pool", 32], global_pool=False)
STRATEGIES = ("head_only", "fine_tune", "scratch")


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"sizes": [100], "seeds": 1, "source_n": None, "source_epochs": 8, "target_epochs": 30}
    return {"sizes": [50, 100, 200], "seeds": 3, "source_n": None, "source_epochs": 25, "target_epochs": 60}


def _classes(x: torch.Tensor, y: torch.Tensor, classes: tuple[int, int],
             n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples of labels lo..hi-1, relabelled 0..hi-lo-1 (the first ``n`` when given)."""
    lo, hi = classes
    keep = (y >= lo) & (y < hi)
    x, y = x[keep], y[keep] - lo
    return (x, y) if n is None else (x[:n], y[:n])


def pretrain(splits: Splits, n: int | None, epochs: int, seed: int) -> tuple[nn.Module, float]:
    """Train the source network on (the first ``n`` of) digits 0-4; returns it and its source test accuracy."""
    x, y = _classes(splits.x_train, splits.y_train, SOURCE_CLASSES, n)
    model = build_model(MODEL, splits.input_shape, 5, torch.Generator().manual_seed(seed)).to(x.device)
    fit(model, TensorData(x, y), TrainSpec(epochs=epochs, batch_size=64, lr=3e-3, clean_train_examples=256), seed=seed)
    return model, evaluate(model, *_classes(splits.x_test, splits.y_test, SOURCE_CLASSES), "classification")["acc"]


def target_accuracy(splits: Splits, source: nn.Module | None, strategy: str, n: int, epochs: int, seed: int) -> float:
    """Target (digits 5-9) test accuracy after training with ``n`` examples by ``strategy``."""
    x, y = _classes(splits.x_train, splits.y_train, TARGET_CLASSES, n)
    if strategy == "scratch":
        model = build_model(MODEL, splits.input_shape, 5, torch.Generator().manual_seed(seed + 1))
    else:
        backbone = copy.deepcopy(source)  # never mutate the source network
        backbone.head = nn.Identity()
        head = nn.Linear(source.head.in_features, 5)
        model = TransferModel(backbone, head, backbone.hidden_blocks(), freeze="head_only" if strategy == "head_only" else "none")
    model.to(x.device)
    fit(model, TensorData(x, y), TrainSpec(epochs=epochs, batch_size=32, lr=3e-3, clean_train_examples=64), seed=seed)
    return evaluate(model, *_classes(splits.x_test, splits.y_test, TARGET_CLASSES), "classification")["acc"]


def similar_verdict(numbers: dict[str, float]) -> Verdict:
    gap = numbers["fine_tune"] - numbers["head_only"]
    supported = (gap <= HEAD_MARGIN and numbers["head_only"] - numbers["scratch"] >= MIN_GAIN
                 and numbers["fine_tune"] - numbers["scratch"] >= MIN_GAIN)
    evidence = (f"Similar source (digits 0-4, source acc {numbers['source_acc']:.2f}): target accuracy head-only "
                f"{numbers['head_only']:.3f}, fine-tune {numbers['fine_tune']:.3f}, scratch {numbers['scratch']:.3f} "
                f"(head-only {gap:+.3f} behind fine-tune; margin {HEAD_MARGIN}; 'beats' means >= {MIN_GAIN}).")
    return Verdict("transfer-similar", "similar source task: tuning only the head is enough",
                   status_from(supported, numbers["source_acc"] >= MIN_SOURCE_ACC), evidence, numbers)


def dissimilar_verdict(numbers: dict[str, float]) -> Verdict:
    gain = numbers["fine_tune"] - numbers["head_only"]
    evidence = (f"Dissimilar source (permuted positions, source acc {numbers['source_acc']:.2f}): fine-tune "
                f"{numbers['fine_tune']:.3f} vs head-only {numbers['head_only']:.3f} ({gain:+.3f}; needs >= {MIN_GAIN}); "
                f"scratch {numbers['scratch']:.3f}.")
    return Verdict("transfer-dissimilar", "less related source: fine-tune more layers",
                   status_from(gain >= MIN_GAIN, numbers["source_acc"] >= MIN_SOURCE_ACC), evidence, numbers)


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    settings = _settings(quick)
    seeds = [seed + i for i in range(settings["seeds"])]
    rows, means = [], {}
    for source_name, shuffle in (("similar", False), ("dissimilar", True)):
        splits = prepare_data(DataSpec(source=f"mnist1d:shuffle_seq={shuffle}", val_fraction=0.0), seed=seed)
        target = prepare_data(DataSpec(source="mnist1d", val_fraction=0.0), seed=seed) if shuffle else splits
        target = _on(target, device)
        source, source_acc = pretrain(_on(splits, device), settings["source_n"], settings["source_epochs"], seed)
        for strategy in STRATEGIES if not shuffle else STRATEGIES[:2]:  # scratch does not depend on the source
            for n in settings["sizes"]:
                for s in seeds:
                    acc = target_accuracy(target, source, strategy, n, settings["target_epochs"], s)
                    rows.append({"source": source_name if strategy != "scratch" else "none", "strategy": strategy,
                                 "n_target": n, "seed": s, "test_acc": acc})
        means[source_name] = {strategy: statistics.fmean(r["test_acc"] for r in rows
                                                         if r["source"] == source_name and r["strategy"] == strategy)
                              for strategy in STRATEGIES[:2]} | {"source_acc": source_acc}
    means["dissimilar"]["scratch"] = means["similar"]["scratch"] = statistics.fmean(
        r["test_acc"] for r in rows if r["strategy"] == "scratch")
    write_table(folder / "transfer.csv", rows, ["source", "strategy", "n_target", "seed", "test_acc"])
    verdicts = [similar_verdict(means["similar"]), dissimilar_verdict(means["dissimilar"])]
    figure = (_figure(folder, means), "Target (MNIST-1D digits 5-9) test accuracy per strategy, mean over target sizes "
              f"{settings['sizes']} and {len(seeds)} seed(s), from a similar (digits 0-4) and a dissimilar (permuted) source.")
    table = ("transfer.csv", "Per source, strategy, target size and seed: target test accuracy.")
    return StudyOutput(verdicts, [figure], [table])


def _on(splits: Splits, device: torch.device) -> Splits:
    return dataclasses.replace(splits, **{k: getattr(splits, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")})


def _figure(folder: Path, means: dict[str, dict[str, float]]) -> str:
    figure, axes = new_figure(7, 4.5, 1, 1)
    ax = axes[0][0]
    for offset, (source_name, color) in enumerate((("similar", COLORS[0]), ("dissimilar", COLORS[1]))):
        xs = [index + (offset - 0.5) * 0.38 for index in range(len(STRATEGIES))]
        ax.bar(xs[:2], [means[source_name][s] for s in STRATEGIES[:2]], width=0.36, color=color, alpha=0.7,
               label=f"{source_name} source")
    ax.bar([len(STRATEGIES) - 1], [means["similar"]["scratch"]], width=0.36, color=COLORS[2], alpha=0.7, label="no source")
    ax.set_xticks(range(len(STRATEGIES)), ["head only", "fine-tune all", "scratch"])
    ax.set(title="Transfer from a similar vs a dissimilar source", ylabel="target test accuracy", ylim=(0, 1.05))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    save_figure(figure, folder / "transfer.png")
    return "transfer.png"
