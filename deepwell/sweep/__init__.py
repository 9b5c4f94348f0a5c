"""Sweeps: many runs of ``fit`` from one study, run by an executor, stored as tidy resumable records.

Example::

    from deepwell.sweep import BatchedExecutor, SweepTask, run_sweep, summarize
    tasks = [SweepTask(data, model.model_copy(update={"width": w}), train, seed=s, params={"width": w})
             for w in (4, 16, 64) for s in (0, 1)]
    records = run_sweep(tasks, BatchedExecutor(), "sweep/records.jsonl")   # resumes if interrupted
    rows = summarize(records, by=["width"], metrics=["test_error"])        # mean and std over seeds

or, as ``deepwell sweep`` does, a grid over any spec keys: ``deepwell.sweep(spec, over={"model.width": [8, 32]}, seeds=2)``.
"""

import sys
import types

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


class _CallableModule(types.ModuleType):
    """``deepwell.sweep(spec, over=..., seeds=...)`` runs a grid sweep (deepwell.notebook.results.sweep) while
    ``deepwell.sweep.run_sweep`` etc. stay this package's names: the call has the CLI's name, and a package
    cannot also be a function otherwise. Assigning a module's ``__class__`` is the data model's supported way
    to customise a module (Python docs, "Customizing module attribute access")."""

    def __call__(self, *args, **kwargs):
        from deepwell.notebook.results import sweep

        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
