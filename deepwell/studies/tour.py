"""The tour: every claim of the lecture, the experiment that checks it and its measured verdict.

``run_tour`` runs every registered study (quick mode by default), then gathers one verdict per
claim of :data:`~deepwell.studies.claims.CLAIMS` into the tour folder's ``study.json`` — the same
schema as a single study, so ``deepwell report`` renders it — with every study's figures
(paths into the study sub-folders). A claim that no study measures yet is listed as
``inconclusive`` with the reason, never given a verdict it did not earn.

A study whose folder already holds a ``study.json`` of the same mode and seed is not run again,
so an interrupted tour resumes where it stopped (``fresh=True`` re-runs everything).

Example::

    result = run_tour(quick=True, output=Path("tour"))
    [(v.claim, v.status) for v in result.verdicts]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from deepwell.studies.base import StudyResult, Verdict, write_study_json
from deepwell.studies.claims import CLAIMS

__all__ = ["run_tour"]

TITLE = "The lecture's claims, measured"


def _finished(folder: Path, quick: bool, seed: int) -> dict | None:
    path = folder / "study.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return record if (record.get("quick"), record.get("seed")) == (quick, seed) else None


def run_tour(quick: bool = True, output: Path = Path("tour"), seed: int = 0, fresh: bool = False,
             progress: Callable[[str], None] | None = None) -> StudyResult:
    """Run every study and write the tour folder (``study.json``, one sub-folder per study).

    Args:
        quick: each study's quick settings (the whole tour takes minutes); False for the reference settings.
        output: the tour folder.
        seed: passed to every study.
        fresh: re-run studies that already finished in this folder.
        progress: called with a line of text before and after each study.
    """
    from deepwell.studies import STUDIES, run_study

    output = Path(output)
    started = time.perf_counter()
    records: dict[str, dict] = {}
    for name in STUDIES:
        record = None if fresh else _finished(output / name, quick, seed)
        if record is None:
            if progress:
                progress(f"running study {name} ...")
            record = run_study(name, quick=quick, output=output, seed=seed).to_dict()
        if progress:
            statuses = ", ".join(f"{v['claim']} {v['status']}" for v in record["verdicts"])
            progress(f"{name}: {statuses} ({record['seconds']:.0f} s)")
        records[name] = record
    verdicts, figures = _gather(records)
    result = StudyResult(name="tour", title=TITLE, path=output, verdicts=verdicts, figures=figures, tables=[],
                         seconds=time.perf_counter() - started, quick=quick, seed=seed)
    write_study_json(result)
    return result


def _gather(records: dict[str, dict]) -> tuple[list[Verdict], list[tuple[str, str]]]:
    """One verdict per claim, in CLAIMS order, and every study's figures (study name in the caption)."""
    measured = {v["claim"]: (name, v) for name, record in records.items() for v in record["verdicts"]}
    verdicts = []
    for claim in CLAIMS:
        if claim.id in measured:
            name, v = measured[claim.id]
            verdicts.append(Verdict(claim.id, v["text"], v["status"], f"[{name}] {v['evidence']}",
                                    {k: x for k, x in v["numbers"].items() if x is not None}))
        else:
            verdicts.append(Verdict(claim.id, claim.text, "inconclusive",
                                    f"Not measured yet: no study of this version runs '{claim.experiment}'."))
    figures = [(f"{name}/{figure['path']}", f"{record['title']}: {figure['caption']}")
               for name, record in records.items() for figure in record["figures"]]
    return verdicts, figures
