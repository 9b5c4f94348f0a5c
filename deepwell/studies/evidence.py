"""Verdicts beyond noise: compare two conditions over seeds, and a claim judged regime by regime.

A verdict that compares two conditions (ReLU vs tanh, deep vs shallow, with vs without BN) needs
at least ``MIN_SEEDS`` seeds of each. :func:`compare` reports the difference of the means with its
standard error, ``se = sqrt(var_a / n_a + var_b / n_b)``, and says

* ``holds`` when the difference exceeds ``max(NOISE_MULTIPLE * se, margin)`` in the claimed direction,
* ``does_not_hold`` when it exceeds that bound in the other direction,
* ``inconclusive`` otherwise (within noise), or with fewer than ``MIN_SEEDS`` seeds.

A claim is rarely true everywhere: :func:`regime_verdict` turns the verdicts of several regimes
(e.g. depth 2, depth 10, a CNN) into one :class:`~deepwell.studies.base.Verdict` whose status is
the one measured in the lecture's own regime, and which keeps every regime's status and numbers.

Example::

    c = compare([0.91, 0.92, 0.90], [0.85, 0.86, 0.84])   # higher is better
    c.status, round(c.difference, 3), round(c.se, 4)       # ('holds', 0.06, 0.0082)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from deepwell.studies.base import Regime, Status, Verdict

__all__ = ["MIN_SEEDS", "NOISE_MULTIPLE", "Comparison", "compare", "mean_se", "regime_verdict"]

MIN_SEEDS = 3          # fewer seeds cannot estimate a standard error worth trusting
NOISE_MULTIPLE = 2.0   # "beyond noise": the difference exceeds 2 standard errors (~95% for a normal difference)


@dataclass(frozen=True)
class Comparison:
    """The difference ``mean(a) - mean(b)`` (signed so that positive supports the claim) and its status."""

    difference: float
    se: float
    bound: float
    mean_a: float
    mean_b: float
    seeds: int
    status: Status

    def describe(self, unit: str = "") -> str:
        """``+0.060 ± 0.008 (s.e., 3 seeds; needs > 0.016)`` -- the difference as people read it."""
        return (f"{self.difference:+.3g}{unit} ± {self.se:.2g} (s.e., {self.seeds} seeds; "
                f"needs > {self.bound:.2g}{unit})")

    def numbers(self, prefix: str) -> dict[str, float]:
        """The comparison as verdict numbers, keys ``<prefix>/difference`` etc."""
        return {f"{prefix}/a": self.mean_a, f"{prefix}/b": self.mean_b, f"{prefix}/difference": self.difference,
                f"{prefix}/se": self.se, f"{prefix}/bound": self.bound, f"{prefix}/seeds": float(self.seeds)}


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value; inf values give inf)."""
    values = [float(v) for v in values]
    mean = statistics.fmean(values)
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return mean, 0.0 if len(values) < 2 else math.inf
    return mean, statistics.stdev(values) / math.sqrt(len(values))


def compare(a: Sequence[float], b: Sequence[float], margin: float = 0.0, higher_is_better: bool = True,
            min_seeds: int = MIN_SEEDS) -> Comparison:
    """Is condition ``a`` better than ``b`` beyond noise (and by at least ``margin``)?

    Args:
        a: one measurement per seed of the condition the claim favours.
        b: one measurement per seed of the other condition.
        margin: the study's stated smallest difference that counts (same unit as the values).
        higher_is_better: False for losses or steps (then ``b - a`` is the difference).
        min_seeds: fewer seeds in either arm make the comparison inconclusive.

    Example::

        compare([1.0, 1.1, 0.9], [1.05, 0.95, 1.0]).status     # 'inconclusive' (within noise)
    """
    if not a or not b:
        raise ValueError("compare needs at least one measurement of each condition; got an empty list.")
    mean_a, se_a = mean_se(a)
    mean_b, se_b = mean_se(b)
    difference = (mean_a - mean_b) if higher_is_better else (mean_b - mean_a)
    se = math.hypot(se_a, se_b)
    bound = max(NOISE_MULTIPLE * se, margin)
    seeds = min(len(a), len(b))
    if seeds < min_seeds or not math.isfinite(difference) or not math.isfinite(bound):
        status: Status = "inconclusive"
    elif difference > bound:
        status = "holds"
    elif difference < -bound:
        status = "does_not_hold"
    else:
        status = "inconclusive"
    return Comparison(difference, se, bound, mean_a, mean_b, seeds, status)


def regime_verdict(claim: str, text: str, rule: str, regimes: Sequence[Regime], key: str = "", figure: str = "") -> Verdict:
    """One verdict from several regimes: the status of the lecture's regime, every regime kept.

    Args:
        claim: the claim's id in CLAIMS.md.
        text: the claim in words.
        rule: the verdict rule in words (shown next to the claim in the report).
        regimes: at least one; the first with ``lecture=True`` decides (else the first).
        key: a unique verdict id when a study reports one claim twice (default: the claim id).
        figure: the study's figure file that shows the claim (the report puts it beside the verdict).
    """
    if not regimes:
        raise ValueError(f"regime_verdict('{claim}') needs at least one regime; got none.")
    lecture = next((r for r in regimes if r.lecture), regimes[0])
    evidence = " ".join(f"[{r.name}{' (lecture)' if r is lecture else ''}: {r.status.replace('_', ' ')}] {r.evidence}"
                        for r in regimes)
    numbers = {f"{r.name}/{k}": v for r in regimes for k, v in r.numbers.items()}
    return Verdict(claim, text, lecture.status, evidence, numbers, regimes=tuple(regimes), rule=rule, key=key, figure=figure)
