"""The registry contract, run over every entry of every registry, and option-string parsing."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from deepwell.config import registry
from deepwell.errors import ConfigError
from deepwell.models.init import Initializer
from deepwell.models.layers import DropSpec
from deepwell.registry import Option

KINDS = ["activation", "initializer", "normalization", "dropout", "optimizer", "schedule", "penalty", "dataset", "preprocessing"]


def _entries(*kinds: str) -> list[Any]:
    params = []
    for kind in kinds:
        try:
            reg = registry(kind)
        except ImportError:  # an optional part of the package is missing: nothing to test there
            continue
        params += [pytest.param(kind, name, id=f"{kind}-{name}") for name in reg.names()]
    return params


def _required(kind: str, name: str) -> list[str]:
    signature = registry(kind)._entry(name).signature
    return [p.name for p in signature.parameters.values() if p.default is p.empty]


def _parameters(kind: str, name: str) -> list[str]:
    return list(registry(kind)._entry(name).signature.parameters)


# Values for parameters that have no default (file sources need a path).
REQUIRED_VALUES = {"path": "data/table.csv"}


def _minimal(kind: str, name: str) -> str:
    required = _required(kind, name)
    return name if not required else f"{name}:" + ",".join(f"{key}={REQUIRED_VALUES[key]}" for key in required)


# --- the contract ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), _entries(*KINDS))
def test_every_entry_parses_and_round_trips(kind: str, name: str) -> None:
    reg = registry(kind)
    option = reg.parse(_minimal(kind, name))
    assert isinstance(option, Option)
    assert (option.kind, option.name) == (kind, name)
    assert reg.parse(str(option)) == option
    assert str(reg.parse(str(option))) == str(option)
    if _required(kind, name):
        with pytest.raises(ConfigError, match=rf"needs parameter '{_required(kind, name)[0]}'"):
            reg.parse(name)
    else:
        assert str(option) == name  # nothing but defaults: the bare name is canonical


@pytest.mark.parametrize(("kind", "name"), _entries(*KINDS))
def test_every_entry_rejects_unknown_parameter(kind: str, name: str) -> None:
    with pytest.raises(ConfigError, match=r"Unknown parameter 'bogus'") as info:
        registry(kind).parse(f"{_minimal(kind, name)}{',' if _required(kind, name) else ':'}bogus=1")
    assert "Known:" in str(info.value)
    for parameter in _parameters(kind, name):
        assert parameter in str(info.value)


@pytest.mark.parametrize(("kind", "name"), _entries(*KINDS))
def test_every_entry_rejects_too_many_positionals(kind: str, name: str) -> None:
    count = len(_parameters(kind, name))
    text = f"{name}:" + ",".join(["1"] * (count + 1))
    with pytest.raises(ConfigError, match=rf"takes at most {count} parameter"):
        registry(kind).parse(text)


@pytest.mark.parametrize(("kind", "name"), _entries("activation"))
def test_activation_contract(kind: str, name: str) -> None:
    module = registry(kind).build(name)
    assert isinstance(module, nn.Module)
    x = torch.randn(4, 6, requires_grad=True)
    y = module(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    for parameter in module.parameters():
        assert torch.isfinite(parameter.grad).all()


@pytest.mark.parametrize(("kind", "name"), _entries("normalization"))
@pytest.mark.parametrize("shape", [(8, 6), (8, 6, 5), (8, 6, 3, 3)], ids=["dense", "conv1d", "conv2d"])
def test_normalization_contract(kind: str, name: str, shape: tuple[int, ...]) -> None:
    module = registry(kind).build(name, num_features=shape[1], dims=len(shape) - 2)
    if name == "none":
        assert module is None
        return
    x = (3 + 2 * torch.randn(shape)).requires_grad_()
    y = module.train()(x)
    assert y.shape == x.shape
    y.pow(3).sum().backward()  # not sum(): its gradient through a normalisation is exactly 0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for parameter in module.parameters():
        assert torch.isfinite(parameter.grad).all()


@pytest.mark.parametrize(("kind", "name"), _entries("dropout"))
def test_dropout_contract(kind: str, name: str) -> None:
    spec = registry(kind).build(name)
    assert isinstance(spec, DropSpec)
    linear = spec.linear(6, 3)
    dropout = spec.dropout_module() or nn.Identity()
    x = torch.randn(4, 6, requires_grad=True)
    for training in (True, False):
        y = dropout.train(training)(linear.train(training)(x))
        assert y.shape == (4, 3)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(linear.weight.grad).all()


@pytest.mark.parametrize(("kind", "name"), _entries("initializer"))
def test_initializer_contract(kind: str, name: str) -> None:
    initializer = registry(kind).build(name)
    assert isinstance(initializer, Initializer)
    weight = nn.Linear(32, 64).weight.detach().clone()  # (64, 32)
    before = weight.clone()
    initializer(weight, math.sqrt(2.0))
    assert weight.shape == (64, 32) and torch.isfinite(weight).all()
    assert torch.equal(weight, before) == (name == "torch_default")
    if not initializer.needs_fans:  # usable for biases too
        bias = torch.full((64,), 7.0)
        initializer(bias, 1.0)
        assert torch.isfinite(bias).all()
        assert torch.equal(bias, torch.full((64,), 7.0)) == (name == "torch_default")


@pytest.mark.parametrize(("kind", "name"), _entries("optimizer"))
def test_optimizer_contract(kind: str, name: str) -> None:
    weight = nn.Parameter(torch.ones(3))
    optimizer = registry(kind).build(name, params=[weight], lr=0.1)
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert optimizer.param_groups[0]["lr"] == 0.1
    weight.square().sum().backward()
    optimizer.step()
    assert torch.isfinite(weight).all() and (weight.detach() < 1).all()  # a step downhill


@pytest.mark.parametrize(("kind", "name"), _entries("schedule"))
def test_schedule_contract(kind: str, name: str) -> None:
    factor = registry(kind).build(name, total_steps=20, steps_per_epoch=2)
    if factor is None:  # onecycle: built by torch in build_schedule
        assert name == "onecycle"
        return
    values = [factor(step) for step in range(20)]
    assert values[0] == pytest.approx(1.0)  # starts at the peak
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in values)


@pytest.mark.parametrize(("kind", "name"), _entries("penalty"))
def test_penalty_contract(kind: str, name: str) -> None:
    penalty = registry(kind).build(name)
    layer = nn.Linear(4, 3)
    value = penalty(layer)
    assert value.shape == () and torch.isfinite(value)
    assert (value > 0) == (name != "none")


@pytest.mark.parametrize(("kind", "name"), _entries("preprocessing"))
def test_preprocessing_contract(kind: str, name: str) -> None:
    from deepwell.data.preprocess import Preprocessor

    preprocessor = registry(kind).build(name)
    assert isinstance(preprocessor, Preprocessor)
    x = 3 + 2 * torch.randn(20, 2, 3)  # (N, C, L)
    y = preprocessor.fit(x)(x)
    assert y.shape == (20, *preprocessor.output_shape((2, 3)))
    assert torch.isfinite(y).all()
    assert torch.equal(y, x) == (name == "none")


@pytest.mark.parametrize("kind", KINDS)
def test_aliases_resolve_to_their_canonical_name(kind: str) -> None:
    reg = registry(kind)
    for alias, canonical in reg._aliases.items():
        assert alias in reg
        assert reg.parse(alias) == reg.parse(canonical)
        assert str(reg.parse(alias)) == canonical


# --- option strings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "params"),
    [
        ("activation", "leaky_relu:0.1", {"negative_slope": 0.1}),
        ("activation", "gelu:tanh", {"approximate": "tanh"}),
        ("initializer", "he:mode=fan_out", {"mode": "fan_out"}),
        ("initializer", "xavier:uniform,mode=fan_in", {"distribution": "uniform", "mode": "fan_in"}),
        ("dropout", "dropconnect:0.3", {"p": 0.3}),
        ("dropout", "dropconnect:0.3,sample=batch", {"p": 0.3, "sample": "batch"}),
        ("dropout", "dropout:0.2,mode=classic", {"p": 0.2, "mode": "classic"}),
        ("normalization", "batchnorm:0.3,affine=false", {"momentum": 0.3, "affine": False}),
        ("penalty", "elasticnet:0.001,l1_ratio=0.3", {"strength": 0.001, "l1_ratio": 0.3}),
        ("optimizer", "sgd:0.9,nesterov=true", {"momentum": 0.9, "nesterov": True}),
    ],
)
def test_canonical_strings_round_trip_exactly(kind: str, text: str, params: dict[str, Any]) -> None:
    option = registry(kind).parse(text)
    assert option.params == params
    assert str(option) == text
    assert registry(kind).parse(str(option)) == option


@pytest.mark.parametrize(
    ("kind", "text", "canonical"),
    [
        ("activation", "leaky_relu:negative_slope=0.10", "leaky_relu:0.1"),
        ("activation", " swish ", "silu"),
        ("initializer", "kaiming:mode=fan_out", "he:mode=fan_out"),
        ("initializer", "xavier:mode=fan_in,distribution=uniform", "xavier:uniform,mode=fan_in"),
        ("penalty", "l2:1e-3", "l2:0.001"),
        ("penalty", "elasticnet:0.0001,l1_ratio=0.5", "elasticnet"),  # both are the defaults
        ("dropout", "dropout:0.5", "dropout"),
        ("normalization", "batchnorm:1", "batchnorm:1.0"),
    ],
)
def test_non_canonical_strings_normalise(kind: str, text: str, canonical: str) -> None:
    option = registry(kind).parse(text)
    assert str(option) == canonical
    assert option == registry(kind).parse(canonical)


def test_elasticnet_defaults_split_the_strength() -> None:
    penalty = registry("penalty").build("elasticnet:0.0001,l1_ratio=0.5")
    assert penalty.l1 == pytest.approx(5e-5) and penalty.l2 == pytest.approx(5e-5)


def test_mapping_form_equals_string_form() -> None:
    activations = registry("activation")
    option = activations.parse({"name": "leaky_relu", "negative_slope": 0.2})
    assert option == activations.parse("leaky_relu:0.2")
    assert str(option) == "leaky_relu:0.2"
    assert activations.build(option).negative_slope == 0.2


def test_option_passes_through_and_equality_is_by_kind_and_canonical_text() -> None:
    option = registry("dropout").parse("dropout:0.3")
    assert registry("dropout").parse(option) is option
    assert option != registry("dropout").parse("dropconnect:0.3")
    assert hash(option) == hash(registry("dropout").parse("dropout:p=0.3"))
    with pytest.raises(ConfigError, match="Expected an activation option, got a dropout option"):
        registry("activation").parse(option)


@pytest.mark.parametrize(
    ("kind", "value", "fragments"),
    [
        ("dropout", "dropout:1.5", ["'p'", "less than 1", "dropout(p=0.5"]),
        ("dropout", "dropconnect:p=-0.1", ["'p'", "greater than or equal to 0"]),
        ("dropout", "dropout:0.5,p=0.3", ["given twice"]),
        ("activation", "leaky_relu:slope=0.1", ["Unknown parameter 'slope'", "Known: negative_slope"]),
        ("activation", "leaky_relu:abc", ["'negative_slope'", "valid number"]),
        ("activation", "leaky_rlu", ["Unknown activation 'leaky_rlu'", "Did you mean 'leaky_relu'?", "Known:", "relu, selu"]),
        ("activation", "relu:1", ["takes at most 0 parameter"]),
        ("initializer", "he:mode=fan_avg", ["'mode'", "'fan_in' or 'fan_out'"]),
        ("initializer", "he:distrib=uniform", ["Unknown parameter 'distrib'", "Did you mean 'distribution'?"]),
        ("initializer", "he:mode=fan_out,uniform", ["positional value 'uniform' after a key=value"]),
        ("initializer", "normal:std=inf", ["'std'", "finite"]),
        ("initializer", "constant:nan", ["'value'", "finite"]),
        ("optimizer", "adamm", ["Did you mean 'adam'?", "Known: adam, adamw, rmsprop, sgd"]),
        ("penalty", "l2:-1", ["'strength'", "greater than or equal to 0"]),
        ("activation", 3, ["string like 'name:arg,key=value'", "int"]),
        ("activation", {"negative_slope": 0.2}, ["needs a 'name' key", "negative_slope"]),
    ],
)
def test_bad_options_raise_config_error_with_help(kind: str, value: Any, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        registry(kind).parse(value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_build_errors_become_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs momentum > 0"):
        registry("optimizer").build("sgd:nesterov=true", params=[nn.Parameter(torch.ones(1))], lr=0.1)


def test_messages_use_the_right_article() -> None:
    with pytest.raises(ConfigError, match=r"^An activation must be"):
        registry("activation").parse(3.0)
    with pytest.raises(ConfigError, match=r"^A dropout given as a mapping"):
        registry("dropout").parse({})
