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
from deepwell.studies.base import Regime, StudyOutput, Verdict, status_from, write_table
from deepwell.studies.evidence import compare, regime_verdict
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.loop import TensorData, evaluate, fit

__all__ = ["pretrain", "target_accuracy", "similar_verdict", "dissimilar_verdict", "transfer_regime_verdict", "run"]

# --- thresholds: what "holds" means --------------------------------------------------------------
HEAD_MARGIN = 0.07        # head-only is "within a small margin" of fine-tune: at most 7 accuracy points below
MIN_GAIN = 0.02           # "beats": at least 2 accuracy points higher (seed and size mean)
MIN_SOURCE_ACC = 0.6      # a source net below this on its own test set did not learn: inconclusive
SOURCE_CLASSES, TARGET_CLASSES = (0, 5), (5, 10)
MODEL = ModelSpec(arch="cnn1d", channels=[32, "pool", 32, "pool", 32], global_pool=False)
STRATEGIES = ("head_only", "fine_tune", "scratch")


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"sizes": [50, 200], "seeds": 3, "source_n": None, "source_epochs": 8, "target_epochs": 30}
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


RULE = {"similar": f"per target size, over the seeds: head-only and fine-tune each beat scratch beyond 2 standard errors "
                   f"(and by >= {MIN_GAIN}), and head-only is at most {HEAD_MARGIN} behind fine-tune (mean); the lecture's "
                   "regime: the smallest target set.",
        "dissimilar": f"per target size, over the seeds: fine-tuning all layers beats head-only beyond 2 standard errors "
                      f"and by >= {MIN_GAIN}; fine-tune vs scratch is reported beside it; the lecture's regime: the "
                      "smallest target set."}


def transfer_regime_verdict(rows: list[dict[str, Any]], source: str, source_acc: float, sizes: list[int]) -> Verdict:
    """One regime per target size for transfer-similar or transfer-dissimilar (compare over seeds).

    Args:
        rows: tidy rows {source, strategy, n_target, seed, test_acc} (scratch rows have source "none").
        source: ``similar`` or ``dissimilar``.
        source_acc: the pretrained net's accuracy on its own task (below MIN_SOURCE_ACC: inconclusive).
    """
    regimes = []
    for n in sizes:
        def acc(strategy: str) -> list[float]:
            origin = "none" if strategy == "scratch" else source
            return [r["test_acc"] for r in rows if r["n_target"] == n and r["strategy"] == strategy and r["source"] == origin]

        head, fine, scratch = acc("head_only"), acc("fine_tune"), acc("scratch")
        c_head, c_fine, c_more = compare(head, scratch, MIN_GAIN), compare(fine, scratch, MIN_GAIN), compare(fine, head, MIN_GAIN)
        if source == "similar":
            behind = c_more.difference
            statuses = {c_head.status, c_fine.status}
            status = ("holds" if statuses == {"holds"} and behind <= HEAD_MARGIN else
                      "does_not_hold" if "does_not_hold" in statuses or behind > HEAD_MARGIN + 2 * c_more.se else "inconclusive")
            evidence = (f"n={n}: head-only {c_head.mean_a:.3f}, fine-tune {c_fine.mean_a:.3f}, scratch {c_head.mean_b:.3f}; "
                        f"head-only minus scratch {c_head.describe()}, fine-tune minus scratch {c_fine.describe()}, "
                        f"head-only {behind:.3f} behind fine-tune (margin {HEAD_MARGIN}).")
        else:
            status = c_more.status
            evidence = (f"n={n}: fine-tune {c_more.mean_a:.3f} vs head-only {c_more.mean_b:.3f}: {c_more.describe()}; "
                        f"fine-tune vs scratch ({c_fine.mean_b:.3f}): {c_fine.describe()}.")
        if source_acc < MIN_SOURCE_ACC:
            status, evidence = "inconclusive", evidence + f" The source net did not learn (acc {source_acc:.2f})."
        numbers = c_head.numbers("head_vs_scratch") | c_fine.numbers("fine_vs_scratch") | c_more.numbers("fine_vs_head")
        regimes.append(Regime(f"{source} source, n={n}", status, evidence, numbers | {"source_acc": source_acc},
                              lecture=n == min(sizes)))
    text = ("similar source task: tuning only the head is enough" if source == "similar"
            else "less related source: fine-tune more layers")
    return regime_verdict(f"transfer-{source}", text, RULE[source], regimes, figure="transfer.png")


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
    verdicts = [transfer_regime_verdict(rows, source_name, means[source_name]["source_acc"], settings["sizes"])
                for source_name in ("similar", "dissimilar")]
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
