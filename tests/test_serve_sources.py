"""The 2-D data sets the playground offers beside moons, circles and spirals: xor and gaussians (deepwell.data.sources)."""

from __future__ import annotations

import torch

from deepwell.data import build_dataset


def test_xor_labels_are_the_sign_of_the_product_without_noise() -> None:
    data = build_dataset("xor:n=400,noise=0", seed=3)
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    assert x.shape == (400, 2) and x.abs().max() <= 1
    assert torch.equal(y, (x[:, 0] * x[:, 1] > 0).long())
    assert 0.4 < y.float().mean() < 0.6  # both classes, about evenly


def test_gaussians_blobs_sit_on_the_unit_circle_with_the_given_spread() -> None:
    data = build_dataset("gaussians:n=3000,classes=3,noise=0.2", seed=0)
    x, y = data.x_train, data.y_train
    for label in range(3):
        points = x[y == label]
        angle = torch.tensor(2 * torch.pi * label / 3)
        centre = torch.stack([torch.cos(angle), torch.sin(angle)])
        assert torch.allclose(points.mean(0), centre, atol=0.05)
        assert torch.allclose(points.std(0), torch.full((2,), 0.2), atol=0.03)
