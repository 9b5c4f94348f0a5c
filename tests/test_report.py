"""Reports: a run folder and a study folder become one self-contained, readable report.html."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser import CHROMIUM, CHROMIUM_MISSING, screenshot

import deepwell
from deepwell.errors import CheckpointError
from deepwell.reporting import render_report, write_report
from deepwell.reporting.html import TABLE_ROWS

if TYPE_CHECKING:
    from deepwell.diagnostics.probes import ProbeLog

IMG = '<img src="data:image/png;base64,'


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run (3 epochs, probes on) shared by the run tests."""
    out = tmp_path_factory.mktemp("runs")
    run = deepwell.train(overrides=["data.source=moons:n=300", "model.hidden=[16,16]", "train.epochs=3",
                                    f"output.dir={out}", "output.report=false"], progress="none")  # not diagnosed yet
    return run.path


@pytest.fixture(scope="module")
def run_report(run_dir: Path) -> Path:
    return write_report(run_dir)


def _without_images(html: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)


def _png(data_uri_payload: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(data_uri_payload)))


def test_run_report_has_every_section_and_figure(run_dir: Path, run_report: Path) -> None:
    assert run_report == run_dir / "report.html"
    html = run_report.read_text()
    for section in ('id="summary"', 'id="spec"', 'id="doctor"', 'id="curves"', 'id="health"', 'id="histograms"'):
        assert section in html
    assert html.count(IMG) == 3  # learning curves, layer health, activation histograms
    for payload in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html):
        image = _png(payload)
        assert image.format == "PNG" and image.width > 400 and image.height > 200
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{summary['test']['test/acc']:.1%}" in html  # the test accuracy card
    assert "completed" in html and "Trained all 3 epochs." in html
    assert "moons:300" in html and "MLP: 2 → 16 → 16 → 2" in html  # the spec, summarised and in full
    assert "layer 2 (dense.1)" in html  # the per-layer table
    assert "Not diagnosed yet" in html and "deepwell diagnose" in html
    assert not list(run_dir.glob(".report.html.*"))  # the atomic write left no temp file


def test_run_report_is_self_contained(run_report: Path) -> None:
    html = _without_images(run_report.read_text())
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.IGNORECASE)
    assert not re.search(r"url\(|@import|<link\b", html, re.IGNORECASE)
    assert "http" not in html  # not even in text: nothing refers to the network


def test_run_report_shows_findings_escaped(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    findings = {"healthy": False, "checked": ["dead_relu", "vanishing_gradients"], "findings": [{
        "rule": "dead_relu", "severity": "warning", "title": "Dead units <script>alert(1)</script>",
        "evidence": "40% of layer 2's units never fired", "layers": ["dense.1"], "steps": [12],
        "numbers": {"dead_fraction": 0.4}, "remedies": ["use leaky_relu:0.1", "lower train.lr"]}]}
    (run / "findings.json").write_text(json.dumps(findings))
    html = write_report(run).read_text()
    assert "Not diagnosed yet" not in html
    assert "Dead units &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "use leaky_relu:0.1" in html and "dead_fraction = 0.4" in html and "vanishing_gradients" in html


def test_run_report_shows_the_doctors_findings(run_dir: Path, tmp_path: Path) -> None:
    """The real doctor's findings.json (what `deepwell train` writes by default) appears in the report."""
    from deepwell.diagnostics.doctor import diagnose

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    diagnose(run)
    findings = json.loads((run / "findings.json").read_text())
    html = write_report(run).read_text()
    assert "Not diagnosed yet" not in html
    assert ("problems found" in html) != findings["healthy"]
    for finding in findings["findings"]:
        assert escape(finding["title"]) in html and escape(finding["evidence"]) in html
    assert escape(", ".join(findings["checked"])) in html


def test_report_of_unfinished_run_without_probes(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    run.mkdir()
    shutil.copy(run_dir / "config.yaml", run)
    shutil.copy(run_dir / "meta.json", run)
    html = write_report(run).read_text()
    assert "unfinished" in html and "deepwell train --resume" in html
    assert IMG not in html and "No epochs were recorded" in html


def test_report_of_other_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="neither a run folder"):
        write_report(tmp_path)


def test_report_command(run_dir: Path, tmp_path: Path, cli) -> None:
    """`deepwell report RUN` prints the report's path; a folder that is no run exits with code 2 and one line."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    code, out, _ = cli("report", str(run))
    assert code == 0 and "report.html" in out and (run / "report.html").is_file()
    code, _, err = cli("report", str(tmp_path / "nothing"))
    assert code == 2 and "neither a run folder" in err and err.strip().count("\n") == 0


def _synthetic_probes(num_layers: int, std_growth: float) -> ProbeLog:
    """A probe log without training: ``num_layers`` ReLU layers whose activation std grows by ``std_growth``."""
    from deepwell.diagnostics.probes import ProbeLog

    layers = [f"dense.{i}" for i in range(num_layers)]
    edges = [[0.0, 0.5, 1.0, 1.5, 2.0]] * num_layers
    hist = {"edges": edges, "counts": [[90.0, 4.0, 3.0, 3.0]] * num_layers}  # the ReLU spike at 0
    samples = [{"kind": "sample", "step": step, "epoch": epoch, "layers": layers, "hist": hist,
                "grad_norm": [0.1 * (i + 1) for i in range(num_layers)], "act_std": [growth] * num_layers,
                "dead": [0.0] * num_layers, "saturated": [0.0] * num_layers}
               for step, epoch, growth in ((0, -1, 1.0), (4, 0, std_growth))]
    return ProbeLog(samples, [{"kind": "epoch", "epoch": 0, "step": 4, "layers": layers, "dead_epoch": [0.0] * num_layers}])


def test_figures_for_diverged_and_deep_networks() -> None:
    from deepwell.reporting import figures

    history = [{"epoch": 1, "train/loss": 0.7, "train/loss_clean": 0.6}, {"epoch": 2, "train/loss": float("nan")}]
    curves = figures.learning_curves_figure(history, {"test/loss": 0.5})
    labels = curves.axes[0].get_legend_handles_labels()[1]
    assert "loss became NaN/inf" in labels and len(curves.axes) == 1  # regression-like: no accuracy panel

    deep = figures.layer_health_figure(_synthetic_probes(12, std_growth=1e4), activation="relu")
    grad, std = deep.axes[:2]
    assert grad.get_yscale() == "log" and std.get_yscale() == "log"  # std spans 4 decades: log axis
    assert deep.legends == [] and len(deep.axes) == 5  # 12 layers: a depth colour bar instead of a legend
    shallow = figures.layer_health_figure(_synthetic_probes(2, std_growth=1.5), activation="tanh")
    assert shallow.axes[1].get_yscale() == "linear" and len(shallow.legends) == 1
    assert any("not applicable" in text.get_text() for text in shallow.axes[2].texts)  # tanh units cannot be dead

    hist, epoch = figures.histograms_figure(_synthetic_probes(12, std_growth=1.0))
    shown = [ax for ax in hist.axes if ax.get_visible()]
    assert epoch == 1 and len(shown) == figures.MAX_HISTOGRAM_LAYERS
    assert shown[0].get_title() == "layer 1 (dense.0)" and shown[-1].get_title() == "layer 12 (dense.11)"
    assert any("cut off" in text.get_text() for text in shown[0].texts)  # the ReLU spike does not flatten the rest
    assert figures.png_data_uri(hist).startswith("data:image/png;base64,iVBOR")


def _fake_study(folder: Path) -> Path:
    """A study folder as `deepwell study` writes it: study.json, PNG figures, CSV tables."""
    from matplotlib.figure import Figure

    folder.mkdir()
    figure = Figure(figsize=(4, 3))
    figure.subplots().plot([1, 2, 3], [3, 1, 2])
    figure.savefig(folder / "curve.png")
    shutil.copy(folder / "curve.png", folder.parent / "outside.png")  # exists, but outside: must not be embedded
    rows = ["width,test_error,seconds"] + [f"{w},{0.5 - w / 1000:.6f},0.123456789" for w in range(2, 2 + TABLE_ROWS + 10)]
    (folder / "sweep.csv").write_text("\n".join(rows) + "\n")
    study = {"name": "double-descent", "title": "Double descent <in> MNIST-1D", "quick": True, "seed": 0, "seconds": 12.5,
             "verdicts": [
                 {"claim": "Test error peaks near the interpolation threshold", "text": "", "status": "holds",
                  "evidence": "peak at h=47", "numbers": {"peak_error": 0.54}},
                 {"claim": "Wider is always worse", "text": "", "status": "does_not_hold", "evidence": "", "numbers": {}},
                 {"claim": "Label noise is needed", "text": "too few seeds", "status": "inconclusive", "evidence": "",
                  "numbers": {}}],
             "figures": [{"path": "curve.png", "caption": "Test error against width"},
                         {"path": "../outside.png", "caption": "A figure outside the folder"}],
             "tables": [{"path": "sweep.csv", "caption": "One row per width"}]}
    (folder / "study.json").write_text(json.dumps(study))
    return folder


def test_study_report(tmp_path: Path) -> None:
    study = _fake_study(tmp_path / "study")
    html = write_report(study).read_text()
    assert "Double descent &lt;in&gt; MNIST-1D" in html
    assert html.count(IMG) == 1 and "is missing, outside the study folder, or not a PNG file" in html  # ../outside.png is not pulled in
    for status, tone in (("holds", "good"), ("does not hold", "bad"), ("inconclusive", "warn")):
        assert re.search(rf'<span class="badge {tone}">{status}</span>', html)
    assert "Test error against width" in html and "One row per width" in html
    table = html[html.index('id="tables"'):]
    assert table.count("<tr>") == TABLE_ROWS + 1 and f"first {TABLE_ROWS} of {TABLE_ROWS + 10} rows" in table
    assert '<td class="num">0.1235</td>' in table  # long floats shortened for reading, numbers right-aligned
    assert "http" not in _without_images(html)


def test_render_report_prefers_study_json(tmp_path: Path) -> None:
    study = _fake_study(tmp_path / "study")
    (study / "config.yaml").write_text("seed: 0\n")
    assert "deepwell study report" in render_report(study)


@pytest.mark.skipif(CHROMIUM is None, reason=CHROMIUM_MISSING)
def test_report_renders_in_chromium(run_report: Path, tmp_path: Path) -> None:
    """A real browser opens the page, draws it (not blank) and logs no JavaScript/console error."""
    pixels, errors = screenshot(run_report, tmp_path)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 10  # text and figures, not a blank page
    assert (pixels < 100).mean() > 0.002  # dark pixels: text was drawn
    assert not errors, "\n".join(errors)
