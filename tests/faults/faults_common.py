"""What the fault-injection tests share: a small run, a bitwise comparison that names the first difference,
the deepwell command in a subprocess, and a process's descendants from /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import deepwell

ROOT = Path(__file__).resolve().parents[2]
# Small and quick, with everything that writes a file on: probes every 4 steps, dropout (the RNG state must resume).
SMALL = ["output.report=false", "data.source=moons:n=400", "model.hidden=[16,16]", "model.dropout=dropout:0.1",
         "train.epochs=5", "train.batch_size=32", "train.lr=0.01", "diagnostics.every=4"]


def small_run(folder: Path, name: str, *extra: str, **options) -> deepwell.Run:
    return deepwell.train(overrides=[*SMALL, f"output.dir={folder}", f"output.name={name}", *extra], progress="none", **options)


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def difference(expected: Path, got: Path) -> str | None:
    """None when two finished run folders hold bitwise the same training; else what differs first."""
    for name in ("model.safetensors", "checkpoints/last.safetensors"):
        if not (got / name).is_file():
            return f"{got} has no {name}"
        a, b = load_file(str(expected / name)), load_file(str(got / name))
        if set(a) != set(b):
            return f"{name}: keys differ: {sorted(set(a) ^ set(b))[:4]}"
        for key in a:
            if not torch.equal(a[key], b[key]):
                return f"{name}: tensor {key} differs (max |diff| {(a[key].float() - b[key].float()).abs().max():.3g})"
    for name, strip in (("metrics.jsonl", without_times), ("probes.jsonl", lambda rows: rows)):
        a, b = strip(jsonl(expected / name)), strip(jsonl(got / name))
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            return f"{name}: {len(a)} vs {len(b)} rows, first difference at row {first}"
    return None


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")}
    return env | {"PYTHONPATH": str(ROOT), "DEEPWELL_THREADS": "1"} | extra


def deepwell_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepwell.cli", *args]


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    """``deepwell ARGS`` in a subprocess (stdout and stderr captured as text)."""
    return subprocess.Popen(deepwell_command(*args), cwd=cwd or ROOT, env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (children, their children, ...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it ended meanwhile
            parent = int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold spaces
            parents.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
