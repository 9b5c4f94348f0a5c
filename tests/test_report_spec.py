"""The run report's Spec table writes every option out with all its parameters, augmentation included."""

from __future__ import annotations

import html

import pytest

import deepwell
from deepwell.config import load_spec, registry
from deepwell.reporting import render_report
from deepwell.reporting.html import _spec_rows


def test_spec_rows_write_every_option_with_its_parameters():
    spec = load_spec(overrides=["model.dropout=dropout:0.3", "train.penalty=l2", "data.augment=[shift:4, noise]",
                                "train.optimizer=sgd:momentum=0.9"]).to_dict()
    rows = dict(_spec_rows(spec, {}))
    assert "dropout dropout:p=0.3,mode=inverted" in rows["layers"]          # was 'dropout dropout:0.3' / 'dropout dropout'
    assert "penalty l2:strength=0.0001,include_bias=false" in rows["training"]  # was 'penalty l2'
    assert "optimizer sgd:momentum=0.9,nesterov=false,weight_decay=0.0" in rows["training"]
    assert rows["augmentation"].startswith("shift:max=4,mode=circular, noise:std=0.05")
    assert rows["data"].startswith("mnist1d:num_samples=5000,")
    for kind, original in (("dropout", "dropout:0.3"), ("penalty", "l2"), ("optimizer", "adamw"), ("augmentation", "shift:4")):
        spelled = registry(kind).spelled_out(original)
        assert registry(kind).parse(spelled) == registry(kind).parse(original)  # the same option, written out


def test_a_spec_the_registry_cannot_read_is_shown_as_written():
    rows = dict(_spec_rows({"model": {"dropout": "gone:7"}, "data": {"augment": ["old_thing"]}}, {}))
    assert "dropout gone:7" in rows["layers"] and rows["augmentation"].startswith("old_thing")


@pytest.mark.usefixtures("single_thread")
def test_the_report_shows_them(tmp_path):
    run = deepwell.train(overrides=["data.source=moons:n=100", "model.arch=mlp", "model.dropout=dropout:0.5", "train.epochs=1",
                                    "train.penalty=l2", "data.augment=[noise:0.1]", f"output.dir={tmp_path}",
                                    "output.report=false"], progress="none")
    page = html.unescape(render_report(run.path))
    assert "dropout:p=0.5,mode=inverted" in page and "l2:strength=0.0001,include_bias=false" in page
    assert "noise:std=0.1 (training batches only)" in page
