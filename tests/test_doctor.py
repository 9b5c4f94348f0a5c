"""The doctor names the right problem, layers and remedy on purpose-built sick networks, and
nothing on healthy ones.

Each sick network is the smallest that shows its illness (moons, a few epochs, probes every 2
steps). The default run (cnn1d + batchnorm on mnist1d, 25 epochs) is checked under the slow marker.
"""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

import deepwell
from deepwell.diagnostics import RULES, Finding, diagnose, health_line, print_findings
from deepwell.diagnostics.rules.network import DEAD_FRACTION, EXPLODING_RATIO, SATURATED_FRACTION, VANISHING_RATIO

BASE = ["data.source=moons:n=300", "model.arch=mlp", "model.norm=none", "train.schedule=constant", "train.epochs=3",
        "diagnostics.every=2", "train.checkpoint_every=100"]
HEALTHY = ["model.depth=2", "model.width=32", "model.activation=relu", "model.init=he", "train.optimizer=adam",
           "train.lr=0.01", "train.epochs=10"]


def train(directory, *overrides: str, base=BASE):
    return deepwell.train(overrides=[*base, *overrides, f"output.dir={directory}", "output.name=run", "output.report=false"],
                          progress="none")


def diagnosed(tmp_path, *overrides: str, base=BASE):
    return diagnose(train(tmp_path, *overrides, base=base).path)


def only(findings, rule: str) -> Finding:
    matches = [f for f in findings if f.rule == rule]
    assert matches, f"expected a '{rule}' finding, got {[f.rule for f in findings]}"
    finding = matches[0]
    assert finding.remedies and all(finding.remedies), "every finding says what to try"
    assert finding.evidence and finding.title
    return finding


def problems(findings) -> list[str]:
    return [f.rule for f in findings if f.severity in ("error", "warning")]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("healthy"), *HEALTHY)


# --- healthy ---------------------------------------------------------------------------------------
def test_healthy_network_has_no_warning_and_writes_findings_json(healthy_run):
    findings = diagnose(healthy_run.path)
    assert problems(findings) == [] and findings.healthy
    record = json.loads((healthy_run.path / "findings.json").read_text())
    assert record["healthy"] is True and record["findings"] == [f.to_dict() for f in findings]
    assert record["checked"] == [rule.__name__ for rule in RULES] and len(record["checked"]) >= 13
    line = health_line(findings)
    assert line.startswith("Healthy: gradients flow") and "dead units" in line and "no overfitting" in line


def test_print_findings_healthy_line_and_cli(healthy_run):
    out = io.StringIO()
    print_findings(diagnose(healthy_run.path), Console(file=out, width=200))
    assert "Healthy: gradients flow" in out.getvalue()

    from typer.testing import CliRunner

    from deepwell.cli import app

    result = CliRunner().invoke(app, ["diagnose", str(healthy_run.path)])
    assert result.exit_code == 0 and "Healthy" in result.output


@pytest.mark.slow
def test_default_run_is_healthy(tmp_path):
    """The default `deepwell train` (cnn1d + batchnorm, mnist1d, 25 epochs): train loss ~0, val loss ~0.04."""
    run = deepwell.train(overrides=[f"output.dir={tmp_path}"], progress="none")
    findings = diagnose(run.path)
    assert problems(findings) == [], [f.evidence for f in findings]
    assert health_line(findings).startswith("Healthy")


# --- gradients and initialisation -------------------------------------------------------------------
def test_sigmoid_depth_20_gradients_vanish_in_the_first_layers(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=20", "model.width=32", "model.activation=sigmoid", "model.init=xavier",
                         "train.epochs=1")
    finding = only(findings, "vanishing_gradient")
    assert finding.layers[0] == "dense.0" and "dense.19" not in finding.layers and len(finding.layers) >= 10
    assert finding.numbers["ratio_first_last"] < VANISHING_RATIO and finding.steps == [0]
    assert any("model.activation=relu" in r and "he" in r for r in finding.remedies)
    assert "exploding_gradient" not in problems(findings)


def test_zero_init_units_are_symmetric_and_never_learn(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=3", "model.width=16", "model.init=zeros")
    finding = only(findings, "zero_init")
    assert finding.severity == "error" and finding.layers == ["dense.0", "dense.1", "dense.2"]
    assert any("model.init=he" in r for r in finding.remedies)
    assert "dead_relu" not in problems(findings)  # the units output 0 because the weights are 0, not dead ReLUs


def test_constant_init_herds_identical_units(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=3", "model.width=16", "model.init=constant:0.1")
    finding = only(findings, "identical_units")
    assert finding.layers == ["dense.0", "dense.1", "dense.2"] and "constant" in finding.evidence
    assert "zero_init" not in problems(findings)


def test_sigma_1_tanh_saturates_and_gradients_explode(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=10", "model.width=32", "model.activation=tanh", "model.init=normal:1.0",
                         "train.epochs=1")
    saturated = only(findings, "saturation")
    assert saturated.numbers["max_saturated"] > SATURATED_FRACTION and "dense.5" in saturated.layers
    assert any("xavier" in r for r in saturated.remedies)
    exploding = only(findings, "exploding_gradient")
    assert exploding.layers[0] == "dense.0" and exploding.numbers["ratio_first_last"] > EXPLODING_RATIO


def test_small_init_collapses_activations(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=6", "model.width=32", "model.activation=tanh", "model.init=normal:0.01",
                         "train.epochs=1")
    finding = only(findings, "activation_collapse")
    assert "dense.5" in finding.layers and "dense.0" not in finding.layers and finding.numbers["ratio"] < 0.1
    assert "lr_too_high" not in problems(findings)  # recovering from 1e-8 is not a blow-up


def test_large_init_grows_activations(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=5", "model.width=32", "model.init=normal:1.0", "train.epochs=1")
    finding = only(findings, "activation_growth")
    assert "dense.4" in finding.layers and finding.numbers["ratio"] > 10


def test_negative_bias_kills_relus(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=3", "model.width=16", "model.bias_init=constant:-3.0")
    finding = only(findings, "dead_relu")
    assert finding.severity == "error" and {"dense.1", "dense.2"} <= set(finding.layers)
    assert finding.numbers["max_dead"] > DEAD_FRACTION
    assert any("leaky_relu" in r for r in finding.remedies) and any("bias_init=zeros" in r for r in finding.remedies)
    assert "activation_collapse" not in problems(findings)


# --- learning rate ---------------------------------------------------------------------------------
def test_lr_10_is_too_high_and_the_loss_goes_non_finite(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=3", "model.width=16", "train.optimizer=sgd", "train.lr=10")
    assert findings[0].severity == "error"
    non_finite = only(findings, "non_finite_loss")
    assert "non-finite" in non_finite.evidence and non_finite.steps
    high = only(findings, "lr_too_high")
    assert any("train.lr=1 " in r for r in high.remedies)


def test_lr_too_high_without_nan_from_the_probes(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=3", "model.width=32", "train.optimizer=sgd", "train.lr=10", "train.epochs=2",
                         base=[*BASE[1:], "data.source=moons"])
    assert "non_finite_loss" not in problems(findings)
    finding = only(findings, "lr_too_high")
    assert "activation" in finding.evidence and finding.numbers["activation_growth"] > 1e3


def test_tiny_lr_is_too_low_and_underfits(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=2", "model.width=16", "train.optimizer=sgd", "train.lr=1e-6")
    low = only(findings, "lr_too_low")
    assert low.numbers["max_update_ratio"] < 1e-5 and any("train.lr=0.0001" in r for r in low.remedies)
    only(findings, "underfitting")
    assert "lr_too_high" not in problems(findings)


# --- generalisation --------------------------------------------------------------------------------
def test_overfitting_names_the_best_epoch_and_what_early_stopping_would_have_kept(tmp_path):
    findings = diagnosed(tmp_path, "data.source=moons:n=200,noise=0.4", "data.val_fraction=0.5", "model.depth=3",
                         "model.width=128", "train.optimizer=adam", "train.lr=0.01", "train.epochs=15", "diagnostics.every=20")
    finding = only(findings, "overfitting")
    best = int(finding.numbers["best_epoch"])
    assert 1 <= best <= 12 and f"epoch {best}" in finding.title
    assert finding.numbers["final_val_loss"] > 1.15 * finding.numbers["best_val_loss"]
    assert "best_val_acc" in finding.numbers and "Early stopping would have kept" in finding.evidence
    assert any("early_stopping" in r for r in finding.remedies)


def test_dropout_explains_val_loss_below_train_loss(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=2", "model.width=64", "model.dropout=dropout:0.5", "train.schedule=onecycle",
                         "train.epochs=5", "diagnostics.every=10", base=[*BASE[1:], "data.source=moons"])
    finding = only(findings, "val_below_train")
    assert finding.severity == "info" and "dropout" in finding.title
    assert finding.numbers["train_loss"] > finding.numbers["train_loss_clean"]
    assert problems(findings) == [] and findings.healthy


def test_print_findings_shows_severity_title_evidence_and_remedies(tmp_path):
    findings = diagnosed(tmp_path, "model.depth=3", "model.width=16", "model.init=zeros")
    out = io.StringIO()
    print_findings(findings, Console(file=out, width=300))
    text = out.getvalue()
    assert "ERROR" in text and findings[0].title in text and "try: use model.init=he" in text
    assert health_line(findings).startswith("2 problems: All weights start at zero")


def test_finding_rejects_unknown_severity():
    with pytest.raises(ValueError, match="error, warning, info"):
        Finding("x", "fatal", "t", "e")
