"""Tests of deepwell.training.penalties: values and gradients against closed forms, and their effect in training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepwell.config import TrainSpec
from deepwell.errors import ConfigError
from deepwell.training.loop import TensorData, fit
from deepwell.training.penalties import PENALTIES


pytestmark = pytest.mark.usefixtures("single_thread")


def model_with_every_kind_of_parameter() -> nn.Module:
    """Conv and dense weights (penalised), their biases and BatchNorm's affine parameters (not, by default)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(12, 4), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        for parameter in model.parameters():  # non-trivial values everywhere (BN starts at 1 and 0)
            parameter.copy_(torch.randn_like(parameter))
    return model


def sign(w: torch.Tensor) -> torch.Tensor:
    return torch.sign(w)


S, R = 0.3, 0.25
# option -> (value as a function of one tensor, its gradient)
CLOSED_FORMS = {
    "l2:0.3": (lambda w: S * w.square().sum(), lambda w: 2 * S * w),
    "ridge:0.3": (lambda w: S * w.square().sum(), lambda w: 2 * S * w),
    "l1:0.3": (lambda w: S * w.abs().sum(), lambda w: S * sign(w)),
    "lasso:0.3": (lambda w: S * w.abs().sum(), lambda w: S * sign(w)),
    "elasticnet:0.3,l1_ratio=0.25": (
        lambda w: S * (R * w.abs().sum() + (1 - R) * w.square().sum()),
        lambda w: S * (R * sign(w) + (1 - R) * 2 * w),
    ),
    "elasticnet:0.3,l1_ratio=1.0": (lambda w: S * w.abs().sum(), lambda w: S * sign(w)),
    "elasticnet:0.3,l1_ratio=0.0": (lambda w: S * w.square().sum(), lambda w: 2 * S * w),
}


def penalised_names(model: nn.Module, include_bias: bool) -> set[str]:
    names = {"0.weight", "4.weight", "5.weight"}
    return names | ({"0.bias", "4.bias"} if include_bias else set())


@pytest.mark.parametrize("include_bias", [False, True])
@pytest.mark.parametrize("option", CLOSED_FORMS)
def test_penalty_value_and_gradient_match_closed_form(option, include_bias) -> None:
    model = model_with_every_kind_of_parameter()
    value_of, gradient_of = CLOSED_FORMS[option]
    penalty = PENALTIES.build(f"{option},include_bias={str(include_bias).lower()}")
    chosen = penalised_names(model, include_bias)

    value = penalty(model)
    value.backward()

    parameters = dict(model.named_parameters())
    expected = sum(value_of(parameters[name].detach()) for name in chosen)
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=0)
    for name, parameter in parameters.items():
        if name in chosen:
            torch.testing.assert_close(parameter.grad, gradient_of(parameter.detach()), rtol=1e-6, atol=1e-7, msg=name)
        else:  # biases (unless asked) and BatchNorm's weight and bias are untouched
            assert parameter.grad is None, name


def test_penalty_on_explicit_parameter_list_equals_default_choice() -> None:
    model = model_with_every_kind_of_parameter()
    penalty = PENALTIES.build("elasticnet:0.1")
    assert [id(p) for p in penalty.parameters(model)] == [id(model[0].weight), id(model[4].weight), id(model[5].weight)]
    torch.testing.assert_close(penalty(model, penalty.parameters(model)), penalty(model), rtol=0, atol=0)


def test_none_is_inactive() -> None:
    assert not PENALTIES.build("none").active
    assert PENALTIES.build("l2:0.1").active and not PENALTIES.build("l2:0").active


@pytest.mark.parametrize("option", ["l2:-1", "l1:abc", "elasticnet:0.1,l1_ratio=1.5", "l3:0.1", "l2:0.1,bias=true"])
def test_bad_penalty_options_raise_config_error(option) -> None:
    with pytest.raises(ConfigError):
        PENALTIES.build(option)


def test_unknown_penalty_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'elasticnet'.*Known: elasticnet, l1, l2, none"):
        PENALTIES.build("elastic_net")


# --- in training ---------------------------------------------------------------------------------

def sparse_regression() -> TensorData:
    """Targets depend on 2 of 20 inputs: most first-layer weights are not needed."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 20, generator=generator)
    return TensorData(x, x[:, :1] - 2 * x[:, 1:2])


def train_with(penalty: str) -> tuple[nn.Module, list[dict[str, float]]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 1))
    # lr * strength = 5e-4: an l1-driven weight oscillates around 0 within that step
    spec = TrainSpec(epochs=40, batch_size=16, optimizer="sgd", lr=0.05, schedule="constant", penalty=penalty, eval_every=40)
    result = fit(model, sparse_regression(), spec, task="regression")
    return model, result.history


def weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for name, p in model.named_parameters() if name.endswith("weight")])


def test_l1_makes_weights_sparse_and_l2_shrinks_them() -> None:
    plain, plain_history = train_with("none")
    lasso, lasso_history = train_with("l1:0.01")
    ridge, ridge_history = train_with("l2:0.01")

    near_zero = {name: int((weights(m).abs() < 1e-3).sum()) for name, m in [("none", plain), ("l1", lasso), ("l2", ridge)]}
    assert near_zero["l1"] > weights(lasso).numel() / 5, near_zero  # measured: 93 of 336
    assert near_zero["l1"] > 10 * max(near_zero["l2"], near_zero["none"], 1), near_zero  # measured: 2 and 3
    # l2 shrinks, most visibly the weights of the 18 inputs the targets do not depend on (measured: 0.87x)
    assert weights(ridge).norm() < weights(plain).norm()
    assert lasso[0].weight[:, 2:].norm() < 0.7 * plain[0].weight[:, 2:].norm()
    assert ridge[0].weight[:, 2:].norm() < 0.95 * plain[0].weight[:, 2:].norm()

    assert "train/penalty" not in plain_history[0]
    for history in (lasso_history, ridge_history):
        assert all(row["train/penalty"] > 0 for row in history)


def test_logged_penalty_is_the_penalty_of_the_weights_it_was_added_to() -> None:
    """With one full batch per epoch, epoch 1's penalty is the penalty of the initial weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 1))
    initial = PENALTIES.build("l2:0.01")(model).item()
    spec = TrainSpec(epochs=2, batch_size=64, optimizer="sgd", lr=0.01, schedule="constant", penalty="l2:0.01")
    result = fit(model, sparse_regression(), spec, task="regression")
    assert result.history[0]["train/penalty"] == pytest.approx(initial, rel=1e-6)
    assert result.history[1]["train/penalty"] != result.history[0]["train/penalty"]  # the weights moved
