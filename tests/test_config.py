"""RunSpec validation: round trips through dicts and YAML, overrides, and helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from deepwell import config
from deepwell.config import RunSpec, apply_overrides, load_spec
from deepwell.errors import ConfigError
from deepwell.registry import Option


def non_default_spec() -> RunSpec:
    return RunSpec.from_dict(
        {
            "seed": 3,
            "data": {"source": "moons:noise=0.3", "preprocess": "standardize", "label_noise": 0.1},
            "model": {
                "arch": "mlp", "hidden": [32, 16], "activation": "leaky_relu:0.1", "init": "he:mode=fan_out",
                "norm": "batchnorm:0.2", "dropout": "dropconnect:0.3,sample=batch",
            },
            "train": {
                "optimizer": "sgd:0.9", "lr": 0.05, "penalty": "elasticnet:0.001,l1_ratio=0.3",
                "early_stopping": {"patience": 3, "monitor": "val/acc"},
            },
            "output": {"dir": "somewhere/runs", "name": "trial"},
        }
    )


@pytest.mark.parametrize("make", [RunSpec, non_default_spec], ids=["defaults", "non-default"])
def test_spec_round_trips_through_dict_and_yaml(make, tmp_path: Path) -> None:
    spec = make()
    values = spec.to_dict()
    assert yaml.safe_load(yaml.safe_dump(values)) == values  # plain data: no Python objects
    assert RunSpec.from_dict(values) == spec
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec
    assert load_spec(path).to_dict() == values


def test_option_fields_are_parsed_and_written_canonically() -> None:
    spec = non_default_spec()
    assert isinstance(spec.model.activation, Option) and spec.model.activation.params == {"negative_slope": 0.1}
    assert spec.to_dict()["model"]["activation"] == "leaky_relu:0.1"
    assert spec.to_dict()["model"]["dropout"] == "dropconnect:0.3,sample=batch"
    assert spec.to_dict()["train"]["optimizer"] == "sgd:0.9"
    mapped = RunSpec.from_dict({"model": {"activation": {"name": "leaky_relu", "negative_slope": 0.2}}})
    assert mapped.to_dict()["model"]["activation"] == "leaky_relu:0.2"
    aliased = RunSpec.from_dict({"model": {"init": "kaiming:mode=fan_out"}})
    assert aliased.model.init == spec.model.init


def test_non_default_values_survive() -> None:
    spec = non_default_spec()
    assert spec.model.hidden == [32, 16] and spec.train.lr == 0.05 and spec.seed == 3
    assert spec.train.early_stopping.patience == 3 and spec.train.early_stopping.monitor == "val/acc"
    assert spec.output.dir == Path("somewhere/runs")


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ({"model": {"activaton": "relu"}}, ["Unknown key 'model.activaton'", "Did you mean 'activation'?", "Known keys here"]),
        ({"trian": {"lr": 0.1}}, ["Unknown key 'trian'", "Did you mean 'train'?"]),
        ({"train": {"early_stopping": {"patiense": 3}}}, ["train.early_stopping.patiense", "Did you mean 'patience'?"]),
        ({"train": {"lr": -0.1}}, ["train.lr", "greater than 0", "-0.1"]),
        ({"model": {"dropout": "dropout:1.5"}}, ["model.dropout", "'p'", "less than 1"]),
        ({"model": {"activation": "leaky_rlu"}}, ["model.activation", "Did you mean 'leaky_relu'?", "Known:"]),
        ({"model": {"arch": "rnn"}}, ["model.arch", "'mlp'"]),
        ({"model": {"hidden": [8, 0]}}, ["model.hidden.1", "greater than or equal to 1"]),
        ({"data": {"val_fraction": 1.0}}, ["data.val_fraction", "less than 1"]),
    ],
)
def test_invalid_specs_raise_config_error_with_help(values: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        RunSpec.from_dict(values)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        RunSpec.from_dict({"model": {"activaton": "relu"}, "train": {"lr": -1}})
    assert "model.activaton" in str(info.value) and "train.lr" in str(info.value)


def test_apply_overrides_dotted_and_sectionless_keys() -> None:
    values = {"model": {"depth": 3}}
    apply_overrides(values, ["model.width=64", "lr=0.01", "train.early_stopping.patience=4", "seed=7", "model.hidden=[8, 4]"])
    assert values == {
        "model": {"depth": 3, "width": 64, "hidden": [8, 4]},
        "train": {"lr": 0.01, "early_stopping": {"patience": 4}},
        "seed": 7,
    }
    spec = RunSpec.from_dict(values)
    assert spec.train.lr == 0.01 and spec.model.hidden == [8, 4] and spec.train.early_stopping.patience == 4


def test_load_spec_applies_overrides_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("model:\n  activation: tanh\n  width: 32\ntrain:\n  lr: 0.1\n")
    spec = load_spec(path, overrides=["activation=leaky_relu:0.2", "train.lr=1e-3", "init=he:mode=fan_out"])
    assert str(spec.model.activation) == "leaky_relu:0.2"
    assert spec.model.width == 32  # kept from the file
    assert spec.train.lr == pytest.approx(1e-3)
    assert str(spec.model.init) == "he:mode=fan_out"
    assert load_spec(overrides=["epochs=2"]).train.epochs == 2  # no file: defaults plus overrides


def test_override_with_a_number_for_a_text_field() -> None:
    spec = load_spec(overrides=["output.name=2024", "train.early_stopping.monitor=1"])
    assert spec.output.name == "2024" and spec.train.early_stopping.monitor == "1"


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("lr", ["not key=value", "train.lr=0.01"]),
        ("=3", ["not key=value"]),
        ("actvation=relu", ["Unknown key 'actvation'", "Did you mean 'activation'?", "model.activation"]),
        ("bogus=1", ["Unknown key 'bogus'", "Known keys:", "train.lr"]),
        ("seed.lr=1", ["'seed' is not a section"]),
        ("lr=-1", ["train.lr", "greater than 0"]),
        ("model.dropout=dropout:1.5", ["'p'", "less than 1"]),
        ("model.width=[1", ["not valid YAML"]),
    ],
)
def test_bad_overrides_raise_config_error(override: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec(overrides=["seed=1", override])
    for fragment in fragments:
        assert fragment in str(info.value)


class _Section(BaseModel):
    lr: float = 0.1


class _SpecWithSharedKey(BaseModel):
    model: _Section = _Section()
    train: _Section = _Section()


def test_ambiguous_sectionless_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # No field name is shared by two sections of RunSpec today; check the rule on a spec where one is.
    monkeypatch.setattr(config, "RunSpec", _SpecWithSharedKey)
    with pytest.raises(ConfigError, match=r"'lr' is ambiguous: write one of model\.lr, train\.lr"):
        apply_overrides({}, ["lr=0.1"])
    assert apply_overrides({}, ["train.lr=0.2"]) == {"train": {"lr": 0.2}}


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "fragment"), [("model: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "must hold a mapping")], ids=["syntax", "list"]
)
def test_bad_spec_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_spec(path)


def test_empty_spec_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_spec(path) == RunSpec()


def test_examples_load() -> None:
    examples = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
    for path in examples:
        assert isinstance(load_spec(path), RunSpec)
