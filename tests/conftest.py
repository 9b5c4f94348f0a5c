"""Shared fixtures: every test starts from the same global RNG state."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Seed torch's global generator so dropout masks and default inits are reproducible."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models are overhead-bound: one torch thread is faster than two and spares a shared machine.

    Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
