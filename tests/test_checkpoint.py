"""Tests of deepwell.training.checkpoint: lossless round trips, clear errors, atomic writes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from deepwell.errors import CheckpointError
from deepwell.training import checkpoint
from deepwell.training.checkpoint import load_state, load_tensors, save_state, save_tensors


def assert_same_tree(actual, expected) -> None:
    """Equal structure, types (tuple stays tuple, int keys stay int) and bitwise-equal tensors."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype and torch.equal(actual, expected)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert type(key) is type(next(k for k in actual if k == key))
            assert_same_tree(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same_tree(a, e)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == expected


STATES = {
    "nested, int keys, tuples, None": {
        "epoch": 3,
        "optimizer": {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.randn(3, 2)}, 1: {}},
                      "param_groups": [{"params": [0, 1], "betas": (0.9, 0.999), "lr": 1e-3, "foreach": None}]},
        "rng": {"torch": torch.get_rng_state(), "cuda": None},
        "flags": [True, False], "name": "run", "empty": {}, "nothing": None,
    },
    "special floats": {"best": math.inf, "worst": -math.inf, "missing": math.nan, "tiny": 5e-324},
    "dtypes and shapes": {"scalar": torch.tensor(2.5, dtype=torch.float64), "ints": torch.arange(5),
                          "mask": torch.tensor([True, False]), "empty": torch.zeros(0, 3),
                          "half": torch.ones(2, dtype=torch.float16)},
    # tensor names built from key paths must not collide: "a/b" as one key vs "a" -> "b"
    "keys with slashes": {"a/b": torch.zeros(2), "a": {"b": torch.ones(2)}, "val/loss": 0.5},
    "shared storage": {"w": (base := torch.randn(4)), "view": base[:2], "same": base},
}


@pytest.mark.parametrize("state", STATES.values(), ids=STATES.keys())
def test_save_state_round_trips(tmp_path, state) -> None:
    save_state(tmp_path / "state.safetensors", state)
    assert_same_tree(load_state(tmp_path / "state.safetensors"), state)


UNSTORABLE = {
    "object": ({"bad": object()}, "cannot checkpoint a object at '/bad'"),
    "mixed keys": ({"x": {0: 1, "a": 2}}, "keys are not all str or all int"),  # int keys would come back as str
    "tuple keys": ({(1, 2): 3}, "keys are not all str or all int"),
    "reserved key": ({"__tensor__": "x"}, "keys are not all str or all int"),  # would load back as a tensor reference
}


@pytest.mark.parametrize(("state", "message"), UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_save_state_refuses_what_it_cannot_store_faithfully(tmp_path, state, message) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        save_state(tmp_path / "state.safetensors", state)
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint_says_not_found(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_state(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", b"\xff" * 64], ids=["empty", "text", "bytes"])
def test_corrupt_checkpoint_says_corrupt(tmp_path, content) -> None:
    path = tmp_path / "last.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_state(path)


def test_truncated_checkpoint_says_corrupt(tmp_path) -> None:
    path = tmp_path / "last.safetensors"
    save_state(path, {"w": torch.randn(100)})
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_state(path)


def test_plain_safetensors_file_is_not_a_training_checkpoint(tmp_path) -> None:
    save_tensors(tmp_path / "weights.safetensors", {"w": torch.ones(2)})
    with pytest.raises(CheckpointError, match="not a deepwell training checkpoint"):
        load_state(tmp_path / "weights.safetensors")
    tensors, metadata = load_tensors(tmp_path / "weights.safetensors")
    assert torch.equal(tensors["w"], torch.ones(2)) and metadata == {}


def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.safetensors"
    save_state(path, {"epoch": 1, "w": torch.ones(3)})
    before = path.read_bytes()
    real_write = Path.write_bytes

    def write_half_then_die(self, data):
        real_write(self, data[:len(data) // 2])  # a half-written file, then the "kill"
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", write_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"epoch": 2, "w": torch.zeros(3)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
    assert load_state(path)["epoch"] == 1


def test_atomic_write_text_replaces_whole_file(tmp_path) -> None:
    path = tmp_path / "sub" / "metrics.jsonl"
    checkpoint.atomic_write_text(path, "one\n")
    checkpoint.atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.jsonl"]


def test_atomic_writes_get_ordinary_permissions(tmp_path) -> None:
    import os

    from deepwell.training.checkpoint import atomic_write_text

    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
