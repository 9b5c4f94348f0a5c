"""Polynomial double descent: features, min-norm fits, the spike at d+1 = n, the verdict."""

from __future__ import annotations

import numpy as np
import pytest

from deepwell.studies.polynomial import (N_TRAIN, RECOVERY_RATIO, SPIKE_RATIO, degree_sweep, feature_matrix,
                                         min_norm_fit, poly_descent_numbers, poly_descent_verdict)


def test_legendre_features_scaling():
    x = np.linspace(-1, 1, 200_001)
    flat = feature_matrix(x, 8, "legendre-flat")
    # sqrt(2k+1) P_k is orthonormal under x ~ U[-1, 1]: every column has RMS norm 1
    np.testing.assert_allclose(flat.T @ flat / len(x), np.eye(9), atol=1e-4)
    scaled = feature_matrix(x, 8, "legendre")
    np.testing.assert_allclose(np.sqrt((scaled**2).mean(0)), 1 / np.arange(1, 10), rtol=1e-4)  # weight 1/(k+1)
    np.testing.assert_allclose(feature_matrix(x[:5], 3, "monomial"), np.vander(x[:5], 4, increasing=True))
    with pytest.raises(ValueError, match="Known: legendre"):
        feature_matrix(x, 2, "chebyshev")


def test_min_norm_fit_interpolates_at_the_threshold_and_is_min_norm_beyond():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, N_TRAIN), rng.standard_normal(N_TRAIN)
    at = feature_matrix(x, N_TRAIN - 1)
    assert np.mean((at @ min_norm_fit(at, y) - y) ** 2) < 1e-12
    beyond = feature_matrix(x, 60)
    weights = min_norm_fit(beyond, y)
    assert np.mean((beyond @ weights - y) ** 2) < 1e-12
    np.testing.assert_allclose(weights, np.linalg.pinv(beyond) @ y, atol=1e-8)  # the minimum-norm interpolant


def test_sweep_spikes_at_the_threshold():
    rows = degree_sweep((3, 5, N_TRAIN - 1, 1000), draws=2, seed=0, bases=("legendre",))
    numbers = poly_descent_numbers(rows)
    assert numbers["threshold_train_mse"] < 1e-8
    assert numbers["spike_ratio"] > SPIKE_RATIO
    assert numbers["best_low_mse"] < 0.05
    assert numbers["threshold_mse"] > 100 * numbers["high_mse"]   # far beyond n: orders of magnitude below the spike


def _numbers(threshold_mse: float, high_mse: float, threshold_train_mse: float = 0.0) -> dict[str, float]:
    best = 0.014
    return {"best_low_degree": 5.0, "best_low_mse": best, "threshold_degree": 19.0, "threshold_mse": threshold_mse,
            "threshold_train_mse": threshold_train_mse, "high_degree": 1000.0, "high_mse": high_mse,
            "spike_ratio": threshold_mse / best, "recovery_ratio": high_mse / best}


def test_verdict_from_numbers():
    assert poly_descent_verdict(_numbers(1e6, 0.02)).status == "holds"
    assert poly_descent_verdict(_numbers(0.02, 0.033)).status == "does_not_hold"  # no spike
    assert poly_descent_verdict(_numbers(1e6, 0.014 * RECOVERY_RATIO * 1.5)).status == "does_not_hold"  # not back within 2x
    assert poly_descent_verdict(_numbers(2.0, 0.025)).status == "does_not_hold"  # 143x spike, but only 80x above degree 1000
    assert poly_descent_verdict(_numbers(1e6, 0.033, threshold_train_mse=0.1)).status == "inconclusive"  # no interpolation


@pytest.mark.slow
def test_polynomial_study_quick(tmp_path):
    from deepwell.studies.polynomial import run

    output = run(tmp_path, True, 0)
    assert output.verdicts[0].status == "holds"
    assert all((tmp_path / name).is_file() for name, _ in output.figures + output.tables)
