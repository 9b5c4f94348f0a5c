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
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch

from deepwell.errors import ConfigError
from deepwell.runtime import configure_cpu, torch_threads
from deepwell.sweep.ensemble import bucket_cost, train_ensemble
from deepwell.sweep.layouts import ensemble_layout, plan_cost
from deepwell.sweep.padded import compiled_step
from deepwell.sweep.progress import EpochListener, describe
from deepwell.sweep.tasks import Record, SweepTask, build_member, record_from_history
from deepwell.training.loop import fit

__all__ = ["Executor", "InProcessExecutor", "ProcessPoolExecutor", "BatchedExecutor", "run_task", "EXECUTORS", "worker_pool",
           "close_pool"]


class Executor(Protocol):
    """Runs sweep tasks; yields one record per task, in any order, as they finish."""

    name: str

    def run(self, tasks: Sequence[SweepTask]) -> Iterator[Record]: ...


def run_task(task: SweepTask, listener: Any = None) -> Record:
    """One task through ``fit`` (the test split as validation data); its record.

    ``listener`` (a :class:`~deepwell.sweep.progress.SweepProgress`, optional) hears which run trains and its epochs.
    """
    started = time.perf_counter()
    model, data = build_member(task)
    callbacks = []
    if listener is not None:
        listener.training(describe(task.params, task.seed))
        callbacks.append(EpochListener(listener.epoch))
    result = fit(model, data, task.train, seed=task.seed, callbacks=callbacks)
    return record_from_history(task, model, result.history, time.perf_counter() - started, "in_process")


class InProcessExecutor:
    """A loop of ``fit`` calls in this process."""

    name = "in_process"
    listener: Any = None  # set by run_sweep to show progress: which run trains, its epochs

    def run(self, tasks: Sequence[SweepTask]) -> Iterator[Record]:
        for task in tasks:
            yield run_task(task, self.listener)


def _worker_init(parent: int) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent alone handles it
    os.environ["DEEPWELL_THREADS"] = "1"  # workers share the cores: one thread each avoids oversubscription
    configure_cpu()                       # and flush-to-zero: interpolating models otherwise crawl through denormals


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Have Linux SIGKILL this worker when the process that started it dies, even by kill -9.

    Without it a killed sweep leaves its workers (and their memory) running until their task ends.
    prctl through ctypes: the standard library has no binding and a package for one call is not worth it.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: nobody will ever read our results
        os._exit(1)


def worker_pool(workers: int | None) -> concurrent.futures.ProcessPoolExecutor:
    """Spawned workers (fork would copy torch's thread pools and locks) that die with this process."""
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_worker_init, initargs=(os.getpid(),))


def close_pool(pool: concurrent.futures.ProcessPoolExecutor, stopped: bool, wait: bool = True) -> None:
    """Shut the pool down; when ``stopped`` (an error or a signal in this process), kill its workers first.

    ``shutdown`` alone waits for the running tasks, minutes after a SIGTERM. Python 3.14 has
    ``terminate_workers()``; before it the pool's ``_processes`` are the only handle on them.
    """
    if stopped:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=wait and not stopped, cancel_futures=True)


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
        pool, stopped = worker_pool(self.workers), True
        try:
            futures = [pool.submit(_run_in_worker, task) for task in tasks]
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
            stopped = False
        finally:
            close_pool(pool, stopped)  # a SIGTERM / Ctrl-C / error here: the workers go at once, not after their task


class BatchedExecutor:
    """Groups tasks (same training spec and data size) and trains each group as one batched ensemble.

    Tasks the ensemble cannot train exactly (batchnorm, dropout, penalties, ...) fall back to
    ``fit`` one by one, so every sweep runs; ``record["executor"]`` says which path ran.

    On a CPU a large group is also split into ``workers`` shards that should end together, each
    trained as its own ensemble with one torch thread, the first in this process: the batched
    matmuls of small networks gain nothing from a second BLAS thread (the whole double-descent
    sweep in one process on 2 threads: 3.3 ms a step, against ~2.2 ms for each of two one-thread
    shards). MLPs whose step runs compiled (:mod:`deepwell.native`, which holds no GIL) train
    their other shards in threads of this process: they start at once and share the data. Other
    networks step in Python, where two threads serialise on the GIL (3.75 ms a step against 2.7),
    so their other shards train in spawned processes (a forked worker deadlocks in torch's thread
    pool), and this process's shard takes their start-up as its head start. Members never
    interact, so sharding changes no result.

    Args:
        max_group: most members per ensemble (memory bound); larger groups are split.
        bucket_overhead: passed to ``train_ensemble`` (padded layout).
        workers: processes per group on a CPU; default: one per core when the group's work
            (``WORKER_MIN_FLOPS``) pays for starting them, else 1 (this process).
    """

    name = "batched"
    listener: Any = None  # set by run_sweep to show progress: which group trains (this process's shard), its epochs

    def __init__(self, max_group: int = 256, bucket_overhead: float | None = None, workers: int | None = None) -> None:
        self.max_group, self.bucket_overhead, self.workers = max_group, bucket_overhead, workers

    def run(self, tasks: Sequence[SweepTask]) -> Iterator[Record]:
        groups: dict[str, list[SweepTask]] = {}
        for task in tasks:
            groups.setdefault(task.group_key(), []).append(task)
        for members in groups.values():
            for start in range(0, len(members), self.max_group):
                yield from self._run_group(members[start:start + self.max_group])

    def _run_group(self, tasks: list[SweepTask]) -> Iterator[Record]:
        built = [build_member(task) for task in tasks]
        models = [model for model, _ in built]
        try:
            ensemble_layout(models)
            if len({len(data.x_train) for _, data in built}) != 1:
                raise ConfigError("members differ in training-set size")
        except ConfigError:
            for task in tasks:
                yield run_task(task, self.listener)
            return
        sizes = [sum(p.numel() for p in model.parameters()) for model in models]
        device = built[0][1].x_train.device
        flops_per_param = 6 * len(built[0][1].x_train) * tasks[0].train.epochs  # forward + backward, every epoch
        workers = self.workers or (torch.get_num_threads() if sum(sizes) * flops_per_param >= WORKER_MIN_FLOPS else 1)
        threaded = False
        if device.type != "cpu" or len(tasks) == 1 or workers == 1:
            shards = [list(range(len(tasks)))]
        else:
            shapes = [[tuple(p.shape) for p in model.parameters()] for model in models]
            overhead = bucket_cost(models, device) if self.bucket_overhead is None else self.bucket_overhead
            threaded = compiled_step(models)
            shards = balanced_shards(sizes, workers, head_start=0.0 if threaded else WORKER_START_FLOPS / flops_per_param,
                                     cost_of=lambda shard: plan_cost([shapes[i] for i in shard], overhead))
        if len(shards) == 1:
            yield from _train_group(tasks, self.bucket_overhead, built, self.listener)
            return
        if threaded:
            yield from self._run_threads(tasks, built, shards)
            return
        # This process trains the first shard itself, on one thread like the workers, while they start
        # (a spawned worker takes ~3.5 s to import torch before its first step): the balance gives it that head start.
        own, rest = shards[0], shards[1:]
        del models
        pool, stopped = worker_pool(len(rest)), True
        try:
            futures = [pool.submit(_train_group, [tasks[i] for i in shard], self.bucket_overhead) for shard in rest]
            with torch_threads(1):
                records = _train_group([tasks[i] for i in own], self.bucket_overhead, [built[i] for i in own], self.listener)
            del built
            yield from records
            for future in concurrent.futures.as_completed(futures):
                yield from future.result()
            stopped = False
        finally:
            close_pool(pool, stopped, wait=False)  # a worker's interpreter exit (~0.7 s) off the critical path

    def _run_threads(self, tasks: list[SweepTask], built: list, shards: list[list[int]]) -> Iterator[Record]:
        """Shards in threads of this process, one torch thread each (the compiled step releases the GIL).

        An error in any shard, or Ctrl-C here, stops the others at their next epoch; the first error is raised.
        """
        stop = threading.Event()

        def shard(indices: list[int], listener: Any) -> list[Record]:
            try:
                return _train_group([tasks[i] for i in indices], self.bucket_overhead, [built[i] for i in indices],
                                    listener, stop)
            except BaseException:
                stop.set()
                raise

        pool = concurrent.futures.ThreadPoolExecutor(len(shards) - 1, thread_name_prefix="deepwell-shard")
        try:
            with torch_threads(1):
                futures = [pool.submit(shard, indices, None) for indices in shards[1:]]
                try:
                    records = shard(shards[0], self.listener)
                except ShardStopped:  # stopped by another shard's error: raise that one
                    concurrent.futures.wait(futures)
                    cause = next((f.exception() for f in futures if f.exception() is not None
                                  and not isinstance(f.exception(), ShardStopped)), None)
                    if cause is not None:
                        raise cause from None
                    raise
                yield from records  # stored while the other shards still train: a killed sweep keeps them
                for future in concurrent.futures.as_completed(futures):
                    yield from future.result()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


class ShardStopped(Exception):
    """A thread's shard ended early because another shard of its group stopped (an error, Ctrl-C)."""


WORKER_MIN_FLOPS = 5e11    # ~10 s of one core's work: below this, starting worker processes costs more than it saves
WORKER_START_FLOPS = 1e11  # what this process computes while a spawned worker starts (~3.5 s at ~3e10 flop/s a core)
REBALANCE_MAX_ITEMS = 24   # moves and swaps cost O(items^2) shard costings (0.35 s for the 19 double-descent widths)


def balanced_shards(costs: Sequence[float], count: int, head_start: float = 0.0,
                    cost_of: Callable[[list[int]], float] | None = None) -> list[list[int]]:
    """Split items into at most ``count`` shards that end together (largest first, to the shard that ends first).

    Every shard but the first starts ``head_start`` later (a worker process's start-up, in cost
    units), so the first, this process's, takes that much more work. With ``cost_of`` (what a
    whole shard costs, when that is not the sum of its items' costs: the batched engine pads each
    bucket to its widest member and pays per bucket), single moves and pairwise swaps out of the
    shard that ends last then refine the split while they bring the last end forward (up to
    ``REBALANCE_MAX_ITEMS`` items; beyond, the greedy split stands).

    Example::

        balanced_shards([105, 60, 40, 30, 5], 2)                 # [[0, 4], [1, 2, 3]]
        balanced_shards([105, 60, 40, 30, 5], 2, head_start=20)  # [[0, 3], [1, 2, 4]]: 135 against 20 + 105
    """
    count = max(1, min(count, len(costs)))
    shards: list[list[int]] = [[] for _ in range(count)]
    starts = [0.0] + [head_start] * (count - 1)
    loads = list(starts)
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        lightest = loads.index(min(loads))
        shards[lightest].append(index)
        loads[lightest] += costs[index]
    if cost_of is not None and len(costs) <= REBALANCE_MAX_ITEMS:
        _rebalance(shards, starts, cost_of)
    return [sorted(shard) for shard in shards if shard]


def _rebalance(shards: list[list[int]], starts: list[float], cost_of: Callable[[list[int]], float]) -> None:
    """Improve ``shards`` in place: move one item, or swap two, between the shard that ends last and another."""
    ends = [cost_of(shard) + start if shard else start for shard, start in zip(shards, starts)]
    while True:
        last = ends.index(max(ends))
        best = None
        for other in (k for k in range(len(shards)) if k != last):
            for item in shards[last]:
                for swapped in [None, *shards[other]]:
                    mine = [k for k in shards[last] if k != item] + ([swapped] if swapped is not None else [])
                    theirs = [k for k in shards[other] if k != swapped] + [item]
                    if not mine:
                        continue
                    pair = (cost_of(mine) + starts[last], cost_of(theirs) + starts[other])
                    if max(pair) < ends[last] and (best is None or max(pair) < max(best[0])):
                        best = (pair, other, mine, theirs)
        if best is None:
            return
        pair, other, mine, theirs = best
        ends[last], ends[other] = pair
        shards[last], shards[other] = mine, theirs


def _train_group(tasks: list[SweepTask], bucket_overhead: float | None,
                 built: list[tuple[torch.nn.Module, object]] | None = None, listener: Any = None,
                 stop: threading.Event | None = None) -> list[Record]:
    """Train tasks as one ensemble (in this process, a thread or a worker); their records.

    ``stop``: when set (another shard failed or was interrupted), training ends at the next epoch with ShardStopped.
    """
    started = time.perf_counter()
    built = built or [build_member(task) for task in tasks]
    models = [model for model, _ in built]
    if listener is not None:
        listener.training(f"{len(tasks)} runs as one ensemble, from {describe(tasks[0].params, tasks[0].seed)}")

    def on_epoch(epoch: int, epochs: int) -> None:
        if stop is not None and stop.is_set():
            raise ShardStopped("another shard of this sweep stopped")
        if listener is not None:
            listener.epoch(epoch, epochs)

    result = train_ensemble(models, [data for _, data in built], tasks[0].train, [t.seed for t in tasks],
                            bucket_overhead=bucket_overhead, on_epoch=on_epoch)
    seconds = (time.perf_counter() - started) / len(tasks)  # the group's time, shared evenly
    return [record_from_history(task, model, history, seconds, f"batched:{result.layout}")
            for task, model, history in zip(tasks, models, result.histories)]


EXECUTORS = {"in_process": InProcessExecutor, "process_pool": ProcessPoolExecutor, "batched": BatchedExecutor}

from deepwell.sweep.ray_executor import RayExecutor  # noqa: E402  (ray itself is imported only when a sweep runs)

EXECUTORS["ray"] = RayExecutor
