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

    {"healthy": false, "checked": ["non_finite_loss", ...], "vitals": {"max_dead": 0.0, ...},
     "findings": [{"rule": "vanishing_gradient", "severity": "warning", "title": ..., "evidence": ...,
                   "layers": [...], "steps": [0], "numbers": {...}, "remedies": [...]}]}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from deepwell.diagnostics.evidence import SEVERITIES, Finding, RunEvidence
from deepwell.diagnostics.rules import RULES
from deepwell.training.checkpoint import atomic_write_text

__all__ = ["Findings", "diagnose", "examine", "load_findings", "print_findings", "health_line", "vital_signs"]

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class Findings(list):
    """The findings of one diagnosis (a list of :class:`Finding`, most serious first), plus what was checked.

    ``checked`` lists the rule ids that ran; ``vitals`` the measurements the healthy summary quotes.
    """

    def __init__(self, findings: list[Finding] = (), checked: tuple[str, ...] = (), vitals: dict[str, float] | None = None):
        super().__init__(findings)
        self.checked = tuple(checked)
        self.vitals = dict(vitals or {})

    @property
    def healthy(self) -> bool:
        """No error or warning (info findings are explanations, not problems)."""
        return not any(f.severity in ("error", "warning") for f in self)


def diagnose(run_path: str | Path) -> Findings:
    """Run every rule on a run folder, write its findings.json, and return the findings (errors first).

    Raises:
        CheckpointError: the folder is not a run folder, or one of its files is corrupt.
    """
    evidence = RunEvidence.load(run_path)
    findings = examine(evidence)
    record = {"healthy": findings.healthy, "checked": list(findings.checked), "vitals": findings.vitals,
              "findings": [f.to_dict() for f in findings]}
    atomic_write_text(evidence.path / "findings.json", json.dumps(record, indent=2, default=_jsonable) + "\n")
    return findings


def examine(evidence: RunEvidence) -> Findings:
    """Run every rule on evidence already in memory (a run folder's, or a live run's as the playground keeps it)."""
    found = [finding for rule in RULES if (finding := rule(evidence)) is not None]
    found.sort(key=lambda f: SEVERITIES.index(f.severity))  # stable: rule order within a severity
    return Findings(found, tuple(rule.__name__ for rule in RULES), vital_signs(evidence))


def load_findings(path: str | Path) -> Findings:
    """Read a findings.json written by :func:`diagnose` (a run folder or the file itself)."""
    path = Path(path)
    record = json.loads((path / "findings.json" if path.is_dir() else path).read_text())
    return Findings([Finding(**f) for f in record["findings"]], tuple(record["checked"]), record.get("vitals"))


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
    """One line: what was checked and found fine, or how many problems (and the worst)."""
    problems = [f for f in findings if f.severity in ("error", "warning")]
    if problems:
        rest = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        plural = "s" if len(problems) > 1 else ""
        return f"{len(problems)} problem{plural}: {problems[0].title}{rest}. Run `deepwell diagnose` for details."
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
    return line + (f"; {len(checked)} checks passed." if checked else ".")


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
