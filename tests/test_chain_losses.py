"""ChainLosses (a chain MLP's cross-entropy at many points, compiled) against one plain forward per point."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepwell import native
from deepwell.config import ModelSpec
from deepwell.diagnostics.chain_losses import ChainLosses
from deepwell.diagnostics.landscape import interpolate, random_direction, slice_2d
from deepwell.models import build_model
from landscape_reference import TOLERANCE, moving_directions, one_forward_per_point, toy_data
from test_point_batch import MLPS

COEFFICIENTS = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-0.7, 0.9], [0.25, 0.25], [2.0, 1.0], [-1.5, -2.0]])


@pytest.fixture(autouse=True)
def _needs_the_kernel() -> None:
    if native.extension("chain_losses") is None:
        pytest.skip("no C++ compiler or ninja to build the compiled landscape kernel (make test installs ninja-build)")


def _chain(activation: nn.Module, bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12, bias=bias), activation, nn.Dropout(0.2),
                         nn.Linear(12, 9, bias=bias), activation, nn.Linear(9, 3, bias=bias)).eval()


ACTIVATIONS = {"relu": nn.ReLU(), "leaky relu 0.1": nn.LeakyReLU(0.1), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(),
               "gelu": nn.GELU(), "gelu tanh": nn.GELU(approximate="tanh"), "silu": nn.SiLU(), "relu6": nn.ReLU6(),
               "identity": nn.Identity()}


def _assert_matches(model: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int = 2) -> None:
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    directions = moving_directions(model, count)
    fused = ChainLosses.build(model, x, y, F.cross_entropy, center, directions)
    assert fused is not None
    coefficients = COEFFICIENTS[:, :count]
    expected = one_forward_per_point(model, center, directions, coefficients, x, y, F.cross_entropy)
    torch.testing.assert_close(fused.losses(coefficients), expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_each_activation_matches_one_forward_per_point(name):
    # The first layer's activation runs apart (its output is precomputed), the second fused into oneDNN's linear.
    x, y = toy_data()
    _assert_matches(_chain(ACTIVATIONS[name]), x, y)


@pytest.mark.parametrize("options", [{}, {"dropout": "dropout:0.3"}, {"activation": "tanh"}], ids=["relu", "dropout", "tanh"])
def test_deepwell_mlps_qualify_and_match(options):
    model = build_model(ModelSpec(arch="mlp", depth=3, width=12, norm="none", **options), (1, 16), 3,
                        generator=torch.Generator().manual_seed(0)).eval()
    x, y = toy_data()
    _assert_matches(model, x, y)
    _assert_matches(model, x, y, count=1)   # a line: one direction


def test_without_biases_and_with_ignored_targets():
    x, y = toy_data(n=50)
    y[::4] = -100   # F.cross_entropy's ignore_index: the mean runs over the other targets
    _assert_matches(_chain(nn.ReLU(), bias=False), x, y)


def test_many_points_spread_over_threads_give_the_same_losses_as_one_thread():
    model, (x, y) = _chain(nn.Tanh()), toy_data()
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    fused = ChainLosses.build(model, x, y, F.cross_entropy, center, moving_directions(model))
    coefficients = torch.randn(37, 2, generator=torch.Generator().manual_seed(4))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fused.losses(coefficients)
        torch.set_num_threads(2)
        two = fused.losses(coefficients)
    finally:
        torch.set_num_threads(threads)
    expected = one_forward_per_point(model, center, moving_directions(model), coefficients, x, y, F.cross_entropy)
    torch.testing.assert_close(one, expected, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(two, one, atol=TOLERANCE, rtol=0)


class _ElementwiseBetweenLayers(nn.Module):
    """A functional op between two layers (no module for the trace to see): not a chain."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden, self.head = nn.Linear(16, 12), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(x.flatten(1))))


REFUSED = {**{name: MLPS[name] for name in ("residual", "layer applied twice", "in-place after head", "reads again after relu")},
           "functional relu": _ElementwiseBetweenLayers,
           "elu (no fused op)": lambda: _chain(nn.ELU()),
           "one linear layer": lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval(),
           "two activations in a row": lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Tanh(),
                                                             nn.Linear(8, 3)).eval(),
           "activation after the head": lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(),
                                                              nn.Linear(8, 3), nn.Tanh()).eval(),
           "batchnorm": lambda: build_model(ModelSpec(arch="mlp", depth=2, width=8, norm="batchnorm"), (1, 16), 3,
                                            generator=torch.Generator().manual_seed(0)).eval()}


@pytest.mark.parametrize("name", list(REFUSED))
def test_networks_that_are_not_chains_are_refused_and_the_slice_still_matches(name):
    model = REFUSED[name]()
    x, y = toy_data()
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert ChainLosses.build(model, x, y, F.cross_entropy, center, moving_directions(model)) is None
    generator = torch.Generator().manual_seed(1)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    alphas = torch.linspace(-1, 1, 3)
    torch.testing.assert_close(slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, alphas),
                               slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, alphas, batched=False),
                               atol=TOLERANCE, rtol=0)


def test_other_losses_targets_and_dtypes_are_refused():
    model, (x, y) = _chain(nn.ReLU()), toy_data()
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    directions = moving_directions(model)
    assert ChainLosses.build(model, x, y, F.cross_entropy, center, directions) is not None   # the baseline qualifies
    assert ChainLosses.build(model, x, y, lambda out, t: F.cross_entropy(out, t), center, directions) is None
    assert ChainLosses.build(model, x, F.one_hot(y, 3).float(), F.cross_entropy, center, directions) is None
    as_double = {n: v.double() for n, v in center.items()}
    assert ChainLosses.build(model.double(), x.double(), y, F.cross_entropy, as_double,
                             [{n: v.double() for n, v in d.items()} for d in directions]) is None


def test_slice_and_interpolation_take_the_kernel_and_match(monkeypatch: pytest.MonkeyPatch):
    model = build_model(ModelSpec(arch="mlp", depth=3, width=12, norm="none"), (1, 16), 3,
                        generator=torch.Generator().manual_seed(0)).eval()
    other = build_model(ModelSpec(arch="mlp", depth=3, width=12, norm="none"), (1, 16), 3,
                        generator=torch.Generator().manual_seed(5)).eval()
    x, y = toy_data()
    generator = torch.Generator().manual_seed(1)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    alphas, betas = torch.linspace(-1, 1, 5), torch.linspace(-0.5, 0.5, 3)
    calls = []
    real = ChainLosses.losses
    monkeypatch.setattr(ChainLosses, "losses", lambda self, c: calls.append(len(c)) or real(self, c))
    grid = slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, betas)
    path = interpolate(model, other, x, y, F.cross_entropy, torch.linspace(0, 1, 6))
    assert calls == [1, 15, 1, 6]   # each: the check at the centre, then every point in one kernel call
    torch.testing.assert_close(grid, slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, betas, batched=False),
                               atol=TOLERANCE, rtol=0)
    with torch.no_grad():   # the path's endpoints are the two models themselves
        torch.testing.assert_close(path[[0, -1]], torch.stack([F.cross_entropy(m(x), y) for m in (model, other)]),
                                   atol=TOLERANCE, rtol=0)


def test_switched_off_the_python_path_runs(monkeypatch: pytest.MonkeyPatch):
    model, (x, y) = _chain(nn.ReLU()), toy_data()
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    monkeypatch.setenv("DEEPWELL_NATIVE", "off")
    assert ChainLosses.build(model, x, y, F.cross_entropy, center, moving_directions(model)) is None
