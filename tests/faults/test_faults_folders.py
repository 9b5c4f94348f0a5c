"""Fault injection on where a run writes: path escapes, names taken twice, runs started at once, unwritable folders."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from faults_common import SMALL, jsonl, small_run, start

import deepwell
from deepwell.errors import ConfigError
from deepwell.folders import FolderLock, claim_run_folder

pytestmark = pytest.mark.usefixtures("single_thread")


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", ["../escaped", "/tmp/deepwell-absolute", ".", "..", "a/b", "a\\b"])
def test_output_name_must_be_one_folder_name(tmp_path, cli, name) -> None:
    inside = tmp_path / "runs"
    code, _, err = cli("train", "--set", f"output.dir={inside}", "--set", f"output.name={name}", "--set", "train.epochs=1")
    assert code == 2 and "single folder name" in err, (code, err)
    assert len(err.strip().splitlines()) == 1, err
    assert files_under(tmp_path) == [] and not Path("/tmp/deepwell-absolute").exists(), files_under(tmp_path)


def test_a_sweep_name_must_be_one_folder_name(tmp_path, cli) -> None:
    code, _, err = cli("sweep", "--over", "model.width=4,8", "--out", str(tmp_path / "sweeps"), "--name", "../x")
    assert code == 2 and "single folder name" in err, (code, err)
    assert files_under(tmp_path) == [], files_under(tmp_path)


def test_a_named_folder_holding_a_run_is_refused_unless_overwrite(tmp_path) -> None:
    first = small_run(tmp_path, "taken", "train.epochs=2")
    before = (first.path / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run.*--resume.*output.overwrite=true"):
        small_run(tmp_path, "taken", "seed=1", "train.epochs=2")
    assert (first.path / "model.safetensors").read_bytes() == before, "the refused run changed the finished one"
    second = small_run(tmp_path, "taken", "seed=1", "output.overwrite=true", "train.epochs=2")
    assert [row["epoch"] for row in second.history] == [1, 2], "an overwritten run kept the old run's epochs"
    assert (second.path / "model.safetensors").read_bytes() != before


def test_claims_at_once_get_their_own_folders(tmp_path) -> None:
    barrier, claimed, errors = threading.Barrier(8), [], []

    def claim(named: bool) -> None:
        barrier.wait()
        try:
            claimed.append(claim_run_folder(tmp_path / ("named" if named else "unnamed"), "run", named=named))
        except ConfigError as error:
            errors.append(str(error))

    for named in (False, True):
        threads = [threading.Thread(target=claim, args=(named,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    unnamed = sorted(p.name for p in claimed if p.parent.name == "unnamed")
    assert unnamed == sorted(["run"] + [f"run-{i}" for i in range(2, 9)]), unnamed
    assert [p.name for p in claimed if p.parent.name == "named"] == ["run"] and len(errors) == 7, errors


def test_a_folder_being_written_is_locked(tmp_path) -> None:
    with FolderLock(tmp_path):
        with pytest.raises(ConfigError, match=r"being written by another deepwell process \(pid \d+\)"):
            FolderLock(tmp_path)
    FolderLock(tmp_path).release()  # free again once released


@pytest.mark.slow  # two deepwell processes at once: ~20-50 s on a loaded 2-core machine; CI runs the thread claims above
def test_two_runs_with_one_name_at_once_one_wins_cleanly(tmp_path) -> None:
    args = ["train", *[part for o in [*SMALL, f"output.dir={tmp_path}", "output.name=same"] for part in ("--set", o)],
            "--progress", "none"]
    processes = [start(*args) for _ in range(2)]
    results = [(p.returncode, p.communicate(timeout=300)[1]) for p in processes]
    results = [(p.returncode, err) for p, (_, err) in zip(processes, results)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], f"exit codes {codes}: {[err[-400:] for _, err in results]}"
    loser = next(err for code, err in results if code == 2)
    assert "already" in loser or "being written" in loser, loser
    epochs = [row["epoch"] for row in jsonl(tmp_path / "same" / "metrics.jsonl")]
    assert epochs == [1, 2, 3, 4, 5], f"epochs in the shared folder: {epochs}"


def test_unnamed_runs_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch) -> None:
    import datetime

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 1, 12, 0, 0)

    monkeypatch.setattr("deepwell.run.datetime.datetime", Frozen)
    runs = [deepwell.train(overrides=[*SMALL, f"output.dir={tmp_path}", "train.epochs=1"], progress="none") for _ in range(3)]
    assert len({run.path for run in runs}) == 3, [str(run.path) for run in runs]
    assert all(len(run.history) == 1 for run in runs), "a folder got the epochs of two runs"


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def unwritable(kind: str, tmp_path: Path, request) -> Path:
    if kind == "under_a_file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "runs"
    if kind == "proc":
        return Path("/proc/deepwell-runs")
    return request.getfixturevalue("read_only") / "runs"


@pytest.mark.parametrize("kind", ["under_a_file", "proc", "read_only"])
def test_an_unwritable_output_is_one_line_and_exit_2(tmp_path, cli, request, kind) -> None:
    folder = unwritable(kind, tmp_path, request)
    code, _, err = cli("train", "--set", f"output.dir={folder}", "--set", "data.source=moons:n=200", "--set", "train.epochs=1")
    assert code == 2 and err.startswith("error: Cannot write") and "Traceback" not in err, (code, err)
    assert len(err.strip().splitlines()) == 1, err


def test_an_unwritable_sweep_folder_is_one_line_and_exit_2(tmp_path, cli) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = cli("sweep", "--over", "model.width=4,8", "--out", str(tmp_path / "file" / "sweeps"))
    assert code == 2 and "Not a directory" in err and len(err.strip().splitlines()) == 1, (code, err)
