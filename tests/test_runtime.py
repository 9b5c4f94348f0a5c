"""deepwell.runtime: a block on a given number of torch threads, the count restored after."""

from __future__ import annotations

import pytest
import torch

from deepwell.runtime import torch_threads


def test_torch_threads_sets_the_count_and_restores_it_even_after_an_error() -> None:
    before = torch.get_num_threads()
    inside = 1 if before != 1 else 2
    with torch_threads(inside):
        assert torch.get_num_threads() == inside
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(inside):
        raise RuntimeError("a shard failed")
    assert torch.get_num_threads() == before
