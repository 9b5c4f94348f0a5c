"""The Ray executor: same records as the in-process loop; a killed worker's run is retried and recorded once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.errors import ConfigError
from deepwell.sweep import EXECUTORS, InProcessExecutor, RayExecutor, SweepTask, run_sweep

ray = pytest.importorskip("ray")

DATA = DataSpec(source="mnist1d:num_samples=400,train_split=0.5", val_fraction=0.0, label_noise=0.15)
COMPARED = ("run_id", "width", "seed", "num_params", "train_error", "train_loss", "test_error", "test_loss",
            "epochs", "steps", "curve")


def _tasks(widths=(3, 8), seeds=(0, 1), epochs=2) -> list[SweepTask]:
    train = TrainSpec(epochs=epochs, batch_size=50, optimizer="sgd:momentum=0.9", lr=0.01, schedule="constant")
    return [SweepTask(DATA, ModelSpec(arch="mlp", depth=2, width=w, norm="none"), train, seed=s, params={"width": w},
                      device="cpu")
            for w in widths for s in seeds]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module, started the way RayExecutor starts one (~8 s to start and stop)."""
    assert RayExecutor(workers=2)._connect(ray), "a Ray was already running in the test process"
    yield
    ray.shutdown()


def test_ray_records_equal_the_in_process_ones(local_ray) -> None:
    tasks = _tasks()
    lines: list[str] = []
    on_ray = run_sweep(tasks, RayExecutor(progress=lines.append))
    assert ray.is_initialized(), "the executor shut down a Ray it did not start"
    in_process = run_sweep(tasks, InProcessExecutor())
    for a, b in zip(in_process, on_ray):
        assert b["executor"] == "ray"
        assert {k: b[k] for k in COMPARED} == {k: a[k] for k in COMPARED}
    assert len(lines) == len(tasks) and lines[-1].startswith(f"ray: {len(tasks)}/{len(tasks)} runs done")


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _kill_first_busy_worker(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker (a descendant of this process) seen running a sweep task."""
    while not stop.is_set() and not killed:
        for pid in _descendants(os.getpid()):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::_run_on_worker"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds Ray's worker processes through /proc")
def test_a_killed_worker_is_retried_and_every_run_recorded_once(local_ray, tmp_path: Path) -> None:
    tasks = _tasks(widths=(3, 8, 16), seeds=(0,), epochs=20)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_busy_worker, args=(killed, stop), daemon=True)
    killer.start()
    try:
        records = run_sweep(tasks, RayExecutor(max_retries=3), tmp_path / "records.jsonl")
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen running a task, so none was killed"
    stored = [json.loads(line)["run_id"] for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert sorted(stored) == sorted(t.run_id for t in tasks)
    assert [r["run_id"] for r in records] == [t.run_id for t in tasks]
    assert all(r["executor"] == "ray" and r["epochs"] == 20 for r in records)


@pytest.mark.parametrize("kwargs, message", [({"num_cpus_per_task": 0}, "num_cpus_per_task"),
                                             ({"max_retries": -1}, "max_retries"),
                                             ({"workers": 0}, "workers")])
def test_bad_arguments_raise_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RayExecutor(**kwargs)


def test_registered_for_deepwell_sweep() -> None:
    from deepwell.sweep.grid import make_executor

    assert EXECUTORS["ray"] is RayExecutor and make_executor("ray", address="auto").address == "auto"


def test_missing_ray_names_the_extra(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'deepwell\[ray\]'"):
        list(RayExecutor().run(_tasks()[:1]))
