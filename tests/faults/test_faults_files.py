"""Fault injection on a run's files: torn JSON lines, a full disk, leftovers of killed writes, modes, NaN.

Each test compares the resumed run with an uninterrupted one bitwise (faults_common.difference names what differs).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from faults_common import difference, jsonl, small_run
from killing import Kill

import deepwell
from deepwell.errors import CheckpointError, StorageError
from deepwell.sweep.store import RecordStore
from deepwell.training.callbacks import Callback
from deepwell.training.checkpoint import read_jsonl

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The uninterrupted run every resumed one must equal."""
    return small_run(tmp_path_factory.mktemp("whole"), "whole").path


def killed_run(folder: Path, after: int = 3) -> Path:
    with pytest.raises(KeyboardInterrupt):
        small_run(folder, "killed", callbacks=[Kill(after=after)])
    return folder / "killed"


@pytest.mark.parametrize("name", ["probes.jsonl", "metrics.jsonl"])
def test_a_torn_last_line_resumes_bitwise(tmp_path, whole, name) -> None:
    run = killed_run(tmp_path)
    with (run / name).open("a") as handle:
        handle.write('{"kind": "sample", "step": 9')  # a kill (or a full disk) half-way through an append
    (run / ".summary.json.x1.tmp").write_bytes(b"")  # and what a killed atomic write leaves
    (run / "checkpoints" / ".last.safetensors.x2.tmp").write_bytes(b"\0" * 10)
    resumed = deepwell.train(resume=run, progress="none").path
    assert difference(whole, resumed) is None, difference(whole, resumed)
    leftovers = sorted(p.name for p in resumed.rglob("*.tmp"))
    assert leftovers == [], f"temporary files left after resume: {leftovers}"


def test_a_bad_line_in_the_middle_is_named_not_dropped(tmp_path) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(CheckpointError, match=r"line 2 is not JSON"):
        read_jsonl(path, repair=True)


def test_a_torn_sweep_record_is_dropped(tmp_path) -> None:
    store = RecordStore(tmp_path / "records.jsonl")
    store.append([{"run_id": "a"}])
    with store.path.open("a") as handle:
        handle.write('{"run_id": "b", "test_')
    assert [r["run_id"] for r in store.load()] == ["a"]
    assert store.path.read_text() == '{"run_id": "a"}\n', f"file after repair: {store.path.read_text()!r}"


class FillDisk(Callback):
    """At the end of epoch ``after``, a write of this run fails with ENOSPC (as on a full disk) once."""

    def __init__(self, monkeypatch, after: int, target: str) -> None:
        self.monkeypatch, self.after, self.target = monkeypatch, after, target

    def on_epoch_end(self, state) -> None:
        if state.epoch + 1 != self.after:
            return
        real_write = Path.write_bytes if self.target == "checkpoint" else None

        def full(path, data):
            real_write(path, data[: len(data) // 3])  # part of it made it to disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        if self.target == "checkpoint":
            self.monkeypatch.setattr(Path, "write_bytes", full)
        else:  # the probes' and metrics' appends: a torn line, then the error
            real_open = Path.open

            def open_full(path, mode="r", *args, **kwargs):
                handle = real_open(path, mode, *args, **kwargs)
                if "a" not in mode:
                    return handle
                real = handle.write

                def write(text):
                    real(text[: len(text) // 2])
                    handle.flush()
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

                handle.write = handle.writelines = lambda text: write("".join(text))
                return handle

            self.monkeypatch.setattr(Path, "open", open_full)


@pytest.mark.parametrize("target", ["checkpoint", "append"])
def test_a_full_disk_is_one_error_and_resumes_bitwise(tmp_path, whole, monkeypatch, target) -> None:
    with pytest.raises(StorageError) as raised:
        small_run(tmp_path, "full", callbacks=[FillDisk(monkeypatch, after=3, target=target)])
    message = str(raised.value)
    assert "disk is full" in message and f"--resume {tmp_path / 'full'}" in message, message
    monkeypatch.undo()  # space freed
    resumed = deepwell.train(resume=tmp_path / "full", progress="none").path
    assert difference(whole, resumed) is None, difference(whole, resumed)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root and a kernel that allows the mount), unmounted after; skips otherwise."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}); the patched writer covers it")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


class Ballast(Callback):
    """Fills the disk of ``folder`` up to ``spare`` bytes at the end of epoch ``after``: the next writes fail."""

    def __init__(self, folder: Path, after: int, spare: int = 2048) -> None:
        self.folder, self.after, self.spare = folder, after, spare

    def on_epoch_end(self, state) -> None:
        if state.epoch + 1 == self.after:
            free = shutil.disk_usage(self.folder).free
            with open(self.folder / "ballast", "wb") as handle:
                handle.write(b"\0" * max(0, free - self.spare))


def test_a_real_full_disk_resumes_bitwise_once_space_is_freed(small_tmpfs, whole) -> None:
    with pytest.raises(StorageError) as raised:
        small_run(small_tmpfs, "full", callbacks=[Ballast(small_tmpfs, after=2)])
    assert "No space left on device" in str(raised.value) and "--resume" in str(raised.value), str(raised.value)
    (small_tmpfs / "ballast").unlink()  # the user frees space
    resumed = deepwell.train(resume=small_tmpfs / "full", progress="none").path
    assert difference(whole, resumed) is None, difference(whole, resumed)


def test_files_are_all_readable_alike(tmp_path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    run = small_run(tmp_path, "modes", "output.report=true")
    modes = {str(p.relative_to(run.path)): oct(p.stat().st_mode & 0o777) for p in run.path.rglob("*")
             if p.is_file() and p.name != ".lock"}
    odd = {name: mode for name, mode in modes.items() if mode != oct(0o666 & ~umask)}
    assert "model.safetensors" in modes and not odd, f"files whose mode differs from {oct(0o666 & ~umask)}: {odd}"


def test_a_diverged_run_writes_json_null_and_says_why_it_cannot_resume(tmp_path, cli) -> None:
    run = small_run(tmp_path, "diverged", "train.lr=1e12", "train.optimizer=sgd")
    assert run.summary["status"] == "non_finite"

    def refuse(token: str) -> None:
        raise ValueError(f"the bare token {token}: not JSON")

    for name in ("metrics.jsonl", "summary.json"):
        text = (run.path / name).read_text()
        for line in text.splitlines() if name.endswith("jsonl") else [text]:
            try:
                json.loads(line, parse_constant=refuse)
            except ValueError as error:
                raise AssertionError(f"{name}: {error}") from None
    assert jsonl(run.path / "metrics.jsonl")[0]["train/loss"] is None
    code, _, err = cli("train", "--resume", str(run.path))
    assert code == 2 and "killed" not in err and "non-finite" in err, err
    assert len(err.strip().splitlines()) == 1, err
