"""A bracketed list on the command line keeps each option's commas (the README's MLflow line)."""

from __future__ import annotations

import pytest

from deepwell.config import load_spec
from deepwell.options import rejoin_options
from deepwell.sweep.grid import parse_over


def test_the_readme_mlflow_line_is_one_tracker_with_two_parameters():
    spec = load_spec(overrides=["output.tracking=[mlflow:uri=http://localhost:5000,experiment=mnist1d]"])
    (tracker,) = spec.output.tracking
    assert tracker.name == "mlflow" and tracker.params == {"uri": "http://localhost:5000", "experiment": "mnist1d"}


def test_options_in_a_list_keep_their_parameters_and_other_lists_are_untouched():
    spec = load_spec(overrides=["data.augment=[rotate:10, scale:0.1]", "model.hidden=[256, 128]",
                                "train.optimizer=sgd:momentum=0.9,nesterov=true"])
    assert [str(a) for a in spec.data.augment] == ["rotate:10.0", "scale:0.1"] and spec.model.hidden == [256, 128]
    assert rejoin_options(["dropout:0.5", "mode=classic", "l2:1e-4", 3, "x=1"]) == ["dropout:0.5,mode=classic", "l2:1e-4", 3, "x=1"]
    assert rejoin_options("tensorboard") == "tensorboard"
    assert parse_over(["train.optimizer=[sgd:momentum=0.9,nesterov=true, adam]"]) == {
        "train.optimizer": ["sgd:momentum=0.9,nesterov=true", "adam"]}


def test_a_parameter_without_an_option_before_it_is_still_an_error():
    from deepwell.errors import ConfigError

    with pytest.raises(ConfigError, match="tracker"):
        load_spec(overrides=["output.tracking=[experiment=mnist1d]"])
