"""The tour gathers one computed verdict per claim of the lecture, resumes, and never invents a verdict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deepwell.studies import STUDIES
from deepwell.studies.base import StudyOutput, Verdict
from deepwell.studies.claims import CLAIMS
from deepwell.studies.tour import run_tour


def test_claims_table_matches_the_projects_claims_file():
    shared = Path(__file__).resolve().parents[2] / "shared" / "CLAIMS.md"
    if not shared.is_file():
        pytest.skip("the project's shared/CLAIMS.md is not beside this checkout")
    ids = [line.split("|")[1].strip() for line in shared.read_text().splitlines()
           if line.startswith("| ") and not line.startswith("| id") and not line.startswith("|---")]
    assert [c.id for c in CLAIMS] == [i for i in ids if i and not i.startswith("-")]


def test_every_study_claim_is_a_known_claim():
    known = {c.id for c in CLAIMS}
    for study in STUDIES.values():
        assert set(study.claims) <= known, study.name


def test_tour_gathers_verdicts_resumes_and_marks_unmeasured_claims(tmp_path, monkeypatch):
    calls = []

    def fake(claim, status):
        def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
            calls.append(claim)
            (folder / "f.png").write_bytes(b"png")
            return StudyOutput([Verdict(claim, "text", status, f"measured {claim}", {"x": 1.0})], [("f.png", "a figure")], [])
        return run

    from deepwell.studies import base

    studies = {"a": base.Study("a", "Study A", ("init-zero",), fake("init-zero", "holds")),
               "b": base.Study("b", "Study B", ("dropout",), fake("dropout", "does_not_hold"))}
    monkeypatch.setattr("deepwell.studies.STUDIES", studies)
    result = run_tour(quick=True, output=tmp_path, seed=3, workers=1)
    by_claim = {v.claim: v for v in result.verdicts}
    assert [v.claim for v in result.verdicts] == [c.id for c in CLAIMS]
    assert by_claim["init-zero"].status == "holds" and by_claim["dropout"].status == "does_not_hold"
    assert by_claim["depth"].status == "inconclusive" and "Not measured yet" in by_claim["depth"].evidence
    record = json.loads((tmp_path / "study.json").read_text())
    assert {"path": "a/f.png", "caption": "Study A: a figure"} in record["figures"]
    assert calls == ["init-zero", "dropout"]
    run_tour(quick=True, output=tmp_path, seed=3, workers=1)
    assert calls == ["init-zero", "dropout"]  # finished studies are not run again
    run_tour(quick=True, output=tmp_path, seed=4, workers=1)
    assert calls == ["init-zero", "dropout"] * 2  # another seed is another experiment


def test_tour_ids_are_unique_and_counts_add_up(tmp_path, monkeypatch):
    from deepwell.studies import base
    from deepwell.studies.evidence import regime_verdict

    def study(verdicts):
        return lambda folder, quick, seed: StudyOutput(verdicts, [], [])

    limited = regime_verdict("relu-faster", "ReLU faster", "rule", [
        base.Regime("depth 2", "holds", "fast", {"r": 2.0}, lecture=True), base.Regime("depth 10", "does_not_hold", "slow")])
    twice = [Verdict("dropout", "t", "holds", "e"), Verdict("dropout", "t", "inconclusive", "e", key="dropout/classic")]
    studies = {"a": base.Study("a", "A", ("relu-faster",), study([limited])),
               "b": base.Study("b", "B", ("dropout",), study(twice)),
               "c": base.Study("c", "C", ("dropout",), study([Verdict("dropout", "t", "does_not_hold", "e")]))}
    monkeypatch.setattr("deepwell.studies.STUDIES", studies)
    result = run_tour(quick=True, output=tmp_path, seed=0, workers=1)
    ids = [v.id for v in result.verdicts]
    assert len(ids) == len(set(ids)) == len(CLAIMS) + 2  # dropout reported three times
    assert {"dropout", "dropout/classic", "dropout@c"} <= set(ids)
    summary = json.loads((tmp_path / "study.json").read_text())["summary"]
    for counts in (summary["claims"], summary["verdicts"]):
        assert counts["holds"] + counts["does_not_hold"] + counts["inconclusive"] == counts["total"]
    assert summary["claims"]["total"] == len(CLAIMS) and summary["verdicts"]["total"] == len(ids)
    assert summary["claims"]["holds"] == 2  # relu-faster in its lecture regime, dropout's first verdict
    assert summary["limits"] == ["relu-faster: depth 10 -- does not hold"]
    assert all(v.rule for v in result.verdicts)


def test_tour_runs_studies_in_workers_and_gathers_them_in_order(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from deepwell.studies import base, tour

    def study(claim):
        return lambda folder, quick, seed: StudyOutput([Verdict(claim, "t", "holds", "e")], [], [])

    studies = {"a": base.Study("a", "A", ("init-zero",), study("init-zero")),
               "b": base.Study("b", "B", ("dropout",), study("dropout"))}
    monkeypatch.setattr("deepwell.studies.STUDIES", studies)
    pools = []
    monkeypatch.setattr(tour, "worker_pool", lambda workers: pools.append(workers) or ThreadPoolExecutor(workers))
    lines = []
    result = run_tour(quick=True, output=tmp_path, workers=4, progress=lines.append)
    assert pools == [2]   # no more workers than studies to run
    assert {v.id: v.status for v in result.verdicts}["dropout"] == "holds"
    assert sorted(line.split(":")[0] for line in lines[1:]) == ["a", "b"]   # as they finish
    assert [v.claim for v in result.verdicts] == [c.id for c in CLAIMS]     # gathered in CLAIMS order


def test_tour_starts_the_longest_studies_first_and_records_cpu_seconds(tmp_path, monkeypatch):
    from deepwell.studies import base, tour

    def study(claim, work):
        def run(folder, quick, seed):
            sum(i * i for i in range(work))   # some CPU time to measure
            return StudyOutput([Verdict(claim, "t", "holds", "e")], [], [])
        return run

    studies = {"short": base.Study("short", "S", ("init-zero",), study("init-zero", 10)),
               "long": base.Study("long", "L", ("dropout",), study("dropout", 200_000)),
               "new": base.Study("new", "N", ("depth",), study("depth", 10))}
    monkeypatch.setattr("deepwell.studies.STUDIES", studies)
    monkeypatch.setattr(tour, "QUICK_CPU_SECONDS", {"short": 1.0, "long": 50.0})
    assert tour.longest_first(["short", "long", "new"], tmp_path, quick=True) == ["new", "long", "short"]  # unknown first
    lines = []
    result = run_tour(quick=True, output=tmp_path, workers=1, progress=lines.append)
    assert "longest first): new, long, short" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["new", "long", "short"]
    record = json.loads((tmp_path / "study.json").read_text())
    cpu = record["summary"]["cpu_seconds"]
    assert set(cpu) == {"short", "long", "new"} and all(value >= 0 for value in cpu.values())
    assert cpu["long"] > cpu["short"]   # 20000x the work
    assert record["summary"]["cpu_seconds_total"] == pytest.approx(sum(cpu.values()), abs=0.1)
    assert result.cpu_seconds == pytest.approx(sum(cpu.values()), abs=1e-3)
    # a re-run in the same folder orders by what the last run measured, not by the table
    monkeypatch.setattr(tour, "QUICK_CPU_SECONDS", {"short": 99.0, "long": 1.0, "new": 0.0})
    assert tour.longest_first(["short", "long", "new"], tmp_path, quick=True)[0] == "long"
    assert tour.longest_first(["short", "long", "new"], tmp_path, quick=False)[0] == "short"  # full mode: the table


def test_tour_uses_one_worker_per_usable_core_by_default(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from deepwell.studies import base, tour

    def study(claim):
        return lambda folder, quick, seed: StudyOutput([Verdict(claim, "t", "holds", "e")], [], [])

    studies = {name: base.Study(name, name, ("init-zero",), study("init-zero")) for name in "abcde"}
    monkeypatch.setattr("deepwell.studies.STUDIES", studies)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    pools = []
    monkeypatch.setattr(tour, "worker_pool", lambda workers: pools.append(workers) or ThreadPoolExecutor(workers))
    run_tour(quick=True, output=tmp_path)
    assert tour.usable_cores() == 3 and pools == [3]
