"""relu-faster, regime by regime: does ReLU reach a loss threshold in fewer steps than tanh and sigmoid?

Krizhevsky et al. 2012 report a 4-layer CNN with ReLUs reaching 25% training error on CIFAR-10
six times faster than with tanh. Whether ReLU is faster depends on the depth and on each
activation's initialisation, so the claim is measured in seven regimes on MNIST-1D:

* MLPs (``WIDTH`` units) of depth 2, 5 and 10, each with a **shared** initialisation (the same
  Xavier-normal draw for every activation) and with each activation's **own** (He for ReLU,
  Xavier for tanh and sigmoid);
* a small 1-D CNN (4 conv blocks), own initialisation.

Each activation gets its learning rate tuned from ``lr_grid`` (SGD + momentum 0.9, fewest steps on
the first seed; ties: lowest final loss), then trains ``SEEDS`` seeds. Steps until the smoothed
training loss falls below ``LOSS_THRESHOLD`` ("never" is counted as the budget, a lower bound,
so a censored slow arm can only shrink ReLU's lead). Per regime: ReLU against the faster of tanh
and sigmoid, :func:`~deepwell.studies.evidence.compare` on steps (fewer is better, beyond 2 s.e.).
The lecture's regime: the CNN (Krizhevsky's setting).

Example::

    regimes, rows = measure(quick=True, seed=0, device=torch.device("cpu"))
    [(r.name, r.status) for r in regimes]
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import torch

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.models import build_model
from deepwell.studies.base import Regime
from deepwell.studies.evidence import compare
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import TensorData, fit

__all__ = ["SpeedRegime", "REGIMES", "ACTIVATIONS", "steps_regime", "measure", "RULE"]

ACTIVATIONS = ("relu", "tanh", "sigmoid")
OWN_INIT = {"relu": "he", "tanh": "xavier", "sigmoid": "xavier"}
SHARED_INIT = "xavier"
LOSS_THRESHOLD = 1.3      # cross-entropy on 10 classes (chance: 2.30); small MLPs reach it within the quick budget
SEEDS = 3
WIDTH = 64
RULE = (f"per regime: ReLU needs fewer steps than the faster of tanh and sigmoid to bring the smoothed training loss "
        f"below {LOSS_THRESHOLD:g}, beyond 2 standard errors over {SEEDS} seeds, each activation at its best learning "
        "rate from a small grid; 'never' counts as the step budget. The lecture's regime: the CNN (Krizhevsky et al. 2012).")


@dataclass(frozen=True)
class SpeedRegime:
    """One regime: a name, the model spec (activation and init filled in per run), and whether inits are shared."""

    name: str
    model: ModelSpec
    shared: bool
    lecture: bool = False

    def spec(self, activation: str) -> ModelSpec:
        return self.model.model_copy(update={"activation": activation,
                                             "init": SHARED_INIT if self.shared else OWN_INIT[activation]})


def _mlp(depth: int) -> ModelSpec:
    return ModelSpec(arch="mlp", depth=depth, width=WIDTH, norm="none")


REGIMES: tuple[SpeedRegime, ...] = (
    *(SpeedRegime(f"depth {d}, {'shared' if shared else 'own'} init", _mlp(d), shared) for d in (2, 5, 10)
      for shared in (True, False)),
    SpeedRegime("CNN, own init", ModelSpec(arch="cnn1d", channels=[16, 16, "pool", 32, 32], depth=0, norm="none"), False,
                lecture=True),
)


class _LossRecorder(Callback):
    """The training loss of every step, kept on the device (no sync per step)."""

    def __init__(self, steps: int, device: torch.device) -> None:
        self.losses = torch.zeros(steps, device=device)

    def on_batch_end(self, state: FitState) -> None:
        self.losses[state.step - 1] = state.loss.detach()


def _steps(data: TensorData, shape: tuple[int, ...], spec: ModelSpec, lr: float, epochs: int, seed: int) -> tuple[float, float]:
    """(steps to the threshold, capped at the budget; final smoothed loss) of one run."""
    from deepwell.studies.activations import smoothed, steps_to

    model = build_model(spec, shape, 10, generator=torch.Generator().manual_seed(seed)).to(data.x_train.device)
    train = TrainSpec(epochs=epochs, batch_size=50, optimizer="sgd:momentum=0.9", lr=lr, schedule="constant")
    budget = epochs * (len(data.x_train) // train.batch_size)
    recorder = _LossRecorder(budget, data.x_train.device)
    fit(model, data, train, seed=seed, callbacks=[recorder])
    curve = smoothed([v if v == v else 1e9 for v in recorder.losses.tolist()])   # NaN (diverged) as a huge loss
    return min(steps_to(curve, LOSS_THRESHOLD), float(budget)), curve[-1]


def steps_regime(name: str, steps: dict[str, list[float]], lrs: dict[str, float], budget: int,
                 lecture: bool = False) -> Regime:
    """ReLU against the faster (by mean steps) of the other activations.

    Args:
        steps: activation -> steps per seed (the budget where the threshold was never reached).
        lrs: activation -> its tuned learning rate.
        budget: the step budget.
    """
    rival = min((a for a in steps if a != "relu"), key=lambda a: statistics.fmean(steps[a]))
    c = compare(steps["relu"], steps[rival], higher_is_better=False)

    def show(activation: str) -> str:
        values = steps[activation]
        never = sum(v >= budget for v in values)
        return (f"{activation} {statistics.fmean(values):.0f}" + (f" ({never} never)" if never else "")
                + f" at lr {lrs[activation]:g}")

    ratio = statistics.fmean(steps[rival]) / max(statistics.fmean(steps["relu"]), 1.0)
    evidence = (f"steps to loss {LOSS_THRESHOLD:g} (mean of {len(steps['relu'])} seeds, budget {budget}): "
                + ", ".join(show(a) for a in steps) + f"; {rival} minus ReLU {c.describe()} ({ratio:.2f}x).")
    numbers = {f"{a}_steps": statistics.fmean(v) for a, v in steps.items()} | {f"{a}_lr": lr for a, lr in lrs.items()}
    return Regime(name, c.status, evidence, numbers | c.numbers("rival_minus_relu") | {"speedup": ratio}, lecture)


def measure(quick: bool, seed: int, device: torch.device) -> tuple[list[Regime], list[dict[str, Any]]]:
    """Every regime's verdict and the tidy rows (regime, activation, lr, seed, steps, tuning)."""
    source = "mnist1d:num_samples=2500" if quick else "mnist1d"
    splits = prepare_data(DataSpec(source=source, preprocess="standardize", val_fraction=0.0), seed=0)
    epochs, grid = (6, (0.03, 0.1)) if quick else (15, (0.01, 0.03, 0.1, 0.3, 1.0))
    regimes, rows = [], []
    for regime in REGIMES:
        shape = (1, 40) if regime.model.arch == "cnn1d" else splits.input_shape
        x = splits.x_train.reshape(len(splits.x_train), *shape)
        data = TensorData(x.to(device), splits.y_train.to(device))
        budget = epochs * (len(x) // 50)
        steps, lrs = {}, {}
        for activation in ACTIVATIONS:
            spec = regime.spec(activation)
            tried = {lr: _steps(data, shape, spec, lr, epochs, seed) for lr in grid}
            lrs[activation] = min(grid, key=lambda lr: tried[lr])
            steps[activation] = [tried[lrs[activation]][0]] + [_steps(data, shape, spec, lrs[activation], epochs, s)[0]
                                                               for s in range(seed + 1, seed + SEEDS)]
            rows += [{"regime": regime.name, "activation": activation, "lr": lr, "seed": seed, "steps": value[0],
                      "final_loss": value[1], "use": "tuning"} for lr, value in tried.items()]
            rows += [{"regime": regime.name, "activation": activation, "lr": lrs[activation], "seed": seed + i, "steps": value,
                      "use": "measured"} for i, value in enumerate(steps[activation])]
        regimes.append(steps_regime(regime.name, steps, lrs, budget, regime.lecture))
    return regimes, rows


def speed_figure(path, rows: list[dict[str, Any]]) -> None:
    """Steps to the threshold per regime and activation: each seed a dot, the mean a bar."""
    from deepwell.studies.figures import COLORS, new_figure, save_figure

    measured = [r for r in rows if r["use"] == "measured"]
    names = list(dict.fromkeys(r["regime"] for r in measured))
    figure, axes = new_figure(12, 4.2)
    ax = axes[0][0]
    for index, activation in enumerate(ACTIVATIONS):
        offset = (index - 1) * 0.27
        for position, name in enumerate(names):
            values = [r["steps"] for r in measured if r["regime"] == name and r["activation"] == activation]
            ax.bar(position + offset, statistics.fmean(values), width=0.25, color=COLORS[index], alpha=0.5,
                   label=activation if position == 0 else None)
            ax.scatter([position + offset] * len(values), values, color=COLORS[index], s=10, zorder=3)
    ax.set_xticks(range(len(names)), [n.replace(", ", "\n") for n in names], fontsize=8)
    ax.set(ylabel=f"steps to training loss {LOSS_THRESHOLD:g}", title="Steps to the loss threshold (dots: seeds; bar: mean)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(figure, path)
