"""Shared fixtures: every test starts from the same global RNG state."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Seed torch's global generator so dropout masks and default inits are reproducible."""
    torch.manual_seed(0)
