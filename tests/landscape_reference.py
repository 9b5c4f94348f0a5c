"""The loss landscape's reference: one plain forward per parameter point, and the test data and directions."""

from __future__ import annotations

import copy

import torch
from torch import nn

from deepwell.diagnostics.landscape import random_direction

TOLERANCE = 1e-5   # the landscape's promise: batched and per-point losses agree within this


def toy_data(outputs: int = 3, n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return torch.randn(n, 1, 16, generator=generator), torch.randint(0, outputs, (n,), generator=generator)


def moving_directions(model: nn.Module, count: int = 2) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    directions = [random_direction(model, generator) for _ in range(count)]
    for direction in directions:  # random_direction zeroes biases; move them too, so they are tested
        for name, p in model.named_parameters():
            if p.dim() == 1:
                direction[name] = 0.3 * torch.randn(p.shape, generator=generator)
    return directions


def one_forward_per_point(model: nn.Module, center: dict[str, torch.Tensor], directions: list[dict[str, torch.Tensor]],
                           coefficients: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss) -> torch.Tensor:
    """The reference: a fresh copy per point, its parameters set to center + sum_k a_k d_k, one plain forward."""
    losses = []
    for row in coefficients:
        moved = copy.deepcopy(model).eval()
        with torch.no_grad():
            for name, p in moved.named_parameters():
                p.copy_(center[name] + sum(a * d[name] for a, d in zip(row.tolist(), directions)))
            losses.append(loss(moved(x), y))
    return torch.stack(losses)
