"""Study ``layers-converge``: which layers reach their final state first? (lecture: "earlier layers and
late layers converge to their final weights first", after Boaz Barak's blog posts; Raghu et al. 2017,
"SVCCA", found bottom-up convergence of representations).

Two nets train on MNIST-1D with SGD + momentum and a cosine-decaying learning rate, over >= 3
seeds: a 5 x 128 ReLU MLP and a small 1-D CNN (4 conv blocks). After every epoch
:class:`WeightRecorder` copies each layer's weights and its output on a fixed probe batch. Each
layer's distance to its own final state is measured three ways:

* ``weights, raw``: ``||W(t) - W(T)|| / ||W(T)||`` -- orders layers by how far each moves in total;
* ``weights, normalised``: ``||W(t) - W(T)|| / ||W(0) - W(T)||`` -- the fraction of its own movement
  still to go (the fair reading of "converge to their final weights");
* ``representation``: ``1 - CKA(h_l(t), h_l(T))`` with linear CKA (Kornblith et al. 2019) of the
  layer's outputs on the probe batch.

A layer has *settled* at the first epoch after which the distance stays below the threshold
(SETTLE_THRESHOLD, CKA_THRESHOLD). Per regime (net x measure) the claim holds when both the first
and the last layer settle earlier than the middle layers' mean, each beyond 2 standard errors over
seeds (:func:`~deepwell.studies.evidence.compare`); the lecture's regime is
the MLP with normalised weight distances.

Verdict: layers-converge (one regime per net and measure).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
from torch import nn

from deepwell.config import ModelSpec, TrainSpec
from deepwell.models import build_model
from deepwell.runtime import resolve_device
from deepwell.studies.base import Regime, StudyOutput, write_table
from deepwell.studies.dropout import overfit_data
from deepwell.studies.evidence import compare, regime_verdict
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import TensorData, fit

__all__ = ["WeightRecorder", "linear_cka", "relative_distances", "movement_distances", "cka_distances", "settle_epoch",
           "settle_regime", "run"]

SETTLE_THRESHOLD = 0.1     # weights: settled when the distance stays below 10% (of the final norm / of the total movement)
CKA_THRESHOLD = 0.05       # representations: settled when CKA to the final representation stays above 0.95
MIN_LEAD = 1.0             # settle epochs are whole epochs: a lead counts from one epoch on (and beyond 2 s.e.)
PROBE = 256                # examples in the probe batch whose representations are compared
NETS = {"MLP": ModelSpec(arch="mlp", depth=5, width=128, norm="none"),
        "CNN": ModelSpec(arch="cnn1d", channels=[16, 16, "pool", 32, 32], depth=0, norm="none")}
MEASURES = ("weights, normalised", "weights, raw", "representation (CKA)")
LECTURE = ("MLP", "weights, normalised")
RULE = ("per net and measure: the first and the last layer each settle earlier than the middle layers' mean, beyond 2 "
        "standard errors and by at least one epoch, over >= 3 seeds; settled = distance to the final state below 0.1 (weights) or 1 - CKA below "
        "0.05 (representations) from then on. The lecture's regime: MLP, weight distance normalised by total movement.")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples, ``x`` (n, p) and ``y`` (n, q) (Kornblith et al. 2019).

    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc, Yc``; invariant to
    rotations and isotropic scaling, 1 for identical representations. Computed in float64.

    Example::

        x = torch.randn(100, 5); q, _ = torch.linalg.qr(torch.randn(5, 5))
        linear_cka(x, x @ q)     # 1.0
    """
    x = x.reshape(len(x), -1).double()
    y = y.reshape(len(y), -1).double()
    x, y = x - x.mean(0), y - y.mean(0)
    cross = (y.T @ x).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()))


class WeightRecorder(Callback):
    """Copies every dense/conv layer's weight, and (with a probe batch) each layer's output, at the start and after each epoch.

    A layer's output is its block's (after the activation) or, for the head, the logits.
    """

    def __init__(self, probe: torch.Tensor | None = None) -> None:
        self.probe = probe
        self.names: list[str] = []
        self.snapshots: list[list[torch.Tensor]] = []
        self.outputs: list[list[torch.Tensor]] = []

    def _record(self, model: nn.Module) -> None:
        layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
        self.names = [name for name, _ in layers]
        self.snapshots.append([m.weight.detach().to("cpu", copy=True) for _, m in layers])
        if self.probe is not None:
            self.outputs.append(_layer_outputs(model, [name for name, _ in layers], self.probe))

    def on_fit_start(self, state: FitState) -> None:
        self._record(state.model)

    def on_epoch_end(self, state: FitState) -> None:
        self._record(state.model)


def _layer_outputs(model: nn.Module, names: list[str], probe: torch.Tensor) -> list[torch.Tensor]:
    """Each weight layer's block output (``features.0.transform`` -> ``features.0``) on ``probe``, in eval mode."""
    modules = dict(model.named_modules())
    owners = [name.rsplit(".transform", 1)[0] if name.endswith(".transform") else name for name in names]
    captured: dict[str, torch.Tensor] = {}
    handles = [modules[o].register_forward_hook(lambda _m, _i, out, o=o: captured.__setitem__(o, out.detach().cpu()))
               for o in owners]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(probe)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return [captured[o].reshape(len(probe), -1) for o in owners]


def relative_distances(snapshots: list[list[torch.Tensor]]) -> list[list[float]]:
    """``[t][l] = ||W_l(t) - W_l(T)|| / ||W_l(T)||`` with T the last snapshot."""
    final = snapshots[-1]
    return torch.stack([torch.stack([(w - f).norm() / f.norm() for w, f in zip(snap, final)]) for snap in snapshots]).tolist()


def movement_distances(snapshots: list[list[torch.Tensor]]) -> list[list[float]]:
    """``[t][l] = ||W_l(t) - W_l(T)|| / ||W_l(0) - W_l(T)||``: the fraction of the layer's total movement still to go."""
    first, final = snapshots[0], snapshots[-1]
    total = [(w - f).norm().clamp_min(1e-30) for w, f in zip(first, final)]
    return [[float((w - f).norm() / n) for w, f, n in zip(snap, final, total)] for snap in snapshots]


def cka_distances(outputs: list[list[torch.Tensor]]) -> list[list[float]]:
    """``[t][l] = 1 - CKA(h_l(t), h_l(T))``."""
    final = outputs[-1]
    return [[1.0 - linear_cka(h, f) for h, f in zip(step, final)] for step in outputs]


def settle_epoch(distances: list[float], threshold: float = SETTLE_THRESHOLD) -> int:
    """First index after which every distance is below ``threshold`` (the last index always qualifies)."""
    settle = len(distances) - 1
    for index in range(len(distances) - 1, -1, -1):
        if distances[index] >= threshold:
            break
        settle = index
    return settle


def settle_regime(name: str, settle: dict[int, list[int]], lecture: bool = False) -> Regime:
    """Do the first and the last layer settle before the middle ones (beyond 2 s.e. over seeds)?

    Args:
        name: the regime's name (net and measure).
        settle: seed -> settle epoch per layer, input to output.
        lecture: whether this is the lecture's regime.
    """
    seeds = sorted(settle)
    middle = [statistics.fmean(settle[s][1:-1]) for s in seeds]
    first = compare(middle, [settle[s][0] for s in seeds], margin=MIN_LEAD)
    last = compare(middle, [settle[s][-1] for s in seeds], margin=MIN_LEAD)
    statuses = {first.status, last.status}
    status = "holds" if statuses == {"holds"} else "does_not_hold" if "does_not_hold" in statuses else "inconclusive"
    per_layer = [statistics.fmean(settle[s][layer] for s in seeds) for layer in range(len(settle[seeds[0]]))]
    evidence = (f"settle epoch per layer, input to output (mean of {len(seeds)} seeds): "
                + ", ".join(f"{v:.1f}" for v in per_layer)
                + f"; middle minus first {first.describe()}, middle minus last {last.describe()}.")
    numbers = first.numbers("first_lead") | last.numbers("last_lead") | {f"settle_{i + 1}": v for i, v in enumerate(per_layer)}
    return Regime(name, status, evidence, numbers, lecture)


def _train(spec: ModelSpec, splits, seed: int, epochs: int) -> WeightRecorder:
    model = build_model(spec, splits.input_shape, splits.output_size,
                        generator=torch.Generator().manual_seed(seed)).to(splits.x_train.device)
    recorder = WeightRecorder(splits.x_val[:PROBE])
    fit(model, TensorData(splits.x_train, splits.y_train, splits.x_val, splits.y_val),
        TrainSpec(epochs=epochs, batch_size=32, optimizer="sgd:momentum=0.9", lr=0.02, schedule="cosine", eval_every=epochs),
        seed=seed, callbacks=[recorder])
    return recorder


def _distances(recorder: WeightRecorder) -> dict[str, list[list[float]]]:
    return {"weights, normalised": movement_distances(recorder.snapshots), "weights, raw": relative_distances(recorder.snapshots),
            "representation (CKA)": cka_distances(recorder.outputs)}


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    epochs, seeds, n_train = (15, [seed, seed + 1, seed + 2], 1000) if quick else (60, [seed + i for i in range(5)], 3600)
    splits = overfit_data(n_train, seed, device)
    distances: dict[tuple[str, str], dict[int, list[list[float]]]] = {}
    for net, spec in NETS.items():
        for s in seeds:
            for measure, values in _distances(_train(spec, splits, s, epochs)).items():
                distances.setdefault((net, measure), {})[s] = values
    regimes, rows = [], []
    for (net, measure), per_seed in distances.items():
        threshold = CKA_THRESHOLD if measure.startswith("representation") else SETTLE_THRESHOLD
        settle = {s: [settle_epoch([row[layer] for row in d], threshold) for layer in range(len(d[0]))] for s, d in per_seed.items()}
        regimes.append(settle_regime(f"{net}, {measure}", settle, lecture=(net, measure) == LECTURE))
        rows += [{"net": net, "measure": measure, "seed": s, "epoch": t, "layer": layer + 1, "distance": value}
                 for s, d in per_seed.items() for t, row in enumerate(d) for layer, value in enumerate(row)]
    regimes.sort(key=lambda r: not r.lecture)
    verdict = regime_verdict("layers-converge", "Early and late layers converge to their final weights first.", RULE, regimes,
                             figure="layers_converge.png")
    write_table(folder / "layers_converge.csv", rows, ["net", "measure", "seed", "epoch", "layer", "distance"])
    caption = (f"Distance of each layer to its final state per epoch (mean over {len(seeds)} seeds; MNIST-1D, {n_train} "
               f"examples, SGD momentum 0.9, cosine-decaying lr): rows = MLP (5 x 128) and CNN (4 conv blocks), columns = "
               f"weights normalised by total movement, weights relative to the final norm, 1 - linear CKA of the outputs.")
    figures = [(_figure(folder, distances, seeds), caption)]
    tables = [("layers_converge.csv", "Distance to the final state per net, measure, seed, epoch and layer.")]
    return StudyOutput([verdict], figures, tables)


def _figure(folder: Path, distances: dict, seeds: list[int]) -> str:
    figure, axes = new_figure(13, 6.5, len(NETS), len(MEASURES))
    for row, net in enumerate(NETS):
        for col, measure in enumerate(MEASURES):
            ax, per_seed = axes[row][col], distances[(net, measure)]
            layers = len(per_seed[seeds[0]][0])
            for layer in range(layers):
                curve = [statistics.fmean(max(per_seed[s][t][layer], 1e-6) for s in seeds) for t in range(len(per_seed[seeds[0]]))]
                ax.plot(range(len(curve)), curve, color=COLORS[layer % len(COLORS)],
                        label=f"layer {layer + 1}" + (" (head)" if layer == layers - 1 else ""))
            threshold = CKA_THRESHOLD if measure.startswith("representation") else SETTLE_THRESHOLD
            ax.axhline(threshold, color="black", linestyle=":", linewidth=1)
            ax.set(title=f"{net}: {measure}", xlabel="epoch (0 = init)", ylabel="distance to final", yscale="log")
            ax.grid(alpha=0.3)
        axes[row][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    save_figure(figure, folder / "layers_converge.png")
    return "layers_converge.png"
