"""Bad files as a newcomer brings them: each gets one clear message (or a warning) saying what is wrong and what works.

Odd class labels, a YAML typo, a CSV given to the npz source, blank cells (and data.impute),
option kinds called by their spec keys, missing folders, a corrupt model or checkpoint, a 2-D CNN
on signals.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import deepwell
from deepwell.config import DataSpec, load_spec, option_kinds, registry, resolve_kind
from deepwell.data import build_imputer, prepare_data
from deepwell.errors import CheckpointError, ConfigError, DataError, DataWarning

SMALL = ["output.report=false", "model.hidden=[16]", "train.epochs=2", "train.batch_size=32", "diagnostics.probes=false"]


def odd_labels_npz(path: Path) -> Path:
    """Labels 0..2 plus a stray -1 (3 examples) and 7 (2 examples)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    y[:3], y[3:5] = -1, 7
    np.savez(path, x=rng.normal(size=(300, 4)).astype(np.float32), y=y)
    return path


# ----- 10: odd class labels ------------------------------------------------------------------------


def test_stray_labels_warn_naming_them(tmp_path):
    path = odd_labels_npz(tmp_path / "odd.npz")
    with pytest.warns(DataWarning) as caught:
        splits = prepare_data(DataSpec(source=f"npz:path={path}"), seed=0)
    messages = [str(w.message) for w in caught]
    assert any("-1 (3 examples), 7 (2 examples) lie outside 0..2" in m and "5 classes" in m for m in messages), messages
    # 7 has 2 examples: the test split (20%) and the validation split (10% of the rest) cannot both get one.
    assert any("'7' (2 examples; none in the" in m for m in messages), messages
    assert splits.num_classes == 5  # still trains, as before: a warning, not a change


def test_strict_labels_make_it_an_error(tmp_path):
    path = odd_labels_npz(tmp_path / "odd.npz")
    with pytest.raises(DataError, match=r"-1 \(3 examples\), 7 \(2 examples\) lie outside 0\.\.2.*strict_labels=true"):
        prepare_data(DataSpec(source=f"npz:path={path}", strict_labels=True), seed=0)


@pytest.mark.parametrize(("labels", "fragment"), [
    ([0, 1, 2, 7], "class(es) 3, 4, 5, 6 have no examples"),  # non-negative labels are indices: a gap means empty outputs
    ([1, 2, 3], "class(es) 0 have no examples"),              # 1-based labels
])
def test_gaps_in_labels_name_the_empty_classes(tmp_path, labels, fragment):
    y = np.repeat(labels, 40)
    np.savez(tmp_path / "gap.npz", x=np.random.default_rng(0).normal(size=(len(y), 2)), y=y)
    with pytest.warns(DataWarning, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        prepare_data(DataSpec(source=f"npz:path={tmp_path / 'gap.npz'}"), seed=0)


@pytest.mark.parametrize("labels", [[0, 1, 2], [-1, 1], ["cat", "dog", "emu"]])
def test_ordinary_labels_say_nothing(tmp_path, labels):
    y = np.repeat(np.asarray(labels), 40)
    np.savez(tmp_path / "fine.npz", x=np.random.default_rng(0).normal(size=(len(y), 2)), y=y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_data(DataSpec(source=f"npz:path={tmp_path / 'fine.npz'}"), seed=0)


def test_cli_prints_the_warning_as_one_line(cli, tmp_path):
    path = odd_labels_npz(tmp_path / "odd.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("default", DataWarning)  # as outside pytest: shown, not raised
        code, _, err = cli("train", "--set", f"data.source=npz:path={path}", "--set", f"output.dir={tmp_path}", "-q",
                           *[part for item in SMALL for part in ("--set", item)])
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 2 and "lie outside 0..2" in lines[0], err


# ----- 11: YAML syntax errors -------------------------------------------------------------------


def test_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("data:\n  source: mnist1d\nmodel:\n  width: [1, 2\n  depth: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_spec(spec)
    message = str(caught.value)
    assert "\n" not in message and "<unicode string>" not in message
    assert f"'{spec}'" in message and "line 5, column 8" in message  # PyYAML's marks are 0-based


# ----- 12: a CSV given to the npz source ----------------------------------------------------------


def test_csv_given_to_npz_names_the_csv_source(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b,y\n1,2,0\n3,4,1\n")
    with pytest.raises(DataError) as caught:
        deepwell.data.build_dataset(f"npz:path={path}", seed=0)
    message = str(caught.value)
    assert "is not an .npz archive" in message and f"csv:path={path},target=COLUMN" in message
    assert "pickle" not in message


# ----- 13: missing values -------------------------------------------------------------------------


def blank_csv(path: Path) -> Path:
    """60 rows; column a blank on data rows 3 and 10, column c on row 7 (lines 5, 12, 9: header line 1, blank line 2)."""
    rng = np.random.default_rng(0)
    lines = ["a,b,c,y", ""]
    for row in range(60):
        a, b, c = rng.normal(size=3)
        cells = [f"{a:.3f}", f"{b:.3f}", f"{c:.3f}", f"{a + 2 * b:.3f}"]
        if row in (3, 10):
            cells[0] = ""
        if row == 7:
            cells[2] = "NA"
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_blank_cells_name_file_columns_counts_and_first_line(tmp_path):
    path = blank_csv(tmp_path / "blank.csv")
    with pytest.raises(DataError) as caught:
        prepare_data(DataSpec(source=f"csv:path={path},target=y"), seed=0)
    message = str(caught.value)
    assert f"'{path}' has 3 missing (blank or NaN) cells in column(s) a (2), c (1)" in message
    assert "first is on line 6" in message  # data row 3 (0-based) after the header and a blank line
    assert "data.impute=mean or median" in message


def test_npz_with_nan_and_inf_reports_both(tmp_path):
    x = np.zeros((30, 2))
    x[4, 0], x[9, 1], x[12, 0] = np.nan, np.inf, np.nan
    np.savez(tmp_path / "bad.npz", x=x, y=np.arange(30) * 0.5)
    with pytest.raises(DataError, match=r"2 NaN values and 1 infinite value in x \(first at example 4\)"):
        deepwell.data.build_dataset(f"npz:path={tmp_path / 'bad.npz'}", seed=0)


@pytest.mark.parametrize("how", ["mean", "median"])
def test_imputer_fills_with_training_statistics(how):
    x = torch.tensor([[1.0, 10.0], [float("nan"), 20.0], [3.0, float("nan")], [8.0, 40.0]])
    reference = {"mean": (np.nanmean, [4.0, 70 / 3]), "median": (np.nanmedian, [3.0, 20.0])}[how]
    imputer = build_imputer(how).fit(x)
    assert torch.allclose(imputer.fill, torch.tensor(reference[0](x.numpy(), axis=0)))
    assert torch.allclose(imputer.fill, torch.tensor(reference[1]))
    filled = imputer(torch.tensor([[float("nan"), float("nan")], [5.0, 6.0]]))
    assert torch.equal(filled, torch.stack([imputer.fill, torch.tensor([5.0, 6.0])]))


def test_impute_fits_on_the_training_split_only(tmp_path):
    path = blank_csv(tmp_path / "blank.csv")
    splits = prepare_data(DataSpec(source=f"csv:path={path},target=y", impute="mean"), seed=0)
    assert all(torch.isfinite(x).all() for x in (splits.x_train, splits.x_val, splits.x_test))
    # Filling with the mean keeps a column's mean: the filled training split's mean is the fill iff it was fitted there.
    assert torch.allclose(splits.x_train.mean(dim=0), splits.imputer.fill, atol=1e-6)
    train_and_val = torch.cat([splits.x_train, splits.x_val])
    assert not torch.allclose(train_and_val.mean(dim=0), splits.imputer.fill, atol=1e-6)
    dropped = prepare_data(DataSpec(source=f"csv:path={path},target=y", impute="drop"), seed=0)
    total = len(dropped.x_train) + len(dropped.x_val) + len(dropped.x_test)
    assert total == 60 - 3


def test_run_saves_the_imputer_and_predict_fills_blanks_the_same_way(tmp_path):
    path = blank_csv(tmp_path / "blank.csv")
    run = deepwell.train(overrides=[*SMALL, f"data.source=csv:path={path},target=y", "data.impute=median",
                                    f"output.dir={tmp_path}"], progress="none")
    loaded = deepwell.Run.load(run.path)
    loaded.model  # loads the weights, the preprocessing and the imputer
    fill = loaded._imputer.fill
    row = torch.tensor([[float("nan"), 0.5, float("nan")]])
    assert torch.equal(loaded.predict(row), loaded.predict(torch.tensor([[fill[0], 0.5, fill[2]]])))
    assert "test/r2" in loaded.evaluate()
    plain = deepwell.train(overrides=[*SMALL, "data.source=moons:n=200", f"output.dir={tmp_path}"], progress="none")
    with pytest.raises(DataError, match="data.impute=none, which cannot fill them"):
        plain.predict(torch.full((1, 2), float("nan")))


# ----- 14: option kinds by their spec keys ----------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [("source", "dataset"), ("data.source", "dataset"), ("init", "initializer"),
                                            ("model.init", "initializer"), ("train.schedule", "schedule"), ("norm", "normalization")])
def test_spec_keys_are_aliases_of_registry_kinds(name, kind):
    assert resolve_kind(name) == kind


def test_every_option_field_of_the_spec_has_its_kind():
    kinds = option_kinds()
    for section in ("data", "model", "train", "output"):
        spec_section = getattr(load_spec(), section)
        for key, value in spec_section:
            options = value if isinstance(value, list) else [value]
            if options and all(isinstance(option, deepwell.registry.Option) for option in options):
                assert registry(kinds[f"{section}.{key}"]).names(), key


def test_options_command_takes_spec_keys(cli):
    code, out, _ = cli("options", "source")
    assert code == 0 and out.startswith("dataset") and "mnist1d" in out
    code, _, err = cli("options", "sorce")
    assert code == 2 and "Did you mean 'source'?" in err


# ----- 15: missing folders, corrupt files, the wrong CNN --------------------------------------------


def test_runs_on_a_missing_folder_exits_2(cli, tmp_path):
    code, _, err = cli("runs", "--dir", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err and "--dir" in err


def test_evaluate_on_a_missing_path_says_it_does_not_exist(cli, tmp_path):
    code, _, err = cli("evaluate", str(tmp_path / "nope"))
    assert code == 2 and f"Run folder '{tmp_path / 'nope'}' does not exist" in err


def small_moons_run(tmp_path: Path) -> deepwell.Run:
    return deepwell.train(overrides=[*SMALL, "data.source=moons:n=200", f"output.dir={tmp_path}", "output.name=run"],
                          progress="none")


def test_corrupt_model_gets_model_advice_and_resume_rewrites_it(tmp_path):
    run = small_moons_run(tmp_path)
    (run.path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as caught:
        deepwell.Run.load(run.path).model
    message = str(caught.value)
    assert "trained model" in message and f"--resume {run.path}" in message and "Delete it" not in message
    deepwell.train(resume=run.path, progress="none")  # what the message says to do works
    assert deepwell.Run.load(run.path).evaluate()["test/acc"] == pytest.approx(run.summary["test"]["test/acc"])


def test_resume_from_a_corrupt_checkpoint_leaves_the_folder_alone(tmp_path):
    run = small_moons_run(tmp_path)
    (run.path / "checkpoints" / "last.safetensors").write_bytes(b"garbage")
    before = {name: (run.path / name).read_bytes() for name in ("config.yaml", "meta.json")}
    for name in before:  # a rewrite would write the same bytes: make any rewrite visible
        (run.path / name).write_bytes(before[name] + b"\n# untouched\n")
    with pytest.raises(CheckpointError, match=r"Cannot resume .* is corrupt.*Train again from the start with `deepwell train "):
        deepwell.train(resume=run.path, progress="none")
    for name in before:
        assert (run.path / name).read_bytes().endswith(b"# untouched\n"), f"{name} was rewritten before the checkpoint failed"


def test_cnn2d_on_signals_suggests_cnn1d(tmp_path):
    with pytest.raises(ConfigError, match=r"look like 1-D signals.*use model\.arch=cnn1d"):
        deepwell.train(overrides=["data.source=mnist1d:num_samples=100", "model.arch=cnn2d", f"output.dir={tmp_path}"],
                       progress="none")
