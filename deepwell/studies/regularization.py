"""Study ``regularization``: L1, L2 and ElasticNet penalties on the weights (lecture: L1 or L2 regularization).

The same 2 x 128 MLP (ReLU, He init, no normalisation) trains on MNIST-1D with SGD and momentum
under no penalty, ``l1``, ``l2`` and ``elasticnet`` (l1_ratio 0.5), all at strength ``STRENGTH``
(penalty = strength * sum |w| and/or strength * sum w^2 over dense weights, biases excluded). At
the end, over all dense weights: the share of near-zero weights (|w| < ``NEAR_ZERO``), of exact
zeros, and the L2 norm.

Note: plain (sub)gradient descent on |w| makes weights oscillate around 0 with an amplitude of about
lr * strength instead of landing on exactly 0 (a proximal / soft-thresholding step would); "near
zero" is therefore the measured quantity, exact zeros are reported alongside.

Verdict: penalties.
"""

from __future__ import annotations

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
from deepwell.training.loop import TensorData, evaluate, fit

__all__ = ["PENALTY_OPTIONS", "weight_statistics", "penalties_verdict", "run"]

STRENGTH = 1e-3
PENALTY_OPTIONS = {"none": "none", "l1": f"l1:{STRENGTH}", "l2": f"l2:{STRENGTH}",
                   "elasticnet": f"elasticnet:{STRENGTH},l1_ratio=0.5"}
NEAR_ZERO = 1e-3          # |w| below this counts as (near) zero
SPARSE_MIN = 0.20         # L1: at least 20% of weights near zero ...
SPARSE_RATIO = 5.0        # ... and at least 5x the unpenalised share
SHRINK_MAX = 0.90         # L2: weight norm at most 90% of the unpenalised norm ...
NOT_SPARSE_MARGIN = 0.02  # ... while its near-zero share exceeds the unpenalised one by at most 2 points
# Beyond noise: every condition must hold in every seed (not only for the seed mean).


def dense_weights(model: nn.Module) -> torch.Tensor:
    """All dense/conv weight tensors (what the penalties act on), flattened into one vector."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    return torch.cat([m.weight.detach().flatten() for m in layers])


def weight_statistics(weights: torch.Tensor) -> dict[str, float]:
    """Near-zero share (|w| < NEAR_ZERO), exact-zero share, L2 and L1 norms of a weight vector."""
    magnitude = weights.abs()
    values = torch.stack([(magnitude < NEAR_ZERO).float().mean(), (magnitude == 0).float().mean(),
                          weights.norm(), magnitude.sum()]).tolist()
    return dict(zip(("near_zero", "exact_zero", "l2_norm", "l1_norm"), values))


def penalties_verdict(per_seed: list[dict[str, dict[str, float]]]) -> Verdict:
    """penalties: L1 gives many near zeros; L2 shrinks the norm without sparsity. ``per_seed[i][penalty][stat]``."""
    l1_sparse = all(r["l1"]["near_zero"] >= max(SPARSE_MIN, SPARSE_RATIO * r["none"]["near_zero"]) for r in per_seed)
    l2_shrinks = all(r["l2"]["l2_norm"] <= SHRINK_MAX * r["none"]["l2_norm"] for r in per_seed)
    l2_dense = all(r["l2"]["near_zero"] <= r["none"]["near_zero"] + NOT_SPARSE_MARGIN for r in per_seed)
    numbers = {f"{penalty}_{stat}": statistics.fmean(r[penalty][stat] for r in per_seed)
               for penalty in per_seed[0] for stat in per_seed[0][penalty]}
    numbers |= {f"{penalty}_{stat}_std": statistics.stdev([r[penalty][stat] for r in per_seed]) if len(per_seed) > 1 else 0.0
                for penalty in per_seed[0] for stat in ("near_zero", "l2_norm")}
    numbers["seeds"] = len(per_seed)
    n = numbers
    evidence = (f"Share of |w| < {NEAR_ZERO:g} (mean ± std over {len(per_seed)} seeds): none {n['none_near_zero']:.1%}, "
                f"L1 {n['l1_near_zero']:.1%} ± {n['l1_near_zero_std']:.1%}, L2 {n['l2_near_zero']:.1%}, ElasticNet "
                f"{n['elasticnet_near_zero']:.1%} (exact zeros: L1 {n['l1_exact_zero']:.2%}). Weight L2 norm: none "
                f"{n['none_l2_norm']:.1f}, L1 {n['l1_l2_norm']:.1f}, L2 {n['l2_l2_norm']:.1f} ± {n['l2_l2_norm_std']:.1f}, "
                f"ElasticNet {n['elasticnet_l2_norm']:.1f}. Needs in every seed: L1 share >= max({SPARSE_MIN:.0%}, "
                f"{SPARSE_RATIO:g} x none); L2 norm <= {SHRINK_MAX:.0%} of none and L2 share <= none + {NOT_SPARSE_MARGIN:.0%}.")
    return Verdict("penalties", "L1 gives many exact-or-near zeros; L2 shrinks weight norms without sparsity.",
                   status_from(l1_sparse and l2_shrinks and l2_dense), evidence, numbers)


def _train(splits, penalty: str, seed: int, epochs: int) -> tuple[torch.Tensor, dict[str, float]]:
    model = build_model(ModelSpec(arch="mlp", depth=2, width=128, norm="none"), splits.input_shape, splits.output_size,
                        generator=torch.Generator().manual_seed(seed)).to(splits.x_train.device)
    fit(model, TensorData(splits.x_train, splits.y_train, splits.x_val, splits.y_val),
        TrainSpec(epochs=epochs, batch_size=32, optimizer="sgd:momentum=0.9", lr=0.02, schedule="constant", penalty=penalty),
        seed=seed)
    return dense_weights(model).cpu(), evaluate(model, splits.x_test, splits.y_test, "classification")


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    epochs, seeds, n_train = (30, [seed, seed + 1], 1000) if quick else (100, [seed, seed + 1, seed + 2], 3600)
    splits = overfit_data(n_train, seed, device)
    weights: dict[str, torch.Tensor] = {}
    per_seed, rows = [], []
    for s in seeds:
        result = {}
        for name, option in PENALTY_OPTIONS.items():
            w, test = _train(splits, option, s, epochs)
            result[name] = weight_statistics(w) | {"test_acc": test["acc"]}
            rows += [{"penalty": option, "seed": s, "quantity": key, "value": value} for key, value in result[name].items()]
            if s == seed:
                weights[name] = w
        per_seed.append(result)
    verdict = penalties_verdict(per_seed)
    write_table(folder / "regularization.csv", rows, ["penalty", "seed", "quantity", "value"])
    figures = [(_figure(folder, weights, per_seed), f"Dense weights after {epochs} epochs (2 x 128 MLP, MNIST-1D, {n_train} "
                f"examples, SGD) under each penalty at strength {STRENGTH:g}: histogram of log10|w| (seed {seed}; dotted: "
                f"the near-zero threshold {NEAR_ZERO:g}), weight L2 norm and near-zero share (mean ± std over "
                f"{len(seeds)} seeds).")]
    return StudyOutput([verdict], figures, [("regularization.csv", "Per penalty and seed: weight statistics and test accuracy.")])


def _figure(folder: Path, weights: dict[str, torch.Tensor], per_seed: list[dict]) -> str:
    figure, axes = new_figure(13, 4.2, 1, 3)
    ax = axes[0][0]
    bins = torch.linspace(-9, 0.5, 60).tolist()
    for index, (name, w) in enumerate(weights.items()):
        ax.hist(w.abs().clamp_min(1e-9).log10().numpy(), bins=bins, histtype="step", linewidth=1.5, color=COLORS[index],
                label=name)
    ax.axvline(-3, color="black", linestyle=":", linewidth=1)
    ax.set(title="Weight magnitudes", xlabel="log10 |w|  (|w| < 1e-9 shown at -9)", ylabel="weights", yscale="log")
    ax.legend(fontsize=8)
    names = list(PENALTY_OPTIONS)
    panels = ((axes[0][1], "l2_norm", "Weight L2 norm"), (axes[0][2], "near_zero", f"Share with |w| < {NEAR_ZERO:g}"))
    for ax, stat, title in panels:
        values = [[r[name][stat] for r in per_seed] for name in names]
        ax.bar(names, [statistics.fmean(v) for v in values], yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in values],
               capsize=3, color=COLORS[:len(names)])
        ax.set(title=title)
        ax.grid(alpha=0.3, axis="y")
    save_figure(figure, folder / "regularization.png")
    return "regularization.png"
