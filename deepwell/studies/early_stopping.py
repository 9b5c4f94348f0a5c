"""Study ``early-stopping``: stop when the validation loss stops improving; the risk of stopping too
early (lecture: Early stopping).

Two runs, each trained for a fixed number of epochs with the test loss and accuracy recorded after
every epoch (2 x 256 MLP, no normalisation):

- ``overfit``: 300 MNIST-1D training examples, SGD with momentum; the validation loss reaches its
  minimum within a few epochs and then climbs while the net memorises.
- ``plateau``: 200 three-arm spiral examples with 20% label noise, Adam; the validation loss sits on
  a noisy plateau near ln 3 for many epochs before the net finds the spirals (and later fits noise).

Because early stopping only truncates a run (same seed, same batches), the run that patience P
would have produced is a prefix of the full one: the patience sweep replays deepwell's own
``EarlyStopping`` callback over the recorded validation losses (Keras semantics: stop at the P-th
epoch without improvement) and reads the test metrics at the stop epoch ("last epoch", no restore)
and at the best epoch ("restored best"). One patience is also trained for real with
``TrainSpec.early_stopping`` to check that the replay is exact (otherwise: inconclusive).

"Restored best beats the last epoch" is measured on ``overfit``; "too small a patience is worse"
on ``plateau`` (on ``overfit`` a smooth early minimum makes patience 1 harmless; both numbers are
reported).

Verdict: early-stopping (restored best beats the last epoch; a too-small patience is measurably worse).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepwell.config import DataSpec, EarlyStoppingSpec, ModelSpec, TrainSpec
from deepwell.data import Splits, prepare_data
from deepwell.models import build_model
from deepwell.runtime import resolve_device
from deepwell.studies.base import StudyOutput, Verdict, status_from, write_table
from deepwell.studies.dropout import overfit_data
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.callbacks import Callback, EarlyStopping, FitState
from deepwell.training.loop import TensorData, evaluate, fit

__all__ = ["replay_early_stopping", "patience_outcomes", "early_stopping_verdict", "run"]

PATIENCES = (0, 1, 2, 3, 5, 10, 15, 20)
SMALL_PATIENCE = 1         # "too small"
REFERENCE_PATIENCE = 20    # "reasonable"
MIN_LOSS_GAIN = 0.01       # differences in test loss (nats) must exceed this ...
NOISE_FACTOR = 2.0         # ... and 2 standard errors of the paired per-seed differences
REPLAY_TOL = 1e-5          # replay vs a real early-stopped fit: same stop epoch, test loss within this


def replay_early_stopping(values: list[float], spec: EarlyStoppingSpec) -> dict[str, int | None]:
    """Feed recorded monitor values through deepwell's ``EarlyStopping``; 0-based stop and best epochs.

    ``stop_epoch`` is the last epoch trained (the final one when patience never ran out)."""
    callback = EarlyStopping(spec.model_copy(update={"restore_best": False}))
    state = FitState(nn.Identity(), None, len(values), 1, [spec.monitor])  # type: ignore[arg-type]
    for epoch, value in enumerate(values):
        state.epoch, state.metrics = epoch, {spec.monitor: value}
        callback.on_epoch_end(state)
        if state.stop_reason is not None:
            break
    return {"stop_epoch": state.epoch, "best_epoch": callback.best_epoch, "stopped": state.stop_reason is not None}


def patience_outcomes(val_loss: list[float], test: list[dict[str, float]], patiences=PATIENCES) -> dict[int, dict[str, float]]:
    """Per patience: stop and best epochs (1-based) and the test loss/accuracy at each."""
    outcomes = {}
    for patience in patiences:
        replay = replay_early_stopping(val_loss, EarlyStoppingSpec(monitor="val/loss", patience=patience))
        stop, best = replay["stop_epoch"], replay["best_epoch"]
        outcomes[patience] = {"stop_epoch": stop + 1, "best_epoch": best + 1, "stopped": float(replay["stopped"]),
                              "val_loss_last": val_loss[stop], "val_loss_best": val_loss[best],
                              "test_loss_last": test[stop]["loss"], "test_loss_best": test[best]["loss"],
                              "test_acc_last": test[stop]["acc"], "test_acc_best": test[best]["acc"]}
    return outcomes


def _paired(differences: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(differences)
    return mean, (statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else 0.0)


def early_stopping_verdict(numbers: dict[str, float]) -> Verdict:
    """early-stopping: restored best beats the last epoch; a too-small patience is measurably worse."""
    restore_gain, small_loss = numbers["restore_gain"], numbers["small_patience_loss"]
    restore_ok = restore_gain >= MIN_LOSS_GAIN and restore_gain > NOISE_FACTOR * numbers["restore_gain_se"]
    small_ok = small_loss >= MIN_LOSS_GAIN and small_loss > NOISE_FACTOR * numbers["small_patience_loss_se"]
    n = numbers
    evidence = (f"Overfitting run: patience {REFERENCE_PATIENCE} stops at epoch {n['overfit_reference_stop_epoch']:.1f} (best "
                f"{n['overfit_reference_best_epoch']:.1f}; seed means); the restored best has a test loss {restore_gain:.3f} ± "
                f"{n['restore_gain_se']:.3f} (s.e.) lower than the stop epoch. Plateau run: patience {SMALL_PATIENCE} stops "
                f"at epoch {n['plateau_small_stop_epoch']:.1f} (patience {REFERENCE_PATIENCE}: "
                f"{n['plateau_reference_stop_epoch']:.1f}) with a "
                f"restored test loss {small_loss:+.3f} ± {n['small_patience_loss_se']:.3f} and test accuracy "
                f"{n['plateau_small_patience_acc']:+.3f} vs patience {REFERENCE_PATIENCE}; on the overfitting run patience "
                f"{SMALL_PATIENCE} costs {n['overfit_small_patience_loss']:+.3f} test loss. Both effects need >= "
                f"{MIN_LOSS_GAIN} and "
                f"> {NOISE_FACTOR:g} s.e. ({n['seeds']:.0f} seeds). Replay vs a real early-stopped fit: test-loss difference "
                f"{n['replay_error']:.1e}.")
    return Verdict("early-stopping", "Stopping when validation loss stops improving (restoring the best weights) beats the "
                   "last epoch; too small a patience stops too early.",
                   status_from(restore_ok and small_ok, usable=numbers["replay_error"] <= REPLAY_TOL), evidence, numbers)


class _TestRecorder(Callback):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.rows = x, y, []

    def on_epoch_end(self, state: FitState) -> None:
        self.rows.append(evaluate(state.model, self.x, self.y, "classification"))


SETUPS = {  # name: (optimizer, lr, quick epochs, full epochs)
    "overfit": ("sgd:momentum=0.9", 0.01, 35, 100),
    "plateau": ("adam", 0.01, 120, 200),
}


def setup_data(name: str, seed: int, device: torch.device) -> Splits:
    """The data of setup ``name`` (see the module docstring), on ``device``."""
    if name == "overfit":
        return overfit_data(300, seed, device)
    splits = prepare_data(DataSpec(source="spirals:n=600", n_train=200, val_fraction=0.25, label_noise=0.2,
                                   preprocess="standardize"), seed=seed)
    for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        setattr(splits, key, getattr(splits, key).to(device))
    return splits


def _train(splits: Splits, seed: int, epochs: int, early: EarlyStoppingSpec | None = None,
           setup: str = "overfit") -> dict[str, Any]:
    optimizer, lr = SETUPS[setup][:2]
    model = build_model(ModelSpec(arch="mlp", depth=2, width=256, norm="none"), splits.input_shape, splits.output_size,
                        generator=torch.Generator().manual_seed(seed)).to(splits.x_train.device)
    recorder = _TestRecorder(splits.x_test, splits.y_test)
    spec = TrainSpec(epochs=epochs, batch_size=16, optimizer=optimizer, lr=lr, schedule="constant", early_stopping=early)
    result = fit(model, TensorData(splits.x_train, splits.y_train, splits.x_val, splits.y_val), spec, seed=seed,
                 callbacks=[recorder])
    return {"history": result.history, "test": recorder.rows, "epochs_run": result.epochs_run,
            "final_test": evaluate(model, splits.x_test, splits.y_test, "classification")}


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    seeds = [seed + i for i in range(3 if quick else 5)]
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    outcomes: dict[str, dict[int, dict[int, dict[str, float]]]] = {}
    for setup, (_, _, quick_epochs, full_epochs) in SETUPS.items():
        splits = setup_data(setup, seed, device)
        epochs = quick_epochs if quick else full_epochs
        runs[setup] = {s: _train(splits, s, epochs, setup=setup) for s in seeds}
        outcomes[setup] = {s: patience_outcomes([h["val/loss"] for h in r["history"]], r["test"]) for s, r in runs[setup].items()}
        if setup == "overfit":
            check = _train(splits, seed, epochs, EarlyStoppingSpec(monitor="val/loss", patience=REFERENCE_PATIENCE), setup=setup)
            expected = outcomes[setup][seed][REFERENCE_PATIENCE]
            replay_error = (abs(check["final_test"]["loss"] - expected["test_loss_best"])
                            + (0.0 if check["epochs_run"] == expected["stop_epoch"] else math.inf))

    ref, small = REFERENCE_PATIENCE, SMALL_PATIENCE
    numbers: dict[str, float] = {"seeds": len(seeds), "replay_error": replay_error}
    for setup, per in outcomes.items():
        gain, gain_se = _paired([per[s][ref]["test_loss_last"] - per[s][ref]["test_loss_best"] for s in seeds])
        worse, worse_se = _paired([per[s][small]["test_loss_best"] - per[s][ref]["test_loss_best"] for s in seeds])
        numbers |= {f"{setup}_restore_gain": gain, f"{setup}_restore_gain_se": gain_se,
                    f"{setup}_small_patience_loss": worse, f"{setup}_small_patience_loss_se": worse_se,
                    f"{setup}_small_patience_acc": statistics.fmean(per[s][small]["test_acc_best"] - per[s][ref]["test_acc_best"]
                                                                    for s in seeds),
                    f"{setup}_reference_stop_epoch": statistics.fmean(per[s][ref]["stop_epoch"] for s in seeds),
                    f"{setup}_reference_best_epoch": statistics.fmean(per[s][ref]["best_epoch"] for s in seeds),
                    f"{setup}_small_stop_epoch": statistics.fmean(per[s][small]["stop_epoch"] for s in seeds)}
    numbers |= {"restore_gain": numbers["overfit_restore_gain"], "restore_gain_se": numbers["overfit_restore_gain_se"],
                "small_patience_loss": numbers["plateau_small_patience_loss"],
                "small_patience_loss_se": numbers["plateau_small_patience_loss_se"]}
    figures = [(_curve_figure(folder, runs, outcomes, seed), f"Seed {seed}: validation (solid) and test (dashed) loss per "
                "epoch; for each patience, where early stopping stops (x) and the best epoch it restores (o). Left: overfitting "
                "run (300 MNIST-1D examples); right: plateau run (200 spiral examples, 20% label noise)."),
               (_sweep_figure(folder, outcomes, seeds), f"Test loss vs patience at the stop epoch and at the restored best "
                f"epoch, mean ± std over {len(seeds)} seeds, per setup.")]
    tables = [(_table(folder, runs, outcomes),
               "Per setup and seed: losses per epoch; per patience: stop/best epochs and test metrics.")]
    return StudyOutput([early_stopping_verdict(numbers)], figures, tables)


def _table(folder: Path, runs: dict, outcomes: dict) -> str:
    rows = [{"setup": setup, "kind": "epoch", "seed": s, "epoch": h["epoch"], "quantity": key, "value": h[key]}
            for setup, per in runs.items() for s, record in per.items() for h in record["history"]
            for key in ("train/loss", "val/loss", "val/acc")]
    rows += [{"setup": setup, "kind": "epoch", "seed": s, "epoch": epoch + 1, "quantity": f"test/{key}", "value": value}
             for setup, per in runs.items() for s, record in per.items() for epoch, test in enumerate(record["test"])
             for key, value in test.items()]
    rows += [{"setup": setup, "kind": "patience", "seed": s, "patience": p, "quantity": key, "value": value}
             for setup, per in outcomes.items() for s, by_patience in per.items() for p, outcome in by_patience.items()
             for key, value in outcome.items()]
    write_table(folder / "early_stopping.csv", rows, ["setup", "kind", "seed", "patience", "epoch", "quantity", "value"])
    return "early_stopping.csv"


def _curve_figure(folder: Path, runs: dict, outcomes: dict, seed: int) -> str:
    figure, axes = new_figure(13, 4.8, 1, len(runs))
    for ax, setup in zip(axes[0], runs):
        record, outcome = runs[setup][seed], outcomes[setup][seed]
        epochs = [h["epoch"] for h in record["history"]]
        val = [h["val/loss"] for h in record["history"]]
        ax.plot(epochs, val, color="black", label="validation loss")
        ax.plot(epochs, [t["loss"] for t in record["test"]], color="gray", linestyle="--", label="test loss")
        for index, (patience, o) in enumerate(outcome.items()):
            color = COLORS[index % len(COLORS)]
            ax.scatter([o["stop_epoch"]], [val[int(o["stop_epoch"]) - 1]], marker="x", s=60, color=color, zorder=3,
                       label=f"patience {patience}: stop {o['stop_epoch']:.0f}, best {o['best_epoch']:.0f}")
            ax.scatter([o["best_epoch"]], [val[int(o["best_epoch"]) - 1]], marker="o", s=40, facecolors="none",
                       edgecolors=color, zorder=3)
        ax.set(title=f"{setup} run", xlabel="epoch", ylabel="cross-entropy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    save_figure(figure, folder / "early_stopping_curve.png")
    return "early_stopping_curve.png"


def _sweep_figure(folder: Path, outcomes: dict, seeds: list[int]) -> str:
    figure, axes = new_figure(11, 4.2, 1, len(outcomes))
    for ax, (setup, per) in zip(axes[0], outcomes.items()):
        for suffix, name, color in (("last", "stop epoch (no restore)", COLORS[1]), ("best", "restored best", COLORS[0])):
            values = [[per[s][p][f"test_loss_{suffix}"] for s in seeds] for p in PATIENCES]
            means = [statistics.fmean(v) for v in values]
            stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            ax.errorbar(PATIENCES, means, yerr=stds, marker="o", capsize=3, color=color, label=name)
        ax.set(xlabel="patience (epochs)", ylabel="test loss", title=f"{setup} run: test loss vs patience")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(figure, folder / "early_stopping_patience.png")
    return "early_stopping_patience.png"
