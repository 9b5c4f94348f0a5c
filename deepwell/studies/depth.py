"""Study ``depth``: deeper nets compose functions and need fewer units than one wide hidden layer
(lecture: deep neural networks; Telgarsky 2016, "Benefits of depth in neural networks").

At an equal parameter budget, a ReLU MLP with one wide hidden layer ("shallow") against one with
``DEEP_DEPTH`` narrow hidden layers ("deep"), each trained with the same optimiser, epochs and
batches, over ``SEEDS`` seeds (mean +- std of the final test loss):

1. A compositional target: the sawtooth ``T^k`` made by composing the tent map
   ``T(x) = 1 - |2x - 1|`` ``TENT_COMPOSITIONS`` times on x in [0, 1] (2^(k-1) teeth, 2^k linear
   pieces). A width-2 ReLU layer computes T exactly, so depth k suffices, while one hidden layer
   needs ~2^k units (Telgarsky). Regression (MSE), several budgets.
2. MNIST-1D classification (cross-entropy) at one budget.

The shallow width is chosen so its parameter count matches the deep net's (within one unit).

Verdict: depth ("clearly" = the gap exceeds NOISE_MULTIPLE combined stds and RELATIVE_GAP_MIN).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.models import build_model
from deepwell.runtime import resolve_device
from deepwell.studies.base import StudyOutput, Verdict, status_from, write_table
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.loop import TensorData, fit

__all__ = ["tent_sawtooth", "count_teeth", "deep_parameters", "shallow_width", "clearly_lower", "depth_verdict", "run"]

# --- thresholds: what "clearly" means ---------------------------------------------------------
NOISE_MULTIPLE = 2.0       # mean gap (shallow - deep) larger than 2 x sqrt(std_shallow^2 + std_deep^2) ...
RELATIVE_GAP_MIN = 0.10    # ... and at least 10% of the shallow net's test loss

TENT_COMPOSITIONS = 5      # sawtooth T^5: 16 teeth, 32 linear pieces
DEEP_DEPTH = 4
MNIST_DEEP = (3, 64)       # (depth, width) of the deep net on MNIST-1D


def tent_sawtooth(x: torch.Tensor, compositions: int) -> torch.Tensor:
    """The tent map T(x) = 1 - |2x - 1| composed ``compositions`` times (x in [0, 1])."""
    for _ in range(compositions):
        x = 1.0 - (2.0 * x - 1.0).abs()
    return x


def count_teeth(values: torch.Tensor) -> int:
    """Number of strict local maxima (teeth) of a sampled 1-D curve."""
    inner = values[1:-1]
    return int(((inner > values[:-2]) & (inner >= values[2:])).sum())


def deep_parameters(depth: int, width: int, inputs: int, outputs: int) -> int:
    """Weights and biases of an MLP with ``depth`` hidden layers of ``width`` units."""
    return (inputs + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * outputs


def shallow_width(parameters: int, inputs: int, outputs: int) -> int:
    """Width of one hidden layer whose MLP has closest to ``parameters`` weights and biases."""
    return max(1, round((parameters - outputs) / (inputs + 1 + outputs)))


def clearly_lower(deep: list[float], shallow: list[float]) -> tuple[bool, float, float]:
    """Whether deep's losses are clearly below shallow's; returns (clearly, gap, noise)."""
    gap = statistics.fmean(shallow) - statistics.fmean(deep)
    noise = math.hypot(statistics.stdev(deep) if len(deep) > 1 else 0.0, statistics.stdev(shallow) if len(shallow) > 1 else 0.0)
    return gap > NOISE_MULTIPLE * noise and gap >= RELATIVE_GAP_MIN * statistics.fmean(shallow), gap, noise


def depth_verdict(results: dict[str, dict[str, list[float]]]) -> Verdict:
    """depth: at equal parameters the deep net's test loss is clearly lower on every task/budget.

    Args:
        results: task label (e.g. ``sawtooth@241``, ``mnist1d@11594``) -> {"deep": losses, "shallow": losses}.
    """
    numbers: dict[str, float] = {}
    parts, clear = [], []
    for task, losses in results.items():
        ok, gap, noise = clearly_lower(losses["deep"], losses["shallow"])
        clear.append(ok)
        deep_mean, shallow_mean = statistics.fmean(losses["deep"]), statistics.fmean(losses["shallow"])
        numbers |= {f"{task}/deep": deep_mean, f"{task}/shallow": shallow_mean, f"{task}/gap": gap, f"{task}/noise": noise,
                    f"{task}/clearly": float(ok)}
        parts.append(f"{task}: deep {deep_mean:.4g} vs shallow {shallow_mean:.4g} (gap {gap:.3g}, noise {noise:.2g}, "
                     f"{'clear' if ok else 'not clear'})")
    usable = all(math.isfinite(v) for v in numbers.values())
    evidence = (f"Final test loss, mean over seeds, at equal parameters: {'; '.join(parts)}. 'Clear' = gap > "
                f"{NOISE_MULTIPLE:g} x combined std and >= {RELATIVE_GAP_MIN:.0%} of the shallow loss.")
    return Verdict("depth", "Deeper nets compose functions and need fewer units than one wide hidden layer.",
                   status_from(all(clear), usable), evidence, numbers)


def _train(data: TensorData, input_shape: tuple[int, ...], outputs: int, hidden: list[int], task: str, epochs: int,
           seed: int, device: torch.device) -> tuple[torch.nn.Module, float, int]:
    spec = ModelSpec(arch="mlp", hidden=hidden, activation="relu", init="he", norm="none")
    model = build_model(spec, input_shape, outputs, generator=torch.Generator().manual_seed(seed)).to(device)
    train = TrainSpec(epochs=epochs, batch_size=64 if task == "classification" else 128, optimizer="adam", lr=3e-3,
                      schedule="cosine", eval_every=epochs)
    result = fit(model, data, train, task=task, seed=seed)
    return model, result.history[-1].get("val/loss", math.inf), sum(p.numel() for p in model.parameters())


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    seeds = [seed + i for i in range(2 if quick else 3)]
    widths = (8, 16) if quick else (4, 8, 16, 32)
    generator = torch.Generator().manual_seed(seed)
    x_train = torch.rand(1024, 1, generator=generator)
    x_test = torch.linspace(0, 1, 2001).unsqueeze(1)
    data = TensorData(x_train.to(device), tent_sawtooth(x_train, TENT_COMPOSITIONS).to(device),
                      x_test.to(device), tent_sawtooth(x_test, TENT_COMPOSITIONS).to(device))
    records: list[dict[str, Any]] = []
    fitted: dict[str, torch.Tensor] = {}
    results: dict[str, dict[str, list[float]]] = {}
    for width in widths:
        budget = deep_parameters(DEEP_DEPTH, width, 1, 1)
        arms = {"deep": [width] * DEEP_DEPTH, "shallow": [shallow_width(budget, 1, 1)]}
        results[f"sawtooth@{budget}"] = {}
        for arm, hidden in arms.items():
            losses = []
            for s in seeds:
                model, loss, params = _train(data, (1,), 1, hidden, "regression", 150 if quick else 600, s, device)
                losses.append(loss)
                records.append({"task": "sawtooth", "arm": arm, "hidden": "x".join(map(str, hidden)), "parameters": params,
                                "seed": s, "test_loss": loss})
                if width == widths[-1] and s == seeds[0]:
                    with torch.no_grad():
                        fitted[arm] = model.eval()(data.x_val).cpu().squeeze(1)
            results[f"sawtooth@{budget}"][arm] = losses
    splits = prepare_data(DataSpec(source="mnist1d:num_samples=2000" if quick else "mnist1d", preprocess="standardize",
                                   val_fraction=0.0), seed=0)
    mnist = TensorData(splits.x_train.to(device), splits.y_train.to(device), splits.x_test.to(device), splits.y_test.to(device))
    depth, width = MNIST_DEEP
    budget = deep_parameters(depth, width, 40, 10)
    key = f"mnist1d@{budget}"
    results[key] = {}
    for arm, hidden in {"deep": [width] * depth, "shallow": [shallow_width(budget, 40, 10)]}.items():
        results[key][arm] = []
        for s in seeds:
            _, loss, params = _train(mnist, splits.input_shape, 10, hidden, "classification", 15 if quick else 40, s, device)
            results[key][arm].append(loss)
            records.append({"task": "mnist1d", "arm": arm, "hidden": "x".join(map(str, hidden)), "parameters": params,
                            "seed": s, "test_loss": loss})
    verdict = depth_verdict(results)
    write_table(folder / "depth.csv", records, ["task", "arm", "hidden", "parameters", "seed", "test_loss"])
    figures = [
        (_fit_figure(folder, x_test, fitted, records, widths), f"The sawtooth T^{TENT_COMPOSITIONS} (tent map composed "
         f"{TENT_COMPOSITIONS} times) and the fits of a 1-hidden-layer and a {DEEP_DEPTH}-hidden-layer ReLU net with equal "
         f"parameters (largest budget, seed {seeds[0]})."),
        (_loss_figure(folder, records), f"Final test loss vs parameters, shallow (1 hidden layer) vs deep; mean +- std over "
         f"{len(seeds)} seeds. Left: sawtooth (MSE), right: MNIST-1D (cross-entropy)."),
    ]
    return StudyOutput([verdict], figures, [("depth.csv", "Final test loss per task, arm, budget and seed.")])


def _fit_figure(folder: Path, x: torch.Tensor, fitted: dict[str, torch.Tensor], records: list[dict], widths) -> str:
    figure, axes = new_figure(9, 4)
    ax = axes[0][0]
    ax.plot(x.squeeze(1), tent_sawtooth(x, TENT_COMPOSITIONS).squeeze(1), color="black", linewidth=2.5, alpha=0.35, label="target")
    for index, (arm, values) in enumerate(fitted.items()):
        hidden = next(r["hidden"] for r in records if r["task"] == "sawtooth" and r["arm"] == arm
                      and r["parameters"] == max(q["parameters"] for q in records if q["task"] == "sawtooth" and q["arm"] == arm))
        params = next(r["parameters"] for r in records if r["hidden"] == hidden and r["task"] == "sawtooth")
        ax.plot(x.squeeze(1), values, color=COLORS[index], linewidth=1.2, label=f"{arm}: hidden {hidden} ({params} params)")
    ax.set(title=f"Sawtooth T^{TENT_COMPOSITIONS}: fitted functions at equal parameters", xlabel="x", ylabel="y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(figure, folder / "depth_sawtooth_fits.png")
    return "depth_sawtooth_fits.png"


def _loss_figure(folder: Path, records: list[dict]) -> str:
    figure, axes = new_figure(11, 4, 1, 2)
    for ax, task, scale in ((axes[0][0], "sawtooth", "log"), (axes[0][1], "mnist1d", "linear")):
        for index, arm in enumerate(("shallow", "deep")):
            rows = [r for r in records if r["task"] == task and r["arm"] == arm]
            budgets = sorted({r["parameters"] for r in rows})
            means = [statistics.fmean(r["test_loss"] for r in rows if r["parameters"] == b) for b in budgets]
            stds = [statistics.pstdev([r["test_loss"] for r in rows if r["parameters"] == b]) for b in budgets]
            ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=4, color=COLORS[index],
                        label=f"{arm} ({'1 hidden layer' if arm == 'shallow' else 'several'})")
        ax.set(xscale="log", yscale=scale, title=f"{task}: test loss vs parameters", xlabel="parameters", ylabel="final test loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(figure, folder / "depth_loss_vs_parameters.png")
    return "depth_loss_vs_parameters.png"
