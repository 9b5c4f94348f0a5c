"""Loss landscapes: filter normalisation, the caller's model untouched, path endpoints, a convex slice, the verdict."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import ModelSpec
from deepwell.diagnostics.landscape import (evaluate_parameter_sets, interpolate, nonconvexity, path_barrier,
                                            random_direction, slice_1d, slice_2d)
from deepwell.models import build_model
from deepwell.studies.landscape import BARRIER_MIN, NONCONVEX_FRACTION_MIN, nonconvex_verdict


def _cnn() -> nn.Module:
    spec = ModelSpec(arch="cnn1d", channels=[4, "pool", 6], kernel_size=3, norm="batchnorm")
    return build_model(spec, (1, 16), 3, generator=torch.Generator().manual_seed(0))


def _mlp(residual: bool = False, seed: int = 0) -> nn.Module:
    spec = ModelSpec(arch="mlp", depth=3, width=8, norm="batchnorm", residual=residual)
    return build_model(spec, (2,), 3, generator=torch.Generator().manual_seed(seed))


def _warm_batchnorm_(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give the BatchNorm buffers non-default values (one train-mode forward)."""
    model.train()
    with torch.no_grad():
        model(x)
    return model


@pytest.mark.parametrize("build", [_cnn, _mlp], ids=["cnn1d", "mlp"])
def test_direction_is_filter_normalised_and_zero_on_bias_and_batchnorm(build):
    model = build()
    direction = random_direction(model, torch.Generator().manual_seed(1))
    multi_dim = 0
    for name, weight in model.named_parameters():
        d = direction[name]
        assert d.shape == weight.shape
        if weight.dim() <= 1:  # biases, BatchNorm scale/shift
            assert torch.count_nonzero(d) == 0, name
        else:  # one norm per output unit (dense) / filter (conv)
            multi_dim += 1
            torch.testing.assert_close(d.flatten(1).norm(dim=1), weight.detach().flatten(1).norm(dim=1))
            assert not torch.allclose(d, weight.detach())  # a random direction, not the weights
    assert multi_dim >= 3
    assert any(isinstance(m, nn.Conv1d) for m in model.modules()) or build is _mlp


def test_landscape_leaves_the_model_untouched():
    x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
    model = _warm_batchnorm_(_mlp(), x)  # left in train mode on purpose
    other = _warm_batchnorm_(_mlp(seed=1), x).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    grid = torch.linspace(-1, 1, 5)
    slice_2d(model, dx, dy, x, y, F.cross_entropy, grid, grid)
    slice_1d(model, dx, x, y, F.cross_entropy, grid)
    interpolate(model, other, x, y, F.cross_entropy, grid)
    assert model.training and not other.training
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key  # parameters and BatchNorm buffers bitwise equal
    assert all(p.requires_grad for p in model.parameters())


def test_interpolation_endpoints_are_the_two_models_losses():
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    model_a, model_b = _warm_batchnorm_(_mlp(seed=0), x).eval(), _warm_batchnorm_(_mlp(seed=1), 2 * x + 1).eval()
    losses = interpolate(model_a, model_b, x, y, F.cross_entropy, torch.linspace(0, 1, 7))
    with torch.no_grad():
        torch.testing.assert_close(losses[0], F.cross_entropy(model_a(x), y))
        torch.testing.assert_close(losses[-1], F.cross_entropy(model_b(x), y))
    assert losses.shape == (7,)


def test_slice_centre_is_the_models_loss_and_grid_orientation():
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    model = _warm_batchnorm_(_mlp(), x).eval()
    generator = torch.Generator().manual_seed(0)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    alphas, betas = torch.linspace(-1, 1, 5), torch.linspace(-0.5, 0.5, 3)
    grid = slice_2d(model, dx, dy, x, y, F.cross_entropy, alphas, betas, chunk=4)  # chunks smaller than the grid
    assert grid.shape == (5, 3)
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in moved.named_parameters():
            p.add_(alphas[4] * dx[name] + betas[0] * dy[name])
        torch.testing.assert_close(grid[2, 1], F.cross_entropy(model(x), y))
        torch.testing.assert_close(grid[4, 0], F.cross_entropy(moved(x), y))


def test_convex_problem_has_no_barrier_and_positive_curvature():
    """Linear least squares: the loss is a convex quadratic in the weights along any line and plane."""
    torch.manual_seed(0)
    x = torch.randn(128, 5)
    y = x @ torch.randn(5, 1) + 0.1 * torch.randn(128, 1)
    model = nn.Linear(5, 1)
    with torch.no_grad():  # near the least-squares solution
        solution = torch.linalg.lstsq(torch.cat([x, torch.ones(128, 1)], 1), y).solution
        model.weight.copy_(solution[:5].T + 0.05)
        model.bias.copy_(solution[5])
    generator = torch.Generator().manual_seed(0)
    direction = random_direction(model, generator)
    alphas = torch.linspace(-1, 1, 21)
    line = slice_1d(model, direction, x, y, F.mse_loss, alphas)
    second = line[2:] - 2 * line[1:-1] + line[:-2]
    assert bool((second > 0).all())
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.weight.add_(direction["weight"])
    path = interpolate(model, other, x, y, F.mse_loss, torch.linspace(0, 1, 11))
    assert path_barrier(path) <= 1e-6
    grid = slice_2d(model, direction, random_direction(model, generator), x, y, F.mse_loss, alphas, alphas)
    assert nonconvexity(grid, alphas, alphas)["nonconvex_fraction"] == 0.0


def test_nonconvexity_detects_a_saddle():
    alphas = torch.linspace(-1, 1, 11)
    a, b = torch.meshgrid(alphas, alphas, indexing="ij")
    assert nonconvexity(a**2 + b**2, alphas, alphas)["nonconvex_fraction"] == 0.0
    saddle = nonconvexity(a**2 - b**2, alphas, alphas)
    assert saddle["nonconvex_fraction"] == 1.0
    assert math.isclose(saddle["center_ratio"], 1.0, rel_tol=1e-6)


def _numbers(barrier: float, fraction: float, final_loss: float = 0.1) -> dict[str, float]:
    return {"plain_seeds_barrier": barrier, "residual_seeds_barrier": barrier, "plain_nonconvex_fraction": fraction,
            "residual_nonconvex_fraction": fraction, "plain_init_barrier": 0.0, "residual_init_barrier": 0.0,
            "plain_final_loss": final_loss, "residual_final_loss": final_loss, "chance_loss": math.log(3)}


def test_nonconvex_verdict_from_numbers():
    assert nonconvex_verdict(_numbers(2 * BARRIER_MIN, 0.0)).status == "holds"
    assert nonconvex_verdict(_numbers(0.0, 2 * NONCONVEX_FRACTION_MIN)).status == "holds"
    assert nonconvex_verdict(_numbers(0.0, 0.0)).status == "does_not_hold"  # a convex-looking landscape
    assert nonconvex_verdict(_numbers(1.0, 0.5, final_loss=1.1)).status == "inconclusive"  # models did not train


@pytest.mark.slow
def test_landscape_study_quick(tmp_path):
    from deepwell.studies.landscape import run

    output = run(tmp_path, True, 0)
    assert [v.claim for v in output.verdicts] == ["nonconvex"]
    assert all((tmp_path / name).is_file() for name, _ in output.figures + output.tables)
    assert (tmp_path / "landscape_directions_plain.safetensors").is_file()
    assert (tmp_path / "landscape_trajectory.png").is_file()


def test_trajectory_pca_recovers_a_path_that_lies_in_a_plane():
    # theta_t = theta_n + a_t u + b_t v with orthonormal u, v: two directions explain everything and
    # the coordinates reconstruct every snapshot exactly; the last snapshot sits at the origin.
    from deepwell.diagnostics.landscape import trajectory_pca

    generator = torch.Generator().manual_seed(0)
    shapes = {"w": (5, 4), "b": (5,)}
    size = sum(math.prod(s) for s in shapes.values())
    u, v = torch.linalg.qr(torch.randn(size, 2, generator=generator, dtype=torch.float64))[0].T
    final = torch.randn(size, generator=generator, dtype=torch.float64)
    t = torch.linspace(0, 1, 8, dtype=torch.float64)
    a, b = 3 * (1 - t) ** 2, torch.sin(3 * t) * (1 - t)
    points = final + a[:, None] * u + b[:, None] * v

    def unflatten(vector):
        return {"w": vector[:20].view(5, 4).float(), "b": vector[20:].float()}

    path = trajectory_pca([unflatten(p) for p in points])
    assert float(path.explained.sum()) == pytest.approx(1.0, abs=1e-6)
    assert path.coords[-1].abs().max() < 1e-5
    flat = lambda d: torch.cat([d["w"].flatten(), d["b"]]).double()  # noqa: E731
    basis = torch.stack([flat(path.dx), flat(path.dy)])
    torch.testing.assert_close(basis @ basis.T, torch.eye(2, dtype=torch.float64), atol=1e-5, rtol=0)
    rebuilt = final + path.coords.double() @ basis
    torch.testing.assert_close(rebuilt, points, atol=1e-5, rtol=0)
    line = trajectory_pca([unflatten(final + s * u) for s in (2.0, 1.0, 0.5, 0.0)])  # a straight path: one direction
    assert float(line.explained[0]) == pytest.approx(1.0, abs=1e-6)
    assert line.coords[:, 0].abs().tolist() == pytest.approx([2.0, 1.0, 0.5, 0.0], abs=1e-5)


def test_weight_snapshots_hold_the_initial_and_every_epochs_weights():
    from deepwell.config import TrainSpec
    from deepwell.diagnostics.landscape import WeightSnapshots
    from deepwell.training.loop import TensorData, fit

    model = _mlp()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    snapshots = WeightSnapshots()
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    fit(model, TensorData(x, y), TrainSpec(epochs=3, batch_size=32), callbacks=[snapshots])
    assert len(snapshots.snapshots) == 4
    assert all(torch.equal(snapshots.snapshots[0][n], initial[n]) for n in initial)
    assert all(torch.equal(snapshots.snapshots[-1][n], p.detach()) for n, p in model.named_parameters())


@pytest.mark.parametrize("build", [_cnn, _mlp], ids=["cnn1d", "mlp"])
def test_batched_points_equal_one_plain_forward_per_point(build):
    """The vectorised path (chunks of points per call) against a deep copy loaded with each point's values."""
    x = torch.randn(32, 1, 16) if build is _cnn else torch.randn(32, 2)
    y = torch.randint(0, 3, (32,))
    model = _warm_batchnorm_(build(), x).eval()
    generator = torch.Generator().manual_seed(3)
    params = {n: p.detach() + 0.3 * torch.randn((7,) + p.shape, generator=generator) for n, p in model.named_parameters()}
    buffers = {n: b + 0.1 * torch.rand((7,) + b.shape, generator=generator)
               for n, b in model.named_buffers() if b.is_floating_point()}
    expected, sets = [], {**params, **buffers}
    for point in range(7):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for name, tensor in [*moved.named_parameters(), *moved.named_buffers()]:
                if name in sets:
                    tensor.copy_(sets[name][point])
            expected.append(F.cross_entropy(moved(x), y))
    batched = evaluate_parameter_sets(model, params, x, y, F.cross_entropy, buffer_sets=buffers, chunk=3)
    per_point = evaluate_parameter_sets(model, params, x, y, F.cross_entropy, buffer_sets=buffers, batched=False)
    assert (batched - torch.stack(expected)).abs().max() <= 1e-5
    assert (per_point - torch.stack(expected)).abs().max() <= 1e-5
    assert (batched - per_point).abs().max() <= 1e-5
