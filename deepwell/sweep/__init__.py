"""Sweeps: many runs of ``fit`` from one study, run by an executor, stored as tidy resumable records.

Example::

    from deepwell.sweep import BatchedExecutor, SweepTask, run_sweep, summarize
    tasks = [SweepTask(data, model.model_copy(update={"width": w}), train, seed=s, params={"width": w})
             for w in (4, 16, 64) for s in (0, 1)]
    records = run_sweep(tasks, BatchedExecutor(), "sweep/records.jsonl")   # resumes if interrupted
    rows = summarize(records, by=["width"], metrics=["test_error"])        # mean and std over seeds
"""

from deepwell.sweep.ensemble import EnsembleResult, train_ensemble
from deepwell.sweep.executors import (
    EXECUTORS,
    BatchedExecutor,
    Executor,
    InProcessExecutor,
    ProcessPoolExecutor,
    run_task,
)
from deepwell.sweep.layouts import ensemble_layout, plan_buckets
from deepwell.sweep.ray_executor import RayExecutor
from deepwell.sweep.store import RecordStore, run_sweep, summarize, write_csv
from deepwell.sweep.tasks import Record, SweepTask, build_member, prepared_data, record_from_history

__all__ = [
    "EXECUTORS", "BatchedExecutor", "EnsembleResult", "Executor", "InProcessExecutor", "ProcessPoolExecutor",
    "RayExecutor", "Record", "RecordStore", "SweepTask", "build_member", "ensemble_layout", "plan_buckets", "prepared_data",
    "record_from_history", "run_sweep", "run_task", "summarize", "train_ensemble", "write_csv",
]
