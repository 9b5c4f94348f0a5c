"""Study ``activations``: activation functions, vanishing and exploding gradients, and speed.

1. The curves and derivatives of sigmoid, tanh, ReLU, leaky ReLU, ELU and GELU (lecture Figure 10);
   derivatives by autograd. Sigmoid's derivative peaks at 0.25 (at x = 0), tanh's at 1.
2. Gradients at initialisation in a 20 x 256 MLP (no normalisation, zero biases), a batch of 256
   N(0, 1) inputs with random labels (10 classes): the back-propagated error ||dL/dz_l|| per
   example, z_l the pre-activation of hidden layer l (Glorot and Bengio 2010 plot the same). The layer-1 / layer-20 ratio vanishes for sigmoid, is of
   order 1 for tanh with Xavier (gain 1) and ReLU with He, and explodes for a too-large sigma.
   (The weight gradients dL/dW_l = delta_l h_{l-1}^T hide the explosion in a ReLU net: the
   forward activations grow by the same factor as the backward signal shrinks, so we report the signal.)
3. relu-faster, regime by regime (:mod:`deepwell.studies.relu_speed`): steps to a training-loss
   threshold on MNIST-1D for sigmoid, tanh and ReLU, each at its tuned learning rate, over 3 seeds,
   in MLPs of depth 2/5/10 (shared vs own init) and a small CNN. One 4 x 128 MLP run per activation
   also gives the fraction of tanh units in the linear region over training (claim early-linear)
   and the loss-curve figure.

Verdicts: sigmoid-grad, exploding, relu-faster, early-linear.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.diagnostics.probes import LINEAR, measure_activations
from deepwell.models import ACTIVATIONS, build_model
from deepwell.runtime import resolve_device
from deepwell.studies import relu_speed
from deepwell.studies.base import Setting, StudyOutput, Verdict, status_from, write_table
from deepwell.studies.evidence import regime_verdict
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import TensorData, fit

__all__ = ["CURVES", "GRADIENT_SETTINGS", "GRADIENT_REFERENCES", "activation_curves", "gradient_profile",
           "sigmoid_grad_verdict", "exploding_verdict", "relu_faster_verdict", "early_linear_verdict", "run"]

# --- thresholds ------------------------------------------------------------------------------
SIGMOID_MAX_DERIVATIVE = 0.25  # the closed form: s'(0) = s(0)(1 - s(0)) = 1/4
DERIVATIVE_TOLERANCE = 1e-4
VANISHED = 1e-6                # layer-1/top signal ratio below this: the gradient has vanished
TANH_ABOVE_SIGMOID = 1e3       # "tanh somewhat better": its ratio at least 1000x sigmoid's
NEAR_ONE = (0.5, 2.0)          # ReLU+He ratio "~1"
EXPLODED = 100.0               # ratio above this: the gradient exploded going back
LOSS_THRESHOLD = 1.0           # relu-faster: steps until the smoothed training loss is below this
SMOOTHING = 0.95               # exponential moving average of the per-step training loss
FASTER_MARGIN = 0.9            # ReLU must need at most 90% of the best other activation's steps
LINEAR_FALL_MIN = 0.02         # early-linear: the linear fraction must fall by at least 2 points
REFERENCE_TOLERANCE = 0.10

DEPTH, WIDTH, BATCH, CLASSES = 20, 256, 256, 10
INPUT_SEED_OFFSET = 7919

CURVES: tuple[tuple[str, str], ...] = (
    ("sigmoid", "sigmoid"), ("tanh", "tanh"), ("relu", "ReLU"), ("leaky_relu:0.1", "leaky ReLU (0.1)"),
    ("elu", "ELU"), ("gelu", "GELU"),
)


GRADIENT_SETTINGS: tuple[Setting, ...] = (
    Setting("sigmoid-default", "sigmoid, PyTorch default init", "sigmoid", "torch_default"),
    Setting("sigmoid-xavier", "sigmoid, Xavier", "sigmoid", "xavier:gain=1"),
    Setting("tanh-xavier", "tanh, Xavier (gain 1)", "tanh", "xavier:gain=1"),
    Setting("tanh-xavier-5/3", "tanh, Xavier gain 5/3", "tanh", "xavier"),
    Setting("relu-he", "ReLU, He", "relu", "he"),
    Setting("relu-large", "ReLU, N(0, 0.15²) (too large)", "relu", "normal:0.15"),
)

GRADIENT_SEEDS = 10

# layer-1 / layer-20 gradient ratio at init (DESIGN.md); sigmoid: same order of magnitude suffices.
GRADIENT_REFERENCES: dict[str, float] = {"sigmoid-default": 7e-17, "tanh-xavier": 0.19, "relu-he": 0.85}


def activation_curves(x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(f(x), f'(x)) for every activation of CURVES; the derivative by autograd."""
    curves = {}
    for name, _ in CURVES:
        point = x.detach().clone().requires_grad_(True)
        y = ACTIVATIONS.build(name)(point)
        (derivative,) = torch.autograd.grad(y.sum(), point)
        curves[name] = (y.detach(), derivative)
    return curves


def gradient_profile(activation: str, init: str, depth: int = DEPTH, width: int = WIDTH, batch: int = BATCH,
                     seed: int = 0, device: torch.device | None = None) -> dict[str, list[float]]:
    """Per-layer gradient norms at initialisation of a ``depth`` x ``width`` MLP (eval mode).

    Returns ``signal`` (mean over examples of ||dL/dz_l||, z_l = W_l h_(l-1) + b_l the layer's
    pre-activation: the back-propagated error delta_l of the backprop equations, the quantity
    Glorot and Bengio (2010) plot) and ``weight`` (||dL/dW_l||), one value per hidden layer,
    input side first. Inputs are N(0, 1) of the layers' width, so every layer is width x width.
    """
    device = device or torch.device("cpu")
    data = torch.Generator().manual_seed(seed + INPUT_SEED_OFFSET)  # not the weights' stream
    x = torch.randn(batch, width, generator=data).to(device)            # (B, width)
    y = torch.randint(0, CLASSES, (batch,), generator=data).to(device)   # (B,)
    spec = ModelSpec(arch="mlp", depth=depth, width=width, activation=activation, init=init, norm="none")
    model = build_model(spec, (width,), CLASSES, generator=torch.Generator().manual_seed(seed)).to(device)
    outputs: list[torch.Tensor] = []

    def keep(module, inputs, output):
        output.retain_grad()
        outputs.append(output)

    blocks = [block for _, block in model.hidden_blocks()]
    handles = [block.transform.register_forward_hook(keep) for block in blocks]
    try:
        model.eval()
        F.cross_entropy(model(x), y).backward()
    finally:
        for handle in handles:
            handle.remove()
    # float64 norms: a vanished sigmoid gradient (~1e-21 per element) squared underflows float32,
    # and flush-to-zero (runtime.configure_cpu) would turn it into an exact 0.
    signal = torch.stack([h.grad.double().flatten(1).norm(dim=1).mean() for h in outputs])
    weight = torch.stack([block.transform.weight.grad.double().norm() for block in blocks])
    return {"signal": signal.tolist(), "weight": weight.tolist()}


def _ratio(profile: dict[str, list[float]]) -> float:
    first, last = profile["signal"][0], profile["signal"][-1]
    return first / last if last > 0 else float("inf")


def sigmoid_grad_verdict(numbers: dict[str, float]) -> Verdict:
    """sigmoid-grad: max derivative 0.25; layer-1/top ratio tiny for sigmoid, larger for tanh, ~1 for ReLU+He."""
    checks = {
        "max derivative 0.25": abs(numbers["sigmoid_derivative_max"] - SIGMOID_MAX_DERIVATIVE) <= DERIVATIVE_TOLERANCE,
        "sigmoid gradient vanishes": numbers["sigmoid_ratio"] < VANISHED,
        "tanh better than sigmoid": numbers["tanh_ratio"] >= TANH_ABOVE_SIGMOID * numbers["sigmoid_ratio"],
        "ReLU+He ratio ~1": NEAR_ONE[0] <= numbers["relu_he_ratio"] <= NEAR_ONE[1],
    }
    failed = [name for name, ok in checks.items() if not ok]
    evidence = (f"Measured max sigmoid derivative {numbers['sigmoid_derivative_max']:.6f}. Layer-1/layer-{DEPTH} gradient "
                f"ratio at init ({DEPTH} x {WIDTH}): sigmoid+Xavier {numbers['sigmoid_ratio']:.2g} (PyTorch default init "
                f"{numbers['sigmoid_default_ratio']:.2g}), tanh+Xavier {numbers['tanh_ratio']:.2f}, ReLU+He "
                f"{numbers['relu_he_ratio']:.2f}." + (f" Failed: {', '.join(failed)}." if failed else ""))
    return Verdict("sigmoid-grad", "Sigmoid's gradient is at most 0.25, so deep sigmoid nets' gradients vanish; tanh is "
                   "somewhat better.", status_from(not failed), evidence, numbers)


def exploding_verdict(numbers: dict[str, float]) -> Verdict:
    """exploding: with too large a sigma the gradient grows going back."""
    ratio = numbers["large_sigma_ratio"]
    usable = math.isfinite(ratio)
    evidence = (f"ReLU net with W ~ N(0, {numbers['large_sigma']:.2f}²) (He would be {numbers['he_sigma']:.3f}): the "
                f"layer-1 gradient is {ratio:.3g} x the layer-{DEPTH} one (threshold {EXPLODED:g}).")
    return Verdict("exploding", "Gradients can also explode when propagated back.", status_from(ratio > EXPLODED, usable),
                   evidence, numbers)


def relu_faster_verdict(numbers: dict[str, float]) -> Verdict:
    """relu-faster: ReLU reaches the loss threshold in fewer steps than sigmoid and tanh (inf = never)."""
    relu, others = numbers["relu_steps"], min(numbers["sigmoid_steps"], numbers["tanh_steps"])
    budget = numbers["budget_steps"]
    if not math.isfinite(relu):
        status, why = ("inconclusive", "ReLU did not reach it within the budget either.") if not math.isfinite(others) else \
            ("does_not_hold", "ReLU never reached it; another activation did.")
    elif relu <= FASTER_MARGIN * others:
        status, why = "holds", ""
    elif relu >= others:
        status, why = "does_not_hold", "ReLU was not faster."
    else:
        status, why = "inconclusive", f"ReLU was faster by less than {1 - FASTER_MARGIN:.0%}, within run-to-run noise."

    def show(steps: float) -> str:
        return f"{steps:.0f}" if math.isfinite(steps) else f"never (>{budget:.0f})"

    evidence = (f"Steps until the smoothed training loss fell below {numbers['loss_threshold']:g} on MNIST-1D: ReLU "
                f"{show(relu)}, tanh {show(numbers['tanh_steps'])}, sigmoid {show(numbers['sigmoid_steps'])}. {why}").strip()
    return Verdict("relu-faster", "ReLU converges faster than sigmoid/tanh.", status, evidence, numbers)


def early_linear_verdict(numbers: dict[str, float]) -> Verdict:
    """early-linear: the fraction of tanh units in the linear region falls as training goes on."""
    start, end = numbers["linear_start"], numbers["linear_end"]
    evidence = (f"Fraction of tanh activations in the linear region (derivative >= {LINEAR:.0%} of its max): "
                f"{start:.1%} at init, {end:.1%} after {numbers['epochs']:.0f} epochs.")
    return Verdict("early-linear", "Early in training (so with early stopping) many units are in the activation's linear "
                   "region; the fraction falls as training goes on.", status_from(end <= start - LINEAR_FALL_MIN),
                   evidence, numbers)


class _Recorder(Callback):
    """Per-step training loss (kept on the device) and the tanh linear fraction at each epoch end."""

    def __init__(self, total_steps: int, x_probe: torch.Tensor) -> None:
        self.losses = torch.zeros(total_steps, device=x_probe.device)
        self.x_probe, self.linear = x_probe, []

    def on_fit_start(self, state: FitState) -> None:
        self.linear.append(measure_activations(state.model, self.x_probe)["linear"])

    def on_batch_end(self, state: FitState) -> None:
        self.losses[state.step - 1] = state.loss.detach()

    def on_epoch_end(self, state: FitState) -> None:
        self.linear.append(measure_activations(state.model, self.x_probe)["linear"])


def smoothed(losses: list[float], smoothing: float = SMOOTHING) -> list[float]:
    """Exponential moving average (started at the first value)."""
    out, value = [], losses[0] if losses else 0.0
    for loss in losses:
        value = smoothing * value + (1 - smoothing) * loss
        out.append(value)
    return out


def steps_to(curve: list[float], threshold: float) -> float:
    """1-based step at which ``curve`` first falls below ``threshold``; inf if never."""
    return next((float(i + 1) for i, v in enumerate(curve) if v < threshold), float("inf"))


def train_activation(activation: str, quick: bool, seed: int, device: torch.device) -> dict[str, Any]:
    """Train the MNIST-1D MLP with ``activation``; per-step smoothed loss and per-epoch linear fractions."""
    source = "mnist1d:num_samples=2500" if quick else "mnist1d"
    splits = prepare_data(DataSpec(source=source, preprocess="standardize", val_fraction=0.0), seed=0)
    data = TensorData(splits.x_train.to(device), splits.y_train.to(device))
    spec = ModelSpec(arch="mlp", depth=4, width=128, activation=activation, init="he", norm="none")
    model = build_model(spec, splits.input_shape, splits.output_size, generator=torch.Generator().manual_seed(seed)).to(device)
    train = TrainSpec(epochs=8 if quick else 30, batch_size=50, optimizer="sgd:momentum=0.9", lr=0.02, schedule="constant")
    steps = train.epochs * (len(data.x_train) // train.batch_size)
    recorder = _Recorder(steps, data.x_train[:512])
    fit(model, data, train, seed=seed, callbacks=[recorder])
    curve = smoothed(recorder.losses.tolist())
    return {"curve": curve, "steps": steps_to(curve, LOSS_THRESHOLD), "budget": float(steps),
            "linear": [sum(v) / len(v) for v in recorder.linear]}


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)  # includes 0, where sigmoid' peaks
    curves = activation_curves(x)
    seeds = range(seed, seed + GRADIENT_SEEDS)  # cheap at init; one seed's ReLU+He ratio ranges 0.74-1.39
    profiles = {s.key: [gradient_profile(s.activation, s.init, seed=k, device=device) for k in seeds]
                for s in GRADIENT_SETTINGS}
    ratios = {key: statistics.geometric_mean([_ratio(p) for p in runs]) if all(0 < _ratio(p) < math.inf for p in runs)
              else float("inf") for key, runs in profiles.items()}
    runs = {activation: [train_activation(activation, quick, k, device) for k in range(seed, seed + (1 if quick else 3))]
            for activation in ("sigmoid", "tanh", "relu")}

    sigmoid_max = float(curves["sigmoid"][1].max())
    grad = sigmoid_grad_verdict({"sigmoid_derivative_max": sigmoid_max, "sigmoid_ratio": ratios["sigmoid-xavier"],
                                 "sigmoid_default_ratio": ratios["sigmoid-default"], "tanh_ratio": ratios["tanh-xavier"],
                                 "relu_he_ratio": ratios["relu-he"]})
    exploding = exploding_verdict({"large_sigma_ratio": ratios["relu-large"], "large_sigma": 0.15,
                                   "he_sigma": math.sqrt(2 / WIDTH)})
    speed_regimes, speed_rows = relu_speed.measure(quick, seed, device)
    faster = regime_verdict("relu-faster", "ReLU converges faster than sigmoid/tanh.", relu_speed.RULE, speed_regimes,
                            figure="relu_faster.png")
    relu_speed.speed_figure(folder / "relu_faster.png", speed_rows)
    write_table(folder / "relu_faster.csv", speed_rows, ["regime", "activation", "lr", "seed", "steps", "final_loss", "use"])
    linear = runs["tanh"][0]["linear"]
    early = early_linear_verdict({"linear_start": linear[0], "linear_end": linear[-1], "epochs": float(len(linear) - 1)})

    figures = [
        (_curves_figure(folder, x, curves), "Activation functions and their derivatives (autograd), lecture Figure 10. "
         f"Measured max of sigmoid' = {sigmoid_max:.4f}."),
        (_gradient_figure(folder, profiles), f"Back-propagated error ||dL/dz|| (pre-activations) per layer at initialisation, {DEPTH} x "
         f"{WIDTH} MLP, batch of {BATCH} N(0,1) inputs (geometric mean over {len(seeds)} seeds)."),
        ("relu_faster.png", "relu-faster by regime: steps until the smoothed training loss falls below "
         f"{relu_speed.LOSS_THRESHOLD:g} on MNIST-1D, per activation at its tuned learning rate; MLPs of depth 2/5/10 with a "
         "shared (Xavier) or each activation's own init (He for ReLU), and a small CNN."),
        (_training_figure(folder, runs), "MNIST-1D, 4 x 128 MLP, SGD momentum 0.9, lr 0.02: smoothed training loss per "
         "step for each activation, and the fraction of tanh units in the linear region per epoch."),
    ]
    tables = [
        (_gradient_table(folder, profiles, ratios), "Per-layer gradient norms at init (mean over seeds) and layer-1/top ratios."),
        ("relu_faster.csv", "relu-faster: steps to the loss threshold per regime, activation, learning rate and seed "
         "(tuning runs and measured runs)."),
        (_training_table(folder, runs), "Training curves (smoothed loss per step) and tanh linear fraction per epoch."),
        (_curves_table(folder, x, curves), "Activation values and derivatives on a grid (every 10th point)."),
    ]
    return StudyOutput([grad, exploding, faster, early], figures, tables)


def gradient_reference_rows(ratios: dict[str, float], spreads: dict[str, tuple[float, float]] | None = None) -> list[dict[str, Any]]:
    """Measured ratio (geometric mean over seeds) beside each reference; the sigmoid one is compared by
    order of magnitude. ``spreads`` (lowest, highest single-seed ratio) says whether the reference
    lies within what one seed gives -- a single published run is one draw of that spread."""
    rows = []
    for key, reference in GRADIENT_REFERENCES.items():
        measured = ratios[key]
        if reference < 1e-3:
            ok = abs(math.log10(measured) - math.log10(reference)) < 1
        else:
            ok = abs(measured - reference) / reference <= REFERENCE_TOLERANCE
        low, high = (spreads or {}).get(key, (math.nan, math.nan))
        rows.append({"setting": key, "layer": "", "quantity": "ratio_vs_reference", "value": measured, "reference": reference,
                     "within_tolerance": ok, "seed_low": low, "seed_high": high,
                     "within_seed_range": low <= reference <= high})
    return rows


def _gradient_table(folder: Path, profiles: dict[str, list[dict[str, list[float]]]], ratios: dict[str, float]) -> str:
    rows = []
    for key, runs in profiles.items():
        for quantity in ("signal", "weight"):
            for layer in range(len(runs[0][quantity])):
                values = [r[quantity][layer] for r in runs]
                rows.append({"setting": key, "layer": layer + 1, "quantity": f"{quantity}_grad_norm",
                             "value": sum(values) / len(values)})
        rows.append({"setting": key, "layer": "", "quantity": "signal_ratio_first_over_last", "value": ratios[key]})
    spreads = {key: (min(_ratio(r) for r in runs), max(_ratio(r) for r in runs)) for key, runs in profiles.items()}
    rows += gradient_reference_rows(ratios, spreads)
    write_table(folder / "activations_gradients.csv", rows,
                ["setting", "layer", "quantity", "value", "reference", "within_tolerance", "seed_low", "seed_high",
                 "within_seed_range"])
    return "activations_gradients.csv"


def _training_table(folder: Path, runs: dict[str, list[dict[str, Any]]]) -> str:
    rows = [{"activation": a, "seed_index": i, "step": step + 1, "quantity": "smoothed_train_loss", "value": v}
            for a, rs in runs.items() for i, r in enumerate(rs) for step, v in enumerate(r["curve"])]
    rows += [{"activation": a, "seed_index": i, "step": "", "quantity": "steps_to_threshold", "value": r["steps"]}
             for a, rs in runs.items() for i, r in enumerate(rs)]
    rows += [{"activation": "tanh", "seed_index": 0, "epoch": epoch, "quantity": "linear_fraction", "value": v}
             for epoch, v in enumerate(runs["tanh"][0]["linear"])]
    write_table(folder / "activations_training.csv", rows, ["activation", "seed_index", "step", "epoch", "quantity", "value"])
    return "activations_training.csv"


def _curves_table(folder: Path, x: torch.Tensor, curves: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> str:
    rows = [{"activation": name, "x": float(x[i]), "quantity": quantity, "value": float(values[i])}
            for name, (y, dy) in curves.items() for quantity, values in (("value", y), ("derivative", dy))
            for i in range(0, len(x), 10)]
    write_table(folder / "activations_curves.csv", rows, ["activation", "x", "quantity", "value"])
    return "activations_curves.csv"


def _curves_figure(folder: Path, x: torch.Tensor, curves: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> str:
    figure, axes = new_figure(11, 4.3, 1, 2)
    labels = dict(CURVES)
    for index, (name, (y, dy)) in enumerate(curves.items()):
        axes[0][0].plot(x, y, color=COLORS[index], label=labels[name])
        axes[0][1].plot(x, dy, color=COLORS[index], label=labels[name])
    axes[0][1].axhline(SIGMOID_MAX_DERIVATIVE, color="gray", linestyle=":", linewidth=1)
    axes[0][1].annotate("sigmoid' max = 0.25", (0.2, SIGMOID_MAX_DERIVATIVE + 0.03), fontsize=8, color="gray")
    axes[0][0].set(title="Activation functions", xlabel="x", ylabel="f(x)", ylim=(-1.5, 3))
    axes[0][1].set(title="Derivatives (autograd)", xlabel="x", ylabel="f'(x)", ylim=(-0.15, 1.2))
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    save_figure(figure, folder / "activations_curves.png")
    return "activations_curves.png"


def _gradient_figure(folder: Path, profiles: dict[str, list[dict[str, list[float]]]]) -> str:
    figure, axes = new_figure(8, 5, 1, 1)
    ax = axes[0][0]
    for index, setting in enumerate(GRADIENT_SETTINGS):
        runs = profiles[setting.key]
        mean = [statistics.geometric_mean([max(r["signal"][layer], 1e-300) for r in runs])
                for layer in range(len(runs[0]["signal"]))]
        ax.plot(range(1, len(mean) + 1), mean, marker="o", markersize=3, color=COLORS[index], label=setting.label)
    ax.set_yscale("log")
    ax.set(title=f"Gradient at initialisation, {DEPTH} layers x {WIDTH} units", xlabel="layer (1 = input side)",
           ylabel="||dL/dz|| per example (log)")
    ax.set_xticks(range(1, DEPTH + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(figure, folder / "activations_gradients.png")
    return "activations_gradients.png"


def _training_figure(folder: Path, runs: dict[str, list[dict[str, Any]]]) -> str:
    figure, axes = new_figure(11, 4.3, 1, 2)
    for index, (activation, rs) in enumerate(runs.items()):
        curve = rs[0]["curve"]
        axes[0][0].plot(range(1, len(curve) + 1), curve, color=COLORS[index], label=activation)
    axes[0][0].axhline(LOSS_THRESHOLD, color="black", linestyle="--", linewidth=1, label=f"threshold {LOSS_THRESHOLD:g}")
    axes[0][0].set(title="Training loss (smoothed) per step, MNIST-1D", xlabel="optimisation step",
                   ylabel="cross-entropy (moving average)")
    linear = runs["tanh"][0]["linear"]
    axes[0][1].plot(range(len(linear)), linear, marker="o", color=COLORS[1], label="tanh MLP")
    axes[0][1].set(title="tanh units in the linear region", xlabel="epoch (0 = init)",
                   ylabel=f"fraction with tanh' >= {LINEAR:.0%} of max")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(figure, folder / "activations_training.png")
    return "activations_training.png"
