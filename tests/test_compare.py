"""Runs side by side: `deepwell compare` and `deepwell.compare` make one self-contained page; different data is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import CHROMIUM, CHROMIUM_MISSING, screenshot

import deepwell
from deepwell.errors import ConfigError, DataError

BASE = ["data.source=moons:n=300", "model.arch=mlp", "model.depth=3", "model.width=16", "train.epochs=3",
        "train.checkpoint_every=100", "diagnostics.every=5", "output.report=false"]
IMG = '<img src="data:image/png;base64,'

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """sigmoid vs relu (+ batchnorm), same data; a third run on other data."""
    out = tmp_path_factory.mktemp("runs")

    def train(name: str, *overrides: str) -> Path:
        return deepwell.train(overrides=[*BASE, *overrides, f"output.dir={out}", f"output.name={name}"], progress="none").path

    return [train("sigmoid", "model.activation=sigmoid", "model.norm=none", "model.init=xavier"),
            train("relu-bn", "model.activation=relu", "model.norm=batchnorm"),
            train("circles", "data.source=circles:n=300")]


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory) -> tuple[deepwell.reporting.compare.Comparison, Path]:
    target = tmp_path_factory.mktemp("page") / "compare.html"
    return deepwell.compare(runs[0], runs[1], output=target), target


def test_differences_and_final_metrics_come_from_the_run_folders(runs, page):
    comparison, _ = page
    assert comparison.names == ["sigmoid", "relu-bn"]
    assert comparison.differences["model.activation"] == ["sigmoid", "relu"]
    assert comparison.differences["model.norm"] == ["none", "batchnorm"]
    assert not any(key.startswith(("output.", "data.")) for key in comparison.differences)  # same data, written elsewhere
    assert "train.epochs" not in comparison.differences  # equal keys are not differences
    for index, run in enumerate(runs[:2]):
        summary = json.loads((run / "summary.json").read_text())
        assert comparison.metrics["test accuracy"][index] == summary["test"]["test/acc"]
        assert comparison.metrics["epochs run"][index] == 3


def test_the_page_has_every_part_and_is_self_contained(runs, page):
    comparison, target = page
    html = target.read_text()
    assert html == comparison.html == comparison._repr_html_()
    for section in ("differences", "metrics", "curves", "health", "findings"):
        assert f'id="{section}"' in html
    assert html.count(IMG) == 2  # learning curves overlaid, layer health side by side
    assert "model.activation" in html and "sigmoid" in html and "batchnorm" in html
    accuracy = json.loads((runs[1] / "summary.json").read_text())["test"]["test/acc"]
    assert f"{accuracy:.1%}" in html
    findings = json.loads((runs[0] / "findings.json").read_text())  # compare diagnosed the undiagnosed runs
    assert all(f["title"] in html for f in findings["findings"])
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "<script" not in text.lower() and "http" not in text and not re.search(r"url\(|<link\b", text)
    assert len(re.findall(r"<tr><td>\d+</td>", html)) == 3  # one row per layer depth


def test_runs_of_different_data_are_refused_with_the_key_and_values(runs):
    with pytest.raises(DataError, match=r"different data: data.source differs \(sigmoid: moons:300, circles: circles:300\)"):
        deepwell.compare(runs[0], runs[2])
    with pytest.raises(ConfigError, match="at least two runs"):
        deepwell.compare(runs[0])


def test_compare_command(runs, tmp_path, cli):
    target = tmp_path / "side.html"
    code, out, _ = cli("compare", str(runs[0]), str(runs[1]), "-o", str(target))
    assert code == 0 and target.is_file()
    assert "model.activation: sigmoid | relu" in out and f"Comparison: {target}" in out
    code, _, err = cli("compare", str(runs[0]), str(runs[2]), "-o", str(tmp_path / "no.html"))
    assert code == 2 and "different data" in err and not (tmp_path / "no.html").exists()


@pytest.mark.skipif(CHROMIUM is None, reason=CHROMIUM_MISSING)
def test_compare_page_renders_in_chromium(page, tmp_path):
    _, target = page
    pixels, errors = screenshot(target, tmp_path, height=3000)
    assert pixels.shape == (3000, 1280)
    assert pixels.std() > 10 and (pixels < 100).mean() > 0.002  # text and figures drawn, not a blank page
    assert (pixels[2000:] < 250).mean() > 0.01  # the lower part (health, findings) is drawn too
    assert not errors, "\n".join(errors)
