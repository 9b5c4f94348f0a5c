"""Study ``dropout``: dropout and DropConnect against overfitting; scaling conventions; why the
validation loss can be below the training loss (lecture: Dropout).

1. Overfitting setup: a 2 x 256 MLP (no normalisation) on 300 MNIST-1D training examples, Adam
   1e-3, batch 32, trained far past the point of fitting the training set. Variants: no dropout,
   unit dropout p=0.5 (inverted), DropConnect p=0.5 (Wan et al. 2013; quick mode draws one mask per
   batch for speed, the full mode one per example). Several seeds. The train-test gap is
   ``train/acc_clean - test accuracy`` at the last epoch (eval mode for both).
2. Classic vs inverted scaling, two measurements:
   - *exact*: a net trained with classic dropout (no scaling in training, x(1-p) at test) and an
     inverted-mode copy (x1/(1-p) in training, identity at test) whose dense layer after each
     dropout has its weights multiplied by (1-p) compute the same function. "Identical" means: the
     same test logits up to float32 rounding (max abs difference <= ``EQUAL_TOL``) and the same
     predicted class for every test example; also the same training-mode outputs for the same
     dropout masks (same RNG seed).
   - *statistical*: trained separately from the same seed, the two conventions do not follow the
     same trajectory (the next layer sees inputs scaled by 1/(1-p) in one and not the other), so
     their test accuracies agree only within seed noise.
3. Dropout gap: on 1000-2000 MNIST-1D examples (where the net does not memorise quickly), per epoch,
   train loss as trained (dropout on), clean train loss (eval mode) and validation loss.

Verdicts: dropout, dropconnect, dropout-gap.
"""

from __future__ import annotations

import copy
import math
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import Splits, prepare_data
from deepwell.models import build_model
from deepwell.models.layers import Dropout
from deepwell.runtime import resolve_device
from deepwell.studies.base import Regime, StudyOutput, Verdict, status_from, write_table
from deepwell.studies.evidence import compare, regime_verdict
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.loop import TensorData, evaluate, fit

__all__ = ["gap_reduction", "train_variant", "to_inverted", "mode_equivalence", "gap_ordering", "dropout_verdict",
           "dropconnect_verdict", "dropout_gap_verdict", "run"]

# --- thresholds: what "holds" means --------------------------------------------------------------
P = 0.5                    # dropout / DropConnect probability
MIN_GAP_REDUCTION = 0.02   # the train-test accuracy gap must shrink by at least 2 points ...
NOISE_FACTOR = 2.0         # ... and by more than 2 standard errors of the difference of seed means
EQUAL_TOL = 1e-4           # "identical" logits: max |classic - inverted copy| over the test set (float32 rounding)
ACC_TOLERANCE = 0.02       # separately trained modes: |acc difference| within max(2 s.e., 2 points)
MIN_ORDER_SHARE = 0.5      # dropout gap: clean < val < as-trained in at least half the epochs (seed mean)

VARIANTS = {"none": "none", "dropout": f"dropout:{P}", "classic": f"dropout:{P},mode=classic",
            "dropconnect": f"dropconnect:{P}"}


def _settings(quick: bool) -> dict[str, Any]:
    return {"seeds": 3 if quick else 5, "n_train": 300, "epochs": 40 if quick else 150, "width": 256,
            "dropconnect": f"dropconnect:{P},sample=batch" if quick else f"dropconnect:{P}",
            "gap_n_train": 1000 if quick else 3000, "gap_epochs": 20 if quick else 40, "gap_seeds": 2 if quick else 3}


def overfit_data(n_train: int, seed: int, device: torch.device) -> Splits:
    """MNIST-1D, standardised, ``n_train`` training examples, 10% of the 4000 held out for validation."""
    splits = prepare_data(DataSpec(source="mnist1d", n_train=n_train, val_fraction=0.1, preprocess="standardize"), seed=seed)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        setattr(splits, name, getattr(splits, name).to(device))
    return splits


def train_variant(splits: Splits, dropout: str, width: int, epochs: int, seed: int,
                  batch_size: int = 32) -> tuple[nn.Module, list[dict[str, float]], dict[str, float]]:
    """Train the 2 x ``width`` MLP (no norm) with ``dropout``; returns the model, history and test metrics."""
    spec = ModelSpec(arch="mlp", depth=2, width=width, norm="none", dropout=dropout)
    model = build_model(spec, splits.input_shape, splits.output_size,
                        generator=torch.Generator().manual_seed(seed)).to(splits.x_train.device)
    data = TensorData(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    result = fit(model, data, TrainSpec(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=1e-3, schedule="constant"),
                 seed=seed)
    return model, result.history, evaluate(model, splits.x_test, splits.y_test, "classification")


def gap_reduction(gaps_without: list[float], gaps_with: list[float]) -> dict[str, float]:
    """Mean gaps, the mean reduction and its standard error (independent seeds; std 0 for one seed)."""
    def se2(values: list[float]) -> float:
        return statistics.variance(values) / len(values) if len(values) > 1 else 0.0
    return {"gap_without": statistics.fmean(gaps_without), "gap_with": statistics.fmean(gaps_with),
            "gap_without_std": statistics.stdev(gaps_without) if len(gaps_without) > 1 else 0.0,
            "gap_with_std": statistics.stdev(gaps_with) if len(gaps_with) > 1 else 0.0,
            "reduction": statistics.fmean(gaps_without) - statistics.fmean(gaps_with),
            "reduction_se": math.sqrt(se2(gaps_without) + se2(gaps_with))}


def _reduction_supported(numbers: dict[str, float]) -> bool:
    return numbers["reduction"] >= MIN_GAP_REDUCTION and numbers["reduction"] > NOISE_FACTOR * numbers["reduction_se"]


def _reduction_evidence(numbers: dict[str, float], what: str) -> str:
    return (f"Train-test accuracy gap without {what} {numbers['gap_without']:.3f} ± {numbers['gap_without_std']:.3f}, with "
            f"{numbers['gap_with']:.3f} ± {numbers['gap_with_std']:.3f} (mean ± std over {numbers['seeds']:.0f} seeds): "
            f"reduction {numbers['reduction']:.3f} vs {NOISE_FACTOR:g} s.e. = {NOISE_FACTOR * numbers['reduction_se']:.3f} "
            f"(needs >= {MIN_GAP_REDUCTION} and beyond that noise). Test accuracy {numbers['test_acc_without']:.3f} -> "
            f"{numbers['test_acc_with']:.3f}.")


def to_inverted(model: nn.Module) -> nn.Module:
    """A copy of a classic-dropout model in inverted mode with each following dense layer's weights
    multiplied by the keep probability: the same function in training (same masks) and at test."""
    inverted = copy.deepcopy(model)
    pending_keep = 1.0
    for module in inverted.modules():  # definition order = forward order in deepwell's networks
        if isinstance(module, Dropout):
            if module.mode == "classic":
                pending_keep *= 1.0 - module.p
            module.mode = "inverted"
        elif isinstance(module, nn.Linear) and pending_keep != 1.0:
            with torch.no_grad():
                module.weight.mul_(pending_keep)
            pending_keep = 1.0
    return inverted


@torch.no_grad()
def mode_equivalence(model: nn.Module, x: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Max |logit difference| between a classic model and its inverted copy, at test (eval) and in
    training mode with the same dropout masks; and the share of equal predicted classes at test."""
    inverted = to_inverted(model)
    model.eval(), inverted.eval()
    classic_out, inverted_out = model(x), inverted(x)
    model.train(), inverted.train()
    torch.manual_seed(seed)
    classic_train = model(x)
    torch.manual_seed(seed)
    inverted_train = inverted(x)
    model.eval()
    return {"max_abs_diff_test": (classic_out - inverted_out).abs().max().item(),
            "max_abs_diff_train": (classic_train - inverted_train).abs().max().item(),
            "same_prediction": (classic_out.argmax(1) == inverted_out.argmax(1)).float().mean().item(),
            "logit_scale": classic_out.abs().max().item()}


def gap_ordering(history: list[dict[str, float]]) -> dict[str, float]:
    """Share of epochs with train-clean < val < train-as-trained, and the last epoch's three losses."""
    ordered = [h["train/loss_clean"] < h["val/loss"] < h["train/loss"] for h in history]
    last = history[-1]
    return {"order_share": sum(ordered) / len(ordered), "last_train_as_trained": last["train/loss"],
            "last_train_clean": last["train/loss_clean"], "last_val": last["val/loss"]}


ACCURACY_RULE = ("train-test gap (the lecture's regime): the gap with the regulariser is smaller beyond noise (and, for "
                 "dropout, classic and inverted scaling give the same test outputs); test accuracy: higher with the "
                 "regulariser than without, beyond 2 standard errors over the seeds.")


def dropout_verdict(numbers: dict[str, float]) -> Verdict:
    """dropout: smaller train-test gap with dropout; classic and inverted give identical test outputs."""
    smaller_gap = _reduction_supported(numbers)
    identical = numbers["max_abs_diff_test"] <= EQUAL_TOL and numbers["same_prediction"] == 1.0
    within_noise = abs(numbers["mode_acc_diff"]) <= max(NOISE_FACTOR * numbers["mode_acc_diff_se"], ACC_TOLERANCE)
    evidence = (_reduction_evidence(numbers, f"dropout (p={P})") + f" Classic vs inverted with the next layer's weights "
                f"x(1-p): max |test logit difference| {numbers['max_abs_diff_test']:.2e} (logits up to "
                f"{numbers['logit_scale']:.1f}; tolerance {EQUAL_TOL:g}), {numbers['same_prediction']:.0%} same predictions, "
                f"training-mode difference with the same masks {numbers['max_abs_diff_train']:.2e}. Trained separately "
                f"from the same seeds: test accuracy classic - inverted = {numbers['mode_acc_diff']:+.3f} "
                f"(s.e. {numbers['mode_acc_diff_se']:.3f}; {'within' if within_noise else 'beyond'} noise).")
    return Verdict("dropout", "Dropout reduces overfitting (smaller train-test gap); classic and inverted scaling give "
                   "identical test outputs.", status_from(smaller_gap and identical and within_noise), evidence, numbers)


def dropconnect_verdict(numbers: dict[str, float]) -> Verdict:
    """dropconnect: smaller train-test gap with DropConnect."""
    return Verdict("dropconnect", "DropConnect (zeroing weights) regularises too: smaller train-test gap.",
                   status_from(_reduction_supported(numbers)), _reduction_evidence(numbers, f"DropConnect (p={P})"), numbers)


def dropout_gap_verdict(numbers: dict[str, float]) -> Verdict:
    """dropout-gap: validation loss below the training loss as trained, while the clean training loss is below both."""
    supported = numbers["order_share"] >= MIN_ORDER_SHARE
    evidence = (f"With dropout p={P}, train-clean < val < train-as-trained in {numbers['order_share']:.0%} of epochs "
                f"(mean over {numbers['seeds']:.0f} seeds; needs >= {MIN_ORDER_SHARE:.0%}). Last epoch: as trained "
                f"{numbers['last_train_as_trained']:.3f}, validation {numbers['last_val']:.3f}, clean train "
                f"{numbers['last_train_clean']:.3f}: the 'low' validation loss is an artefact of measuring the training "
                "loss with dropout on.")
    return Verdict("dropout-gap", "With dropout, validation loss can be below the training loss as trained (while the "
                   "clean training loss is not).", status_from(supported), evidence, numbers)


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    settings = _settings(quick)
    seeds = [seed + i for i in range(settings["seeds"])]
    splits = overfit_data(settings["n_train"], seed, device)
    variants = dict(VARIANTS, dropconnect=settings["dropconnect"])
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    equivalence: dict[str, float] = {}
    for variant, option in variants.items():
        for s in seeds:
            model, history, test = train_variant(splits, option, settings["width"], settings["epochs"], s)
            runs[(variant, s)] = {"history": history, "test": test, "gap": history[-1]["train/acc_clean"] - test["acc"]}
            if variant == "classic" and s == seed:
                equivalence = mode_equivalence(model, splits.x_test, seed)

    def reduction(variant: str) -> dict[str, float]:
        numbers = gap_reduction([runs[("none", s)]["gap"] for s in seeds], [runs[(variant, s)]["gap"] for s in seeds])
        return numbers | {"seeds": len(seeds),
                          "test_acc_without": statistics.fmean(runs[("none", s)]["test"]["acc"] for s in seeds),
                          "test_acc_with": statistics.fmean(runs[(variant, s)]["test"]["acc"] for s in seeds)}

    mode_diffs = [runs[("classic", s)]["test"]["acc"] - runs[("dropout", s)]["test"]["acc"] for s in seeds]
    mode_numbers = {"mode_acc_diff": statistics.fmean(mode_diffs),
                    "mode_acc_diff_se": statistics.stdev(mode_diffs) / math.sqrt(len(seeds)) if len(seeds) > 1 else 0.0}
    gap_splits = overfit_data(settings["gap_n_train"], seed, device)
    gap_runs = [train_variant(gap_splits, VARIANTS["dropout"], settings["width"], settings["gap_epochs"], seed + i, 64)[1]
                for i in range(settings["gap_seeds"])]
    orderings = [gap_ordering(h) for h in gap_runs]
    gap_numbers = {key: statistics.fmean(o[key] for o in orderings) for key in orderings[0]} | {"seeds": len(gap_runs)}

    def with_accuracy(verdict: Verdict, variant: str) -> Verdict:
        """The gap verdict (the lecture's regime) beside test accuracy with vs without, beyond 2 s.e. over seeds."""
        c = compare([runs[(variant, s)]["test"]["acc"] for s in seeds], [runs[("none", s)]["test"]["acc"] for s in seeds])
        accuracy = Regime("test accuracy", c.status, f"test accuracy with {variant} {c.mean_a:.1%} vs without "
                          f"{c.mean_b:.1%}: {c.describe()}.", c.numbers("test_accuracy"))
        gap = Regime("train-test gap", verdict.status, verdict.evidence, verdict.numbers, lecture=True)
        return regime_verdict(verdict.claim, verdict.text, ACCURACY_RULE, [gap, accuracy], figure="dropout_gap.png")

    verdicts = [with_accuracy(dropout_verdict(reduction("dropout") | equivalence | mode_numbers), "dropout"),
                with_accuracy(dropconnect_verdict(reduction("dropconnect")), "dropconnect"), dropout_gap_verdict(gap_numbers)]
    figures = [
        (_gap_figure(folder, runs, seeds), f"Train (clean) and test accuracy at the last epoch per variant, "
         f"{settings['n_train']} MNIST-1D training examples, {len(seeds)} seeds (dots) and their mean (bar). "
         + ("DropConnect draws one mask per batch in quick mode." if quick else "")),
        (_curves_figure(folder, gap_runs[0]), f"One dropout (p={P}) run on {settings['gap_n_train']} examples: training "
         "loss as trained (dropout on), clean training loss (eval mode) and validation loss per epoch."),
    ]
    tables = [(_table(folder, runs, gap_runs), "Per variant, seed and epoch: losses and accuracies; test metrics at the end.")]
    return StudyOutput(verdicts, figures, tables)


def _table(folder: Path, runs: dict, gap_runs: list) -> str:
    keys = ("train/loss", "train/loss_clean", "train/acc_clean", "val/loss", "val/acc")
    rows = [{"experiment": "overfit", "variant": variant, "seed": s, "epoch": h["epoch"], "quantity": key, "value": h[key]}
            for (variant, s), record in runs.items() for h in record["history"] for key in keys if key in h]
    rows += [{"experiment": "overfit", "variant": variant, "seed": s, "epoch": record["history"][-1]["epoch"],
              "quantity": f"test/{key}", "value": value}
             for (variant, s), record in runs.items() for key, value in record["test"].items()]
    rows += [{"experiment": "dropout_gap", "variant": "dropout", "seed": index, "epoch": h["epoch"], "quantity": key,
              "value": h[key]}
             for index, history in enumerate(gap_runs) for h in history for key in keys if key in h]
    write_table(folder / "dropout.csv", rows, ["experiment", "variant", "seed", "epoch", "quantity", "value"])
    return "dropout.csv"


def _gap_figure(folder: Path, runs: dict, seeds: list[int]) -> str:
    figure, axes = new_figure(8, 4.5, 1, 1)
    ax = axes[0][0]
    names = list(VARIANTS)
    for offset, (label, pick, color) in enumerate((("train (clean)", lambda r: r["history"][-1]["train/acc_clean"], COLORS[0]),
                                                   ("test", lambda r: r["test"]["acc"], COLORS[1]))):
        for index, variant in enumerate(names):
            values = [pick(runs[(variant, s)]) for s in seeds]
            x = index + (offset - 0.5) * 0.38
            ax.bar(x, statistics.fmean(values), width=0.36, color=color, alpha=0.6, label=label if index == 0 else None)
            ax.scatter([x] * len(values), values, color=color, s=12, zorder=3)
    ax.set_xticks(range(len(names)), ["no dropout", f"dropout {P}\n(inverted)", f"dropout {P}\n(classic)", f"DropConnect {P}"])
    ax.set(title="Train-test gap on a small training set", ylabel="accuracy", ylim=(0, 1.05))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    save_figure(figure, folder / "dropout_gap.png")
    return "dropout_gap.png"


def _curves_figure(folder: Path, history: list[dict[str, float]]) -> str:
    figure, axes = new_figure(7, 4.5, 1, 1)
    ax = axes[0][0]
    epochs = [h["epoch"] for h in history]
    for key, label, color in (("train/loss", "train, as trained (dropout on)", COLORS[1]),
                              ("train/loss_clean", "train, clean (eval mode)", COLORS[0]), ("val/loss", "validation", COLORS[2])):
        ax.plot(epochs, [h[key] for h in history], marker="o", markersize=3, color=color, label=label)
    ax.set(title="Why validation loss can be below training loss with dropout", xlabel="epoch", ylabel="cross-entropy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(figure, folder / "dropout_loss_curves.png")
    return "dropout_loss_curves.png"
