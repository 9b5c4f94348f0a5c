"""The doctor's rules: each reads a run's evidence and returns one :class:`Finding`, or None.

A rule is a small pure function ``rule(evidence) -> Finding | Unchecked | None`` named after the
problem it finds (its name is the finding's ``rule`` id); :data:`RULES` lists them in the order
they run. None means checked and fine; :class:`Unchecked` means the run lacks what the check needs
(no validation split, no probes), which the doctor reports as "not checked", never as passed.
A rule that reads one moment says which (``At initialisation (step 0)``); the init rules also read
the last probe sample and downgrade their finding to info when training overcame the problem.
Each rule's thresholds are named constants beside it, each with the reason for its value. The
lecture's "challenges" (vanishing/exploding gradients, saturation, dead ReLUs, initialisation,
overfitting, dropout) each have a rule; so do the learning rate and a non-finite loss.

- :mod:`~deepwell.diagnostics.rules.network`: the network itself (initialisation, gradients,
  activations), read from the probes and the final weights;
- :mod:`~deepwell.diagnostics.rules.training`: how training went (a non-finite loss, the learning
  rate, under- and overfitting, validation below training loss), read from the metrics;
- :mod:`~deepwell.diagnostics.rules.wording`: the numbers, layer lists and remedies they share.

What the rules read (see :class:`RunEvidence`): the run's resolved spec, meta.json, summary.json,
metrics.jsonl (one row per epoch), probes.jsonl (per-layer samples, the first taken at
initialisation; see :mod:`deepwell.diagnostics.probes`) and, lazily, the final weights.
"""

from __future__ import annotations

from collections.abc import Callable

from deepwell.diagnostics.evidence import SEVERITIES, Finding, RunEvidence, Unchecked
from deepwell.diagnostics.rules.network import (
    activation_collapse, activation_growth, dead_relu, exploding_gradient, identical_units, saturation, vanishing_gradient,
    zero_init,
)
from deepwell.diagnostics.rules.training import (
    lr_too_high, lr_too_low, non_finite_loss, overfitting, underfitting, val_below_train,
)

__all__ = ["Finding", "RunEvidence", "RULES", "SEVERITIES", "Unchecked"]

RULES: list[Callable[[RunEvidence], Finding | Unchecked | None]] = [
    non_finite_loss,
    zero_init, identical_units, vanishing_gradient, exploding_gradient, saturation, dead_relu,
    activation_collapse, activation_growth,
    lr_too_high, lr_too_low, underfitting, overfitting, val_below_train,
]

