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
from deepwell.diagnostics.remedies import CONFLICTS, REMEDY_KINDS, conflicting_pairs, remedy_kinds, resolve_conflicts
from deepwell.diagnostics.rules.network import DEAD_FRACTION, EXPLODING_RATIO, SATURATED_FRACTION, VANISHING_RATIO
from deepwell.diagnostics.rules.training import GAP_MIN_NATS, UNDERFIT_CHANCE_FRACTION

BASE = ["data.source=moons:n=300", "model.arch=mlp", "model.norm=none", "train.schedule=constant", "train.epochs=3",
        "diagnostics.every=2", "train.checkpoint_every=100"]
HEALTHY = ["model.depth=2", "model.width=32", "model.activation=relu", "model.init=he", "train.optimizer=adam",
           "train.lr=0.01", "train.epochs=10"]


def train(directory, *overrides: str, base=BASE):
    return deepwell.train(overrides=[*base, *overrides, f"output.dir={directory}", "output.name=run", "output.report=false"],
                          progress="none")


def diagnosed(tmp_path, *overrides: str, base=BASE):
    findings = diagnose(train(tmp_path, *overrides, base=base).path)
    remedies = [r for f in findings for r in f.remedies]
    assert conflicting_pairs(remedies) == [], "one diagnosis never advises both directions"
    return findings


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
    assert finding.numbers["ratio_first_last"] < VANISHING_RATIO and finding.steps[0] == 0
    assert finding.severity == "warning" and "step 0" in finding.evidence  # it persisted: still a warning
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


# --- the outcome, what could not be checked, moments, remedies that agree ------------------------------
def test_a_network_too_small_for_its_data_underfits_by_accuracy(tmp_path):
    """Digits (10 classes) through 2 hidden units: loss well below chance, yet a training accuracy far from 100%."""
    findings = diagnosed(tmp_path, "data.source=digits", "model.depth=1", "model.width=2", "train.optimizer=adam",
                         "train.lr=0.01", "train.epochs=10", "diagnostics.every=20")
    finding = only(findings, "underfitting")
    assert finding.numbers["train_loss"] < UNDERFIT_CHANCE_FRACTION * 2.302  # the old loss-only test would pass it
    assert finding.numbers["train_acc"] < 0.7 and finding.numbers["chance_acc"] == 0.1
    assert "chance is 10%" in finding.evidence and any("model.width=4" in r for r in finding.remedies)
    assert not findings.healthy


def test_without_validation_the_train_test_gap_is_checked_on_the_test_split(tmp_path):
    findings = diagnosed(tmp_path, "data.source=digits", "data.n_train=50", "data.val_fraction=0", "model.depth=2",
                         "model.width=128", "train.optimizer=adam", "train.lr=0.003", "train.epochs=40", "diagnostics.every=50")
    finding = only(findings, "overfitting")
    assert finding.numbers["test_loss"] - finding.numbers["train_loss"] > GAP_MIN_NATS
    assert "no validation split" in finding.evidence and "test split, measured once at the end" in finding.evidence
    assert findings.not_checked == {"val_below_train": "no validation data"}
    assert "val_below_train" not in findings.checked
    assert "Not checked: val_below_train (no validation data)" in health_line(findings)


def test_what_could_not_be_checked_is_not_called_passed(tmp_path):
    findings = diagnosed(tmp_path, *HEALTHY, "data.val_fraction=0", "diagnostics.probes=false")
    assert findings.healthy and problems(findings) == []
    assert set(findings.not_checked) >= {"val_below_train", "vanishing_gradient", "dead_relu", "saturation"}
    assert findings.not_checked["vanishing_gradient"] == "no probes recorded (diagnostics.probes=false)"
    line = health_line(findings)
    assert f"{len(findings.checked)} checks passed" in line and "Not checked: " in line
    assert len(findings.checked) + len(findings.not_checked) == len(RULES)
    record = json.loads((tmp_path / "run" / "findings.json").read_text())
    assert record["not_checked"] == findings.not_checked


def test_an_init_finding_that_training_overcame_is_downgraded(tmp_path):
    """Deep sigmoid + batchnorm: the step-0 probe (eval mode) sees vanishing gradients, later samples see them flow."""
    findings = diagnosed(tmp_path, "model.depth=20", "model.width=32", "model.activation=sigmoid", "model.norm=batchnorm",
                         "train.optimizer=adam", "train.lr=0.01")
    finding = only(findings, "vanishing_gradient")
    assert finding.numbers["ratio_first_last"] < VANISHING_RATIO <= finding.numbers["ratio_last"]
    assert finding.severity == "info" and "at initialisation only" in finding.title and "step 0" in finding.evidence
    assert finding.steps[0] == 0 and finding.steps[-1] > 0
    assert "vanishing_gradient" not in problems(findings)


def test_the_conflict_table_names_known_directions_and_reads_the_rules_remedies():
    assert all(len(pair) == 2 and pair <= set(REMEDY_KINDS) for pair in CONFLICTS)
    assert remedy_kinds("use fewer layers (model.depth is 20)") == {"depth_down"}
    assert remedy_kinds("use a larger network (model.width, model.depth) or remove regularisation") >= {"depth_up", "capacity_up"}
    assert remedy_kinds("set train.lr=0.001 (10x lower than 0.01)") == {"lr_down"}
    assert remedy_kinds("set train.lr=0.0001 (100x higher), or use train.optimizer=adam with train.lr=0.001") == {"lr_up"}
    assert remedy_kinds("set train.early_stopping.patience=5 (stops and restores the best epoch's weights)") == {"train_shorter"}
    assert remedy_kinds("use model.init=he (std sqrt(2/fan_in): keeps the activation variance of ReLU layers)") == set()
    # today's main gave both of these in one diagnosis of a deep sigmoid net
    assert conflicting_pairs(["use fewer layers (model.depth is 20)",
                              "use a larger network (model.width, model.depth) or remove regularisation"])


def test_resolve_conflicts_keeps_the_more_serious_findings_remedy_and_says_what_it_withheld():
    high = Finding("lr_too_high", "warning", "t", "e", remedies=["set train.lr=0.001 (10x lower than 0.01)", "clip"])
    low = Finding("lr_too_low", "warning", "t", "e", remedies=["set train.lr=1 (100x higher)"])
    longer = Finding("underfitting", "warning", "t", "e", remedies=["train longer (train.epochs=50)", "use model.init=he"])
    over = Finding("overfitting", "error", "t", "e", remedies=["set train.early_stopping.patience=5"])
    resolved = resolve_conflicts([over, high, low, longer])
    assert resolved[0] is over and resolved[1] is high
    assert resolved[2].remedies == ["fix the findings above first"] and "lr_too_high" in resolved[2].withheld[0]
    assert resolved[3].remedies == ["use model.init=he"] and resolved[3].withheld[0].startswith("train longer")
    assert conflicting_pairs([r for f in resolved for r in f.remedies]) == []
