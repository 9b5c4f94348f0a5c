"""What every study returns and writes: verdicts, figures, tidy tables and ``study.json``.

A study folder (``<output>/<name>/``) holds PNG figures, tidy CSV tables (one row per
measurement) and ``study.json``::

    {"name", "title", "quick", "seed", "seconds", "cpu_seconds",
     "verdicts": [{"id", "claim", "text", "status", "evidence", "numbers", "rule", "figure", "source",
                   "regimes": [{"name", "status", "evidence", "numbers", "lecture"}]}],
     "figures": [{"path", "caption"}], "tables": [{"path", "caption"}]}     # paths relative to the folder

A verdict is computed from measured numbers with named thresholds (see each study's module);
it is never asserted. A claim measured in several regimes (depth 2 vs 10, an MLP vs a CNN) keeps
each regime's status; the verdict's own status is the one in the lecture's regime (see
:mod:`deepwell.studies.evidence`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepwell.training.checkpoint import atomic_write_text

__all__ = ["Status", "Setting", "Regime", "Verdict", "StudyResult", "StudyOutput", "Study", "write_table", "write_study_json", "status_from"]

Status = Literal["holds", "does_not_hold", "inconclusive"]
STATUSES: tuple[str, ...] = ("holds", "does_not_hold", "inconclusive")


@dataclass(frozen=True)
class Regime:
    """One setting in which a claim was measured (e.g. ``depth 10, own init``) and its status there.

    Args:
        name: short and unique within the verdict.
        status: ``holds``, ``does_not_hold`` or ``inconclusive`` in this regime.
        evidence: one sentence with the numbers.
        numbers: the measured numbers the status was computed from.
        lecture: True for the regime the lecture's statement is about (it decides the verdict).
    """

    name: str
    status: Status
    evidence: str
    numbers: dict[str, float] = field(default_factory=dict)
    lecture: bool = False

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Regime status must be one of {', '.join(STATUSES)}; got '{self.status}'.")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "evidence": self.evidence, "lecture": self.lecture,
                "numbers": {k: _json_float(v) for k, v in self.numbers.items()}}


@dataclass(frozen=True)
class Verdict:
    """The measured answer to one claim of CLAIMS.md.

    Args:
        claim: the claim's id in CLAIMS.md, e.g. ``init-scale``.
        text: the claim in words.
        status: ``holds``, ``does_not_hold`` or ``inconclusive``.
        evidence: one or two sentences with the measured numbers.
        numbers: the measured numbers the status was computed from.
        regimes: where the claim was measured, each with its own status (empty: one setting only).
        rule: what "holds" means, in words (shown next to the claim in the report).
        key: a unique id when one study reports a claim twice (default: the claim id).
        figure: the study figure (file name) that shows this claim best; the report puts it beside the verdict.
        source: the study that measured it (the tour fills it in).
    """

    claim: str
    text: str
    status: Status
    evidence: str
    numbers: dict[str, float] = field(default_factory=dict)
    regimes: tuple[Regime, ...] = ()
    rule: str = ""
    key: str = ""
    figure: str = ""
    source: str = ""

    @property
    def id(self) -> str:
        """The verdict's unique id: ``key`` if given, else the claim id."""
        return self.key or self.claim

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Verdict status must be one of {', '.join(STATUSES)}; got '{self.status}'.")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "claim": self.claim, "text": self.text, "status": self.status, "evidence": self.evidence,
                "numbers": {k: _json_float(v) for k, v in self.numbers.items()}, "rule": self.rule,
                "regimes": [r.to_dict() for r in self.regimes], "figure": self.figure, "source": self.source}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Verdict:
        """The verdict a ``to_dict`` record describes (null numbers -- non-finite -- are dropped)."""
        def clean(numbers: dict[str, Any] | None) -> dict[str, float]:
            return {k: float(v) for k, v in (numbers or {}).items() if v is not None}

        regimes = tuple(Regime(r["name"], r["status"], r.get("evidence", ""), clean(r.get("numbers")), bool(r.get("lecture")))
                        for r in record.get("regimes") or ())
        key = record.get("id") if record.get("id") not in (None, record["claim"]) else ""
        return cls(record["claim"], record.get("text", ""), record["status"], record.get("evidence", ""),
                   clean(record.get("numbers")), regimes, record.get("rule", ""), key or "", record.get("figure") or "",
                   record.get("source") or "")


def status_from(supported: bool, usable: bool = True) -> Status:
    """``holds`` when the measurement supports the claim, ``does_not_hold`` when it contradicts it,
    ``inconclusive`` when the experiment itself failed its sanity check (``usable`` False)."""
    if not usable:
        return "inconclusive"
    return "holds" if supported else "does_not_hold"


@dataclass(frozen=True)
class Setting:
    """One configuration a study compares: a key for tables, a label for figures, an activation and an initialiser."""

    key: str
    label: str
    activation: str
    init: str


@dataclass
class StudyOutput:
    """What a study function produces (``run_study`` adds the name, timing and folder)."""

    verdicts: list[Verdict]
    figures: list[tuple[str, str]]   # (file name in the study folder, caption)
    tables: list[tuple[str, str]]    # (file name in the study folder, caption)


@dataclass
class StudyResult:
    """A finished study: its verdicts and the files it wrote into ``path``."""

    name: str
    title: str
    path: Path
    verdicts: list[Verdict]
    figures: list[tuple[str, str]]
    tables: list[tuple[str, str]]
    seconds: float
    quick: bool
    seed: int
    summary: dict[str, Any] = field(default_factory=dict)   # the tour's counts and regime limits
    cpu_seconds: float = math.nan  # CPU time of the process that ran it (all its threads); the tour: sum over studies

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "quick": self.quick, "seed": self.seed, "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3) if math.isfinite(self.cpu_seconds) else None,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "figures": [{"path": p, "caption": c} for p, c in self.figures],
            "tables": [{"path": p, "caption": c} for p, c in self.tables],
        } | ({"summary": self.summary} if self.summary else {})


@dataclass(frozen=True)
class Study:
    """A registered study: ``run(folder, quick, seed) -> StudyOutput``."""

    name: str
    title: str
    claims: tuple[str, ...]
    run: Callable[[Path, bool, int], StudyOutput]


def write_table(path: Path, rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> Path:
    """Write a tidy CSV (one row per measurement) atomically; missing keys are left empty."""
    columns = list(columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    atomic_write_text(Path(path), buffer.getvalue())
    return Path(path)


def write_study_json(result: StudyResult) -> Path:
    """Write ``study.json`` into the study folder (atomically)."""
    path = result.path / "study.json"
    atomic_write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")
    return path


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
