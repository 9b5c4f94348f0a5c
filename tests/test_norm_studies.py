"""Studies batchnorm, preprocess and depth: their measurements against trusted references, and
verdicts that say does_not_hold when fed numbers contradicting the claim."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deepwell.config import ModelSpec
from deepwell.data import PREPROCESSORS
from deepwell.models import build_model
from deepwell.models.layers import NORMALIZATIONS
from deepwell.studies import batchnorm, depth, preprocess


# --- preprocess -------------------------------------------------------------------------------

def _preprocess_numbers(**changes: float) -> dict[str, float]:
    numbers = {"shared_lr": 0.01, "threshold": 0.015}
    for name, cond_h, cond_c, steps in (("raw", 8000.0, 150.0, math.inf), ("standardised", 15.0, 15.0, 40.0),
                                        ("whitened", 1.0, 1.0, 1.0)):
        numbers |= {f"cond_hessian_{name}": cond_h, f"cond_cov_{name}": cond_c, f"steps_{name}_own": steps,
                    f"steps_{name}_shared": steps}
    return numbers | changes


def test_preprocess_verdict_holds_and_flips_on_contradicting_numbers() -> None:
    assert preprocess.preprocess_verdict(_preprocess_numbers()).status == "holds"
    slower = _preprocess_numbers(steps_raw_own=30.0)  # raw converges faster than standardised
    assert preprocess.preprocess_verdict(slower).status == "does_not_hold"
    worse = _preprocess_numbers(cond_hessian_standardised=9000.0)  # standardising made conditioning worse
    assert preprocess.preprocess_verdict(worse).status == "does_not_hold"
    broken = _preprocess_numbers(steps_whitened_own=math.inf)
    assert preprocess.preprocess_verdict(broken).status == "inconclusive"


def test_condition_number_matches_numpy() -> None:
    matrix = torch.tensor([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 0.01]], dtype=torch.float64)
    assert preprocess.condition_number(matrix) == pytest.approx(np.linalg.cond(matrix.numpy()), rel=1e-9)
    assert preprocess.condition_number(torch.tensor([[1.0, 2.0], [2.0, 4.0]])) > 1e12 or math.isinf(
        preprocess.condition_number(torch.tensor([[1.0, 2.0], [2.0, 4.0]])))


def test_quadratic_hessian_is_twice_the_second_moment_and_matches_autograd() -> None:
    x, y = preprocess.make_inputs(64, seed=0)
    weights = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    augmented = torch.cat([x.double(), torch.ones(64, 1, dtype=torch.float64)], dim=1)
    (gradient,) = torch.autograd.grad(((augmented @ weights - y.double().squeeze(1)) ** 2).mean(), weights, create_graph=True)
    hessian = torch.stack([torch.autograd.grad(gradient[i], weights, retain_graph=True)[0] for i in range(3)])
    torch.testing.assert_close(preprocess.quadratic_hessian(x), hessian)


def test_whitening_makes_the_covariance_identity() -> None:
    x, _ = preprocess.make_inputs(512, seed=1)
    assert preprocess.condition_number(preprocess.input_covariance(x)) > 50  # the raw inputs are ill-conditioned
    white = PREPROCESSORS.build("zca_whiten").fit(x)(x)
    # eps = 1e-5 in 1/sqrt(lambda + eps) leaves lambda/(lambda + eps) ~ 1 - 2e-4 on the smallest direction
    torch.testing.assert_close(preprocess.input_covariance(white), torch.eye(2, dtype=torch.float64), atol=1e-3, rtol=0)
    assert preprocess.condition_number(preprocess.quadratic_hessian(white)) == pytest.approx(1.0, abs=1e-3)


def test_steps_to_threshold() -> None:
    assert preprocess.steps_to_threshold([5.0, 3.0, 1.0, 0.5], 1.0) == 2
    assert math.isinf(preprocess.steps_to_threshold([5.0, 3.0], 1.0))


# --- batchnorm --------------------------------------------------------------------------------

def test_batchnorm_train_and_eval_outputs_match_direct_torch_computation() -> None:
    layer = NORMALIZATIONS.build("batchnorm", num_features=3, dims=0)
    x = torch.randn(32, 3) * torch.tensor([0.5, 2.0, 4.0]) + torch.tensor([-1.0, 0.0, 3.0])
    train_out = layer.train()(x)
    direct = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + layer.eps)
    torch.testing.assert_close(train_out, direct, atol=1e-5, rtol=1e-5)
    # PyTorch momentum convention: running = 0.9 * old + 0.1 * batch (unbiased variance for the running estimate)
    torch.testing.assert_close(layer.running_mean, 0.1 * x.mean(0))
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * x.var(0, unbiased=True))
    eval_out = layer.eval()(x)
    torch.testing.assert_close(eval_out, (x - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps))
    assert (train_out - eval_out).abs().max() > 0.1


def test_batch_statistics_satisfy_the_stated_semantics() -> None:
    measured = batchnorm.batch_statistics(seed=0)
    numbers = measured["numbers"]
    assert batchnorm.bn_statistics_ok(numbers), numbers
    torch.testing.assert_close(measured["running_mean"], torch.tensor(batchnorm.FEATURE_MEANS), atol=0.5, rtol=0.15)


def _bn_numbers(**changes: float) -> dict[str, float]:
    numbers = {"train_mean_max_abs": 1e-7, "train_std_max_dev": 1e-4, "eval_formula_max_err": 1e-7, "train_eval_max_diff": 0.6,
               "running_mean_max_err": 0.05, "running_std_max_rel_err": 0.05, "depth": 12.0}
    losses = {"bn": {0.01: 1.6, 0.1: 1.3, 1.0: 1.4}, "plain": {0.01: 2.2, 0.1: 1.6, 1.0: math.inf}}
    return numbers | batchnorm.bn_training_summary(losses) | changes


def test_batchnorm_verdict_holds_and_flips_on_contradicting_numbers() -> None:
    assert batchnorm.batchnorm_verdict(_bn_numbers()).status == "holds"
    # BN no better and no more tolerant than the plain net
    same = batchnorm.bn_training_summary({"bn": {0.01: 1.6, 0.1: 1.6, 1.0: math.inf}, "plain": {0.01: 1.6, 0.1: 1.5, 1.0: math.inf}})
    assert batchnorm.batchnorm_verdict(_bn_numbers(**same)).status == "does_not_hold"
    # eval mode standardising by the batch (outputs identical in both modes) contradicts "fixed statistics at test"
    assert batchnorm.batchnorm_verdict(_bn_numbers(train_eval_max_diff=0.0)).status == "does_not_hold"
    assert batchnorm.batchnorm_verdict(_bn_numbers(train_std_max_dev=0.3)).status == "does_not_hold"


def test_bn_training_summary_counts_diverged_runs_as_untrained() -> None:
    summary = batchnorm.bn_training_summary({"bn": {0.1: 1.0, 1.0: math.inf}})
    assert summary == {"bn_best_loss": 1.0, "bn_max_trained_lr": 0.1, "bn_trained_count": 1.0}


# --- depth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compositions", [1, 2, 3, 5, 7])
def test_tent_sawtooth_has_two_to_the_k_minus_one_teeth(compositions: int) -> None:
    x = torch.linspace(0, 1, 2 ** (compositions + 4) + 1, dtype=torch.float64)
    values = depth.tent_sawtooth(x, compositions)
    assert depth.count_teeth(values) == 2 ** (compositions - 1)
    assert float(values.min()) >= 0 and float(values.max()) == pytest.approx(1.0)


@pytest.mark.parametrize(("layers", "width", "inputs", "outputs"), [(4, 8, 1, 1), (4, 16, 1, 1), (3, 64, 40, 10)])
def test_shallow_and_deep_parameter_counts_match_the_budget(layers: int, width: int, inputs: int, outputs: int) -> None:
    def count(hidden: list[int]) -> int:
        model = build_model(ModelSpec(arch="mlp", hidden=hidden, norm="none"), (inputs,), outputs)
        return sum(p.numel() for p in model.parameters())

    budget = depth.deep_parameters(layers, width, inputs, outputs)
    assert count([width] * layers) == budget
    shallow = count([depth.shallow_width(budget, inputs, outputs)])
    assert abs(shallow - budget) / budget < 0.03


@pytest.mark.parametrize("k", [1, 3, 8, 10])
def test_tent_network_computes_the_sawtooth_exactly_with_6k_plus_1_parameters(k: int) -> None:
    x = torch.rand(4096, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    net = depth.tent_network(k)
    with torch.no_grad():
        assert float((net(x) - depth.tent_sawtooth(x, k)).abs().max()) < 1e-12
    assert sum(p.numel() for p in net.parameters()) == 6 * k + 1


def test_shallow_fit_is_least_squares_over_the_relu_basis() -> None:
    # the same fit by a direct lstsq over the raw ReLU basis (small, well-conditioned case)
    x = torch.linspace(0, 1, 257, dtype=torch.float64).unsqueeze(1)
    y = depth.tent_sawtooth(x, 4) + 0.01 * torch.sin(37 * x)
    basis = torch.cat([torch.ones_like(x), torch.relu(x - torch.arange(6, dtype=torch.float64) / 6)], dim=1)
    direct = basis @ torch.linalg.lstsq(basis, y).solution
    assert torch.allclose(depth.shallow_fit(x, y, 6), direct, atol=1e-10)
    # 2^k uniform units are exact; the equal-parameter 2k units are no better than ~a constant
    target = depth.tent_sawtooth(x, 5)
    assert float(((depth.shallow_fit(x, target, 32) - target) ** 2).mean()) < 1e-25
    assert float(((depth.shallow_fit(x, target, 10) - target) ** 2).mean()) > 0.05


def test_depth_verdict_regimes_follow_numbers() -> None:
    construction = depth.construction_regime(depth.construction_rows(range(3, 6)))
    assert construction.status == "holds" and construction.numbers["k5/units_needed"] == 32
    clear = {5: {"deep": [1e-6, 2e-6, 3e-6], "shallow": [0.08, 0.081, 0.079]}}
    mnist = {"deep": [0.80, 0.81, 0.79], "shallow": [0.70, 0.71, 0.72]}
    verdict = depth.depth_verdict(construction, clear, mnist)
    assert verdict.status == "holds" and [r.status for r in verdict.regimes] == ["holds"] * 3
    noisy = {"deep": [0.60, 0.80, 0.75], "shallow": [0.70, 0.71, 0.72]}   # within 2 s.e.
    reversed_ = {5: {"deep": clear[5]["shallow"], "shallow": clear[5]["deep"]}}
    statuses = [r.status for r in depth.depth_verdict(construction, reversed_, noisy).regimes]
    assert statuses == ["holds", "does_not_hold", "inconclusive"]


# --- whole studies (quick mode) ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("module", [batchnorm, preprocess, depth])
def test_quick_study_writes_figures_and_a_verdict(module, tmp_path: Path) -> None:
    output = module.run(tmp_path, True, 0)
    assert output.verdicts and all(v.status in ("holds", "does_not_hold", "inconclusive") for v in output.verdicts)
    for name, _ in output.figures + output.tables:
        assert (tmp_path / name).stat().st_size > 0


def test_point_clouds_are_centred_normalised_and_white() -> None:
    x, _ = preprocess.make_inputs(500, 0)
    clouds = preprocess.point_clouds(x)
    for name in ("centred", "normalised", "decorrelated", "whitened"):
        assert abs(clouds[name].mean(0)).max() < 1e-9, name
    assert abs(clouds["normalised"].std(0) - 1).max() < 1e-9
    import numpy as np
    decorrelated = np.cov(clouds["decorrelated"].T, bias=True)
    assert abs(decorrelated[0, 1]) < 1e-9 * abs(decorrelated).max()
    assert np.allclose(np.cov(clouds["whitened"].T, bias=True), np.eye(2), atol=1e-9)
