"""Executors: how a sweep's tasks run. All share one interface, ``run(tasks) -> Iterator[Record]``.

- :class:`InProcessExecutor`: a loop of ``fit`` calls in this process (the reference).
- :class:`ProcessPoolExecutor`: ``fit`` calls in worker processes (spawn; one torch thread each).
- :class:`BatchedExecutor`: tasks that share data size and training spec train together as one
  batched ensemble (:func:`deepwell.sweep.ensemble.train_ensemble`); far faster for small models.

Records come back as each run (or batched group) finishes, so the caller can store them at once.
A Ray executor can implement the same ``run``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

import torch

from deepwell.errors import ConfigError
from deepwell.sweep.ensemble import ensemble_layout, train_ensemble
from deepwell.sweep.tasks import Record, SweepTask, build_member, record_from_history
from deepwell.training.loop import fit

__all__ = ["Executor", "InProcessExecutor", "ProcessPoolExecutor", "BatchedExecutor", "run_task", "EXECUTORS"]


class Executor(Protocol):
    """Runs sweep tasks; yields one record per task, in any order, as they finish."""

    name: str

    def run(self, tasks: Sequence[SweepTask]) -> Iterator[Record]: ...


def run_task(task: SweepTask) -> Record:
    """One task through ``fit`` (the test split as validation data); its record."""
    started = time.perf_counter()
    model, data = build_member(task)
    result = fit(model, data, task.train, seed=task.seed)
    return record_from_history(task, model, result.history, time.perf_counter() - started, "in_process")


class InProcessExecutor:
    """A loop of ``fit`` calls in this process."""

    name = "in_process"

    def run(self, tasks: Sequence[SweepTask]) -> Iterator[Record]:
        for task in tasks:
            yield run_task(task)


def _worker_init() -> None:
    torch.set_num_threads(1)  # workers share the cores: one thread each avoids oversubscription


def _run_in_worker(task: SweepTask) -> Record:
    record = run_task(task)
    record["executor"] = "process_pool"
    return record


class ProcessPoolExecutor:
    """``fit`` calls in ``workers`` spawned processes, one torch thread each.

    Args:
        workers: number of processes (default: the CPU count).
    """

    name = "process_pool"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers

    def run(self, tasks: Sequence[SweepTask]) -> Iterator[Record]:
        if not tasks:
            return
        context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
        with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_init) as pool:
            futures = [pool.submit(_run_in_worker, task) for task in tasks]
            for future in concurrent.futures.as_completed(futures):
                yield future.result()


class BatchedExecutor:
    """Groups tasks (same training spec and data size) and trains each group as one batched ensemble.

    Tasks the ensemble cannot train exactly (batchnorm, dropout, penalties, ...) fall back to
    ``fit`` one by one, so every sweep runs; ``record["executor"]`` says which path ran.

    Args:
        max_group: most members per ensemble (memory bound); larger groups are split.
        bucket_overhead: passed to ``train_ensemble`` (padded layout).
    """

    name = "batched"

    def __init__(self, max_group: int = 256, bucket_overhead: float | None = None) -> None:
        self.max_group, self.bucket_overhead = max_group, bucket_overhead

    def run(self, tasks: Sequence[SweepTask]) -> Iterator[Record]:
        groups: dict[str, list[SweepTask]] = {}
        for task in tasks:
            groups.setdefault(task.group_key(), []).append(task)
        for members in groups.values():
            for start in range(0, len(members), self.max_group):
                yield from self._run_group(members[start:start + self.max_group])

    def _run_group(self, tasks: list[SweepTask]) -> Iterator[Record]:
        started = time.perf_counter()
        built = [build_member(task) for task in tasks]
        models = [model for model, _ in built]
        try:
            ensemble_layout(models)
            if len({len(data.x_train) for _, data in built}) != 1:
                raise ConfigError("members differ in training-set size")
        except ConfigError:
            for task in tasks:
                yield run_task(task)
            return
        result = train_ensemble(models, [data for _, data in built], tasks[0].train, [t.seed for t in tasks],
                                bucket_overhead=self.bucket_overhead)
        seconds = (time.perf_counter() - started) / len(tasks)  # the group's time, shared evenly
        for task, model, history in zip(tasks, models, result.histories):
            yield record_from_history(task, model, history, seconds, f"batched:{result.layout}")


EXECUTORS = {"in_process": InProcessExecutor, "process_pool": ProcessPoolExecutor, "batched": BatchedExecutor}
