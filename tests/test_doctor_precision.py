"""The doctor and train.precision: no vanishing/exploding finding from bf16 rounding alone, the real ones still found."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_doctor import HEALTHY, problems, train

from deepwell.config import RunSpec
from deepwell.diagnostics import diagnose
from deepwell.diagnostics.evidence import RunEvidence
from deepwell.diagnostics.probes import ProbeLog
from deepwell.diagnostics.rules.network import EXPLODING_RATIO, VANISHING_RATIO, exploding_gradient, vanishing_gradient

pytestmark = pytest.mark.usefixtures("single_thread")
DEPTH = 20


def evidence(precision: str, ratio: float) -> RunEvidence:
    """A run whose step-0 probe reads first/last gradient ratio ``ratio`` over DEPTH layers (geometric in between)."""
    layers = [f"dense.{i}" for i in range(DEPTH)]
    signal = [ratio ** (1 - i / (DEPTH - 1)) for i in range(DEPTH)]
    sample = {"kind": "sample", "step": 0, "epoch": -1, "layers": layers, "signal_grad_norm": signal, "grad_norm": signal}
    spec = RunSpec.from_dict({"train": {"precision": precision}, "model": {"arch": "mlp", "depth": DEPTH}})
    return RunEvidence(Path("."), spec, {}, {}, [], ProbeLog([sample], []))


def test_rounding_margin_is_the_formats_unit_roundoff_per_rounding():
    assert evidence("fp32", 1.0).rounding(DEPTH) == pytest.approx(1.0, abs=1e-5)
    assert evidence("bf16", 1.0).rounding(DEPTH) == pytest.approx((1 + 2 ** -8) ** 38)    # 1.16
    assert evidence("tf32", 1.0).rounding(DEPTH) == pytest.approx((1 + 2 ** -11) ** 38)   # 1.02
    assert evidence("bf16", 1.0).rounding(1) == 1.0                                       # nothing to go through


@pytest.mark.parametrize(("ratio", "fp32", "bf16"), [
    (0.99 * VANISHING_RATIO, True, False),   # inside the bound by less than bf16 rounding can move it
    (0.8 * VANISHING_RATIO, True, True),     # by more: a real finding in either format
    (1.01 * VANISHING_RATIO, False, False),
])
def test_a_vanishing_reading_within_bf16_rounding_of_the_bound_is_no_finding(ratio, fp32, bf16):
    assert (vanishing_gradient(evidence("fp32", ratio)) is not None) == fp32
    found = vanishing_gradient(evidence("bf16", ratio))
    assert (found is not None) == bf16
    if found is not None:
        assert "computed in bf16" in found.evidence


@pytest.mark.parametrize(("ratio", "fp32", "bf16"), [(1.01 * EXPLODING_RATIO, True, False), (1.3 * EXPLODING_RATIO, True, True)])
def test_an_exploding_reading_within_bf16_rounding_of_the_bound_is_no_finding(ratio, fp32, bf16):
    assert (exploding_gradient(evidence("fp32", ratio)) is not None) == fp32
    assert (exploding_gradient(evidence("bf16", ratio)) is not None) == bf16


def test_healthy_net_in_bf16_has_no_vanishing_finding_and_deep_sigmoid_still_has(tmp_path):
    healthy = diagnose(train(tmp_path / "healthy", *HEALTHY, "train.precision=bf16").path)
    assert problems(healthy) == [], [f.evidence for f in healthy]
    sick = diagnose(train(tmp_path / "sigmoid", "model.depth=20", "model.width=32", "model.activation=sigmoid",
                          "model.init=xavier", "train.epochs=1", "train.precision=bf16").path)
    finding = next(f for f in sick if f.rule == "vanishing_gradient")
    assert finding.severity == "warning" and finding.layers[0] == "dense.0"
    assert finding.numbers["ratio_first_last"] < 1e-6  # the same ~1e-12 fp32 reads: bf16 keeps float32's range
    assert "computed in bf16" in finding.evidence
