"""Study ``init``: what the initial weights do to a deep network (lecture: weight initialization).

1. Activation statistics at initialisation, the CS231n experiment (Justin Johnson's slides, the
   lecture's Figures 11/12): 6 hidden layers of 4096 units, no bias, a batch of 16 inputs drawn
   from N(0, 1), one eval-mode forward. tanh with W ~ N(0, 0.01^2) and N(0, 0.05^2), tanh and
   ReLU with "Xavier" as CS231n writes it, ``W = randn(fan_in, fan_out) / sqrt(fan_in)`` (that is
   ``xavier:mode=fan_in,gain=1``, LeCun's variance 1/fan_in, not Glorot's 2/(fan_in+fan_out)),
   and ReLU with He (std sqrt(2/fan_in)). Also all-zero and constant weights.
2. Training from zero and from constant weights (a small tanh MLP on two-moons), against a
   Xavier-initialised baseline: zero weights never leave the chance-level loss ln(classes);
   constant weights keep every hidden unit of a layer identical (herding).

Verdicts: init-scale, init-zero, init-constant.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.diagnostics.probes import SATURATION, measure_activations
from deepwell.models import build_model
from deepwell.runtime import resolve_device
from deepwell.studies.base import Regime, Setting, StudyOutput, Verdict, status_from, write_table
from deepwell.studies.evidence import regime_verdict
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import TensorData, fit

__all__ = ["Setting", "INIT_SETTINGS", "REFERENCES", "measure_init", "init_scale_numbers", "init_scale_verdict",
           "init_zero_verdict", "init_constant_verdict", "row_spread", "run"]

# --- thresholds: what "holds" means (named, so a reader can argue with them) ------------------
COLLAPSE_RATIO = 0.25          # small sigma: last-layer std below 25% of the first layer's
SATURATED_MIN = 0.20           # large sigma: at least 20% of last-layer tanh outputs saturated
HEALTHY_STD_MIN = 0.20         # Xavier/tanh: every layer's std at least 0.2 ...
HEALTHY_SATURATED_MAX = 0.05   # ... and at most 5% saturated
STABLE_SPREAD_MAX = 1.25       # He/ReLU: largest / smallest layer std at most 1.25
CHANCE_TOLERANCE = 0.02        # zero init: final loss within 2% of ln(classes) counts as chance
BASELINE_LEARNS = 0.5          # sanity check: the baseline must reach half the chance loss
HERD_TOLERANCE = 1e-4          # constant init: rows of a layer differ by at most 1e-4 (relative)
BASELINE_SPREAD_MIN = 0.1      # sanity check: a random init's rows differ by at least 10%
REFERENCE_TOLERANCE = 0.10     # reproduce the reference numbers within 10%

DEPTH, WIDTH, BATCH = 6, 4096, 16
INPUT_SEED_OFFSET = 7919  # inputs come from another stream than the weights (see measure_init)


INIT_SETTINGS: tuple[Setting, ...] = (
    Setting("tanh-0.01", "tanh, N(0, 0.01²)", "tanh", "normal:0.01"),
    Setting("tanh-0.05", "tanh, N(0, 0.05²)", "tanh", "normal:0.05"),
    Setting("tanh-xavier", "tanh, Xavier 1/√fan_in", "tanh", "xavier:mode=fan_in,gain=1"),
    Setting("relu-xavier", "ReLU, Xavier 1/√fan_in", "relu", "xavier:mode=fan_in,gain=1"),
    Setting("relu-he", "ReLU, He √(2/fan_in)", "relu", "he"),
    Setting("tanh-zeros", "tanh, zeros", "tanh", "zeros"),
    Setting("tanh-constant", "tanh, constant 0.1", "tanh", "constant:0.1"),
)

# (setting, quantity, layer 1-based) -> the CS231n lecture notes' number.
REFERENCES: dict[tuple[str, str, int], float] = {
    ("tanh-0.01", "act_std", 1): 0.49,
    ("tanh-0.01", "act_std", 6): 0.046,
    ("tanh-0.05", "saturated", 6): 0.33,
    ("relu-xavier", "act_std", 6): 0.10,
    **{("relu-he", "act_std", layer): 0.83 for layer in range(1, DEPTH + 1)},
}


def measure_init(settings: tuple[Setting, ...] = INIT_SETTINGS, depth: int = DEPTH, width: int = WIDTH,
                 batch: int = BATCH, seed: int = 0, device: torch.device | None = None) -> dict[str, dict[str, Any]]:
    """Per-layer activation statistics and histograms at initialisation, one entry per setting.

    The inputs must come from a different random stream than the weights: drawn from the same
    seeded generator, the first 16 rows of W1 are the 16 inputs times a constant, and each input
    then meets its own copy (measured: ReLU/He layer-1 std 1.62 instead of 0.82).
    """
    device = device or torch.device("cpu")
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed + INPUT_SEED_OFFSET)).to(device)  # (B, 4096)
    stats = {}
    for setting in settings:
        spec = ModelSpec(arch="mlp", depth=depth, width=width, activation=setting.activation, init=setting.init,
                         norm="none", bias_init="zeros")
        model = build_model(spec, (width,), 10, generator=torch.Generator().manual_seed(seed)).to(device)
        stats[setting.key] = measure_activations(model, x, histograms=True)
        del model
    return stats


def init_scale_numbers(stats: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The numbers the init-scale verdict is computed from."""
    small, large = stats["tanh-0.01"]["act_std"], stats["tanh-0.05"]["saturated"]
    xavier, he, relu_xavier = stats["tanh-xavier"], stats["relu-he"]["act_std"], stats["relu-xavier"]["act_std"]
    return {
        "small_sigma_std_first": small[0], "small_sigma_std_last": small[-1], "small_sigma_std_ratio": small[-1] / small[0],
        "large_sigma_saturated_last": large[-1],
        "xavier_tanh_std_min": min(xavier["act_std"]), "xavier_tanh_saturated_max": max(xavier["saturated"]),
        "he_relu_std_min": min(he), "he_relu_std_max": max(he), "he_relu_std_spread": max(he) / max(min(he), 1e-30),
        "xavier_relu_std_last": relu_xavier[-1], "xavier_relu_std_ratio": relu_xavier[-1] / relu_xavier[0],
    }


def init_scale_verdict(numbers: dict[str, float]) -> Verdict:
    """init-scale: small sigma collapses, large sigma saturates, Xavier suits tanh, He suits ReLU."""
    checks = {
        "small sigma collapses": numbers["small_sigma_std_ratio"] < COLLAPSE_RATIO,
        "large sigma saturates": numbers["large_sigma_saturated_last"] >= SATURATED_MIN,
        "Xavier keeps tanh healthy": numbers["xavier_tanh_std_min"] >= HEALTHY_STD_MIN
        and numbers["xavier_tanh_saturated_max"] <= HEALTHY_SATURATED_MAX,
        "He keeps ReLU stable": numbers["he_relu_std_spread"] <= STABLE_SPREAD_MAX,
    }
    failed = [name for name, ok in checks.items() if not ok]
    evidence = (
        f"tanh N(0,0.01²): std {numbers['small_sigma_std_first']:.3f} (layer 1) -> {numbers['small_sigma_std_last']:.3f} "
        f"(layer {DEPTH}); N(0,0.05²): {numbers['large_sigma_saturated_last']:.0%} of layer-{DEPTH} outputs saturated; "
        f"Xavier/tanh std >= {numbers['xavier_tanh_std_min']:.2f}, <= {numbers['xavier_tanh_saturated_max']:.1%} saturated; "
        f"He/ReLU std {numbers['he_relu_std_min']:.2f}-{numbers['he_relu_std_max']:.2f} on every layer "
        f"(Xavier/ReLU falls to {numbers['xavier_relu_std_last']:.3f})."
        + (f" Failed: {', '.join(failed)}." if failed else "")
    )
    return Verdict("init-scale", "Large sigma saturates, small sigma collapses activations in deep nets; "
                   "Xavier suits tanh, He suits ReLU.", status_from(not failed), evidence, numbers)


HE_AS_WRITTEN = Setting("relu-he-as-written", "ReLU, 2/√fan_in (the lecture's formula)", "relu", f"normal:{2 / math.sqrt(WIDTH)}")
INIT_SCALE_RULE = (f"small sigma: last/first layer std < {COLLAPSE_RATIO:g}; large sigma: >= {SATURATED_MIN:.0%} of the last "
                   f"layer saturated; Xavier/tanh: every layer std >= {HEALTHY_STD_MIN:g} and <= {HEALTHY_SATURATED_MAX:.0%} "
                   f"saturated; He/ReLU: largest/smallest layer std <= {STABLE_SPREAD_MAX:g}. The lecture writes He as "
                   "2/sqrt(N_in); He et al. 2015 have sqrt(2/N_in): that regime checks the written formula the same way.")


def he_as_written_regime(act_std: list[float]) -> Regime:
    """The lecture's He formula std = 2/sqrt(N_in): stable (like sqrt(2/N_in)) or growing layer by layer?

    With std = 2/sqrt(N_in) the variance gain per ReLU layer is 4/2 = 2, so the activation std grows
    by sqrt(2) per layer: "does not hold" here is the correction, the formula should read sqrt(2/N_in).
    """
    spread = max(act_std) / max(min(act_std), 1e-30)
    growth = (act_std[-1] / act_std[0]) ** (1 / max(len(act_std) - 1, 1))
    evidence = (f"ReLU with std = 2/sqrt(N_in) = {2 / math.sqrt(WIDTH):.4f} (He: sqrt(2/N_in) = {math.sqrt(2 / WIDTH):.4f}): "
                f"activation std {act_std[0]:.2f} (layer 1) -> {act_std[-1]:.2f} (layer {len(act_std)}), x{growth:.2f} per layer "
                f"(sqrt 2 = 1.41 predicted); spread {spread:.2f} (stable needs <= {STABLE_SPREAD_MAX:g}). The lecture's formula "
                "is a typo for sqrt(2/N_in).")
    return Regime("He as the lecture writes it, 2/sqrt(N_in)", "holds" if spread <= STABLE_SPREAD_MAX else "does_not_hold",
                  evidence, {"std_first": act_std[0], "std_last": act_std[-1], "growth_per_layer": growth, "spread": spread})


def init_zero_verdict(numbers: dict[str, float]) -> Verdict:
    """init-zero: from all-zero weights the loss stays at chance, ln(classes)."""
    chance, zero, baseline = numbers["chance_loss"], numbers["zeros_final_loss"], numbers["baseline_final_loss"]
    usable = baseline <= BASELINE_LEARNS * chance
    supported = zero >= (1 - CHANCE_TOLERANCE) * chance
    evidence = (f"From zero weights the training loss ended at {zero:.4f} vs the chance level ln(classes) = {chance:.4f} "
                f"(Xavier baseline: {baseline:.3f}).")
    if not usable:
        evidence += " The baseline did not learn either, so the experiment says nothing."
    return Verdict("init-zero", "With all-zero weights the network does not learn.", status_from(supported, usable),
                   evidence, numbers)


def init_constant_verdict(numbers: dict[str, float]) -> Verdict:
    """init-constant: from constant weights the hidden units of a layer stay identical."""
    constant, baseline = numbers["constant_row_spread"], numbers["baseline_row_spread"]
    usable = baseline >= BASELINE_SPREAD_MIN
    supported = constant <= HERD_TOLERANCE
    evidence = (f"After training from constant weights the rows of each hidden weight matrix differ by at most "
                f"{constant:.2g} (relative) vs {baseline:.2f} from Xavier; final loss {numbers['constant_final_loss']:.3f} "
                f"vs {numbers['baseline_final_loss']:.3f}: the layer acts like a single unit.")
    return Verdict("init-constant", "With constant weights the hidden units herd: they stay identical.",
                   status_from(supported, usable), evidence, numbers)


@torch.no_grad()
def row_spread(model: torch.nn.Module) -> float:
    """Largest difference between two hidden units' incoming weights, relative to the mean |weight|,
    over all hidden layers (0 means the units of every layer are identical)."""
    spreads = []
    for _, block in model.hidden_blocks():
        weight = block.transform.weight  # (units, inputs)
        difference = (weight.max(0).values - weight.min(0).values).max()
        spreads.append(difference / weight.abs().mean().clamp_min(1e-30))
    return float(torch.stack(spreads).max())


class _SpreadRecorder(Callback):
    """Row spread at initialisation and after every epoch."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_fit_start(self, state: FitState) -> None:
        self.values.append(row_spread(state.model))

    def on_epoch_end(self, state: FitState) -> None:
        self.values.append(row_spread(state.model))


def train_from_init(init: str, epochs: int, seed: int, device: torch.device) -> dict[str, list[float]]:
    """Train a 2 x 32 tanh MLP on two-moons from ``init``; return the loss and row spread per epoch."""
    splits = prepare_data(DataSpec(source="moons", preprocess="standardize", val_fraction=0.0), seed=seed)
    data = TensorData(splits.x_train.to(device), splits.y_train.to(device))
    spec = ModelSpec(arch="mlp", depth=2, width=32, activation="tanh", init=init, norm="none", bias_init="zeros")
    model = build_model(spec, splits.input_shape, splits.output_size, generator=torch.Generator().manual_seed(seed)).to(device)
    recorder = _SpreadRecorder()
    result = fit(model, data, TrainSpec(epochs=epochs, batch_size=32, optimizer="sgd:momentum=0.9", lr=0.05,
                                        schedule="constant"), seed=seed, callbacks=[recorder])
    return {"loss": [row["train/loss_clean"] for row in result.history], "spread": recorder.values,
            "num_classes": [float(splits.num_classes)]}


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    stats = measure_init(seed=seed, device=device)
    epochs = 15 if quick else 60
    training = {init: train_from_init(init, epochs, seed, device) for init in ("zeros", "constant:0.1", "xavier")}
    chance = math.log(training["zeros"]["num_classes"][0])

    typo = measure_init((HE_AS_WRITTEN,), seed=seed, device=device)[HE_AS_WRITTEN.key]["act_std"]
    scale = init_scale_verdict(init_scale_numbers(stats))
    scale = regime_verdict(scale.claim, scale.text, INIT_SCALE_RULE, [
        Regime("CS231n settings", scale.status, scale.evidence, scale.numbers, lecture=True), he_as_written_regime(typo)],
        figure="init_std.png")
    zero = init_zero_verdict({"chance_loss": chance, "zeros_final_loss": training["zeros"]["loss"][-1],
                              "baseline_final_loss": training["xavier"]["loss"][-1]})
    constant = init_constant_verdict({"constant_row_spread": training["constant:0.1"]["spread"][-1],
                                      "baseline_row_spread": training["xavier"]["spread"][-1],
                                      "constant_final_loss": training["constant:0.1"]["loss"][-1],
                                      "baseline_final_loss": training["xavier"]["loss"][-1]})
    figures = [
        (_histogram_figure(folder, stats), "Activation histograms at initialisation (CS231n setup: 6 x 4096, batch 16 of "
         "N(0,1) inputs, no bias): one row per setting, one column per layer (lecture Figures 11/12). 'Xavier' is "
         "CS231n's W = randn/sqrt(fan_in)."),
        (_std_figure(folder, stats), f"Per-layer activation std and saturated fraction (tanh output within {SATURATION} of ±1)."),
        (_training_figure(folder, training, chance), "Training a 2 x 32 tanh MLP on two-moons from zero, constant (0.1) and "
         "Xavier weights: loss against chance ln 2, and how different the hidden units of a layer are."),
    ]
    tables = [
        (_activation_table(folder, stats), "Per-layer activation statistics at initialisation (tidy)."),
        (_reference_table(folder, stats), "Measured vs the CS231n reference numbers (Justin Johnson's slides), tolerance 10%."),
        (_training_table(folder, training), "Loss and row spread per epoch when training from each init."),
    ]
    return StudyOutput([scale, zero, constant], figures, tables)


def reference_rows(stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each reference number beside the measured one, with the relative error."""
    rows = []
    for (key, quantity, layer), reference in REFERENCES.items():
        measured = stats[key][quantity][layer - 1]
        error = abs(measured - reference) / reference
        rows.append({"setting": key, "quantity": quantity, "layer": layer, "measured": measured, "reference": reference,
                     "relative_error": error, "within_tolerance": error <= REFERENCE_TOLERANCE})
    return rows


def _activation_table(folder: Path, stats: dict[str, dict[str, Any]]) -> str:
    settings = {s.key: s for s in INIT_SETTINGS}
    rows = [{"setting": key, "activation": settings[key].activation, "init": settings[key].init, "layer": layer + 1,
             "quantity": quantity, "value": values[quantity][layer]}
            for key, values in stats.items() for quantity in ("act_mean", "act_std", "saturated", "linear", "dead")
            for layer in range(len(values["layers"]))]
    write_table(folder / "init_activations.csv", rows, ["setting", "activation", "init", "layer", "quantity", "value"])
    return "init_activations.csv"


def _reference_table(folder: Path, stats: dict[str, dict[str, Any]]) -> str:
    write_table(folder / "init_references.csv", reference_rows(stats),
                ["setting", "quantity", "layer", "measured", "reference", "relative_error", "within_tolerance"])
    return "init_references.csv"


def _training_table(folder: Path, training: dict[str, dict[str, list[float]]]) -> str:
    rows = [{"init": init, "epoch": epoch + 1, "quantity": "train_loss", "value": loss}
            for init, record in training.items() for epoch, loss in enumerate(record["loss"])]
    rows += [{"init": init, "epoch": epoch, "quantity": "row_spread", "value": spread}
             for init, record in training.items() for epoch, spread in enumerate(record["spread"])]
    write_table(folder / "init_training.csv", rows, ["init", "epoch", "quantity", "value"])
    return "init_training.csv"


def _histogram_figure(folder: Path, stats: dict[str, dict[str, Any]]) -> str:
    settings = [s for s in INIT_SETTINGS if s.key in stats]
    figure, axes = new_figure(2.1 * DEPTH + 1.2, 1.45 * len(settings) + 0.8, len(settings), DEPTH)
    for row, setting in enumerate(settings):
        values = stats[setting.key]
        for layer in range(len(values["layers"])):
            ax = axes[row][layer]
            edges, counts = values["hist"]["edges"][layer], values["hist"]["counts"][layer]
            total = max(sum(counts), 1.0)
            widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
            ax.bar(edges[:-1], [c / total for c in counts], width=widths, align="edge", color=COLORS[row % len(COLORS)])
            ax.set_title(f"layer {layer + 1}: std {values['act_std'][layer]:.3g}", fontsize=8)
            ax.tick_params(labelsize=7)
            if setting.activation == "tanh":
                ax.set_xlim(-1.05, 1.05)
            if layer == 0:
                ax.set_ylabel(setting.label + "\nfraction", fontsize=8)
            if row == len(settings) - 1:
                ax.set_xlabel("activation value", fontsize=8)
    figure.suptitle("Activations at initialisation, 6 layers x 4096 units (CS231n setup)")
    save_figure(figure, folder / "init_histograms.png")
    return "init_histograms.png"


def _std_figure(folder: Path, stats: dict[str, dict[str, Any]]) -> str:
    figure, axes = new_figure(11, 4.8, 1, 2)
    layers = list(range(1, DEPTH + 1))
    for index, setting in enumerate(s for s in INIT_SETTINGS if s.key in stats):
        style = dict(marker="o", color=COLORS[index % len(COLORS)], label=setting.label)
        axes[0][0].plot(layers, stats[setting.key]["act_std"], **style)
        if setting.activation == "tanh":
            axes[0][1].plot(layers, stats[setting.key]["saturated"], **style)
    axes[0][0].set(title="Activation std per layer", xlabel="layer", ylabel="std of activations")
    axes[0][1].set(title=f"Saturated tanh outputs (|y| > {1 - SATURATION})", xlabel="layer", ylabel="fraction saturated")
    for ax in axes[0]:
        ax.set_xticks(layers)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    save_figure(figure, folder / "init_std.png")
    return "init_std.png"


def _training_figure(folder: Path, training: dict[str, dict[str, list[float]]], chance: float) -> str:
    figure, axes = new_figure(11, 4.2, 1, 2)
    labels = {"zeros": "zeros", "constant:0.1": "constant 0.1", "xavier": "Xavier (baseline)"}
    for index, (init, record) in enumerate(training.items()):
        color = COLORS[index % len(COLORS)]
        axes[0][0].plot(range(1, len(record["loss"]) + 1), record["loss"], marker=".", color=color, label=labels[init])
        axes[0][1].plot(range(len(record["spread"])), record["spread"], marker=".", color=color, label=labels[init])
    axes[0][0].axhline(chance, color="black", linestyle="--", linewidth=1, label="chance ln 2")
    axes[0][0].set(title="Training loss from each initialisation", xlabel="epoch", ylabel="training loss (cross-entropy)")
    axes[0][1].set_yscale("symlog", linthresh=1e-6)
    axes[0][1].set(title="Herding: how different the hidden units are", xlabel="epoch",
                   ylabel="max row difference / mean |w| (symlog)")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(figure, folder / "init_training.png")
    return "init_training.png"
