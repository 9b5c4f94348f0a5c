"""Models against torch and closed forms: initialisers, gains, activations, dropout, DropConnect,
batch norm and the model builder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import ModelSpec
from deepwell.errors import ConfigError
from deepwell.models import (
    ACTIVATIONS,
    INITIALIZERS,
    Block,
    DropConnectLinear,
    Dropout,
    activation_gain,
    build_model,
)
from deepwell.models.init import fans

# 512 x 1024 = 524288 samples: the sample std is within ~0.1% of the true one, far inside the 2% used.
OUT, IN = 512, 1024
SAMPLE_RTOL = 0.02


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def filled(option: str, shape: tuple[int, ...] = (OUT, IN), gain: float = 1.0) -> torch.Tensor:
    weight = torch.empty(shape)
    INITIALIZERS.build(option)(weight, gain, generator())
    return weight


def torch_filled(init_, shape: tuple[int, ...] = (OUT, IN), **kwargs) -> torch.Tensor:
    weight = torch.empty(shape)
    init_(weight, **kwargs)
    return weight


def mlp_spec(**kwargs) -> ModelSpec:
    """An explicit MLP spec: tests must not depend on ModelSpec's defaults."""
    values = dict(arch="mlp", norm="none", dropout="none", activation="relu", init="he", residual=False)
    return ModelSpec(**{**values, **kwargs})


# --- initialisers vs formulas and torch.nn.init ----------------------------------------------------------

RELU_GAIN = math.sqrt(2.0)
TANH_GAIN = 5.0 / 3.0


def test_fans_match_torch() -> None:
    for shape in [(OUT, IN), (8, 3, 5), (16, 4, 3, 3)]:
        assert fans(torch.Size(shape)) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fans(torch.Size([5]))


def test_he_normal_std_is_sqrt_2_over_fan_in() -> None:
    weight = filled("he", gain=RELU_GAIN)
    reference = torch_filled(nn.init.kaiming_normal_, nonlinearity="relu")
    assert weight.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert weight.std().item() == pytest.approx(math.sqrt(2.0 / IN), rel=SAMPLE_RTOL)
    assert weight.std().item() == pytest.approx(reference.std().item(), rel=SAMPLE_RTOL)


def test_he_fan_out() -> None:
    weight = filled("he:mode=fan_out", gain=RELU_GAIN)
    reference = torch_filled(nn.init.kaiming_normal_, mode="fan_out", nonlinearity="relu")
    assert weight.std().item() == pytest.approx(math.sqrt(2.0 / OUT), rel=SAMPLE_RTOL)
    assert weight.std().item() == pytest.approx(reference.std().item(), rel=SAMPLE_RTOL)


def test_he_uniform_bound_is_sqrt_6_over_fan_in() -> None:
    weight = filled("he:uniform", gain=RELU_GAIN)
    bound = math.sqrt(6.0 / IN)
    reference = torch_filled(nn.init.kaiming_uniform_, nonlinearity="relu")
    assert weight.abs().max().item() <= bound
    assert weight.abs().max().item() == pytest.approx(bound, rel=1e-3)
    assert reference.abs().max().item() == pytest.approx(bound, rel=1e-3)
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=SAMPLE_RTOL)


def test_he_truncated_normal_keeps_the_variance_and_cuts_at_two_sigma() -> None:
    weight = filled("he:truncated_normal", gain=RELU_GAIN)
    std = math.sqrt(2.0 / IN)
    assert weight.std().item() == pytest.approx(std, rel=SAMPLE_RTOL)
    assert weight.abs().max().item() <= 2 * std / 0.87962566103423978 + 1e-7


def test_he_leaky_relu_gain_matches_kaiming() -> None:
    gain = activation_gain("leaky_relu:0.2")
    weight = filled("he", gain=gain)
    reference = torch_filled(nn.init.kaiming_normal_, a=0.2, nonlinearity="leaky_relu")
    assert weight.std().item() == pytest.approx(reference.std().item(), rel=SAMPLE_RTOL)


def test_xavier_normal_std() -> None:
    weight = filled("xavier", gain=TANH_GAIN)
    reference = torch_filled(nn.init.xavier_normal_, gain=TANH_GAIN)
    assert weight.std().item() == pytest.approx(TANH_GAIN * math.sqrt(2.0 / (IN + OUT)), rel=SAMPLE_RTOL)
    assert weight.std().item() == pytest.approx(reference.std().item(), rel=SAMPLE_RTOL)


def test_xavier_uniform_bound() -> None:
    weight = filled("xavier:uniform", gain=TANH_GAIN)
    bound = TANH_GAIN * math.sqrt(6.0 / (IN + OUT))
    reference = torch_filled(nn.init.xavier_uniform_, gain=TANH_GAIN)
    assert weight.abs().max().item() <= bound
    assert weight.abs().max().item() == pytest.approx(bound, rel=1e-3)
    assert reference.abs().max().item() == pytest.approx(bound, rel=1e-3)


def test_xavier_fan_in_is_the_lectures_one_over_sqrt_n() -> None:
    weight = filled("xavier:mode=fan_in", gain=1.0)
    assert weight.std().item() == pytest.approx(1.0 / math.sqrt(IN), rel=SAMPLE_RTOL)


def test_lecun_ignores_the_activation_gain() -> None:
    weight = filled("lecun", gain=TANH_GAIN)
    assert weight.std().item() == pytest.approx(1.0 / math.sqrt(IN), rel=SAMPLE_RTOL)
    assert not INITIALIZERS.build("lecun").uses_gain


def test_explicit_gain_overrides_the_activation_gain() -> None:
    weight = filled("he:gain=1.0", gain=RELU_GAIN)
    assert weight.std().item() == pytest.approx(1.0 / math.sqrt(IN), rel=SAMPLE_RTOL)


def test_variance_scaling_family() -> None:
    weight = filled("variance_scaling:2.0,mode=fan_out", gain=1.0)
    assert weight.std().item() == pytest.approx(math.sqrt(2.0 / OUT), rel=SAMPLE_RTOL)
    weight = filled("variance_scaling:mode=fan_avg,distribution=uniform", gain=2.0)
    assert weight.abs().max().item() == pytest.approx(2.0 * math.sqrt(3.0 / ((IN + OUT) / 2)), rel=1e-3)


def test_orthogonal_rows_are_orthonormal_times_gain() -> None:
    weight = filled("orthogonal", shape=(32, 64), gain=TANH_GAIN)
    gram = weight @ weight.T
    torch.testing.assert_close(gram, TANH_GAIN**2 * torch.eye(32), atol=1e-4, rtol=0)
    weight = filled("orthogonal:gain=0.5", shape=(32, 64), gain=TANH_GAIN)
    torch.testing.assert_close(weight @ weight.T, 0.25 * torch.eye(32), atol=1e-4, rtol=0)


def test_fixed_initialisers() -> None:
    assert torch.equal(filled("zeros"), torch.zeros(OUT, IN))
    assert torch.equal(filled("constant:0.3"), torch.full((OUT, IN), 0.3))
    weight = filled("normal:0.2", gain=RELU_GAIN)  # ignores fan and gain
    assert weight.std().item() == pytest.approx(0.2, rel=SAMPLE_RTOL)
    assert weight.mean().item() == pytest.approx(0.0, abs=2e-3)
    assert filled("normal:0.2,mean=1.0").mean().item() == pytest.approx(1.0, abs=2e-3)
    weight = filled("uniform:0.3", gain=RELU_GAIN)
    assert weight.abs().max().item() <= 0.3 and weight.abs().max().item() == pytest.approx(0.3, rel=1e-3)
    assert weight.std().item() == pytest.approx(0.3 / math.sqrt(3.0), rel=SAMPLE_RTOL)


def test_conv_weight_fan_includes_the_kernel() -> None:
    shape = (64, 32, 3, 3)  # fan_in = 32 * 9 = 288
    weight = filled("he", shape=shape, gain=RELU_GAIN)
    reference = torch_filled(nn.init.kaiming_normal_, shape=shape, nonlinearity="relu")
    assert weight.std().item() == pytest.approx(math.sqrt(2.0 / 288), rel=0.03)
    assert weight.std().item() == pytest.approx(reference.std().item(), rel=0.04)
    conv1d = filled("xavier:uniform", shape=(16, 8, 5), gain=1.0)  # fans 40 and 80
    assert conv1d.abs().max().item() <= math.sqrt(6.0 / 120)


def test_initialiser_is_deterministic_given_a_generator() -> None:
    assert torch.equal(filled("he"), filled("he"))


@pytest.mark.parametrize(
    ("activation", "torch_name", "param"),
    [
        ("identity", "linear", None),
        ("sigmoid", "sigmoid", None),
        ("tanh", "tanh", None),
        ("relu", "relu", None),
        ("leaky_relu", "leaky_relu", 0.01),
        ("leaky_relu:0.2", "leaky_relu", 0.2),
        ("selu", "selu", None),
        ("prelu", "leaky_relu", 0.25),
    ],
)
def test_gains_match_torch_calculate_gain(activation: str, torch_name: str, param: float | None) -> None:
    assert activation_gain(activation) == pytest.approx(nn.init.calculate_gain(torch_name, param))


def test_model_builder_records_and_applies_gains() -> None:
    model = build_model(mlp_spec(activation="tanh", init="xavier", depth=2, width=128), (20,), 3, generator())
    assert model.init_gains == pytest.approx({"dense.0": TANH_GAIN, "dense.1": TANH_GAIN, "head": 1.0})
    first = model.dense[0].transform.weight  # (128, 20): 2560 samples, so a 5% tolerance
    assert first.std().item() == pytest.approx(TANH_GAIN * math.sqrt(2.0 / (20 + 128)), rel=0.05)
    leaky = build_model(mlp_spec(activation="leaky_relu:0.2", init="he", depth=1, width=8), (4,), 2)
    assert leaky.init_gains["dense.0"] == pytest.approx(nn.init.calculate_gain("leaky_relu", 0.2))


def test_recorded_gain_is_the_one_used() -> None:
    explicit = build_model(mlp_spec(activation="relu", init="he:gain=0.5", depth=1, width=8), (4,), 2)
    assert explicit.init_gains == pytest.approx({"dense.0": 0.5, "head": 0.5})
    lecun = build_model(mlp_spec(activation="tanh", init="lecun", depth=1, width=8), (4,), 2)
    assert lecun.init_gains == pytest.approx({"dense.0": 1.0, "head": 1.0})


def test_bias_init_that_needs_fans_is_refused() -> None:
    with pytest.raises(ConfigError, match="bias_init='he'.*zeros"):
        build_model(mlp_spec(bias_init="he"), (4,), 2)


# --- activations vs torch.nn.functional ---------------------------------------------------------------

X = torch.linspace(-4.0, 4.0, 41)


@pytest.mark.parametrize(
    ("option", "reference"),
    [
        ("identity", lambda x: x),
        ("sigmoid", torch.sigmoid),
        ("tanh", torch.tanh),
        ("relu", F.relu),
        ("leaky_relu", lambda x: F.leaky_relu(x, 0.01)),
        ("leaky_relu:0.3", lambda x: torch.where(x > 0, x, 0.3 * x)),
        ("elu", F.elu),
        ("elu:0.5", lambda x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1))),
        ("selu", F.selu),
        ("gelu", lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))),
        ("gelu:tanh", lambda x: F.gelu(x, approximate="tanh")),
        ("silu", lambda x: x * torch.sigmoid(x)),
        ("softplus", lambda x: torch.log1p(torch.exp(x))),
        ("softplus:2.0", lambda x: torch.log1p(torch.exp(2 * x)) / 2),
        ("prelu", lambda x: torch.where(x > 0, x, 0.25 * x)),
    ],
)
def test_activation_matches_reference(option: str, reference) -> None:
    torch.testing.assert_close(ACTIVATIONS.build(option)(X), reference(X), atol=1e-6, rtol=1e-5)


# --- dropout ---------------------------------------------------------------------------------------------

P = 0.3
DRAWS = 8000


def repeated_row(features: int = 8) -> torch.Tensor:
    row = torch.rand(features) + 0.5  # nonzero, so a zero output means a dropped unit
    return row.expand(DRAWS, features).contiguous()


def test_dropout_eval_outputs() -> None:
    x = torch.randn(5, 7)
    assert torch.equal(Dropout(P, "inverted").eval()(x), x)
    torch.testing.assert_close(Dropout(P, "classic").eval()(x), x * (1 - P))


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_dropout_training_mean_equals_eval_output(mode: str) -> None:
    x = repeated_row()
    layer = Dropout(P, mode)
    mean = layer.train()(x).mean(0)
    expected = layer.eval()(x[:1])[0]  # inverted: x ; classic: x * (1 - p)
    # Per-unit std of the mean of DRAWS draws is x*sqrt(p(1-p))/(1-p or 1)/sqrt(DRAWS) < 0.8% of x.
    torch.testing.assert_close(mean, expected, rtol=0.04, atol=0)
    expected_eval = x[0] if mode == "inverted" else x[0] * (1 - P)
    torch.testing.assert_close(expected, expected_eval)


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_dropout_zeroes_a_fraction_p_and_scales_the_rest(mode: str) -> None:
    x = repeated_row()
    out = Dropout(P, mode).train()(x)
    kept = out != 0
    assert (~kept).float().mean().item() == pytest.approx(P, abs=0.01)
    scale = 1 / (1 - P) if mode == "inverted" else 1.0
    torch.testing.assert_close(out[kept], (x * scale)[kept])


def test_dropout_p_zero_is_identity() -> None:
    x = torch.randn(6, 5)
    for mode in ("inverted", "classic"):
        assert torch.equal(Dropout(0.0, mode).train()(x), x)
        assert torch.equal(Dropout(0.0, mode).eval()(x), x)


def test_classic_and_inverted_networks_predict_the_same() -> None:
    """The lecture's claim: scale the layer after a classic-dropout layer by 1/(1-p) and the
    two conventions are the same network, in eval and (for equal masks) in training."""
    kwargs = dict(depth=2, width=16, norm="none")
    inverted = build_model(mlp_spec(dropout=f"dropout:{P}", **kwargs), (6,), 3, generator())
    classic = build_model(mlp_spec(dropout=f"dropout:{P},mode=classic", **kwargs), (6,), 3, generator())
    assert sum(isinstance(m, Dropout) and m.mode == "classic" for m in classic.modules()) == 2
    with torch.no_grad():
        for layer in (classic.dense[1].transform, classic.head):  # the layers after a dropout
            layer.weight.div_(1 - P)
    x = torch.randn(10, 6)
    unscaled = build_model(mlp_spec(dropout=f"dropout:{P},mode=classic", **kwargs), (6,), 3, generator())
    assert not torch.allclose(unscaled.eval()(x), inverted.eval()(x))  # the scale matters
    torch.testing.assert_close(classic.eval()(x), inverted.eval()(x))
    torch.manual_seed(1)
    trained_inverted = inverted.train()(x)
    torch.manual_seed(1)
    torch.testing.assert_close(classic.train()(x), trained_inverted)


# --- DropConnect -------------------------------------------------------------------------------------------


def test_dropconnect_eval_is_the_mean_rule() -> None:
    layer = DropConnectLinear(10, 4, p=P).eval()
    x = torch.randn(6, 10)
    torch.testing.assert_close(layer(x), F.linear(x, (1 - P) * layer.weight, layer.bias))


def test_dropconnect_masks_per_example_or_per_batch() -> None:
    x = torch.randn(1, 50).expand(2, 50)
    per_example = DropConnectLinear(50, 20, p=0.5).train()(x)
    assert not torch.allclose(per_example[0], per_example[1])
    per_batch = DropConnectLinear(50, 20, p=0.5, sample="batch").train()(x)
    torch.testing.assert_close(per_batch[0], per_batch[1])


@pytest.mark.parametrize("sample", ["example", "batch"])
def test_dropconnect_training_mean_is_the_eval_output(sample: str) -> None:
    layer = DropConnectLinear(10, 4, p=P, sample=sample)
    x = torch.randn(1, 10)
    expected = layer.eval()(x)[0]
    layer.train()
    if sample == "example":
        draws = layer(x.expand(4000, 10)).detach()
    else:
        draws = torch.cat([layer(x).detach() for _ in range(4000)])
    # Each draw has variance p(1-p) sum_i (w_i x_i)^2; allow 5 standard errors of the mean.
    std_error = (P * (1 - P) * (layer.weight * x).square().sum(1)).sqrt() / math.sqrt(4000)
    assert ((draws.mean(0) - expected).abs() <= 5 * std_error.detach()).all()


@pytest.mark.parametrize("sample", ["example", "batch"])
def test_dropconnect_gradient_flows_only_to_kept_weights(sample: str) -> None:
    layer = DropConnectLinear(200, 100, p=P, sample=sample).train()
    x = torch.rand(1, 200) + 0.5  # positive: a weight's gradient is zero only where it was dropped
    out = layer(x)
    out.sum().backward()
    kept = layer.weight.grad != 0
    assert (~kept).float().mean().item() == pytest.approx(P, abs=0.015)
    torch.testing.assert_close(layer.weight.grad, kept * x.expand(100, 200))
    # The mask read back from the gradient explains the output.
    torch.testing.assert_close(out, F.linear(x, layer.weight * kept, layer.bias))
    assert torch.equal(layer.bias.grad, torch.ones(100))  # biases are never dropped


def test_dropconnect_batch_mask_is_reproducible_from_the_seed() -> None:
    layer = DropConnectLinear(30, 12, p=P, sample="batch").train()
    x = torch.randn(5, 30)
    torch.manual_seed(7)
    mask = torch.empty_like(layer.weight).bernoulli_(1 - P)
    torch.manual_seed(7)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight * mask, layer.bias))


def test_dropconnect_in_built_models() -> None:
    model = build_model(mlp_spec(dropout="dropconnect:0.3,sample=batch", depth=2, width=8), (5,), 2)
    layers = [m for m in model.modules() if isinstance(m, DropConnectLinear)]
    assert len(layers) == 2 and all(layer.p == 0.3 and layer.sample == "batch" for layer in layers)
    assert type(model.head) is nn.Linear  # the output layer is not dropped
    assert not any(isinstance(m, Dropout) for m in model.modules())


def test_dropconnect_without_dense_layers_is_refused() -> None:
    spec = ModelSpec(arch="cnn1d", channels=[4], kernel_size=3, dropout="dropconnect:0.3", norm="none")
    with pytest.raises(ConfigError, match=r"dropconnect.*model.hidden"):
        build_model(spec, (1, 16), 3)
    with pytest.raises(ConfigError, match=r"dropconnect"):
        build_model(mlp_spec(dropout="dropconnect:0.3", depth=0), (5,), 2)


# --- batch norm in built models ----------------------------------------------------------------------------


def batchnorm_model(norm: str = "batchnorm") -> tuple[nn.Module, Block]:
    model = build_model(mlp_spec(norm=norm, depth=1, width=6, activation="identity"), (4,), 2, generator())
    return model, model.dense[0]


def captured(module: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    outputs = []
    handle = module.register_forward_hook(lambda m, i, o: outputs.append(o.detach()))
    try:
        model(x)
    finally:
        handle.remove()
    return outputs[0]


def test_batchnorm_uses_batch_statistics_in_training() -> None:
    model, block = batchnorm_model()
    assert isinstance(block.norm, nn.BatchNorm1d) and block.transform.bias is None  # bias before BN is redundant
    x = 3 + 2 * torch.randn(64, 4)
    normalised = captured(block.norm, model.train(), x)
    torch.testing.assert_close(normalised.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised.std(0, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)


def test_batchnorm_uses_running_statistics_in_eval_with_torch_momentum() -> None:
    model, block = batchnorm_model()
    x = 3 + 2 * torch.randn(64, 4)
    h = captured(block.transform, model.train(), x)  # one training step updates the running statistics
    batch_mean, batch_var = h.mean(0), h.var(0, unbiased=True)
    torch.testing.assert_close(block.norm.running_mean, 0.1 * batch_mean)  # momentum 0.1 = weight of the new batch
    torch.testing.assert_close(block.norm.running_var, 0.9 * torch.ones(6) + 0.1 * batch_var)
    evaluated = captured(block.norm, model.eval(), x)
    expected = (h - block.norm.running_mean) / torch.sqrt(block.norm.running_var + block.norm.eps)
    torch.testing.assert_close(evaluated, expected * block.norm.weight.detach() + block.norm.bias.detach())
    assert evaluated.mean(0).abs().max() > 0.5  # not the batch statistics: the batch is not centred


def test_batchnorm_momentum_parameter() -> None:
    model, block = batchnorm_model("batchnorm:0.3")
    x = torch.randn(32, 4) + 1
    h = captured(block.transform, model.train(), x)
    torch.testing.assert_close(block.norm.running_mean, 0.3 * h.mean(0))


def test_batchnorm_in_cnn_is_2d_and_norm_after_keeps_the_bias() -> None:
    model = build_model(ModelSpec(arch="cnn2d", channels=[4], kernel_size=3, norm="batchnorm"), (1, 6, 6), 2)
    assert isinstance(model.features[0].norm, nn.BatchNorm2d)
    after = build_model(mlp_spec(norm="batchnorm", norm_position="after", depth=1, width=4), (3,), 2)
    assert after.dense[0].transform.bias is not None


# --- the model builder -----------------------------------------------------------------------------------


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def test_mlp_depth_and_width() -> None:
    model = build_model(mlp_spec(depth=3, width=16), (30,), 5)
    assert linear_shapes(model) == [(30, 16), (16, 16), (16, 16), (16, 5)]
    assert len(model.hidden_blocks()) == 3
    assert model(torch.randn(4, 30)).shape == (4, 5)
    assert linear_shapes(build_model(mlp_spec(depth=0), (30,), 5)) == [(30, 5)]


def test_mlp_explicit_hidden_overrides_depth_and_width() -> None:
    model = build_model(mlp_spec(depth=5, width=99, hidden=[32, 8]), (30,), 5)
    assert linear_shapes(model) == [(30, 32), (32, 8), (8, 5)]


def test_mlp_flattens_multi_dimensional_inputs() -> None:
    model = build_model(mlp_spec(depth=1, width=8), (2, 3, 4), 5)
    assert linear_shapes(model)[0] == (24, 8)
    assert model(torch.randn(3, 2, 3, 4)).shape == (3, 5)


def cnn_spec(arch: str, **kwargs) -> ModelSpec:
    values = dict(arch=arch, channels=[4, "pool", 8], kernel_size=3, norm="none", dropout="none", residual=False)
    return ModelSpec(**{**values, **kwargs})


def test_cnn1d_on_channel_and_flat_signals() -> None:
    with_channel = build_model(cnn_spec("cnn1d"), (1, 40), 10, generator())
    flat = build_model(cnn_spec("cnn1d"), (40,), 10, generator())
    convs = [m for m in with_channel.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 4), (4, 8)]
    x = torch.randn(3, 1, 40)
    assert with_channel(x).shape == (3, 10)
    flat.load_state_dict(with_channel.state_dict())  # same parameters: (40,) only adds the channel axis
    torch.testing.assert_close(flat(x[:, 0]), with_channel(x))


def test_cnn2d_on_images() -> None:
    model = build_model(cnn_spec("cnn2d"), (1, 8, 8), 3)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 1
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize(
    ("shape", "conv"), [((1, 40), nn.Conv1d), ((1, 8, 8), nn.Conv2d), ((30,), None)], ids=["signal", "image", "vector"]
)
def test_arch_auto_follows_the_input_shape(shape: tuple[int, ...], conv: type | None) -> None:
    model = build_model(cnn_spec("auto", depth=1, width=8), shape, 3)
    kinds = {type(m) for m in model.modules()}
    assert {nn.Conv1d, nn.Conv2d} & kinds == ({conv} if conv else set())
    assert model(torch.randn(2, *shape)).shape == (2, 3)
    if conv is None:
        assert linear_shapes(model) == [(30, 8), (8, 3)]


def test_global_pool_false_flattens() -> None:
    pooled = build_model(cnn_spec("cnn1d"), (1, 40), 10)
    flattened = build_model(cnn_spec("cnn1d", global_pool=False), (1, 40), 10)
    assert pooled.head.in_features == 8
    assert flattened.head.in_features == 8 * 20  # 8 channels x 40/2 positions
    assert flattened(torch.randn(2, 1, 40)).shape == (2, 10)


def test_cnn_dense_blocks_after_pooling() -> None:
    model = build_model(cnn_spec("cnn1d", hidden=[16]), (1, 40), 10)
    assert linear_shapes(model) == [(8, 16), (16, 10)]


def test_mlp_residual_blocks_add_the_skip() -> None:
    model = build_model(mlp_spec(hidden=[16, 16, 8], residual=True), (16,), 3)
    assert [block.residual for _, block in model.hidden_blocks()] == [True, True, False]
    block = model.dense[0]
    x = torch.randn(5, 16)
    transform_path = F.relu(block.transform(x))
    torch.testing.assert_close(block(x), x + transform_path)
    last = model.dense[2]
    torch.testing.assert_close(last(x), F.relu(last.transform(x)))


def test_conv_residual_blocks_add_the_skip() -> None:
    model = build_model(cnn_spec("cnn1d", channels=[4, 4], residual=True), (1, 10), 3)
    first, second = model.features[0], model.features[1]
    assert (first.residual, second.residual) == (False, True)  # 1 -> 4 channels cannot add the input
    x = torch.randn(2, 4, 10)
    torch.testing.assert_close(second(x), x + F.relu(second.transform(x)))


@pytest.mark.parametrize("position", ["before", "after"])
def test_norm_position_orders_norm_and_activation(position: str) -> None:
    model = build_model(mlp_spec(norm="layernorm", norm_position=position, depth=1, width=8), (6,), 2)
    block = model.dense[0]
    x = torch.randn(4, 6)
    h = block.transform(x)
    norm_first = F.relu(block.norm(h))
    norm_last = block.norm(F.relu(h))
    assert not torch.allclose(norm_first, norm_last)
    torch.testing.assert_close(block(x), norm_first if position == "before" else norm_last)


def test_dropout_placement_in_built_models() -> None:
    mlp = build_model(mlp_spec(dropout="dropout:0.3", depth=3, width=8), (5,), 2)
    assert [block.dropout.p for _, block in mlp.hidden_blocks()] == [0.3] * 3
    cnn = build_model(cnn_spec("cnn1d", dropout="dropout:0.3"), (1, 16), 2)
    assert sum(isinstance(m, Dropout) for m in cnn.modules()) == 3  # two conv blocks and the pooled features
    assert isinstance(cnn.pool[-1], Dropout)


def test_builder_is_deterministic_given_a_generator() -> None:
    first = build_model(cnn_spec("cnn1d", hidden=[8]), (1, 16), 3, generator(3)).state_dict()
    second = build_model(cnn_spec("cnn1d", hidden=[8]), (1, 16), 3, generator(3)).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_wrong_input_shape_for_cnn2d_is_a_helpful_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_model(cnn_spec("cnn2d"), (30,), 3)
    message = str(info.value)
    assert "(C, H, W)" in message and "(30,)" in message and "arch=mlp" in message
    with pytest.raises(ConfigError, match="cnn2d for images"):
        build_model(cnn_spec("cnn1d"), (1, 8, 8), 3)


def test_even_kernel_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="kernel_size must be odd.*got 4"):
        build_model(cnn_spec("cnn1d", kernel_size=4), (1, 40), 3)


def test_too_many_pools_are_refused() -> None:
    with pytest.raises(ConfigError, match="3 'pool' entries.*leaves a size below 2.*Remove 'pool' entries"):
        build_model(cnn_spec("cnn1d", channels=[4, "pool", "pool", "pool"]), (1, 6), 3)
