"""Verdict rules on synthetic numbers: beyond 2 standard errors holds, within noise is inconclusive."""

from __future__ import annotations

import math
import statistics

import pytest

from deepwell.studies.base import Regime, Verdict
from deepwell.studies.evidence import compare, mean_se, regime_verdict


def test_standard_error_matches_the_textbook_formula():
    values = [1.0, 2.0, 4.0, 7.0]
    mean, se = mean_se(values)
    assert mean == pytest.approx(3.5)
    assert se == pytest.approx(statistics.stdev(values) / 2.0)


def test_a_clear_difference_holds_and_its_reverse_does_not():
    better, worse = [0.91, 0.92, 0.90], [0.85, 0.86, 0.84]
    c = compare(better, worse)
    assert c.status == "holds"
    assert c.difference == pytest.approx(0.06)
    assert c.se == pytest.approx(math.hypot(0.01 / math.sqrt(3), 0.01 / math.sqrt(3)))
    assert compare(worse, better).status == "does_not_hold"


def test_a_within_noise_difference_is_inconclusive():
    assert compare([1.0, 1.1, 0.9], [1.05, 0.95, 1.0]).status == "inconclusive"
    # 1.5 standard errors apart: not beyond 2 s.e.
    a = [1.0 + d for d in (-0.1, 0.0, 0.1)]
    se = math.hypot(*(statistics.stdev(a) / math.sqrt(3),) * 2)
    assert compare([x + 1.5 * se for x in a], a).status == "inconclusive"
    assert compare([x + 2.5 * se for x in a], a).status == "holds"


def test_margin_and_direction_and_seed_count():
    assert compare([10.0, 10.0, 10.0], [11.0, 11.0, 11.0], higher_is_better=False).status == "holds"  # fewer steps
    assert compare([10.0, 10.0, 10.0], [11.0, 11.0, 11.0], margin=2.0, higher_is_better=False).status == "inconclusive"
    assert compare([2.0, 2.0], [1.0, 1.0]).status == "inconclusive"  # two seeds are not enough
    assert compare([2.0, 2.0, 2.0], [1.0, 1.0, math.inf]).status == "inconclusive"


def test_regime_verdict_takes_the_lecture_regime_and_keeps_every_regime():
    regimes = [Regime("depth 10", "does_not_hold", "tanh faster", {"ratio": 0.6}),
               Regime("depth 2", "holds", "relu faster", {"ratio": 1.8}, lecture=True)]
    v = regime_verdict("relu-faster", "ReLU is faster", "beyond 2 s.e.", regimes)
    assert v.status == "holds" and v.id == "relu-faster"
    assert v.numbers == {"depth 10/ratio": 0.6, "depth 2/ratio": 1.8}
    record = v.to_dict()
    assert [r["name"] for r in record["regimes"]] == ["depth 10", "depth 2"] and record["rule"] == "beyond 2 s.e."
    assert Verdict.from_dict(record) == v
    with pytest.raises(ValueError, match="at least one regime"):
        regime_verdict("x", "x", "x", [])
