"""Study ``depth``: deeper nets compose functions and need fewer units than one wide hidden layer
(lecture: deep neural networks; Telgarsky 2016, "Benefits of depth in neural networks").

Three regimes, each with its own verdict:

1. **Construction** (the lecture's regime: what a net *can* compute). The sawtooth ``T^k``, the
   tent map ``T(x) = 1 - |2x - 1| = 2 relu(x) - 4 relu(x - 1/2)`` (x in [0, 1]) composed k times,
   has 2^k linear pieces. :func:`tent_network` computes it exactly with k hidden layers of 2 ReLUs,
   ``6k + 1`` parameters. One hidden layer with the same parameters has ``2k`` units; its best
   fit over a fixed ReLU basis (uniform knots, least squares: :func:`shallow_fit`) is far off, and
   it needs ``2^k`` units to be exact (each unit adds at most one kink and ``T^k`` has
   ``2^k - 1``). Holds when the deep net is exact (MSE <= EXACT_MSE) and the equal-parameter
   shallow fit is not (MSE >= SHALLOW_FAIL_MSE) for every k = 3..10.
2. **Trained on T^k** (what gradient descent *finds*): a ReLU MLP of k hidden layers of
   ``TRAIN_WIDTH`` units against one hidden layer with equal parameters, full-batch Adam on 1,024
   points, over seeds (in a few hundred steps neither usually finds a sawtooth); per k,
   holds when deep's log10 test MSE is lower beyond 2 s.e. (:func:`~deepwell.studies.evidence.compare`);
   the success rate (test MSE < SUCCESS_FRACTION of the target variance) is reported beside it.
3. **MNIST-1D** at equal parameters (``MNIST_DEEP`` vs one hidden layer), scored on test accuracy,
   holds when deep is more accurate beyond 2 s.e. over >= 3 seeds.

Verdict: depth (status of the construction regime; every regime listed).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.models import build_model
from deepwell.runtime import resolve_device
from deepwell.studies.base import Regime, StudyOutput, Verdict, write_table
from deepwell.studies.evidence import compare, regime_verdict
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.loop import TensorData, fit

__all__ = ["tent_sawtooth", "count_teeth", "tent_network", "shallow_fit", "units_to_match", "deep_parameters",
           "shallow_width", "construction_regime", "depth_verdict", "run"]

EXACT_MSE = 1e-20          # "exact" in float64 (the construction's error is rounding only)
SHALLOW_FAIL_MSE = 1e-4    # the equal-parameter shallow fit must be this far off for the construction regime to hold
SUCCESS_FRACTION = 0.01    # a trained fit "succeeds" when its test MSE < 1% of the target's variance (1/12)
TRAIN_WIDTH = 4            # trained deep nets: k hidden layers of 4 ReLUs (2 suffice in principle, 4 train more often)
MNIST_DEEP = (3, 64)       # (depth, width) of the deep net on MNIST-1D
RULE = ("construction (lecture's regime): deep T^k exact (MSE <= 1e-20) while the one-hidden-layer least-squares fit "
        "with the same parameters has MSE >= 1e-4, for every k; trained T^k and MNIST-1D: deep better than shallow at "
        "equal parameters beyond 2 standard errors over >= 3 seeds (log10 test MSE; test accuracy).")


def tent_sawtooth(x: torch.Tensor, compositions: int) -> torch.Tensor:
    """The tent map T(x) = 1 - |2x - 1| composed ``compositions`` times (x in [0, 1])."""
    for _ in range(compositions):
        x = 1.0 - (2.0 * x - 1.0).abs()
    return x


def count_teeth(values: torch.Tensor) -> int:
    """Number of strict local maxima (teeth) of a sampled 1-D curve."""
    inner = values[1:-1]
    return int(((inner > values[:-2]) & (inner >= values[2:])).sum())


def tent_network(compositions: int, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A ReLU net of ``compositions`` hidden layers of 2 units computing T^k exactly on [0, 1] (6k + 1 parameters).

    Each layer computes ``(relu(y), relu(y - 1/2))`` of the previous ``y = T^j(x)``; the next layer
    (or the output) reads ``T(y) = 2 relu(y) - 4 relu(y - 1/2)`` from them (Telgarsky 2016).

    Example::

        net = tent_network(8); x = torch.rand(5, 1, dtype=torch.float64)
        torch.allclose(net(x), tent_sawtooth(x, 8))   # True; 49 parameters
    """
    def dense(inputs: int, outputs: int, weight: list[list[float]], bias: list[float]) -> nn.Linear:
        layer = nn.Linear(inputs, outputs, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(weight, dtype=dtype))
            layer.bias.copy_(torch.tensor(bias, dtype=dtype))
        return layer

    layers: list[nn.Module] = [dense(1, 2, [[1.0], [1.0]], [0.0, -0.5]), nn.ReLU()]
    for _ in range(compositions - 1):
        layers += [dense(2, 2, [[2.0, -4.0], [2.0, -4.0]], [0.0, -0.5]), nn.ReLU()]
    return nn.Sequential(*layers, dense(2, 1, [[2.0, -4.0]], [0.0]))


def shallow_fit(x: torch.Tensor, y: torch.Tensor, units: int) -> torch.Tensor:
    """Least-squares fit of one hidden ReLU layer with fixed uniform knots: ``c + sum_j a_j relu(x - j/units)``.

    ``units`` units have 3 * units + 1 parameters (input weight and bias, output weight; output bias).
    Their span on [0, 1] is exactly the continuous piecewise-linear functions with knots ``j/units``
    (``relu(x - 0) = x`` gives the slope), so the fit is solved in that space's B-spline basis by
    :func:`scipy.interpolate.make_lsq_spline` (degree 1): the same least-squares solution, but
    banded and well conditioned where the raw ReLU basis of 1,000 close knots is not (its normal
    equations lose ~12 digits). Returns the fitted values at ``x`` (float64).
    """
    from scipy.interpolate import make_lsq_spline

    xs, ys = x.reshape(-1).double().numpy(), y.reshape(-1).double().numpy()
    interior = [j / units for j in range(1, units)]
    spline = make_lsq_spline(xs, ys, [0.0, 0.0, *interior, 1.0, 1.0], k=1)
    return torch.from_numpy(spline(xs)).reshape(y.shape)


def units_to_match(x: torch.Tensor, y: torch.Tensor, target_mse: float, start: int, most: int) -> tuple[int, float]:
    """Fewest units on a ladder (start, 2 start, 4 start, ... below ``most``, then most - 1 and most) whose
    :func:`shallow_fit` reaches ``target_mse``: (units, mse), or (-1, the best mse) if none does."""
    ladder = sorted({*(start * 2 ** i for i in range(32) if start * 2 ** i < most), most - 1, most})
    best = math.inf
    for units in ladder:
        mse = float(((shallow_fit(x, y, units) - y) ** 2).mean())
        best = min(best, mse)
        if mse <= target_mse:
            return units, mse
    return -1, best


def deep_parameters(depth: int, width: int, inputs: int, outputs: int) -> int:
    """Weights and biases of an MLP with ``depth`` hidden layers of ``width`` units."""
    return (inputs + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * outputs


def shallow_width(parameters: int, inputs: int, outputs: int) -> int:
    """Width of one hidden layer whose MLP has closest to ``parameters`` weights and biases."""
    return max(1, round((parameters - outputs) / (inputs + 1 + outputs)))




def construction_rows(ks: range) -> list[dict[str, Any]]:
    """Per k: the exact deep net's MSE and parameters, the equal-parameter shallow fit's MSE, the units it needs."""
    rows = []
    for k in ks:
        x = torch.linspace(0, 1, 2 ** (k + 3) + 1, dtype=torch.float64).unsqueeze(1)   # 8 points per linear piece
        y = tent_sawtooth(x, k)
        net = tent_network(k)
        with torch.no_grad():
            deep_mse = float(((net(x) - y) ** 2).mean())
        params = sum(p.numel() for p in net.parameters())
        equal_units = (params - 1) // 3
        shallow_mse = float(((shallow_fit(x, y, equal_units) - y) ** 2).mean())
        needed, needed_mse = units_to_match(x, y, max(deep_mse, EXACT_MSE), equal_units, 2 ** k)  # 2^k - 1 kinks
        rows.append({"k": k, "deep_parameters": params, "deep_mse": deep_mse, "shallow_units": equal_units,
                     "shallow_mse": shallow_mse, "units_needed": needed, "units_needed_mse": needed_mse,
                     "parameters_needed": 3 * needed + 1 if needed > 0 else math.nan, "kinks": 2 ** k - 1})
    return rows


def construction_regime(rows: list[dict[str, Any]]) -> Regime:
    """Holds when every k's deep net is exact and its equal-parameter shallow fit is not."""
    exact = all(r["deep_mse"] <= EXACT_MSE for r in rows)
    apart = all(r["shallow_mse"] >= SHALLOW_FAIL_MSE for r in rows)
    first, last = rows[0], rows[-1]
    evidence = (f"k = {first['k']}..{last['k']}: the deep net ({first['deep_parameters']}..{last['deep_parameters']} "
                f"parameters) computes T^k exactly (largest MSE {max(r['deep_mse'] for r in rows):.1g}); one hidden layer with the "
                f"same parameters ({first['shallow_units']}..{last['shallow_units']} units) fits with MSE "
                f"{min(r['shallow_mse'] for r in rows):.3g}..{max(r['shallow_mse'] for r in rows):.3g} (target variance "
                f"0.0833) and needs {first['units_needed']}..{last['units_needed']} units (2^k) to be exact.")
    numbers = {f"k{r['k']}/{key}": float(r[key]) for r in rows for key in ("deep_mse", "shallow_mse", "units_needed")}
    return Regime("construction", "holds" if exact and apart else "does_not_hold", evidence, numbers, lecture=True)


def depth_verdict(construction: Regime, trained: dict[int, dict[str, list[float]]],
                  mnist: dict[str, list[float]]) -> Verdict:
    """depth: the construction regime decides; trained T^k (per k) and MNIST-1D are further regimes.

    Args:
        construction: from :func:`construction_regime`.
        trained: k -> {"deep": test MSEs, "shallow": test MSEs} (one per seed).
        mnist: {"deep": test accuracies, "shallow": test accuracies} (one per seed).
    """
    regimes = [construction]
    threshold = SUCCESS_FRACTION / 12
    for k, arms in trained.items():
        logs = {arm: [math.log10(max(v, 1e-30)) if math.isfinite(v) else math.inf for v in values] for arm, values in arms.items()}
        c = compare(logs["deep"], logs["shallow"], higher_is_better=False)
        rate = {arm: sum(v < threshold for v in values) / len(values) for arm, values in arms.items()}
        evidence = (f"trained, k={k}: test MSE deep {statistics.median(arms['deep']):.2g} vs shallow "
                    f"{statistics.median(arms['shallow']):.2g} (median); log10 gap {c.describe()}; success rate "
                    f"deep {rate['deep']:.0%}, shallow {rate['shallow']:.0%}.")
        regimes.append(Regime(f"trained T^{k}", c.status, evidence,
                              c.numbers("log10_mse") | {"deep_success": rate["deep"], "shallow_success": rate["shallow"]}))
    c = compare(mnist["deep"], mnist["shallow"])
    regimes.append(Regime("MNIST-1D", c.status, f"test accuracy deep {c.mean_a:.1%} vs shallow {c.mean_b:.1%}: "
                          f"{c.describe()}.", c.numbers("test_accuracy")))
    return regime_verdict("depth", "Deeper nets compose functions and need fewer units than one wide hidden layer.",
                          RULE, regimes)


def _train(data: TensorData, input_shape: tuple[int, ...], outputs: int, hidden: list[int], task: str, epochs: int,
           seed: int, device: torch.device) -> tuple[torch.nn.Module, dict[str, float], int]:
    spec = ModelSpec(arch="mlp", hidden=hidden, activation="relu", init="he", norm="none")
    model = build_model(spec, input_shape, outputs, generator=torch.Generator().manual_seed(seed)).to(device)
    train = TrainSpec(epochs=epochs, batch_size=64 if task == "classification" else 1024, optimizer="adam",
                      lr=3e-3 if task == "classification" else 1e-2, schedule="cosine", eval_every=epochs)
    result = fit(model, data, train, task=task, seed=seed)
    return model, result.history[-1], sum(p.numel() for p in model.parameters())


def _trained_sawtooth(ks: list[int], seeds: list[int], epochs: int, seed: int, device: torch.device,
                      records: list[dict[str, Any]]) -> tuple[dict[int, dict[str, list[float]]], dict[str, torch.Tensor]]:
    trained: dict[int, dict[str, list[float]]] = {}
    fitted: dict[str, torch.Tensor] = {}
    x_train = torch.rand(1024, 1, generator=torch.Generator().manual_seed(seed))
    x_test = torch.linspace(0, 1, 2001).unsqueeze(1)
    for k in ks:   # inputs centred to [-1, 1] (so He-initialised kinks spread over the data); full-batch Adam
        data = TensorData((2 * x_train - 1).to(device), tent_sawtooth(x_train, k).to(device), (2 * x_test - 1).to(device),
                          tent_sawtooth(x_test, k).to(device))
        budget = deep_parameters(k, TRAIN_WIDTH, 1, 1)
        trained[k] = {}
        for arm, hidden in {"deep": [TRAIN_WIDTH] * k, "shallow": [shallow_width(budget, 1, 1)]}.items():
            trained[k][arm] = []
            for s in seeds:
                model, last, params = _train(data, (1,), 1, hidden, "regression", epochs, s, device)
                trained[k][arm].append(last.get("val/loss", math.inf))
                records.append({"task": f"sawtooth k={k}", "arm": arm, "hidden": "x".join(map(str, hidden)),
                                "parameters": params, "seed": s, "test_loss": last.get("val/loss", math.inf)})
                if k == ks[-1] and s == seeds[0]:
                    with torch.no_grad():
                        fitted[f"{arm} ({'x'.join(map(str, hidden))}, {params} params)"] = model.eval()(data.x_val).cpu().squeeze(1)
    return trained, fitted


def _mnist(seeds: list[int], quick: bool, device: torch.device, records: list[dict[str, Any]]) -> dict[str, list[float]]:
    splits = prepare_data(DataSpec(source="mnist1d", preprocess="standardize", val_fraction=0.0), seed=0)
    data = TensorData(splits.x_train.to(device), splits.y_train.to(device), splits.x_test.to(device), splits.y_test.to(device))
    depth, width = MNIST_DEEP
    budget = deep_parameters(depth, width, 40, 10)
    accuracy: dict[str, list[float]] = {}
    for arm, hidden in {"deep": [width] * depth, "shallow": [shallow_width(budget, 40, 10)]}.items():
        accuracy[arm] = []
        for s in seeds:
            _, last, params = _train(data, splits.input_shape, 10, hidden, "classification", 20 if quick else 40, s, device)
            accuracy[arm].append(last.get("val/acc", math.nan))
            records.append({"task": "mnist1d", "arm": arm, "hidden": "x".join(map(str, hidden)), "parameters": params,
                            "seed": s, "test_loss": last.get("val/loss", math.nan), "test_accuracy": accuracy[arm][-1]})
    return accuracy


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    seeds = [seed + i for i in range(3 if quick else 5)]
    construction = construction_rows(range(3, 11))
    records: list[dict[str, Any]] = []
    ks = [3, 5] if quick else [3, 4, 5, 6, 7, 8]
    trained, fitted = _trained_sawtooth(ks, seeds, 150 if quick else 1000, seed, device, records)
    mnist = _mnist(seeds, quick, device, records)
    verdict = replace(depth_verdict(construction_regime(construction), trained, mnist), figure="depth_construction.png")
    write_table(folder / "depth_construction.csv", construction, list(construction[0]))
    write_table(folder / "depth.csv", records, ["task", "arm", "hidden", "parameters", "seed", "test_loss", "test_accuracy"])
    figures = [
        (_construction_figure(folder, construction), "The exact construction: a ReLU net of k hidden layers of 2 units "
         "computes the sawtooth T^k (tent map composed k times) to rounding error with 6k+1 parameters; one hidden layer "
         "with the same parameters (2k units, least squares over uniform knots) cannot, and needs 2^k units."),
        (_trained_figure(folder, ks, trained, fitted, mnist), f"What training finds ({len(seeds)} seeds): test MSE of deep "
         f"(k x {TRAIN_WIDTH}) vs one hidden layer at equal parameters on T^k; the fits at k={ks[-1]}; MNIST-1D test "
         f"accuracy at equal parameters ({MNIST_DEEP[0]} x {MNIST_DEEP[1]} vs one layer)."),
    ]
    tables = [("depth_construction.csv", "The exact construction vs the best equal-parameter one-hidden-layer fit, per k."),
              ("depth.csv", "Trained nets: final test loss (and accuracy) per task, arm and seed.")]
    return StudyOutput([verdict], figures, tables)


def _construction_figure(folder: Path, rows: list[dict[str, Any]]) -> str:
    figure, axes = new_figure(10, 3.8, 1, 2)
    ks = [r["k"] for r in rows]
    ax = axes[0][0]
    ax.semilogy(ks, [max(r["deep_mse"], 1e-33) for r in rows], "o-", color=COLORS[0], label="deep, exact construction")
    ax.semilogy(ks, [r["shallow_mse"] for r in rows], "s-", color=COLORS[1], label="1 hidden layer, same parameters")
    ax.set(title="Error on T^k at equal parameters", xlabel="k (compositions)", ylabel="MSE (0 shown as 1e-33)")
    ax = axes[0][1]
    ax.semilogy(ks, [r["deep_parameters"] for r in rows], "o-", color=COLORS[0], label="deep: 6k+1")
    ax.semilogy(ks, [r["parameters_needed"] for r in rows], "s-", color=COLORS[1], label="1 hidden layer: 3*2^k+1")
    ax.set(title="Parameters needed for an exact fit", xlabel="k (compositions)", ylabel="parameters")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.set_xticks(ks)   # k is a count of compositions
        ax.legend(fontsize=8, loc="upper left")
    save_figure(figure, folder / "depth_construction.png")
    return "depth_construction.png"


def _trained_figure(folder: Path, ks: list[int], trained: dict, fitted: dict, mnist: dict) -> str:
    figure, axes = new_figure(13, 3.8, 1, 3)
    ax = axes[0][0]
    for index, arm in enumerate(("deep", "shallow")):
        for k in ks:
            ax.scatter([k + (0.1 if index else -0.1)] * len(trained[k][arm]), trained[k][arm], color=COLORS[index], s=14,
                       label=arm if k == ks[0] else None)
    ax.axhline(SUCCESS_FRACTION / 12, color="black", linestyle=":", linewidth=1, label="success threshold")
    ax.set(yscale="log", title="Trained: test MSE per seed", xlabel="k", ylabel="test MSE", xticks=ks)
    ax.legend(fontsize=8)
    ax = axes[0][1]
    x = torch.linspace(0, 1, 2001)
    ax.plot(x, tent_sawtooth(x, ks[-1]), color="black", linewidth=2.5, alpha=0.3, label="target")
    for index, (label, values) in enumerate(fitted.items()):
        ax.plot(x, values, color=COLORS[index], linewidth=1, label=label)
    ax.set(title=f"Trained fits of T^{ks[-1]}", xlabel="x", ylabel="y")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax = axes[0][2]
    for index, arm in enumerate(("deep", "shallow")):
        ax.scatter([index] * len(mnist[arm]), mnist[arm], color=COLORS[index], s=20)
        ax.errorbar([index + 0.15], [statistics.fmean(mnist[arm])], yerr=[statistics.pstdev(mnist[arm])], fmt="_",
                    color=COLORS[index], capsize=4)
    ax.set(title="MNIST-1D, equal parameters", ylabel="test accuracy", xticks=[0, 1], xticklabels=["deep", "1 layer"],
           xlim=(-0.5, 1.5))
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    save_figure(figure, folder / "depth_trained.png")
    return "depth_trained.png"
