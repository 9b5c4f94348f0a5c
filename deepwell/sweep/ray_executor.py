"""A sweep executor on Ray: each task is a Ray remote task, on this machine or on a cluster.

:class:`RayExecutor` follows the executor interface (``run(tasks) -> Iterator[Record]``). Each
remote task calls :func:`deepwell.sweep.executors.run_task`, the function the in-process executor
calls, so a record equals the in-process one apart from ``record["executor"] == "ray"``.

Where things are written: nothing is written on the workers. Each record travels back to the
driver (the process that called ``run_sweep``), which appends it to its record store, so a sweep on
a cluster needs no shared file system; the store lives on the driver's disk only.

Failures: a task whose worker process dies (killed, out of memory, node lost) is run again on
another worker, up to ``max_retries`` times; Ray returns one result per task, and ``run_sweep``
skips run ids already stored, so every run is recorded exactly once, also after a resumed sweep.
An exception raised by ``fit`` itself is not retried (it would fail again); it reaches the caller.

Ray is the optional extra ``ray`` (``pip install 'deepwell[ray]'``); it is imported only when a
sweep runs. On a cluster, every node needs deepwell installed (same version as the driver).

Example::

    from deepwell.sweep import RayExecutor, run_sweep
    records = run_sweep(tasks, RayExecutor(), "sweep/records.jsonl")                 # local Ray, one task per core
    records = run_sweep(tasks, RayExecutor(address="auto"), "sweep/records.jsonl")   # the running cluster
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

from deepwell.errors import ConfigError, TrainingError
from deepwell.sweep.tasks import Record, SweepTask

__all__ = ["RayExecutor"]

INSTALL_HINT = "pip install 'deepwell[ray]'"


def _import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError(f"The Ray executor needs the 'ray' package, which is not installed ({error}). "
                          f"Install the optional extra: {INSTALL_HINT}, or use another executor "
                          "(in_process, process_pool, batched).") from None
    return ray


def _run_on_worker(task: SweepTask, threads: int) -> Record:
    """The body of each Ray task: ``run_task`` with ``threads`` torch threads (the task's CPU share)."""
    import torch

    # Imported here, not at the top: executors.py registers this executor, and this keeps the two
    # modules free of an import cycle.
    from deepwell.runtime import configure_cpu
    from deepwell.sweep.executors import run_task

    os.environ["DEEPWELL_THREADS"] = str(threads)  # read by runtime.configure_cpu, once per worker process
    configure_cpu()                                 # flush-to-zero too (denormals slow a converged model 10-100x)
    torch.set_num_threads(threads)
    record = run_task(task)
    record["executor"] = "ray"
    return record


class RayExecutor:
    """Runs each sweep task as a Ray remote task; yields records as tasks finish.

    Args:
        address: ``None`` starts a local Ray for this sweep (and shuts it down afterwards; a Ray
            already started in this process is used as is); ``"auto"`` joins the cluster running
            on this machine; ``"ray://host:10001"`` connects to a remote cluster through Ray Client.
        num_cpus_per_task: CPUs Ray reserves per task (> 0); also the torch threads each task uses.
        num_gpus_per_task: GPUs per task (>= 0; a fraction such as 0.25 packs small models on one
            GPU). With 0 the tasks run on CPUs; give the tasks ``device="auto"`` to use the GPUs.
        max_retries: how often a task whose worker process died is run again (>= 0).
        workers: tasks at once on a local Ray (default: the CPUs of this machine divided by
            ``num_cpus_per_task``); ignored when joining a cluster.
        progress: called with one line of text per finished task (default: nothing is printed).

    Raises:
        ConfigError: bad arguments, or ray not installed (when ``run`` starts).

    Example::

        run_sweep(tasks, RayExecutor(workers=2, progress=print), "records.jsonl")
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus_per_task: float = 1, num_gpus_per_task: float = 0,
                 max_retries: int = 3, workers: int | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        if num_cpus_per_task <= 0:
            raise ConfigError(f"num_cpus_per_task={num_cpus_per_task}: expected a number > 0 (CPUs per task, e.g. 1).")
        if num_gpus_per_task < 0:
            raise ConfigError(f"num_gpus_per_task={num_gpus_per_task}: expected a number >= 0 (0 runs on CPUs).")
        if max_retries < 0:
            raise ConfigError(f"max_retries={max_retries}: expected an integer >= 0 (retries after a worker died).")
        if workers is not None and workers < 1:
            raise ConfigError(f"workers={workers}: expected an integer >= 1, or None for one per CPU.")
        self.address, self.num_cpus_per_task, self.num_gpus_per_task = address, num_cpus_per_task, num_gpus_per_task
        self.max_retries, self.workers, self.progress = max_retries, workers, progress

    def run(self, tasks: Sequence[SweepTask]) -> Iterator[Record]:
        """Submit every task, then yield each record as its task finishes (in finishing order).

        Raises:
            TrainingError: a task's worker died more than ``max_retries`` times, or Ray lost it;
                the records yielded before are kept by ``run_sweep``, so running again resumes.
        """
        if not tasks:
            return
        ray = _import_ray()
        started_here = self._connect(ray)
        threads = max(1, int(self.num_cpus_per_task))
        remote = ray.remote(_run_on_worker).options(
            num_cpus=self.num_cpus_per_task, num_gpus=self.num_gpus_per_task,
            max_retries=self.max_retries, retry_exceptions=False)  # retry dead workers, not fit's own errors
        pending = {remote.remote(task, threads): task for task in tasks}
        started, finished = time.perf_counter(), 0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task = pending.pop(ref)
                    record = self._result(ray, ref, task)
                    finished += 1
                    if self.progress is not None:
                        self.progress(f"ray: {finished}/{len(tasks)} runs done ({record['seconds']:.1f} s, "
                                      f"run {task.run_id} {dict(task.params)}; {time.perf_counter() - started:.0f} s elapsed)")
                    yield record
        finally:  # also when the caller stops early: nothing keeps running for nobody
            for ref in pending:
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()

    def _connect(self, ray: ModuleType) -> bool:
        """Join or start Ray; True when this call started a local Ray (which ``run`` then shuts down)."""
        if ray.is_initialized():
            return False
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
                 "configure_logging": True}
        if self.address is not None:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
            return True  # we connected: disconnect afterwards (the cluster keeps running)
        # Read by ray.init: no usage-stats notice or upload (there is no network at run time anyway).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        cpus = os.cpu_count() or 1
        workers = self.workers or max(1, int(cpus // self.num_cpus_per_task))
        ray.init(num_cpus=max(1, round(workers * self.num_cpus_per_task)), **quiet)
        return True

    def _result(self, ray: ModuleType, ref, task: SweepTask) -> Record:
        """The task's record; a lost task (worker died too often, node gone) becomes a TrainingError."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError:
            raise  # fit raised: the original exception type (ray re-raises it as an instance of the cause)
        except ray.exceptions.RayError as error:
            raise TrainingError(
                f"Ray lost run {task.run_id} {dict(task.params)}: {type(error).__name__} "
                f"(its worker died, retried up to max_retries={self.max_retries} times). Expected the task to "
                "finish on some worker. Records of finished runs are stored: run the sweep again to resume, "
                "with a larger max_retries, or fewer tasks at once (workers) if workers ran out of memory.") from error
