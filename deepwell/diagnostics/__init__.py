"""Diagnostics: probes that watch each layer while training, and the doctor that reads them."""

from deepwell.diagnostics.doctor import Findings, diagnose, health_line, load_findings, print_findings, vital_signs
from deepwell.diagnostics.evidence import Finding, RunEvidence
from deepwell.diagnostics.probes import ProbeLog, Probes, load_probes, measure_activations
from deepwell.diagnostics.rules import RULES

__all__ = [
    "Probes", "ProbeLog", "load_probes", "measure_activations",
    "Finding", "Findings", "RunEvidence", "RULES", "diagnose", "load_findings", "print_findings", "health_line", "vital_signs",
]
