"""Sweep records on disk (JSON lines, appended atomically, resumable) and their summary over seeds.

``records.jsonl`` gets one line per finished run, written with a single ``write`` on a file
opened for appending and flushed to disk, so a killed sweep leaves at most one torn last line;
loading drops it (and rewrites the file without it). ``run_sweep`` skips tasks whose ``run_id``
is already there, so an interrupted sweep resumes without redoing finished runs.

Example::

    records = run_sweep(tasks, BatchedExecutor(), Path("sweeps/dd/records.jsonl"))
    rows = summarize(records, by=["width"], metrics=["test_error", "train_error"])
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deepwell.runtime import configure_cpu
from deepwell.sweep.tasks import Record, SweepTask
from deepwell.training.checkpoint import atomic_write_text, read_jsonl

__all__ = ["RecordStore", "run_sweep", "summarize", "write_csv"]


class RecordStore:
    """Finished-run records in a JSON-lines file; ``append`` is atomic per record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[Record]:
        """Every complete record; a torn last line (a killed write) is dropped from the file."""
        return read_jsonl(self.path, repair=True)

    def finished_ids(self) -> set[str]:
        return {record["run_id"] for record in self.load()}

    def append(self, records: Iterable[Record]) -> None:
        """Append records, each as one line written by a single ``os.write`` and fsynced."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for record in records:
                os.write(fd, (json.dumps(record, sort_keys=True, default=_json_default) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Cannot write {type(value).__name__} into a sweep record.")


def run_sweep(tasks: Sequence[SweepTask], executor, store: RecordStore | str | Path | None = None,
              progress: Any = None) -> list[Record]:
    """Run the tasks not yet in ``store`` with ``executor``; return the records of all ``tasks``.

    Args:
        tasks: the sweep's runs.
        executor: anything with ``run(tasks) -> Iterator[Record]`` (see :mod:`deepwell.sweep.executors`).
        store: the records file (or a RecordStore); None keeps the records in memory only.
        progress: a :class:`~deepwell.sweep.progress.SweepProgress` to show runs done / total and the current
            training's epoch (executors with a ``listener`` slot report epochs; the others finished runs only).

    Returns:
        one record per task, in the order of ``tasks`` (finished ones loaded, the rest run now), labelled
        with the task's current ``params``.
    """
    configure_cpu()  # flush-to-zero and threads, once per process (as deepwell.train and the studies do)
    store = RecordStore(store) if isinstance(store, (str, Path)) else store
    done = {r["run_id"]: r for r in store.load()} if store is not None else {}
    wanted = {task.run_id for task in tasks}
    pending, seen = [], set()
    for task in tasks:
        if task.run_id not in done and task.run_id not in seen:
            pending.append(task)
            seen.add(task.run_id)
    params = {task.run_id: task.params for task in pending}
    if progress is not None:
        progress.start(len(wanted), len(wanted) - len(pending))
        if hasattr(executor, "listener"):
            executor.listener = progress
    try:
        for record in executor.run(pending):
            done[record["run_id"]] = record
            if store is not None:
                store.append([record])
            if progress is not None:
                progress.run_done(record, params.get(record["run_id"], {}))
    finally:
        if progress is not None:
            progress.close()
            if hasattr(executor, "listener"):
                executor.listener = None
    missing = wanted - set(done)
    if missing:
        raise RuntimeError(f"The executor returned no record for {len(missing)} task(s), e.g. {sorted(missing)[0]}.")
    return [done[task.run_id] | dict(task.params) for task in tasks]  # labels as this sweep names them


def summarize(records: Iterable[Record], by: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and standard deviation (over seeds: sample std, 0 for one seed) of ``metrics`` per ``by`` group.

    Returns:
        one row per group, in first-seen order: the ``by`` values, ``n``, ``<metric>_mean``, ``<metric>_std``.
    """
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        groups.setdefault(tuple(record.get(key) for key in by), []).append(record)
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(by, key)) | {"n": len(members)}
        for metric in metrics:
            values = [float(r[metric]) for r in members if r.get(metric) is not None]
            mean = sum(values) / len(values) if values else math.nan
            var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean, math.sqrt(var) if values else math.nan
        rows.append(row)
    return rows


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Tidy CSV (one row per record or summary row), written atomically; lists/dicts are left out."""
    rows = list(rows)
    columns = list(columns) if columns is not None else list(dict.fromkeys(
        k for row in rows for k, v in row.items() if not isinstance(v, (list, dict))))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in columns})
    atomic_write_text(Path(path), buffer.getvalue())
    return Path(path)
