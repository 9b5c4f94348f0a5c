"""Study ``dead-relu``: ReLUs die, leaky ReLUs do not (lecture: Dead ReLU).

1. Dying in training: a 3 x 128 MLP on MNIST-1D, ReLU vs leaky ReLU (slope 0.01), SGD with
   momentum at a sane (0.02) and a too-high (0.3) learning rate. After every epoch, on the whole
   training set (eval mode), per hidden layer:
   - ``dead``: units whose incoming weights get exactly zero gradient from every example (measured
     with autograd, not assumed): for ReLU, a unit whose pre-activation is <= 0 everywhere;
   - ``silent``: units whose pre-activation is <= 0 for every example. A silent leaky unit still
     gets gradient (slope 0.01) and can come back; a silent ReLU unit is dead.
2. Born dead (Lu et al. 2019, "Dying ReLU and initialization"): the fraction of random He
   initialisations of narrow deep ReLU nets (zero biases, inputs N(0, 1) of the net's width) whose
   output is constant because some layer outputs zero for every input. Many nets are drawn at once
   with stacked weights (one batched matmul per layer).

Verdict: dead-relu.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.models import INITIALIZERS, build_model
from deepwell.runtime import resolve_device
from deepwell.studies.base import StudyOutput, Verdict, status_from, write_table
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import TensorData, fit

__all__ = ["dead_and_silent", "born_dead_probability", "dead_relu_verdict", "run"]

LARGE_DEAD = 0.20     # ReLU at the high learning rate: at least 20% of some layer's units dead
NEAR_ZERO = 0.01      # leaky ReLU: at most 1% dead
LEARNING_RATES = {"sane": 0.02, "high": 0.3}
ACTIVATIONS = ("relu", "leaky_relu")
WIDTHS, DEPTHS = (2, 3, 4, 8), (2, 5, 10, 20, 40)


def dead_and_silent(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Per hidden layer, the fraction of dead units (zero gradient on every example) and silent units
    (pre-activation <= 0 on every example), on (x, y) in eval mode; the model is not changed."""
    blocks = [block for _, block in model.hidden_blocks()]
    pre: list[torch.Tensor] = []
    handles = [block.activation.register_forward_hook(lambda m, inputs, output: pre.append(inputs[0])) for block in blocks]
    was_training = model.training
    model.eval()
    try:
        loss = F.cross_entropy(model(x), y, reduction="sum")
        grads = torch.autograd.grad(loss, [block.transform.weight for block in blocks])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    dead = [(g.abs().amax(1) == 0).float().mean() for g in grads]     # a row = one unit's incoming weights
    silent = [(p.detach() <= 0).all(0).float().mean() for p in pre]  # (B, units) -> units
    values = torch.stack([torch.stack(dead), torch.stack(silent)]).tolist()  # one transfer
    return {"dead": values[0], "silent": values[1]}


class _DeadRecorder(Callback):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.rows = x, y, []

    def on_fit_start(self, state: FitState) -> None:
        self.rows.append(dead_and_silent(state.model, self.x, self.y))

    def on_epoch_end(self, state: FitState) -> None:
        self.rows.append(dead_and_silent(state.model, self.x, self.y))


def train_and_watch(activation: str, lr: float, quick: bool, seed: int, device: torch.device) -> dict[str, Any]:
    """Train the MNIST-1D MLP; dead/silent fractions per layer at init and after every epoch."""
    source = "mnist1d:num_samples=2500" if quick else "mnist1d"
    splits = prepare_data(DataSpec(source=source, preprocess="standardize", val_fraction=0.0), seed=0)
    data = TensorData(splits.x_train.to(device), splits.y_train.to(device))
    spec = ModelSpec(arch="mlp", depth=3, width=128, activation=activation, init="he", norm="none")
    model = build_model(spec, splits.input_shape, splits.output_size, generator=torch.Generator().manual_seed(seed)).to(device)
    recorder = _DeadRecorder(data.x_train, data.y_train)
    result = fit(model, data, TrainSpec(epochs=5 if quick else 20, batch_size=50, optimizer="sgd:momentum=0.9", lr=lr,
                                        schedule="constant"), seed=seed, callbacks=[recorder])
    return {"rows": recorder.rows, "final_loss": result.history[-1]["train/loss"], "stop": result.stop_reason.value}


@torch.no_grad()
def born_dead_probability(width: int, depth: int, samples: int, batch: int = 256, seed: int = 0) -> float:
    """Fraction of ``samples`` He-initialised ReLU nets (``depth`` x ``width``, zero biases) whose
    last hidden layer outputs 0 for all ``batch`` inputs (the network's output is then constant)."""
    generator = torch.Generator().manual_seed(seed)
    he = INITIALIZERS.build("he")
    h = torch.randn(samples, batch, width, generator=generator)  # (S, B, width)
    for _ in range(depth):
        weight = torch.empty(samples * width, width)  # S stacked (out, in) matrices: fan_in = width, as in one net
        he(weight, math.sqrt(2.0), generator)
        h = torch.relu(h @ weight.view(samples, width, width).transpose(1, 2))  # (S, B, width)
    return float((h <= 0).flatten(1).all(1).float().mean())


def dead_relu_verdict(numbers: dict[str, float]) -> Verdict:
    """dead-relu: at a too-high learning rate many ReLUs die; leaky ReLUs do not."""
    relu, leaky = numbers["relu_high_dead_max"], numbers["leaky_high_dead_max"]
    supported = relu >= LARGE_DEAD and leaky <= NEAR_ZERO
    evidence = (f"At lr {numbers['high_lr']:g}, up to {relu:.0%} of a ReLU layer's units were dead (zero gradient on every "
                f"training example) vs {leaky:.1%} for leaky ReLU, whose silent units ({numbers['leaky_high_silent_max']:.0%} "
                f"at most) keep a gradient; at lr {numbers['sane_lr']:g}: ReLU {numbers['relu_sane_dead_max']:.1%} dead. "
                f"Born dead: {numbers['born_dead_narrow_deep']:.0%} of width-2, depth-{DEPTHS[-1]} He inits vs "
                f"{numbers['born_dead_wide']:.0%} at width {WIDTHS[-1]}.")
    return Verdict("dead-relu", "ReLUs can die (zero gradient for every input); leaky ReLU does not.",
                   status_from(supported), evidence, numbers)


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    runs = {(a, name): train_and_watch(a, lr, quick, seed, device) for a in ACTIVATIONS for name, lr in LEARNING_RATES.items()}
    samples = 400 if quick else 4000
    born = {(w, d): born_dead_probability(w, d, samples, seed=seed) for w in WIDTHS for d in DEPTHS}

    def worst(key: tuple[str, str], quantity: str) -> float:
        return max(max(row[quantity]) for row in runs[key]["rows"][-1:])

    numbers = {"high_lr": LEARNING_RATES["high"], "sane_lr": LEARNING_RATES["sane"],
               "relu_high_dead_max": worst(("relu", "high"), "dead"), "leaky_high_dead_max": worst(("leaky_relu", "high"), "dead"),
               "relu_sane_dead_max": worst(("relu", "sane"), "dead"), "leaky_sane_dead_max": worst(("leaky_relu", "sane"), "dead"),
               "leaky_high_silent_max": max(max(row["silent"]) for row in runs[("leaky_relu", "high")]["rows"]),
               "relu_high_final_loss": runs[("relu", "high")]["final_loss"],
               "leaky_high_final_loss": runs[("leaky_relu", "high")]["final_loss"],
               "born_dead_narrow_deep": born[(WIDTHS[0], DEPTHS[-1])], "born_dead_wide": born[(WIDTHS[-1], DEPTHS[-1])]}
    verdict = dead_relu_verdict(numbers)
    figures = [
        (_training_figure(folder, runs), "Dead units (zero gradient on every training example; solid) and silent units "
         "(pre-activation <= 0 everywhere; dashed) per epoch, worst hidden layer, 3 x 128 MLP on MNIST-1D."),
        (_born_figure(folder, born, samples), f"Probability that a He-initialised ReLU net is born dead (output constant), "
         f"over {samples} random inits per point."),
    ]
    tables = [(_table(folder, runs, born, samples), "Dead and silent fractions per layer and epoch; born-dead probabilities.")]
    return StudyOutput([verdict], figures, tables)


def _table(folder: Path, runs: dict, born: dict, samples: int) -> str:
    rows = [{"experiment": "training", "activation": a, "lr": LEARNING_RATES[lr], "epoch": epoch, "layer": layer + 1,
             "quantity": quantity, "value": value}
            for (a, lr), record in runs.items() for epoch, row in enumerate(record["rows"])
            for quantity in ("dead", "silent") for layer, value in enumerate(row[quantity])]
    rows += [{"experiment": "born_dead", "activation": "relu", "width": w, "depth": d, "samples": samples,
              "quantity": "born_dead_probability", "value": p} for (w, d), p in born.items()]
    write_table(folder / "dead_relu.csv", rows,
                ["experiment", "activation", "lr", "epoch", "layer", "width", "depth", "samples", "quantity", "value"])
    return "dead_relu.csv"


def _training_figure(folder: Path, runs: dict) -> str:
    figure, axes = new_figure(8, 4.8, 1, 1)
    ax = axes[0][0]
    for index, ((activation, lr), record) in enumerate(runs.items()):
        epochs = range(len(record["rows"]))
        color = COLORS[index]
        label = f"{'ReLU' if activation == 'relu' else 'leaky ReLU'}, lr {LEARNING_RATES[lr]:g}"
        ax.plot(epochs, [max(r["dead"]) for r in record["rows"]], marker="o", color=color, label=f"{label}: dead")
        ax.plot(epochs, [max(r["silent"]) for r in record["rows"]], linestyle="--", color=color, label=f"{label}: silent")
    ax.set(title="Dying ReLUs during training (worst hidden layer)", xlabel="epoch (0 = init)",
           ylabel="fraction of units", ylim=(-0.03, 1.03))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(figure, folder / "dead_relu_training.png")
    return "dead_relu_training.png"


def _born_figure(folder: Path, born: dict, samples: int) -> str:
    figure, axes = new_figure(7, 4.5, 1, 1)
    ax = axes[0][0]
    for index, width in enumerate(WIDTHS):
        ax.plot(DEPTHS, [born[(width, d)] for d in DEPTHS], marker="o", color=COLORS[index], label=f"width {width}")
    ax.set(title="Born dead: ReLU nets whose output is constant at init", xlabel="depth (hidden layers)",
           ylabel=f"fraction of {samples} He inits")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(figure, folder / "dead_relu_born.png")
    return "dead_relu_born.png"
