"""Checkpoints: one safetensors file per save, written atomically, nothing pickled.

A training state is any nest of dicts/lists of tensors, numbers, strings and None (model and
optimiser ``state_dict()``s, RNG states, callback states). :func:`save_state` splits it into
tensors (stored as safetensors) and a JSON skeleton (stored in the file's metadata), so one file
holds everything and a rename makes the write atomic: a killed process leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from deepwell.errors import CheckpointError

__all__ = ["atomic_write_text", "save_state", "load_state", "save_tensors", "load_tensors", "json_line", "json_safe", "read_jsonl", "append_lines",
           "remove_temporaries"]

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_META_KEY = "deepwell_state"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process umask, for the mode of atomically written files
_RESERVED = {_TENSOR, _TUPLE, "__int_keys__"}  # markers in the JSON skeleton


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (never a half-written file)."""
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # after the write (mkstemp makes 0600): a run's files read like any other file
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)  # a failed write() names no file: say which one (a full disk's message)
        raise


def json_line(record: Any) -> str:
    """One JSON line for a JSON-lines file: NaN and infinities become ``null`` (bare ``NaN`` is not JSON).

    Example::

        json_line({"train/loss": float("nan"), "epoch": 3})  # '{"train/loss": null, "epoch": 3}\\n'
    """
    return json.dumps(json_safe(record), allow_nan=False) + "\n"


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None, for JSON files other tools can read."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def append_lines(path: str | Path, lines: list[str]) -> None:
    """Append whole lines to a JSON-lines file in one write; an OSError names the file.

    A kill or a full disk can still tear the last line: :func:`read_jsonl` drops it.
    """
    try:
        with Path(path).open("a") as handle:
            handle.write("".join(lines))
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


def read_jsonl(path: str | Path, repair: bool = False) -> list[Any]:
    """The records of a JSON-lines file that only ever grows by appends; [] when it does not exist.

    A kill or a full disk during an append leaves at most a torn last line (no newline, or not
    JSON): it is dropped, and with ``repair`` (only for the file's one writer, before it appends
    again) the file is rewritten without it. A bad line anywhere else is not a torn append: it
    raises CheckpointError naming the line. Values written as ``null`` (see :func:`json_line`)
    come back as None.

    Example::

        rows = read_jsonl("runs/x/probes.jsonl")
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().splitlines(keepends=True)
    records = []
    for number, line in enumerate(lines, 1):
        try:
            if not line.endswith("\n"):
                raise ValueError("no newline")
            records.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise CheckpointError(f"'{path}' line {number} is not JSON ({line[:60]!r}...): the file was edited or "
                                      "damaged. Restore it or delete the run folder.") from None
            if repair:
                atomic_write_text(path, "".join(lines[:-1]))
    return records


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.*.tmp`` files an atomic write killed mid-way left in ``folder`` (and its sub-folders).

    Only call it on a folder no other process is writing (a run folder being resumed or claimed).
    """
    removed = [path for path in Path(folder).rglob(".*.tmp") if path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _split(tree: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(tree, torch.Tensor):
        # Named by position, not by key path: paths collide ({"a/b": x} vs {"a": {"b": y}}).
        name = str(len(tensors))
        tensors[name] = tree.detach().cpu().contiguous()
        return {_TENSOR: name}
    if isinstance(tree, dict):
        int_keys = bool(tree) and all(isinstance(k, int) and not isinstance(k, bool) for k in tree)
        if not int_keys and not all(isinstance(k, str) and k not in _RESERVED for k in tree):
            raise TypeError(f"cannot checkpoint a dict at '{path}' whose keys are not all str or all int: {list(tree)}")
        return {str(k): _split(v, tensors, f"{path}/{k}") for k, v in tree.items()} | (
            {"__int_keys__": True} if int_keys else {}
        )
    if isinstance(tree, (list, tuple)):
        items = [_split(v, tensors, f"{path}/{i}") for i, v in enumerate(tree)]
        return {_TUPLE: items} if isinstance(tree, tuple) else items
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot checkpoint a {type(tree).__name__} at '{path}'")


def _join(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if _TENSOR in tree:
            return tensors[tree[_TENSOR]]
        if _TUPLE in tree:
            return tuple(_join(v, tensors) for v in tree[_TUPLE])
        int_keys = tree.get("__int_keys__", False)
        return {(int(k) if int_keys else k): _join(v, tensors) for k, v in tree.items() if k != "__int_keys__"}
    if isinstance(tree, list):
        return [_join(v, tensors) for v in tree]
    return tree


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Save a nested training state to one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, "")
    # safetensors refuses tensors that share memory; copies are cheap at these sizes.
    tensors = {k: v.clone() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: Path(tmp).write_bytes(save(tensors, metadata={_META_KEY: json.dumps(skeleton)})))


def load_state(path: str | Path) -> dict[str, Any]:
    """Load what :func:`save_state` wrote.

    Raises:
        CheckpointError: missing, corrupt, or not a deepwell checkpoint.
    """
    path = Path(path)
    tensors, metadata = _read(path)
    if _META_KEY not in metadata:
        raise CheckpointError(f"'{path}' is a safetensors file but not a deepwell training checkpoint (no state metadata).")
    return _join(json.loads(metadata[_META_KEY]), tensors)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save flat tensors (e.g. final model weights) atomically."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: Path(tmp).write_bytes(save(tensors, metadata=metadata)))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load flat tensors and the file's metadata. Raises CheckpointError when missing or corrupt."""
    return _read(Path(path))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' not found. Check the run folder path (see `deepwell runs`).")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"Checkpoint '{path}' is corrupt or not a safetensors file ({error}). "
            "Delete it to train again from the start, or use another run folder."
        ) from None
