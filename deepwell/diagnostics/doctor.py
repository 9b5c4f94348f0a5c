"""The doctor: says what is wrong with a trained network, with the evidence and what to try.

``diagnose(run_path)`` reads the run folder (spec, metrics, probes, final weights), runs every
rule of :mod:`deepwell.diagnostics.rules`, writes ``findings.json`` into the folder and returns
the findings, most serious first. ``print_findings`` shows them; ``health_line`` is the one line
``deepwell train`` prints at the end.

Example::

    findings = diagnose("runs/mnist1d-cnn1d-20261127-101500")
    for finding in findings:
        print(finding.severity, finding.title, finding.remedies)

findings.json::

    {"healthy": false, "checked": ["non_finite_loss", ...], "not_checked": {"val_below_train": "no validation data"},
     "vitals": {"max_dead": 0.0, ...},
     "findings": [{"rule": "vanishing_gradient", "severity": "warning", "title": ..., "evidence": ...,
                   "layers": [...], "steps": [0], "numbers": {...}, "remedies": [...], "withheld": [...]}]}

A rule that lacks what it needs (no validation split, no probes) returns
:class:`~deepwell.diagnostics.evidence.Unchecked`: it is listed as "not checked: <why>", never
counted as passed. Remedies that contradict a more serious finding's are withheld
(:mod:`deepwell.diagnostics.remedies`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from deepwell.diagnostics.evidence import SEVERITIES, Finding, RunEvidence, Unchecked
from deepwell.diagnostics.remedies import resolve_conflicts
from deepwell.diagnostics.rules import RULES
from deepwell.training.checkpoint import atomic_write_text

__all__ = ["Findings", "diagnose", "examine", "load_findings", "print_findings", "health_line", "vital_signs"]

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class Findings(list):
    """The findings of one diagnosis (a list of :class:`Finding`, most serious first), plus what was checked.

    ``checked`` lists the rule ids that ran; ``not_checked`` the rules that could not run, with why
    (``{"overfitting": "no validation data ..."}``); ``vitals`` the measurements the healthy summary quotes.

    Example::

        findings = diagnose(run.path)
        if not findings.healthy:
            print(findings[0].title, findings[0].remedies)
        print(findings.not_checked)
    """

    def __init__(self, findings: list[Finding] = (), checked: tuple[str, ...] = (), vitals: dict[str, float] | None = None,
                 not_checked: dict[str, str] | None = None):
        super().__init__(findings)
        self.checked = tuple(checked)
        self.vitals = dict(vitals or {})
        self.not_checked = dict(not_checked or {})

    @property
    def healthy(self) -> bool:
        """No error or warning (info findings are explanations, not problems)."""
        return not any(f.severity in ("error", "warning") for f in self)

    def _repr_html_(self) -> str:  # a notebook shows the findings as cards (deepwell.notebook.html)
        from deepwell.notebook.html import findings_html

        return findings_html(self)

    def __repr__(self) -> str:
        from deepwell.notebook.html import findings_text

        return findings_text(self)


def diagnose(run_path: str | Path | RunEvidence) -> Findings:
    """Run every rule on a run folder, write its findings.json, and return the findings (errors first).

    ``run_path`` may also be the folder's evidence already loaded (:meth:`RunEvidence.load`): it is not read again.

    Raises:
        CheckpointError: the folder is not a run folder, or one of its files is corrupt.
    """
    evidence = run_path if isinstance(run_path, RunEvidence) else RunEvidence.load(run_path)
    findings = examine(evidence)
    record = {"healthy": findings.healthy, "checked": list(findings.checked), "not_checked": findings.not_checked,
              "vitals": findings.vitals, "findings": [f.to_dict() for f in findings]}
    atomic_write_text(evidence.path / "findings.json", json.dumps(record, indent=2, default=_jsonable) + "\n")
    return findings


def examine(evidence: RunEvidence) -> Findings:
    """Run every rule on evidence already in memory (a run folder's, or a live run's as the playground keeps it)."""
    results = {rule.__name__: rule(evidence) for rule in RULES}
    found = [result for result in results.values() if isinstance(result, Finding)]
    found.sort(key=lambda f: SEVERITIES.index(f.severity))  # stable: rule order within a severity
    not_checked = {name: result.reason for name, result in results.items() if isinstance(result, Unchecked)}
    return Findings(resolve_conflicts(found), tuple(name for name in results if name not in not_checked),
                    vital_signs(evidence), not_checked)


def load_findings(path: str | Path) -> Findings:
    """Read a findings.json written by :func:`diagnose` (a run folder or the file itself)."""
    path = Path(path)
    record = json.loads((path / "findings.json" if path.is_dir() else path).read_text())
    return Findings([Finding(**f) for f in record["findings"]], tuple(record["checked"]), record.get("vitals"),
                    record.get("not_checked"))


def _jsonable(value: Any) -> Any:
    return float(value)


def vital_signs(evidence: RunEvidence) -> dict[str, float]:
    """The few numbers a healthy summary quotes: gradient flow at init, dead and saturated units, val loss vs best."""
    vitals: dict[str, float] = {}
    signal = evidence.initial("signal_grad_norm")
    if signal and len(signal) > 1 and None not in signal and signal[-1] > 0:
        vitals["grad_ratio"] = signal[0] / signal[-1]
    if evidence.probes.epochs:
        vitals["max_dead"] = max(evidence.probes.epochs[-1]["dead_epoch"], default=0.0)
    if evidence.probes.samples:
        vitals["max_saturated"] = max((s or 0.0 for s in evidence.probes.samples[-1]["saturated"]), default=0.0)
    val = [v for _, v in evidence.metric("val/loss")]
    if val and min(val) > 0:
        vitals["val_above_best"] = val[-1] / min(val) - 1
    return {k: float(v) for k, v in vitals.items() if math.isfinite(v)}


def health_line(findings: list[Finding]) -> str:
    """One line: what was checked and found fine, or how many problems (and the worst); then what was not checked."""
    problems = [f for f in findings if f.severity in ("error", "warning")]
    if problems:
        rest = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        plural = "s" if len(problems) > 1 else ""
        return (f"{len(problems)} problem{plural}: {problems[0].title}{rest}. Run `deepwell diagnose` for details."
                + _not_checked(findings))
    vitals = getattr(findings, "vitals", {})
    parts = []
    if "grad_ratio" in vitals:
        parts.append(f"gradients flow (first/last layer {vitals['grad_ratio']:.2g}x at init)")
    if "max_dead" in vitals:
        parts.append(f"{100 * vitals['max_dead']:.0f}% dead units")
    if vitals.get("max_saturated"):
        parts.append(f"{100 * vitals['max_saturated']:.0f}% saturated")
    if "val_above_best" in vitals:
        parts.append(f"no overfitting (val loss {100 * vitals['val_above_best']:.0f}% above its best)")
    checked = getattr(findings, "checked", ())
    line = "Healthy: " + (", ".join(parts) if parts else "no problem found")
    return line + (f"; {len(checked)} checks passed." if checked else ".") + _not_checked(findings)


def _not_checked(findings: list[Finding]) -> str:
    """' Not checked: overfitting (no validation data).' or ''."""
    skipped = getattr(findings, "not_checked", {})
    return (" Not checked: " + "; ".join(f"{rule} ({why})" for rule, why in skipped.items()) + ".") if skipped else ""


def print_findings(findings: list[Finding], console: Any) -> None:
    """Print the findings with rich: severity, title, evidence and remedies (or the healthy line)."""
    from rich.markup import escape

    if not any(f.severity in ("error", "warning") for f in findings):
        console.print(f"[green]{escape(health_line(findings))}[/green]")
    for finding in findings:
        style = _STYLE[finding.severity]
        console.print(f"[{style}]{finding.severity.upper()}[/{style}] [bold]{escape(finding.title)}[/bold]")
        console.print(f"  {escape(finding.evidence)}")
        for remedy in finding.remedies:
            console.print(f"  [green]try:[/green] {escape(remedy)}")
        for remedy in finding.withheld:
            console.print(f"  [dim]not suggested: {escape(remedy)}[/dim]")
    if any(f.severity in ("error", "warning") for f in findings) and getattr(findings, "not_checked", {}):
        console.print(f"[dim]{escape(_not_checked(findings).strip())}[/dim]")
