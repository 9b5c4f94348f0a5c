"""Fault injection with untrusted files: nothing a user hands deepwell can run code. Each file below would run
``touch SENTINEL`` if it were unpickled or its YAML tags constructed; each must be refused (exit 2, one line)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch


class Payload:
    """Pickles to a call of os.system: loading it with pickle runs the command."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


def yaml_tag(sentinel: Path) -> str:
    return f'!!python/object/apply:os.system ["touch {sentinel}"]'


def untrusted(kind: str, folder: Path, sentinel: Path) -> list[str]:
    """Arguments of ``deepwell`` that hand it one untrusted input of ``kind``."""
    small = ["--set", "train.epochs=1", "--set", f"output.dir={folder / 'runs'}"]
    if kind == "object_npz":
        np.savez(folder / "data.npz", x=np.array([Payload(sentinel)] * 4, dtype=object), y=np.zeros(4))
        return ["train", "--set", f"data.source=npz:path={folder / 'data.npz'}", *small]
    if kind == "pickled_pt":
        torch.save({"model.weight": Payload(sentinel)}, folder / "backbone.pt")
        return ["train", "--set", f"model.backbone={folder / 'backbone.pt'}", "--set", "data.source=moons:n=200", *small]
    if kind == "yaml_spec":
        (folder / "spec.yaml").write_text(f"seed: {yaml_tag(sentinel)}\n")
        return ["train", str(folder / "spec.yaml"), *small]
    if kind == "set":
        return ["train", "--set", f"seed={yaml_tag(sentinel)}", *small]
    if kind == "over":
        return ["sweep", "--over", f"seed={yaml_tag(sentinel)}", "--out", str(folder / "sweeps")]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["object_npz", "pickled_pt", "yaml_spec", "set", "over"])
def test_untrusted_inputs_are_refused_and_run_nothing(tmp_path, cli, kind) -> None:
    sentinel = tmp_path / "SENTINEL"
    code, _, err = cli(*untrusted(kind, tmp_path, sentinel))
    assert not sentinel.exists(), f"{kind}: the file's code ran"
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, f"{kind}: exit {code}: {err}"
    if kind not in ("yaml_spec", "set", "over"):  # YAML errors still quote the parser's lines (issue 15 item 11: another branch)
        assert len(err.strip().splitlines()) == 1, f"{kind}: {err}"
    assert not list((tmp_path / "runs").glob("*")), f"{kind}: a run folder was left: {list((tmp_path / 'runs').glob('*'))}"
