"""The deepwell command: one line on stderr and exit code 2 for bad input; the commands work end to end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


SMALL = ["--set", "data.source=moons:n=300", "--set", "model.hidden=[8]", "--set", "train.epochs=2"]


def test_exit_code_2_and_one_line_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "deepwell.cli", "train", "--set", "model.activation=leaky_rlu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "Unknown activation 'leaky_rlu'. Did you mean 'leaky_relu'?" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--set", "model.dropout=dropout:1.5"], "less than 1"),
        (["train", "--set", "train.lr=-0.1"], "train.lr"),
        (["train", "--set", "model.activaton=relu"], "Did you mean 'activation'"),
        (["train", "missing.yaml"], "not found"),
        (["train", "--set", "data.source=csv:path=nope.csv"], "not found"),
        (["evaluate", "no_such_run"], "does not exist"),
        (["options", "activatons"], "Did you mean 'activation'"),
    ],
)
def test_bad_input_exits_2_with_the_reason(cli, monkeypatch, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*args)
    assert code == 2
    assert message in err


def test_unknown_yaml_key(cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("model:\n  widht: 10\n")
    code, _, err = cli("train", str(spec))
    assert code == 2 and "Unknown key 'model.widht'" in err and "Did you mean 'width'" in err


def test_nan_in_csv(cli, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,target\n1,2,0\nnan,3,1\n4,5,0\n6,7,1\n")
    code, _, err = cli("train", "--set", f"data.source=csv:path={data}", "--set",
                            f"output.dir={tmp_path}")
    assert code == 2 and "NaN" in err


def test_train_predict_evaluate_runs(cli, tmp_path):
    code, out, _ = cli("train", *SMALL, "--set", f"output.dir={tmp_path}", "--set", "output.name=r", "-q")
    assert code == 0, out
    assert "test accuracy" in out and f"Run folder: {tmp_path / 'r'}" in out

    inputs = tmp_path / "x.csv"
    np.savetxt(inputs, np.array([[0.0, 0.5], [1.0, -0.5], [2.0, 0.5]]), delimiter=",", header="x0,x1", comments="")
    predictions = tmp_path / "p.csv"
    code, out, err = cli("predict", str(tmp_path / "r"), "--input", str(inputs), "-o", str(predictions))
    assert code == 0, err
    lines = predictions.read_text().strip().splitlines()
    assert lines[0].startswith("prediction,p_") and len(lines) == 4
    probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-4)

    wrong = tmp_path / "w.csv"
    np.savetxt(wrong, np.zeros((2, 5)), delimiter=",")
    code, _, err = cli("predict", str(tmp_path / "r"), "--input", str(wrong))
    assert code == 2 and "shape (2,)" in err

    code, out, _ = cli("evaluate", str(tmp_path / "r"))
    assert code == 0 and "test/acc" in out

    code, out, _ = cli("runs", "--dir", str(tmp_path))
    assert code == 0 and "completed" in out


def test_spec_and_options_commands(cli):
    code, out, _ = cli("spec", "--set", "model.activation=leaky_relu:0.2", "--set", "lr=0.01")
    assert code == 0 and "activation: leaky_relu:0.2" in out and "lr: 0.01" in out
    code, out, _ = cli("options", "initializer")
    assert code == 0 and "he(" in out and "xavier(" in out


def test_diverging_run_exits_1(cli, tmp_path):
    code, out, err = cli("train", *SMALL, "--set", "train.optimizer=sgd", "--set", "train.lr=1e8",
                              "--set", "train.schedule=constant", "--set", "model.norm=none", "--set", f"output.dir={tmp_path}", "-q")
    assert code == 1
    assert "non-finite" in err and "learning rate" in err
