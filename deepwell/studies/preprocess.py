"""Study ``preprocess``: centring, scaling and whitening make the loss surface nicer (lecture: data pre-processing).

Correlated, uncentred 2-D inputs ``x ~ N(m, C)`` with a large mean offset, unequal scales and
correlation ``RHO``; a linear target of the centred inputs, ``y = w* . (x - m) + b0 + noise`` (the offset
belongs to how the features are measured, not to the target; so the raw optimum has a large
bias ``b0 - w* . m`` that must be found along the ravine). With a target that ignores the offset
(``y = w* . x + b0``) raw GD happens to need few steps, since its error then lies along the
Hessian's large eigenvectors: the condition number bounds the worst case, not every case. A linear model (weights and
bias, both starting at zero) is trained by plain full-batch gradient descent on the mean squared
error, through :func:`deepwell.training.loop.fit` (one epoch = one step), on

- raw inputs, ``standardize`` (per-feature z-score) and ``zca_whiten`` inputs, each fitted on the
  training set by :data:`deepwell.data.PREPROCESSORS`.

The loss is quadratic in (w, b): its Hessian is ``H = 2 X~^T X~ / n`` with ``X~ = [X, 1]``, so
the condition number ``cond(H) = lambda_max / lambda_min`` measures the "ravine" (for gradient
descent with step 1/lambda_max the slowest direction shrinks by ``1 - 1/cond`` per step). The mean
offset shows up in H (the uncentred second moment), the correlation in the input covariance.

Two learning-rate rules, same optimiser (plain GD, no momentum):

- ``own``: each input at the classic safe step ``1/lambda_max`` of its own Hessian (the verdict's
  basis: no method is handicapped by another method's curvature);
- ``shared``: one step for all, ``1/lambda_max`` of the raw Hessian (the largest at which raw
  inputs converge); reported alongside.

All three share the optimum loss L* (they are invertible affine reparametrisations of the same
model) and the same start (zero weights predict 0 everywhere), so "steps to reach
``(1 + THRESHOLD_EXCESS) L*``, a fit down to the noise level," compares like with like.

Verdict: preprocess.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepwell.config import TrainSpec
from deepwell.data import PREPROCESSORS
from deepwell.studies.base import StudyOutput, Verdict, status_from, write_table
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import TensorData, fit

__all__ = ["condition_number", "quadratic_hessian", "make_inputs", "steps_to_threshold", "preprocess_verdict", "run"]

# --- thresholds: what "holds" means ---------------------------------------------------------
THRESHOLD_EXCESS = 0.5     # "converged": loss within 50% of the optimum (noise-floor) loss, L <= 1.5 L*
SPEEDUP_MIN = 2.0          # standardised and whitened reach it in at most half the raw steps
WHITE_COND_MAX = 1.1       # whitened Hessian: condition number ~ 1

MEAN, STDS, RHO = (4.0, -3.0), (3.0, 0.5), 0.9     # inputs: large offset, 6x anisotropy, correlation 0.9
TRUE_WEIGHTS, CENTRED_BIAS, NOISE = (1.5, -2.0), 0.5, 0.1
METHODS = {"raw": "none", "standardised": "standardize", "whitened": "zca_whiten"}
LR_RULES = ("own", "shared")


def condition_number(matrix: torch.Tensor) -> float:
    """2-norm condition number ``sigma_max / sigma_min`` (inf for a singular matrix), in float64."""
    singular = torch.linalg.svdvals(matrix.double())
    return float(singular.max() / singular.min()) if float(singular.min()) > 0 else math.inf


def quadratic_hessian(x: torch.Tensor) -> torch.Tensor:
    """Hessian of the MSE of a linear model with bias, ``2 [X, 1]^T [X, 1] / n`` (D+1, D+1)."""
    augmented = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)  # (N, D+1)
    return 2.0 * augmented.T @ augmented / len(x)


def input_covariance(x: torch.Tensor) -> torch.Tensor:
    """Covariance of the inputs (centred second moment), (D, D)."""
    centred = x.double() - x.double().mean(0)
    return centred.T @ centred / len(x)


def make_inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated, uncentred 2-D inputs (n, 2) and targets linear in the centred inputs (n, 1)."""
    generator = torch.Generator().manual_seed(seed)
    stds = torch.tensor(STDS)
    covariance = torch.tensor([[1.0, RHO], [RHO, 1.0]]) * torch.outer(stds, stds)
    x = torch.tensor(MEAN) + torch.randn(n, 2, generator=generator) @ torch.linalg.cholesky(covariance).T
    y = (x - torch.tensor(MEAN)) @ torch.tensor(TRUE_WEIGHTS) + CENTRED_BIAS + NOISE * torch.randn(n, generator=generator)
    return x, y.unsqueeze(1)


def steps_to_threshold(losses: list[float], threshold: float) -> float:
    """The first step whose loss is at or below ``threshold`` (inf if never)."""
    return next((float(step) for step, loss in enumerate(losses) if loss <= threshold), math.inf)


def optimum_loss(x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Least-squares loss and solution (w..., b) of the linear model on (x, y)."""
    augmented = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(augmented, y.double()).solution  # (D+1, 1)
    return float(((augmented @ solution - y.double()) ** 2).mean()), solution.squeeze(1)


class _WeightRecorder(Callback):
    """The (w1, w2, b) of the linear model at the start and after every step (one step = one epoch)."""

    def __init__(self) -> None:
        self.path: list[list[float]] = []

    def _record(self, state: FitState) -> None:
        layer = state.model
        self.path.append(torch.cat([layer.weight.detach().flatten(), layer.bias.detach()]).tolist())

    on_fit_start = _record
    on_epoch_end = _record


def train_linear(x: torch.Tensor, y: torch.Tensor, lr: float, steps: int, seed: int) -> dict[str, Any]:
    """Full-batch GD from zero weights; the loss before every step and the weight path."""
    model = nn.Linear(x.shape[1], 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    recorder = _WeightRecorder()
    result = fit(model, TensorData(x, y), TrainSpec(epochs=steps, batch_size=len(x), optimizer="sgd", lr=lr,
                                                    schedule="constant", eval_every=steps),
                 task="regression", seed=seed, callbacks=[recorder])
    losses = [row["train/loss"] for row in result.history]  # loss at the weights before each step
    return {"losses": losses, "path": recorder.path, "stop": result.stop_reason.value}


def preprocess_verdict(numbers: dict[str, float]) -> Verdict:
    """preprocess: standardised and whitened inputs reach the loss threshold in fewer steps, with lower cond(H)."""
    raw, standard, white = (numbers[f"steps_{m}_own"] for m in METHODS)
    faster = standard * SPEEDUP_MIN <= raw and white * SPEEDUP_MIN <= raw
    better_conditioned = numbers["cond_hessian_whitened"] <= WHITE_COND_MAX and (
        numbers["cond_hessian_whitened"] < numbers["cond_hessian_standardised"] < numbers["cond_hessian_raw"])
    usable = math.isfinite(white)  # whitened GD must converge, else the set-up is broken
    evidence = (f"Plain GD at each input's step 1/lambda_max: steps to loss <= {1 + THRESHOLD_EXCESS:g} L*: "
                f"raw {_steps(raw)}, standardised {_steps(standard)}, whitened {_steps(white)} "
                f"(one shared step {numbers['shared_lr']:.3g}: {_steps(numbers['steps_raw_shared'])}, "
                f"{_steps(numbers['steps_standardised_shared'])}, {_steps(numbers['steps_whitened_shared'])}). "
                f"cond(Hessian) {numbers['cond_hessian_raw']:.0f} -> {numbers['cond_hessian_standardised']:.1f} -> "
                f"{numbers['cond_hessian_whitened']:.2f}; cond(covariance) {numbers['cond_cov_raw']:.1f} -> "
                f"{numbers['cond_cov_standardised']:.1f} -> {numbers['cond_cov_whitened']:.2f}.")
    return Verdict("preprocess", "Zero-centring and scaling (or whitening) make the loss surface nicer.",
                   status_from(faster and better_conditioned, usable), evidence, numbers)


def _steps(value: float) -> str:
    return f"{value:.0f}" if math.isfinite(value) else "never"


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    steps = 400 if quick else 3000
    x_raw, y = make_inputs(256 if quick else 2048, seed)
    inputs = {name: PREPROCESSORS.build(option).fit(x_raw)(x_raw) for name, option in METHODS.items()}
    hessians = {name: quadratic_hessian(x) for name, x in inputs.items()}
    optimum, solutions = {}, {}
    for name, x in inputs.items():
        optimum[name], solutions[name] = optimum_loss(x, y)
    threshold = (1.0 + THRESHOLD_EXCESS) * min(optimum.values())
    shared_lr = 1.0 / float(torch.linalg.eigvalsh(hessians["raw"]).max())
    runs = {}
    for name, x in inputs.items():
        own_lr = 1.0 / float(torch.linalg.eigvalsh(hessians[name]).max())
        for rule, lr in (("own", own_lr), ("shared", shared_lr)):
            runs[(name, rule)] = train_linear(x, y, lr, steps, seed) | {"lr": lr}
    numbers: dict[str, float] = {"shared_lr": shared_lr, "threshold": threshold, "budget_steps": steps}
    for name, x in inputs.items():
        numbers[f"cond_hessian_{name}"] = condition_number(hessians[name])
        numbers[f"cond_cov_{name}"] = condition_number(input_covariance(x))
        numbers[f"optimum_loss_{name}"] = optimum[name]
        for rule in LR_RULES:
            numbers[f"steps_{name}_{rule}"] = steps_to_threshold(runs[(name, rule)]["losses"], threshold)
            numbers[f"lr_{name}_{rule}"] = runs[(name, rule)]["lr"]
    verdict = preprocess_verdict(numbers)
    figures = [
        (_curves_figure(folder, runs, optimum, threshold), "Excess training loss of plain full-batch GD per step on raw, "
         "standardised and ZCA-whitened inputs; solid: each at its own step 1/lambda_max, dashed: one shared step "
         "(1/lambda_max of the raw Hessian). Dotted: the threshold."),
        (_cloud_figure(folder, x_raw), "The CS231n preprocessing picture on this study's inputs: the raw point cloud, "
         "centred (mean subtracted), normalised (each dimension divided by its std), decorrelated (rotated onto the "
         "covariance's eigenvectors, PCA) and whitened (each eigen-direction divided by its std). Same scale on both axes."),
        (_contour_figure(folder, inputs, y, solutions, runs), "Loss contours over the two input weights (bias at its "
         "optimum) for raw, standardised and whitened inputs, same scale on both axes, with the GD path (own step): the "
         "raw ravine becomes round."),
    ]
    rows = [{"method": name, "lr_rule": rule, "lr": runs[(name, rule)]["lr"], "step": step, "loss": loss}
            for (name, rule), record in runs.items() for step, loss in enumerate(record["losses"])]
    rows += [{"method": name, "quantity": quantity, "value": numbers[f"{quantity}_{name}"]}
             for name in METHODS for quantity in ("cond_hessian", "cond_cov", "optimum_loss")]
    rows += [{"method": name, "lr_rule": rule, "quantity": "steps_to_threshold", "value": numbers[f"steps_{name}_{rule}"]}
             for name in METHODS for rule in LR_RULES]
    write_table(folder / "preprocess.csv", rows, ["method", "lr_rule", "lr", "step", "loss", "quantity", "value"])
    return StudyOutput([verdict], figures, [("preprocess.csv", "Loss per GD step, condition numbers, steps to threshold.")])


def _curves_figure(folder: Path, runs: dict, optimum: dict, threshold: float) -> str:
    figure, axes = new_figure(7.5, 4.5)
    ax = axes[0][0]
    floor = min(optimum.values())
    for index, name in enumerate(METHODS):
        for rule, style in (("own", "-"), ("shared", "--")):
            record = runs[(name, rule)]
            excess = np.maximum(np.array(record["losses"]) - floor, 1e-12)
            ax.plot(excess, linestyle=style, color=COLORS[index], label=f"{name}, {rule} step {record['lr']:.3g}")
    ax.axhline(threshold - floor, color="black", linestyle=":", linewidth=1, label="threshold")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set(yscale="log", xlim=(0, len(runs[("raw", "own")]["losses"])), title="Plain GD on a linear model: loss above the optimum",
           xlabel="GD step (log scale after 1)", ylabel="loss - L*", ylim=(1e-8, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(figure, folder / "preprocess_curves.png")
    return "preprocess_curves.png"


def _contour_figure(folder: Path, inputs: dict, y: torch.Tensor, solutions: dict, runs: dict) -> str:
    figure, axes = new_figure(13, 4.6, 1, len(inputs))
    for ax, (index, (name, x)) in zip(axes[0], enumerate(inputs.items())):
        solution = solutions[name].numpy()
        path = np.array(runs[(name, "own")]["path"])  # (steps+1, 3)
        span = 1.3 * max(np.abs(path[:, :2] - solution[:2]).max(), 0.5)
        w1 = np.linspace(solution[0] - span, solution[0] + span, 121)
        w2 = np.linspace(solution[1] - span, solution[1] + span, 121)
        grid1, grid2 = np.meshgrid(w1, w2)
        weights = np.stack([grid1.ravel(), grid2.ravel()], axis=1)  # (G, 2)
        x64, y64 = x.double().numpy(), y.double().numpy().ravel()
        residual = weights @ x64.T + solution[2] - y64  # (G, N), bias held at its optimum
        loss = (residual ** 2).mean(1).reshape(grid1.shape)
        levels = np.geomspace(max(loss.min(), 1e-6) * 1.05, loss.max(), 14)
        ax.contour(grid1, grid2, loss, levels=levels, cmap="viridis", linewidths=0.9)
        ax.plot(path[:, 0], path[:, 1], marker=".", markersize=3, color=COLORS[1], linewidth=1, label="GD path")
        ax.plot(*solution[:2], marker="*", markersize=12, color="black", linestyle="none", label="optimum")
        ax.set_aspect("equal")
        ax.set(title=f"{name}: cond(H) = {condition_number(quadratic_hessian(x)):.3g}", xlabel="w1", ylabel="w2")
        ax.legend(fontsize=7, loc="upper right")
    save_figure(figure, folder / "preprocess_contours.png")
    return "preprocess_contours.png"


def point_clouds(x: torch.Tensor) -> dict[str, np.ndarray]:
    """CS231n's five panels: raw, centred, normalised, decorrelated (PCA rotation), whitened (PCA / sqrt(eigenvalue))."""
    x = x.double()
    centred = x - x.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(input_covariance(x))   # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)  # the largest variance along x1, as CS231n draws it
    rotated = centred @ eigenvectors
    return {"raw": x.numpy(), "centred": centred.numpy(), "normalised": (centred / centred.std(0, correction=0)).numpy(),
            "decorrelated": rotated.numpy(), "whitened": (rotated / eigenvalues.sqrt()).numpy()}


def _cloud_figure(folder: Path, x: torch.Tensor) -> str:
    clouds = point_clouds(x)
    figure, axes = new_figure(14, 3.4, 1, len(clouds))
    for ax, (name, points) in zip(axes[0], clouds.items()):
        ax.scatter(points[:, 0], points[:, 1], s=4, color=COLORS[0], alpha=0.6)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axvline(0, color="black", linewidth=0.6)
        span = 1.1 * max(np.abs(points).max(), 1.0)
        ax.set(title=name, xlim=(-span, span), ylim=(-span, span), xlabel="x1", ylabel="x2" if name == "raw" else None)
        ax.set_aspect("equal")
    save_figure(figure, folder / "preprocess_point_clouds.png")
    return "preprocess_point_clouds.png"
