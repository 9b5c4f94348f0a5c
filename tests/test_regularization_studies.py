"""Studies regularization, dropout, early-stopping and layers-converge: verdicts from fake numbers,
measurement helpers against direct computations, tiny end-to-end measurements; whole quick studies are slow."""

from __future__ import annotations

import math

import pytest
import torch

from deepwell.config import DataSpec, EarlyStoppingSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.models import build_model
from deepwell.studies import dropout, early_stopping, layers_converge, regularization
from deepwell.training.loop import TensorData, fit


@pytest.fixture(scope="module")
def moons():
    return prepare_data(DataSpec(source="moons:n=200", val_fraction=0.2), seed=0)


# --- verdicts: contradicting numbers give does_not_hold, supporting ones holds -----------------------------

def _reduction(without: list[float], with_: list[float]) -> dict[str, float]:
    return dropout.gap_reduction(without, with_) | {"seeds": len(without), "test_acc_without": 0.3, "test_acc_with": 0.3}


EQUIVALENT = {"max_abs_diff_test": 1e-6, "max_abs_diff_train": 1e-6, "same_prediction": 1.0, "logit_scale": 5.0,
              "mode_acc_diff": 0.0, "mode_acc_diff_se": 0.005}


def test_dropout_verdicts_follow_the_numbers():
    assert dropout.dropout_verdict(_reduction([0.7, 0.72, 0.71], [0.6, 0.62, 0.61]) | EQUIVALENT).status == "holds"
    # dropout widens the gap
    assert dropout.dropout_verdict(_reduction([0.6, 0.62, 0.61], [0.7, 0.72, 0.71]) | EQUIVALENT).status == "does_not_hold"
    # a reduction inside the seed noise
    assert dropout.dropout_verdict(_reduction([0.5, 0.8, 0.65], [0.45, 0.75, 0.6]) | EQUIVALENT).status == "does_not_hold"
    # modes not identical
    different = EQUIVALENT | {"max_abs_diff_test": 0.3}
    assert dropout.dropout_verdict(_reduction([0.7, 0.72, 0.71], [0.6, 0.62, 0.61]) | different).status == "does_not_hold"
    assert dropout.dropconnect_verdict(_reduction([0.6, 0.62, 0.61], [0.7, 0.72, 0.71])).status == "does_not_hold"
    assert dropout.dropconnect_verdict(_reduction([0.7, 0.72, 0.71], [0.6, 0.62, 0.61])).status == "holds"


def test_dropout_gap_ordering_and_verdict():
    history = [{"train/loss": 1.0, "train/loss_clean": 0.5, "val/loss": 0.8},   # clean < val < as trained
               {"train/loss": 0.7, "train/loss_clean": 0.5, "val/loss": 0.8}]   # val above as trained
    ordering = dropout.gap_ordering(history)
    assert ordering["order_share"] == 0.5 and ordering["last_val"] == 0.8
    low = {"order_share": 0.1, "last_train_as_trained": 0.7, "last_train_clean": 0.5, "last_val": 0.8, "seeds": 2}
    assert dropout.dropout_gap_verdict(low).status == "does_not_hold"
    assert dropout.dropout_gap_verdict(low | {"order_share": 0.9}).status == "holds"


def _early(**changes) -> dict[str, float]:
    numbers = {"seeds": 3, "restore_gain": 0.5, "restore_gain_se": 0.05, "small_patience_loss": 0.2,
               "small_patience_loss_se": 0.02, "replay_error": 0.0}
    for setup in ("overfit", "plateau"):
        numbers |= {f"{setup}_{key}": value for key, value in {
            "restore_gain": 0.5, "restore_gain_se": 0.05, "small_patience_loss": 0.2, "small_patience_loss_se": 0.02,
            "small_patience_acc": -0.05, "reference_stop_epoch": 20, "reference_best_epoch": 10, "small_stop_epoch": 4}.items()}
    return numbers | changes


def test_early_stopping_verdict_follows_the_numbers():
    assert early_stopping.early_stopping_verdict(_early()).status == "holds"
    assert early_stopping.early_stopping_verdict(_early(restore_gain=-0.1)).status == "does_not_hold"
    assert early_stopping.early_stopping_verdict(_early(small_patience_loss=0.0)).status == "does_not_hold"
    noisy = _early(small_patience_loss=0.05, small_patience_loss_se=0.04)
    assert early_stopping.early_stopping_verdict(noisy).status == "does_not_hold"
    assert early_stopping.early_stopping_verdict(_early(replay_error=math.inf)).status == "inconclusive"


def test_layers_converge_regime_follows_the_numbers():
    ends_first = {0: [3, 9, 10, 9, 2], 1: [4, 10, 11, 10, 3], 2: [3, 11, 9, 10, 2]}
    assert layers_converge.settle_regime("r", ends_first).status == "holds"
    bottom_up = {s: [1, 3, 5, 7, 9 + s] for s in range(3)}   # the last layer settles last
    assert layers_converge.settle_regime("r", bottom_up).status == "does_not_hold"
    noisy = {0: [3, 9, 10, 9, 2], 1: [12, 10, 11, 10, 3], 2: [1, 11, 9, 10, 14]}
    assert layers_converge.settle_regime("r", noisy).status == "inconclusive"


def test_linear_cka_against_a_direct_hsic_computation():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 7, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(7, 7, generator=generator, dtype=torch.float64))
    assert layers_converge.linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0, abs=1e-12)   # rotation and scale
    y = torch.randn(60, 4, generator=generator, dtype=torch.float64)
    h = torch.eye(60, dtype=torch.float64) - 1.0 / 60   # centring matrix; HSIC(K, L) ~ tr(K H L H)

    def hsic(a, b):
        return torch.trace(a @ a.T @ h @ b @ b.T @ h)
    direct = hsic(x, y) / torch.sqrt(hsic(x, x) * hsic(y, y))
    assert layers_converge.linear_cka(x, y) == pytest.approx(float(direct), rel=1e-10)
    assert 0.0 < layers_converge.linear_cka(x, y) < 0.5


def test_movement_distances_divide_by_the_total_movement():
    snapshots = [[torch.tensor([0.0, 0.0])], [torch.tensor([3.0, 0.0])], [torch.tensor([4.0, 0.0])]]
    assert [row[0] for row in layers_converge.movement_distances(snapshots)] == pytest.approx([1.0, 0.25, 0.0])


def test_penalties_verdict_follows_the_numbers():
    def stats(near_zero: float, norm: float) -> dict[str, float]:
        return {"near_zero": near_zero, "exact_zero": 0.0, "l2_norm": norm, "l1_norm": 1.0}
    good = {"none": stats(0.005, 30), "l1": stats(0.5, 20), "l2": stats(0.006, 20), "elasticnet": stats(0.3, 20)}
    assert regularization.penalties_verdict([good, good]).status == "holds"
    not_sparse = good | {"l1": stats(0.01, 20)}
    assert regularization.penalties_verdict([good, not_sparse]).status == "does_not_hold"   # fails in one seed
    l2_sparse = good | {"l2": stats(0.4, 20)}
    assert regularization.penalties_verdict([l2_sparse]).status == "does_not_hold"
    l2_no_shrink = good | {"l2": stats(0.006, 29)}
    assert regularization.penalties_verdict([l2_no_shrink]).status == "does_not_hold"


# --- measurement helpers vs direct computations -----------------------------------------------------------

def test_weight_statistics_match_direct_computation():
    w = torch.tensor([0.0, 5e-4, -5e-4, 2e-3, -1.0, 3.0, 0.0, 1e-3])
    stats = regularization.weight_statistics(w)
    assert stats["near_zero"] == pytest.approx(4 / 8)       # 0, 5e-4, -5e-4, 0 (1e-3 is not < 1e-3)
    assert stats["exact_zero"] == pytest.approx(2 / 8)
    assert stats["l2_norm"] == pytest.approx(math.sqrt(sum(v * v for v in w.tolist())), rel=1e-6)
    assert stats["l1_norm"] == pytest.approx(sum(abs(v) for v in w.tolist()), rel=1e-6)


def test_relative_distances_and_settle_epoch():
    final = [torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0]])]
    snapshots = [[torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0]])], [torch.tensor([[3.0, 3.0]]), torch.tensor([[1.0]])], final]
    distances = layers_converge.relative_distances(snapshots)
    assert distances[0] == pytest.approx([1.0, 1.0])
    assert distances[1] == pytest.approx([1 / 5, 0.0])
    assert distances[2] == pytest.approx([0.0, 0.0])
    assert layers_converge.settle_epoch([1.0, 0.05, 0.2, 0.05, 0.0], threshold=0.1) == 3  # dips early but comes back up
    assert layers_converge.settle_epoch([0.05, 0.01, 0.0], threshold=0.1) == 0
    assert layers_converge.settle_epoch([1.0, 1.0, 0.0], threshold=0.1) == 2


@pytest.mark.parametrize("values, patience, stop, best, stopped", [
    ([3, 2, 1, 1.5, 1.6, 1.7], 2, 4, 2, True),      # stop at the 2nd miss
    ([3, 2, 1, 1.5, 1.6, 1.7], 1, 3, 2, True),
    ([3, 2, 1, 1.5, 1.6, 1.7], 0, 3, 2, True),      # patience 0 behaves like 1 (Keras)
    ([3, 2, 1, 1.5, 1.6, 1.7], 5, 5, 2, False),     # never ran out: last epoch trained
    ([3, 2, 1, 0.5], 1, 3, 3, False),
])
def test_replay_early_stopping_table(values, patience, stop, best, stopped):
    replay = early_stopping.replay_early_stopping(values, EarlyStoppingSpec(monitor="val/loss", patience=patience))
    assert (replay["stop_epoch"], replay["best_epoch"], replay["stopped"]) == (stop, best, stopped)


def test_classic_dropout_equals_scaled_inverted_copy():
    spec = ModelSpec(arch="mlp", depth=2, width=16, norm="none", dropout="dropout:0.3,mode=classic")
    model = build_model(spec, (5,), 3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
    numbers = dropout.mode_equivalence(model, x)
    assert numbers["max_abs_diff_test"] < 1e-6 and numbers["max_abs_diff_train"] < 1e-6
    assert numbers["same_prediction"] == 1.0
    # without the weight scaling the two modes differ: the check can fail
    unscaled = dropout.to_inverted(model)
    unscaled.load_state_dict(model.state_dict())
    model.eval(), unscaled.eval()
    assert (model(x) - unscaled(x)).abs().max() > 1e-2


# --- tiny end-to-end measurements (< 3 s each) -------------------------------------------------------------

def test_dropout_variant_trains_and_reports_gap(moons):
    _, history, test = dropout.train_variant(moons, "dropout:0.5", width=16, epochs=3, seed=0)
    assert len(history) == 3 and 0.0 <= test["acc"] <= 1.0
    assert 0.0 <= dropout.gap_ordering(history)["order_share"] <= 1.0


def test_penalty_run_measures_sparsity(moons):
    weights, test = regularization._train(moons, "l1:1e-2", seed=0, epochs=3)
    stats = regularization.weight_statistics(weights)
    assert 0.0 <= stats["near_zero"] <= 1.0 and stats["l2_norm"] > 0 and "acc" in test


def test_early_stopping_replay_matches_a_real_early_stopped_fit(moons):
    full = early_stopping._train(moons, seed=0, epochs=6)
    outcome = early_stopping.patience_outcomes([h["val/loss"] for h in full["history"]], full["test"], patiences=(1,))[1]
    real = early_stopping._train(moons, seed=0, epochs=6, early=EarlyStoppingSpec(monitor="val/loss", patience=1))
    assert real["epochs_run"] == outcome["stop_epoch"]
    assert real["final_test"]["loss"] == pytest.approx(outcome["test_loss_best"], abs=1e-6)


def test_weight_recorder_snapshots_every_epoch(moons):
    model = build_model(ModelSpec(arch="mlp", depth=3, width=8, norm="none"), moons.input_shape, moons.output_size)
    recorder = layers_converge.WeightRecorder(moons.x_train[:16])
    fit(model, TensorData(moons.x_train, moons.y_train), TrainSpec(epochs=3, batch_size=32, schedule="constant"),
        callbacks=[recorder])
    assert len(recorder.snapshots) == 4 and len(recorder.names) == 4   # init + 3 epochs; 3 hidden + head
    with torch.no_grad():
        assert torch.allclose(recorder.outputs[-1][-1], model.eval()(moons.x_train[:16]))   # the head's output: the logits
    assert [tuple(h.shape) for h in recorder.outputs[0]] == [(16, 8)] * 3 + [(16, moons.output_size)]
    assert torch.equal(recorder.snapshots[-1][-1], model.head.weight.detach())
    assert layers_converge.relative_distances(recorder.snapshots)[-1] == [0.0] * 4


# --- whole quick studies ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("module", [regularization, dropout, early_stopping, layers_converge])
def test_quick_study_runs(module, tmp_path):
    output = module.run(tmp_path, True, 0)
    assert output.verdicts and all(v.status in ("holds", "does_not_hold", "inconclusive") for v in output.verdicts)
    for name, _ in output.figures + output.tables:
        assert (tmp_path / name).stat().st_size > 0
