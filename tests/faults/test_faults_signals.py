"""Fault injection by signals: Ctrl-C / SIGTERM stop at a step boundary and resume; kill -9 at random points
resumes bitwise; a killed sweep takes its worker processes with it."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from faults_common import alive, descendants, difference, jsonl, small_run, start

import deepwell
from deepwell.errors import CheckpointError, Interrupted
from deepwell.training.callbacks import Callback

pytestmark = pytest.mark.usefixtures("single_thread")


def poll(condition, timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds, checking often; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f} s still waiting for: {what}")
        time.sleep(0.05)


class SignalAt(Callback):
    """Sends ``signum`` to this process after optimisation step ``step`` (mid-epoch), as a user or a scheduler would."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum, self.steps_after = step, signum, []

    def on_batch_end(self, state) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), self.signum)
        elif state.step > self.step:
            self.steps_after.append(state.step)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_the_step_boundary_saves_and_resumes_bitwise(tmp_path, signum) -> None:
    every = ["train.checkpoint_every=2"]  # the interrupted epoch 4 follows an epoch (3) that was not on disk yet
    whole = small_run(tmp_path, "whole", *every).path
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    steps_per_epoch = jsonl(whole / "metrics.jsonl")[0]["step"]
    sender = SignalAt(3 * steps_per_epoch + 2, signum)
    with pytest.raises(Interrupted) as raised:
        small_run(tmp_path, "stopped", *every, callbacks=[sender])
    stop = raised.value
    assert sender.steps_after == [], f"steps taken after the signal: {sender.steps_after}"
    assert (stop.epoch, stop.exit_code, stop.resumable) == (3, 128 + signum, True), (stop.epoch, stop.exit_code)
    assert f"Resume with: deepwell train --resume {tmp_path / 'stopped'}" in stop.resume_hint(), stop.resume_hint()
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers, "fit left its signal handlers installed"
    resumed = deepwell.train(resume=tmp_path / "stopped", progress="none").path
    assert difference(whole, resumed) is None, difference(whole, resumed)


# Long enough (200 epochs) that the signal, sent once the first checkpoint is there, always lands mid-run.
LONG = ["--set", "data.source=moons:n=2000", "--set", "train.epochs=200", "--set", "output.report=false",
        "--set", "model.hidden=[16,16]", "--progress", "none"]


@pytest.mark.parametrize("signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_the_command_says_how_to_resume_and_exits_128_plus_the_signal(tmp_path, signum) -> None:
    process = start("train", *LONG, "--set", f"output.dir={tmp_path}", "--set", "output.name=cut")
    checkpoint = tmp_path / "cut" / "checkpoints" / "last.safetensors"
    try:
        poll(lambda: checkpoint.is_file() or process.poll() is not None, 300, "the first checkpoint")
        process.send_signal(signum)
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, (process.returncode, err[-2000:])
    assert err.strip().splitlines()[-1].endswith(f"Resume with: deepwell train --resume {tmp_path / 'cut'}"), err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    epochs = [row["epoch"] for row in jsonl(tmp_path / "cut" / "metrics.jsonl")]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 200, f"epochs written: {epochs}"
    # (that the saved checkpoint resumes bitwise is the in-process test's job above: it costs no second Python)



@pytest.mark.slow  # two torch processes and a resume: ~20 s; the SIGINT path of the launcher is the same handler
def test_a_stopped_nproc_launcher_stops_its_processes_and_says_how_to_resume(tmp_path) -> None:
    """SIGTERM to ``deepwell train --nproc 2`` (a batch scheduler's stop): torchrun stops both processes,
    rank 0 alone says how to resume, the launcher exits 143 without a traceback, and the run resumes."""
    process = start("train", "--nproc", "2", *LONG, "--set", f"output.dir={tmp_path}", "--set", "output.name=cut")
    checkpoint = tmp_path / "cut" / "checkpoints" / "last.safetensors"
    try:
        poll(lambda: checkpoint.is_file() or process.poll() is not None, 300, "the first checkpoint")
        children = descendants(process.pid)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=300)
        poll(lambda: not any(alive(pid) for pid in children), 120,
             f"the training processes to end: still alive {sorted(pid for pid in children if alive(pid))}")
    finally:
        process.kill()
    assert process.returncode == 143 and "Traceback" not in err, (process.returncode, err[-2000:])
    hints = [line for line in err.splitlines() if line.startswith("Interrupted")]
    assert len(hints) == 2 and hints[0].endswith(f"Resume with: deepwell train --resume {tmp_path / 'cut'}"), err[-2000:]
    assert "rank 0" in hints[1], hints  # the launcher points at rank 0's line instead of guessing the folder
    done = len(jsonl(tmp_path / "cut" / "metrics.jsonl"))  # the data-parallel checkpoint resumes in one process
    resumed = deepwell.train(resume=tmp_path / "cut", overrides=[f"train.epochs={done + 1}"], progress="none")
    assert [row["epoch"] for row in jsonl(resumed.path / "metrics.jsonl")] == list(range(1, done + 2))

SWEEP = ["sweep", "--executor", "process_pool", "--workers", "2", "--over", "model.width=8,16,32,64", "--set",
         "data.source=moons:n=2000", "--set", "train.epochs=5000", "--set", "model.arch=mlp"]  # runs far longer than the test


def workers_of(pid: int) -> set[int]:
    found = set()
    for child in descendants(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_killed_sweep_takes_its_workers_with_it(tmp_path, signum) -> None:
    process = start(*SWEEP, "--out", str(tmp_path))
    try:
        poll(lambda: len(workers_of(process.pid)) >= 2 or process.poll() is not None, 300, "two sweep workers")
        assert process.poll() is None, process.communicate()[1][-2000:]
        children = descendants(process.pid)  # the workers and multiprocessing's resource tracker
        process.send_signal(signum)
        _, err = process.communicate(timeout=300)
        poll(lambda: not any(alive(pid) for pid in children), 120,
             f"the sweep's processes to end after its {signal.Signals(signum).name}: still alive "
             f"{sorted(pid for pid in children if alive(pid))}")
    finally:
        process.kill()
    if signum == signal.SIGTERM:
        assert process.returncode == 143 and "run the same command again" in err, (process.returncode, err[-2000:])


# --- kill -9 at random points -----------------------------------------------------------------------------------
KILLED = ["--set", "data.source=moons:n=400", "--set", "train.epochs=40", "--set", "model.dropout=dropout:0.1",
          "--set", "train.schedule=cosine", "--set", "output.report=false", "--progress", "none"]


def reference(folder: Path) -> Path:
    overrides = [part for flag, part in zip(KILLED, KILLED[1:]) if flag == "--set"]
    return deepwell.train(overrides=[*overrides, f"output.dir={folder}", "output.name=whole"], progress="none").path


def kill_and_resume(folder: Path, whole: Path, delay: float | None) -> str:
    """One trial: kill -9 once the run folder is claimed (+ ``delay`` s; None: once the first checkpoint exists), resume.

    Returns the outcome: "resumed bitwise", "refused clearly" (killed before its first checkpoint), "finished"
    (done before the kill); anything else is a loss and is described.
    """
    process = start("train", *KILLED, "--set", f"output.dir={folder}", "--set", "output.name=trial")
    run_dir = folder / "trial"
    try:
        target = run_dir / "checkpoints/last.safetensors" if delay is None else run_dir
        poll(lambda: target.exists() or process.poll() is not None, 300, f"{target} of the trial")
        time.sleep(delay or 0)  # where the kill lands: the point of the trial, not a synchronisation
        process.kill()
        process.communicate(timeout=120)
    finally:
        process.kill()
    if process.returncode == 0:
        return "finished"
    try:  # in this process: what `deepwell train --resume` runs, without starting another Python
        deepwell.train(resume=run_dir, progress="none")
    except CheckpointError as error:  # killed before the first checkpoint, or before config.yaml was written
        clear = "killed before its first one" in str(error) or "it has no config.yaml" in str(error)
        return "refused clearly" if clear else f"lost: {error}"
    different = difference(whole, run_dir)
    return "resumed bitwise" if different is None else f"lost: {different}"


def test_kill_9_after_a_checkpoint_resumes_bitwise(tmp_path) -> None:
    whole = reference(tmp_path)
    outcome = kill_and_resume(tmp_path, whole, None)
    assert outcome in ("resumed bitwise", "finished"), outcome


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing(tmp_path) -> None:
    whole = reference(tmp_path / "reference")
    trials = int(os.environ.get("DEEPWELL_KILL_TRIALS", "12"))
    generator = random.Random(int(os.environ.get("DEEPWELL_KILL_SEED", "0")))
    outcomes = []
    for trial in range(trials):
        folder = tmp_path / f"t{trial}"
        outcomes.append(kill_and_resume(folder, whole, generator.uniform(0.0, 3.0)))
    counts = {name: outcomes.count(name) for name in ("resumed bitwise", "refused clearly", "finished")}
    lost = [o for o in outcomes if o not in counts]
    print(f"\nkill -9 trials: {trials}, " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + f", lost: {len(lost)}")
    assert not lost, lost
