"""Regression runs: R^2 and MAE (against scikit-learn), target standardisation, small-tabular defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.preprocessing import StandardScaler

import deepwell
from deepwell.config import RunSpec, load_spec
from deepwell.presets import apply_data_defaults
from deepwell.data import PREPROCESSORS, build_dataset
from deepwell.training.loop import evaluate


def test_evaluate_r2_and_mae_match_scikit_learn():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 4, generator=generator), torch.randn(300, 2, generator=generator) * 5 + 3
    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        predictions = model(x)
    result = evaluate(model, x, y, "regression")
    assert result["r2"] == pytest.approx(r2_score(y.numpy(), predictions.numpy()), rel=1e-5)
    assert result["mae"] == pytest.approx(mean_absolute_error(y.numpy(), predictions.numpy()), rel=1e-5)
    assert result["loss"] == pytest.approx(torch.nn.functional.mse_loss(predictions, y).item(), rel=1e-5)
    # On standardised targets, target_scale turns the MAE back into the target's units; R^2 does not change.
    scale = y.std(dim=0, unbiased=False)
    standardised = evaluate(model, x, y / scale, "regression", target_scale=scale)
    assert standardised["mae"] != pytest.approx(result["mae"])  # a different model output in these units, of course
    shifted = torch.nn.Linear(4, 2)
    with torch.no_grad():
        shifted.weight.copy_(model.weight / scale[:, None])
        shifted.bias.copy_(model.bias / scale)
    assert evaluate(shifted, x, y / scale, "regression", target_scale=scale)["mae"] == pytest.approx(result["mae"], rel=1e-5)
    assert evaluate(shifted, x, y / scale, "regression", target_scale=scale)["r2"] == pytest.approx(result["r2"], rel=1e-5)


def test_target_scaler_matches_standard_scaler_and_round_trips():
    y = torch.from_numpy(np.random.default_rng(0).normal(1000.0, 250.0, size=(500, 2)).astype(np.float32))
    scaler = PREPROCESSORS.build("standardize").fit(y)
    reference = StandardScaler().fit(y.numpy().astype(np.float64))
    assert np.allclose(scaler.mean.numpy(), reference.mean_, rtol=1e-6)
    assert np.allclose(scaler.scale.numpy(), reference.scale_, rtol=1e-5)
    assert torch.allclose(scaler.inverse(scaler(y)), y, rtol=0, atol=1e-3 * float(y.abs().max()) * 1e-3)
    restored = PREPROCESSORS.build("standardize").load_state_tensors(scaler.state_tensors())
    assert torch.equal(restored.inverse(scaler(y)), scaler.inverse(scaler(y)))  # what a saved run maps back: identical


def shifted_target_npz(path: Path) -> Path:
    """y = 500 + 100 * (x0 + x1 * x2) + noise: far from 0 and wide, as a price or a count is."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = 500 + 100 * (x[:, 0] + x[:, 1] * x[:, 2]) + rng.normal(scale=5.0, size=400)
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.float32))
    return path


QUICK = ["model.hidden=[32,32]", "train.epochs=15", "train.batch_size=32", "output.report=false", "diagnostics.probes=false"]


def test_standardised_target_trains_better_and_predicts_in_target_units(tmp_path):
    source = f"data.source=npz:path={shifted_target_npz(tmp_path / 'shifted.npz')}"
    runs = {flag: deepwell.train(overrides=[source, *QUICK, f"data.standardize_target={flag}", f"output.dir={tmp_path}",
                                            f"output.name=scaled-{flag}"], progress="none") for flag in (True, False)}
    r2 = {flag: run.summary["test"]["test/r2"] for flag, run in runs.items()}
    assert r2[True] > 0.8 and r2[True] > r2[False] + 0.1, r2
    run = deepwell.Run.load(runs[True].path)
    dataset = build_dataset(run.spec.data.source, seed=run.spec.seed)
    predictions = run.predict(dataset.x_test).numpy()
    assert abs(float(predictions.mean()) - 500) < 100  # in the target's units, not standardised ones
    assert r2_score(dataset.y_test.numpy(), predictions) == pytest.approx(r2[True], abs=1e-4)
    assert mean_absolute_error(dataset.y_test.numpy(), predictions) == pytest.approx(run.summary["test"]["test/mae"], rel=1e-4)
    assert run.evaluate()["test/r2"] == pytest.approx(r2[True], abs=1e-6)
    assert {"val/r2", "val/mae", "train/r2_clean", "train/mae_clean"} <= set(run.history[-1])


def test_small_tabular_regression_defaults_leave_other_data_alone():
    default = RunSpec()
    assert apply_data_defaults(default, "classification", (1, 40), 3600, arch_was_auto=True) is default  # MNIST-1D
    assert apply_data_defaults(default, "regression", (1, 40), 3600, arch_was_auto=True) is default  # signals
    assert apply_data_defaults(default, "regression", (10,), 1440, arch_was_auto=False) is default  # an explicit arch
    tabular = apply_data_defaults(default, "regression", (10,), 1440, arch_was_auto=True)
    assert (tabular.model.norm.name, tabular.train.batch_size) == ("none", 32)
    assert tabular.train.epochs == 223  # ceil(10000 steps / ceil(1440 / 32) steps per epoch)
    assert apply_data_defaults(default, "regression", (10,), 10**6, arch_was_auto=True) is default  # big data: as before
    mine = apply_data_defaults(load_spec(None, ["train.epochs=7", "model.norm=layernorm"]), "regression", (10,), 1440, True)
    assert (mine.train.epochs, mine.model.norm.name, mine.train.batch_size) == (7, "layernorm", 32)  # what the user set stays


@pytest.mark.parametrize(("monitor", "mode"), [("val/r2", "max"), ("val/mae", "min"), ("val/acc", "max"), ("val/loss", "min")])
def test_early_stopping_auto_mode_maximises_r2(monitor, mode):
    from deepwell.config import EarlyStoppingSpec
    from deepwell.training.callbacks import EarlyStopping

    assert EarlyStopping(EarlyStoppingSpec(monitor=monitor)).mode == mode
