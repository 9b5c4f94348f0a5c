"""The tour: every claim of the lecture, the experiment that checks it and its measured verdict.

``run_tour`` runs every registered study (quick mode by default), then gathers every verdict (each
with a unique id, each claim at least one, in the order of :data:`~deepwell.studies.claims.CLAIMS`)
into the tour folder's ``study.json`` — the same schema as a single study, so ``deepwell report``
renders it — with every study's figures (paths into the study sub-folders) and a ``summary``: how
many claims hold in the lecture's own regime, and the regimes where a claim was found not to hold
(:func:`summarize`). Each verdict states its rule (the study's, else CLAIMS' "holds when"). A
claim that no study measures yet is listed as ``inconclusive`` with the reason, never given a
verdict it did not earn.

A study whose folder already holds a ``study.json`` of the same mode and seed is not run again,
so an interrupted tour resumes where it stopped (``fresh=True`` re-runs everything).

Studies run in worker processes, one per usable core by default, each with one torch thread (the
studies train small models, which a second thread barely speeds up). The longest studies start
first (their CPU seconds from this folder's last run, else :data:`QUICK_CPU_SECONDS`), so the
tour ends with short ones instead of one long study running alone. Every study records its CPU
seconds (``cpu_seconds`` in its ``study.json``); the tour's summary lists them and their sum.

Example::

    result = run_tour(quick=True, output=Path("tour"))
    [(v.id, v.status, v.source) for v in result.verdicts]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import replace
from pathlib import Path

from deepwell.runtime import usable_cores
from deepwell.studies.base import STATUSES, StudyResult, Verdict, write_study_json
from deepwell.studies.claims import CLAIMS
from deepwell.sweep.executors import close_pool, worker_pool

__all__ = ["run_tour", "summarize", "usable_cores", "QUICK_CPU_SECONDS"]

TITLE = "The lecture's claims, measured"

# Each study's quick-mode CPU seconds (one torch thread, DEEPWELL_THREADS=1, seed 0), measured 2026-12-07 by
# `deepwell tour` on the project's quiet 2-core machine (sum 151 s): only their order matters, it schedules the
# longest first. A study missing here counts as the longest (unknown: start it early).
QUICK_CPU_SECONDS: dict[str, float] = {
    "double-descent": 43.1, "activations": 24.4, "init": 11.3, "layers-converge": 10.9, "dropout": 9.3,
    "transfer": 9.1, "landscape": 7.9, "augmentation": 7.2, "early-stopping": 6.1, "depth": 5.6, "polynomial": 5.2,
    "batchnorm": 4.0, "regularization": 3.9, "dead-relu": 1.6, "preprocessing": 1.6,
}


def _study_record(folder: Path) -> dict:
    """A study folder's study.json ({} when it is missing or torn)."""
    try:
        return json.loads((folder / "study.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _finished(folder: Path, quick: bool, seed: int) -> dict | None:
    record = _study_record(folder)
    return record if record and (record.get("quick"), record.get("seed")) == (quick, seed) else None


def _expected_cpu(name: str, folder: Path, quick: bool) -> float:
    """The CPU seconds ``name`` is expected to take: its last run in ``folder`` (same mode), else the table."""
    record = _study_record(folder)
    if record.get("quick") == quick and isinstance(record.get("cpu_seconds"), (int, float)):
        return float(record["cpu_seconds"])
    return QUICK_CPU_SECONDS.get(name, float("inf"))


def longest_first(names: list[str], output: Path, quick: bool) -> list[str]:
    """``names`` ordered by expected CPU seconds, longest first (ties keep their order)."""
    return sorted(names, key=lambda name: -_expected_cpu(name, output / name, quick))


def _run_one(name: str, quick: bool, output: Path, seed: int) -> dict:
    """One study in a worker process (module level, so it pickles); its study.json record."""
    from deepwell.studies import run_study

    return run_study(name, quick=quick, output=output, seed=seed).to_dict()




def run_tour(quick: bool = True, output: Path = Path("tour"), seed: int = 0, fresh: bool = False,
             progress: Callable[[str], None] | None = None, workers: int | None = None) -> StudyResult:
    """Run every study and write the tour folder (``study.json``, one sub-folder per study).

    Args:
        quick: each study's quick settings (the whole tour takes minutes); False for the reference settings.
        output: the tour folder.
        seed: passed to every study.
        fresh: re-run studies that already finished in this folder.
        progress: called with a line of text before and after each study.
        workers: studies run at once, each in its own process with one torch thread (default: one per usable
            core, :func:`usable_cores`; 1: one after the other, in this process).
    """
    from deepwell.studies import STUDIES

    output = Path(output)
    workers = usable_cores() if workers is None else workers
    started = time.perf_counter()
    records: dict[str, dict] = {name: None if fresh else _finished(output / name, quick, seed) for name in STUDIES}
    todo = longest_first([name for name, record in records.items() if record is None], output, quick)
    if progress and todo:
        progress(f"running {len(todo)} studies ({workers} at a time, longest first): {', '.join(todo)} ...")
    if workers > 1 and len(todo) > 1:
        # The sweeps' worker pool: spawned, one thread each, killed with this process (even by kill -9) and on an error.
        pool, stopped = worker_pool(min(workers, len(todo))), True
        try:
            futures = {pool.submit(_run_one, name, quick, output, seed): name for name in todo}  # started in this order
            for future in as_completed(futures):
                records[futures[future]] = future.result()
                _report(progress, futures[future], records[futures[future]])
            stopped = False
        finally:
            close_pool(pool, stopped)
    for name in todo:
        if records[name] is None:
            records[name] = _run_one(name, quick, output, seed)
            _report(progress, name, records[name])
    verdicts, figures = _gather(records)
    cpu = {name: record.get("cpu_seconds") for name, record in records.items()}
    known = [value for value in cpu.values() if value is not None]
    summary = summarize(verdicts) | {"cpu_seconds": cpu, "cpu_seconds_total": round(sum(known), 1) if known else None}
    result = StudyResult(name="tour", title=TITLE, path=output, verdicts=verdicts, figures=figures, tables=[],
                         seconds=time.perf_counter() - started, quick=quick, seed=seed, summary=summary,
                         cpu_seconds=sum(known) if len(known) == len(cpu) else math.nan)
    write_study_json(result)
    return result


def _report(progress: Callable[[str], None] | None, name: str, record: dict) -> None:
    if progress:
        statuses = ", ".join(f"{v.get('id', v['claim'])} {v['status']}" for v in record["verdicts"])
        cpu = record.get("cpu_seconds")
        progress(f"{name}: {statuses} ({record['seconds']:.0f} s" + (f", {cpu:.0f} cpu s)" if cpu is not None else ")"))


def _gather(records: dict[str, dict]) -> tuple[list[Verdict], list[tuple[str, str]]]:
    """Every measured verdict (unique ids), in CLAIMS order, and every study's figures (study name in the caption).

    A claim that no study measured gets an ``inconclusive`` verdict saying so. Two studies that report
    the same verdict id keep both: the later one's id gets the study name (``claim@study``).
    """
    measured: dict[str, list[tuple[str, Verdict]]] = {}
    for name, record in records.items():
        for v in record["verdicts"]:
            measured.setdefault(v["claim"], []).append((name, Verdict.from_dict(v)))
    verdicts, seen = [], set()
    for claim in CLAIMS:
        for name, v in measured.get(claim.id, []):
            key = v.id if v.id not in seen else f"{v.id}@{name}"
            seen.add(key)
            figure = f"{name}/{v.figure}" if v.figure else ""
            verdicts.append(replace(v, key="" if key == v.claim else key, rule=v.rule or claim.holds_when, source=name,
                                    figure=figure))
        if claim.id not in measured:
            verdicts.append(Verdict(claim.id, claim.text, "inconclusive",
                                    f"Not measured yet: no study of this version runs '{claim.experiment}'.",
                                    rule=claim.holds_when))
    figures = [(f"{name}/{figure['path']}", f"{record['title']}: {figure['caption']}")
               for name, record in records.items() for figure in record["figures"]]
    return verdicts, figures


def summarize(verdicts: list[Verdict]) -> dict:
    """The tour's counts and the regime limits it found.

    ``claims``: per claim of CLAIMS, the status in the lecture's regime (its first verdict decides);
    ``verdicts``: per verdict; both sets of counts add up to their totals. ``limits``: every regime,
    of every verdict, where the claim did not hold, as ``claim: regime -- status``.

    Example::

        summarize(result.verdicts)["claims"]   # {'total': 23, 'holds': 17, 'does_not_hold': 2, 'inconclusive': 4}
    """
    first: dict[str, Verdict] = {}
    for v in verdicts:
        first.setdefault(v.claim, v)
    claims = {"total": len(first)} | {status: sum(v.status == status for v in first.values()) for status in STATUSES}
    counts = {"total": len(verdicts)} | {status: sum(v.status == status for v in verdicts) for status in STATUSES}
    limits = [f"{v.id}: {r.name} -- {r.status.replace('_', ' ')}" for v in verdicts for r in v.regimes if r.status != "holds"]
    return {"claims": claims, "verdicts": counts, "limits": limits}
