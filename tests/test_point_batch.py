"""PointBatch (an MLP's loss at many parameter points per forward) against one plain forward per point."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import ModelSpec
from deepwell.diagnostics.landscape import interpolate, random_direction, slice_1d, slice_2d
from deepwell.diagnostics.point_batch import PointBatch
from deepwell.models import build_model
from landscape_reference import TOLERANCE, moving_directions, one_forward_per_point, toy_data



def _deepwell_mlp(**options) -> nn.Module:
    spec = ModelSpec(arch="mlp", depth=3, width=12, norm="none", **options)
    return build_model(spec, (1, 16), 3, generator=torch.Generator().manual_seed(0)).eval()


def _no_bias_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12, bias=False), nn.Tanh(), nn.Linear(12, 3, bias=False)).eval()


class _TwiceApplied(nn.Module):
    """One linear layer applied twice per forward (a shared layer: the first-layer shortcut must not apply)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.square, self.head = nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.square(torch.relu(self.square(x.flatten(1))))))


class _InPlaceAfterHead(nn.Module):
    """Doubles the head's output in place: the class-major logits the head kept are then stale."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden, self.head = nn.Linear(16, 12), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(x.flatten(1)))).mul_(2)


class _TiedWeights(nn.Module):
    """An autoencoder-style weight tying: one parameter read by two layers, so not every point is per-layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encode = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.relu(self.encode(x.flatten(1))), self.encode.weight.T)


class _ReadsAgainAfterReLU(nn.Module):
    """Reads a layer's output again after its ReLU module: ReLUs made in-place would change what it reads."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden, self.relu, self.head = nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x.flatten(1))
        return self.head(self.relu(h) + 0.5 * h)


MLPS = {"deepwell mlp": _deepwell_mlp, "no bias": _no_bias_mlp, "dropout (eval)": lambda: _deepwell_mlp(dropout="dropout:0.3"),
        "residual": lambda: _deepwell_mlp(residual=True), "layer applied twice": _TwiceApplied,
        "in-place after head": _InPlaceAfterHead, "reads again after relu": _ReadsAgainAfterReLU}


@pytest.mark.parametrize("name", list(MLPS))
@pytest.mark.parametrize("loss", [F.cross_entropy, lambda out, y: F.nll_loss(F.log_softmax(out, 1), y)], ids=["ce", "other"])
def test_point_batch_matchesone_forward_per_point(name, loss):
    model = MLPS[name]()
    x, y = toy_data()
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    directions = moving_directions(model)
    coefficients = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-0.7, 0.9], [0.25, 0.25], [2.0, 1.0]])
    batch = PointBatch.build(model, x, center, directions)
    assert batch is not None, name
    expected = one_forward_per_point(model, center, directions, coefficients, x, y, loss)
    for chunk in (1, 2, 5):  # one chunk of several points, and chunks that split the list
        got = torch.cat([batch.losses(coefficients[i:i + chunk], y, loss) for i in range(0, len(coefficients), chunk)])
        torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0)


def test_cross_entropy_ignores_targets_as_torch_does():
    model = _deepwell_mlp()
    x, y = toy_data()
    y[::3] = -100  # F.cross_entropy's ignore_index: the mean runs over the other targets
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    directions = moving_directions(model, 1)
    coefficients = torch.tensor([[0.0], [0.8], [-1.5]])
    expected = one_forward_per_point(model, center, directions, coefficients, x, y, F.cross_entropy)
    got = PointBatch.build(model, x, center, directions).losses(coefficients, y, F.cross_entropy)
    torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0)


def test_regression_mse_matches():
    model = build_model(ModelSpec(arch="mlp", depth=2, width=10, norm="none"), (5,), 2,
                        generator=torch.Generator().manual_seed(0)).eval()
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(30, 5, generator=generator), torch.randn(30, 2, generator=generator)
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    directions = moving_directions(model)
    coefficients = torch.tensor([[0.0, 0.0], [0.5, -1.0], [-1.0, 1.0]])
    expected = one_forward_per_point(model, center, directions, coefficients, x, y, F.mse_loss)
    got = PointBatch.build(model, x, center, directions).losses(coefficients, y, F.mse_loss)
    torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("model", [
    _TiedWeights(),
    build_model(ModelSpec(arch="mlp", depth=2, width=8, norm="batchnorm"), (1, 16), 3,
                generator=torch.Generator().manual_seed(0)),
    build_model(ModelSpec(arch="cnn1d", channels=[4, "pool", 6], kernel_size=3, norm="none"), (1, 16), 3,
                generator=torch.Generator().manual_seed(0)),
    build_model(ModelSpec(arch="mlp", depth=2, width=8, norm="none", dropout="dropconnect:0.3"), (1, 16), 3,
                generator=torch.Generator().manual_seed(0)),
], ids=["tied weights", "batchnorm mlp", "cnn", "dropconnect mlp"])
def test_models_that_do_not_qualify_are_refused_and_the_slice_still_matches(model):
    model.eval()
    x, y = toy_data()
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert PointBatch.build(model, x, center, moving_directions(model)) is None
    generator = torch.Generator().manual_seed(1)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    alphas, betas = torch.linspace(-1, 1, 4), torch.linspace(-0.5, 0.5, 3)
    fast = slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, betas, chunk=5)   # vmap path
    reference = slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, betas, batched=False)
    torch.testing.assert_close(fast, reference, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("chunk", [None, 1, 4, 100])
def test_slices_and_paths_match_the_per_point_reference(chunk):
    model, other = _deepwell_mlp(), _deepwell_mlp(residual=False)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x, y = toy_data()
    generator = torch.Generator().manual_seed(1)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    alphas, betas = torch.linspace(-1, 1, 5), torch.linspace(-0.5, 0.5, 3)   # 15 points: no chunk divides them but 1
    torch.testing.assert_close(slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, betas, chunk=chunk),
                               slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, betas, batched=False),
                               atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(slice_1d(model, dx, x, y, F.cross_entropy, alphas, chunk=chunk),
                               slice_1d(model, dx, x, y, F.cross_entropy, alphas, batched=False), atol=TOLERANCE, rtol=0)
    params = [{n: p.detach() for n, p in m.named_parameters()} for m in (model, other)]
    zero = {n: torch.zeros_like(p) for n, p in params[0].items()}
    assert PointBatch.build(model, x, zero, params) is not None   # so interpolate below runs PointBatch
    path_alphas = torch.linspace(0, 1, 6)
    path = interpolate(model, other, x, y, F.cross_entropy, path_alphas, chunk=chunk)
    torch.testing.assert_close(path, interpolate(model, other, x, y, F.cross_entropy, path_alphas, batched=False),
                               atol=TOLERANCE, rtol=0)
    with torch.no_grad():  # the endpoints are the two models themselves
        torch.testing.assert_close(path[0], F.cross_entropy(model(x), y), atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(path[-1], F.cross_entropy(other(x), y), atol=TOLERANCE, rtol=0)


def test_slice_2d_matches_moved_copies_and_takes_the_point_batch_path():
    model = _deepwell_mlp(residual=True)
    x, y = toy_data()
    generator = torch.Generator().manual_seed(1)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    center = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert PointBatch.build(model, x, center, [dx, dy]) is not None   # so slice_2d below runs PointBatch
    alphas, betas = torch.tensor([-1.0, 0.0, 0.6]), torch.tensor([-0.4, 0.9])
    grid = slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, betas)
    a, b = torch.meshgrid(alphas, betas, indexing="ij")
    expected = one_forward_per_point(model, center, [dx, dy], torch.stack([a.reshape(-1), b.reshape(-1)], 1), x, y,
                                      F.cross_entropy)
    torch.testing.assert_close(grid, expected.view(3, 2), atol=TOLERANCE, rtol=0)


def test_relus_run_in_place_only_where_that_changes_nothing():
    x, _ = toy_data()
    for model, in_place in ((_deepwell_mlp(), True), (_ReadsAgainAfterReLU(), False)):
        center = {n: p.detach().clone() for n, p in model.named_parameters()}
        batch = PointBatch.build(model, x, center, moving_directions(model))
        relus = [m for m in batch.frozen.modules() if isinstance(m, nn.ReLU)]
        assert relus and all(m.inplace is in_place for m in relus), type(model).__name__
        assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))   # the caller's model keeps its own


def test_the_model_is_left_unmodified():
    model = _deepwell_mlp(dropout="dropout:0.3").train()   # train mode on purpose: the copy runs in eval mode
    other = _deepwell_mlp()
    x, y = toy_data()
    x_before = x.clone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules_before = [type(m) for m in model.modules()]
    generator = torch.Generator().manual_seed(1)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    grid = torch.linspace(-1, 1, 4)
    slice_2d(model, dx, dy, x, y, F.cross_entropy, grid, grid)
    slice_1d(model, dx, x, y, F.cross_entropy, grid)
    interpolate(model, other, x, y, F.cross_entropy, grid)
    PointBatch.build(model, x, {n: p.detach() for n, p in model.named_parameters()}, [dx, dy])
    assert model.training
    assert [type(m) for m in model.modules()] == modules_before   # no layer swapped
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(x, x_before)   # nor the data
