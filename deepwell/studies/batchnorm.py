"""Study ``batchnorm``: batch statistics in training, fixed statistics at test; BN helps deep nets train
(lecture: batch normalization; Ioffe & Szegedy 2015).

1. Train vs eval mode of one BatchNorm layer (deepwell's ``batchnorm``, PyTorch momentum 0.1 =
   weight of the new batch). Inputs with per-feature means ``FEATURE_MEANS`` and stds
   ``FEATURE_STDS``; ``WARM_BATCHES`` training-mode batches update the running statistics. Then:
   - train mode: the output of a batch has per-feature mean 0 and std 1 (its own statistics);
   - eval mode: the output equals ``(x - running_mean) / sqrt(running_var + eps)`` (the fixed,
     population statistics), so a small batch's output is *not* exactly standardised;
   - the same batch gives different outputs in the two modes.
2. A deep ReLU MLP (He init) on MNIST-1D with and without BN before each activation, plain SGD
   (no momentum, constant step) over a learning-rate grid, the same epochs and batches for all.
   Per learning rate: the final eval-mode training loss (inf when training diverged).

Verdict: batchnorm (both parts must hold).
"""

from __future__ import annotations

import copy
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import Splits, prepare_data
from deepwell.models import build_model
from deepwell.models.layers import NORMALIZATIONS
from deepwell.runtime import resolve_device
from deepwell.studies.base import Regime, StudyOutput, Verdict, status_from, write_table
from deepwell.studies.evidence import compare, regime_verdict
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.loop import TensorData, fit

__all__ = ["batch_statistics", "bn_statistics_ok", "bn_training_summary", "batchnorm_verdict", "run"]

# --- thresholds: what "holds" means ---------------------------------------------------------
STANDARDISED_TOL = 1e-3     # train mode: |mean| and |std - 1| of every output feature below this
FORMULA_TOL = 1e-4          # eval mode: max |output - (x - running_mean)/sqrt(running_var + eps)|
MODES_DIFFER_MIN = 0.05     # the same batch: max |train output - eval output| at least this
RUNNING_REL_TOL = 0.15      # running mean/std within 15% (of the std) of the population's
TRAINED_FRACTION = 0.75     # an lr "trains" when the final loss is below 75% of the chance loss ln(10)
BETTER_MARGIN = 0.10        # BN "trains faster": best final loss at least 10% lower than without BN

FEATURE_MEANS = (-3.0, -1.0, 0.0, 0.5, 2.0, 5.0)
FEATURE_STDS = (0.5, 1.0, 2.0, 3.0, 0.2, 4.0)
WARM_BATCHES, BATCH, SMALL_BATCH = 200, 64, 16
CHANCE = math.log(10)


@torch.no_grad()
def batch_statistics(seed: int = 0) -> dict[str, Any]:
    """Train/eval behaviour of one BatchNorm1d layer on features with known population statistics."""
    generator = torch.Generator().manual_seed(seed)
    means, stds = torch.tensor(FEATURE_MEANS), torch.tensor(FEATURE_STDS)
    layer = NORMALIZATIONS.build("batchnorm", num_features=len(means), dims=0)

    def draw(size: int) -> torch.Tensor:
        return means + stds * torch.randn(size, len(means), generator=generator)  # (B, F)

    layer.train()
    for _ in range(WARM_BATCHES):
        layer(draw(BATCH))
    batch = draw(SMALL_BATCH)
    train_out = copy.deepcopy(layer).train()(batch)  # a copy: this forward must not move the running stats
    layer.eval()
    eval_out = layer(batch)
    expected = (batch - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps)
    return {
        "train_mean": train_out.mean(0), "train_std": train_out.std(0, unbiased=False),
        "eval_mean": eval_out.mean(0), "eval_std": eval_out.std(0, unbiased=False),
        "running_mean": layer.running_mean.clone(), "running_std": layer.running_var.sqrt(),
        "numbers": {
            "train_mean_max_abs": float(train_out.mean(0).abs().max()),
            "train_std_max_dev": float((train_out.std(0, unbiased=False) - 1).abs().max()),
            "eval_formula_max_err": float((eval_out - expected).abs().max()),
            "train_eval_max_diff": float((train_out - eval_out).abs().max()),
            "running_mean_max_err": float(((layer.running_mean - means).abs() / stds).max()),
            "running_std_max_rel_err": float((layer.running_var.sqrt() / stds - 1).abs().max()),
        },
    }


def bn_statistics_ok(numbers: dict[str, float]) -> bool:
    """Train mode standardises by the batch, eval mode uses the running (population) statistics."""
    return (numbers["train_mean_max_abs"] <= STANDARDISED_TOL and numbers["train_std_max_dev"] <= STANDARDISED_TOL
            and numbers["eval_formula_max_err"] <= FORMULA_TOL and numbers["train_eval_max_diff"] >= MODES_DIFFER_MIN
            and numbers["running_mean_max_err"] <= RUNNING_REL_TOL and numbers["running_std_max_rel_err"] <= RUNNING_REL_TOL)


def bn_training_summary(losses: dict[str, dict[float, float]]) -> dict[str, float]:
    """Per arm ('bn', 'plain'): best final loss over the lr grid and the largest lr that trains."""
    numbers: dict[str, float] = {}
    for arm, by_lr in losses.items():
        numbers[f"{arm}_best_loss"] = min(by_lr.values())
        trained = [lr for lr, loss in by_lr.items() if loss < TRAINED_FRACTION * CHANCE]
        numbers[f"{arm}_max_trained_lr"] = max(trained) if trained else 0.0
        numbers[f"{arm}_trained_count"] = float(len(trained))
    return numbers


def batchnorm_verdict(numbers: dict[str, float]) -> Verdict:
    """batchnorm: the statistics behave as stated, and BN trains faster or at higher learning rates."""
    statistics = bn_statistics_ok(numbers)
    faster = numbers["bn_best_loss"] <= (1 - BETTER_MARGIN) * numbers["plain_best_loss"]
    higher_lr = numbers["bn_max_trained_lr"] > numbers["plain_max_trained_lr"]
    usable = numbers["bn_trained_count"] + numbers["plain_trained_count"] > 0  # something trained at all
    evidence = (f"Train mode: output |mean| <= {numbers['train_mean_max_abs']:.1e}, |std-1| <= "
                f"{numbers['train_std_max_dev']:.1e}; eval mode matches the running-statistics formula to "
                f"{numbers['eval_formula_max_err']:.1e} and differs from train mode by up to {numbers['train_eval_max_diff']:.2f} "
                f"on the same batch (running stats within {max(numbers['running_mean_max_err'], numbers['running_std_max_rel_err']):.0%} "
                f"of the population's). Depth-{numbers['depth']:.0f} ReLU MLP, plain SGD: best final loss with BN "
                f"{numbers['bn_best_loss']:.3f} vs {numbers['plain_best_loss']:.3f} without; largest lr that trains "
                f"{numbers['bn_max_trained_lr']:g} vs {numbers['plain_max_trained_lr']:g}.")
    return Verdict("batchnorm", "BN uses batch statistics in training and fixed statistics at test; it helps deep nets train.",
                   status_from(statistics and (faster or higher_lr), usable), evidence, numbers)


SEED_RULE = (f"the lecture's regime, 3 seeds: each arm at its best learning rate (from the sweep), BN's final training loss "
             f"lower than without BN by more than 2 standard errors and by at least {BETTER_MARGIN:.0%} of the plain loss; "
             "the statistics regime: train mode standardises by the batch, eval mode uses the running statistics; the "
             "one-seed sweep: BN trains at a higher learning rate or to a 10% lower loss.")


def _with_seeds(verdict: Verdict, losses: dict[str, dict[float, float]], splits: Splits, quick: bool, seed: int,
                device: torch.device) -> Verdict:
    """The one-seed verdict as two regimes, and a third: each arm at its best lr over 3 seeds (compare, with a margin)."""
    finals = {}
    for arm, by_lr in losses.items():
        lr = min(by_lr, key=by_lr.get)
        finals[arm] = [by_lr[lr]] + [train_deep(splits, "batchnorm" if arm == "bn" else "none", lr, quick, s, device)["final"]
                                     for s in (seed + 1, seed + 2)]
    c = compare(finals["bn"], finals["plain"], margin=BETTER_MARGIN * statistics.fmean(finals["plain"]), higher_is_better=False)
    seeds = Regime("best learning rate, 3 seeds", c.status, f"final training loss with BN {c.mean_a:.3f} vs without "
                   f"{c.mean_b:.3f} (each at its best lr): plain minus BN {c.describe()}.", c.numbers("final_loss"), lecture=True)
    stats_ok = bn_statistics_ok(verdict.numbers)
    return regime_verdict(verdict.claim, verdict.text, SEED_RULE, [
        seeds, Regime("train vs eval statistics", "holds" if stats_ok else "does_not_hold", verdict.evidence.split(" Depth-")[0],
                      {k: v for k, v in verdict.numbers.items() if not k.startswith(("bn_", "plain_"))}),
        Regime("learning-rate sweep, 1 seed", verdict.status, "Depth-" + verdict.evidence.split(" Depth-")[-1],
               {k: v for k, v in verdict.numbers.items() if k.startswith(("bn_", "plain_"))})], figure="batchnorm_lr.png")


def train_deep(splits: Splits, norm: str, lr: float, quick: bool, seed: int, device: torch.device) -> dict[str, Any]:
    """The deep MLP on MNIST-1D at one learning rate; per-epoch eval-mode training loss (inf once diverged)."""
    data = TensorData(splits.x_train.to(device), splits.y_train.to(device))
    spec = ModelSpec(arch="mlp", depth=_depth(quick), width=32 if quick else 64, activation="relu", init="he", norm=norm)
    model = build_model(spec, splits.input_shape, splits.output_size, generator=torch.Generator().manual_seed(seed)).to(device)
    result = fit(model, data, TrainSpec(epochs=10 if quick else 30, batch_size=64, optimizer="sgd", lr=lr,
                                        schedule="constant", clean_train_examples=1024), seed=seed)
    curve = [row.get("train/loss_clean", math.inf) for row in result.history]
    diverged = result.stop_reason.value == "non_finite"
    curve = [value if math.isfinite(value) else math.inf for value in curve]
    return {"curve": curve, "final": math.inf if diverged else curve[-1], "diverged": diverged}


def _depth(quick: bool) -> int:
    return 12 if quick else 20


def _learning_rates(quick: bool) -> tuple[float, ...]:
    return (0.01, 0.03, 0.1, 0.3, 1.0) if quick else (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    stats = batch_statistics(seed)
    source = "mnist1d:num_samples=2000" if quick else "mnist1d"
    splits = prepare_data(DataSpec(source=source, preprocess="standardize", val_fraction=0.0), seed=0)
    runs = {(arm, lr): train_deep(splits, "batchnorm" if arm == "bn" else "none", lr, quick, seed, device)
            for arm in ("bn", "plain") for lr in _learning_rates(quick)}
    losses = {arm: {lr: record["final"] for (a, lr), record in runs.items() if a == arm} for arm in ("bn", "plain")}
    numbers = stats["numbers"] | bn_training_summary(losses) | {"depth": float(_depth(quick))}
    verdict = _with_seeds(batchnorm_verdict(numbers), losses, splits, quick, seed, device)
    figures = [
        (_statistics_figure(folder, stats), f"Per-feature mean and std of a BatchNorm layer's output on one batch of "
         f"{SMALL_BATCH}: train mode (batch statistics) vs eval mode (running statistics after {WARM_BATCHES} batches)."),
        (_lr_figure(folder, runs, quick), f"Final eval-mode training loss vs learning rate, depth-{_depth(quick)} ReLU MLP on "
         "MNIST-1D with and without BN, plain SGD, same epochs (x at the top: diverged); right: loss per epoch."),
    ]
    rows = [{"experiment": "statistics", "mode": mode, "feature": feature, "quantity": quantity, "value": float(value)}
            for mode in ("train", "eval") for quantity in ("mean", "std")
            for feature, value in enumerate(stats[f"{mode}_{quantity}"].tolist())]
    rows += [{"experiment": "training", "norm": arm, "lr": lr, "epoch": epoch + 1, "quantity": "train_loss_clean", "value": value}
             for (arm, lr), record in runs.items() for epoch, value in enumerate(record["curve"])]
    write_table(folder / "batchnorm.csv", rows, ["experiment", "mode", "feature", "norm", "lr", "epoch", "quantity", "value"])
    return StudyOutput([verdict], figures, [("batchnorm.csv", "BN output statistics per feature; loss per epoch per lr.")])


def _statistics_figure(folder: Path, stats: dict[str, Any]) -> str:
    figure, axes = new_figure(10, 3.8, 1, 2)
    features = range(len(FEATURE_MEANS))
    for ax, quantity, target in ((axes[0][0], "mean", 0.0), (axes[0][1], "std", 1.0)):
        ax.bar([f - 0.2 for f in features], stats[f"train_{quantity}"].tolist(), width=0.4, color=COLORS[0], label="train mode")
        ax.bar([f + 0.2 for f in features], stats[f"eval_{quantity}"].tolist(), width=0.4, color=COLORS[1], label="eval mode")
        ax.axhline(target, color="black", linewidth=0.8, linestyle=":")
        ax.set(title=f"BN output {quantity} per feature (same batch)", xlabel="feature", ylabel=quantity)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    save_figure(figure, folder / "batchnorm_modes.png")
    return "batchnorm_modes.png"


def _lr_figure(folder: Path, runs: dict, quick: bool) -> str:
    figure, axes = new_figure(11, 4.2, 1, 2)
    ax, curves = axes[0][0], axes[0][1]
    rates = _learning_rates(quick)
    ceiling = 1.5 * CHANCE
    for index, (arm, label) in enumerate((("bn", "with BN"), ("plain", "without BN"))):
        finals = [runs[(arm, lr)]["final"] for lr in rates]
        ax.plot(rates, [min(v, ceiling) for v in finals], marker="o", color=COLORS[index], label=label)
        diverged = [lr for lr, v in zip(rates, finals) if not math.isfinite(v)]
        ax.plot(diverged, [ceiling] * len(diverged), marker="x", markersize=10, linestyle="none", color=COLORS[index])
        for shade, lr in enumerate(rates):
            curve = runs[(arm, lr)]["curve"]
            curves.plot(range(1, len(curve) + 1), [min(v, ceiling) for v in curve], color=COLORS[index],
                        alpha=0.3 + 0.7 * shade / max(len(rates) - 1, 1), label=f"{label}, lr {lr:g}")
    ax.axhline(TRAINED_FRACTION * CHANCE, color="black", linestyle=":", linewidth=1, label="'trains' threshold")
    ax.axhline(CHANCE, color="gray", linestyle="--", linewidth=1, label="chance ln 10")
    ax.set(xscale="log", title="Final training loss vs learning rate", xlabel="learning rate (plain SGD)",
           ylabel="final train loss (eval mode)", ylim=(0, ceiling * 1.05))
    curves.set(title="Training loss per epoch (darker = higher lr)", xlabel="epoch", ylabel="train loss (eval mode)",
               ylim=(0, ceiling * 1.05))
    for axis in (ax, curves):
        axis.grid(alpha=0.3)
    ax.legend(fontsize=8)
    curves.legend(fontsize=6, ncol=2)
    save_figure(figure, folder / "batchnorm_lr.png")
    return "batchnorm_lr.png"
