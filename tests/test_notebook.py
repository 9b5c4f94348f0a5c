"""deepwell in notebooks: the objects' HTML views (parsed, not string-matched) and the live display under a real kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
from html_page import Page, decoded

import deepwell
from deepwell.diagnostics.doctor import Findings
from deepwell.diagnostics.evidence import Finding
from deepwell.training.callbacks import FitState

pytestmark = pytest.mark.usefixtures("single_thread")
TINY = ["model.arch=mlp", "model.depth=2", "model.width=16", "data.n_train=300", "train.epochs=3", "train.batch_size=64"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> deepwell.Run:
    folder = tmp_path_factory.mktemp("runs")
    return deepwell.train(overrides=[*TINY, f"output.dir={folder}"], progress="none")


def test_run_html_holds_its_numbers_spec_and_curves(tiny_run: deepwell.Run) -> None:
    page = Page(tiny_run._repr_html_())
    test = tiny_run.summary["test"]
    assert f"{test['test/acc']:.1%}" in page.text and f"{test['test/loss']:.4g}" in page.text
    assert f"{tiny_run.summary['final']['val/loss']:.4g}" in page.text
    assert "model.arch=mlp" in page.text and "train.epochs=3" in page.text  # keys that differ from the defaults
    assert "model.activation" not in page.text  # a default key is not listed
    assert "Healthy" in page.text or "problem" in page.text  # the health line from findings.json
    assert len(page.images) == 1
    kind, image = decoded(page.images[0])
    assert kind == "data:image/png" and image.size[0] > 300


def test_run_repr_and_methods(tiny_run: deepwell.Run) -> None:
    text = repr(tiny_run)
    assert str(tiny_run.path) in text and f"{tiny_run.summary['test']['test/acc']:.1%}" in text
    assert tiny_run.plot() is not None and len(tiny_run.plot().axes) == 2  # loss and accuracy
    assert tiny_run.report().is_file()
    assert tiny_run.diagnose().checked  # the doctor ran every rule


def test_findings_html_shows_each_finding_with_numbers_and_remedies() -> None:
    findings = Findings([Finding("vanishing_gradient", "warning", "Gradients vanish in the first layers",
                                 "layer 1 gets 1e-6 of layer 20's gradient", numbers={"ratio": 1.234e-06},
                                 remedies=["model.activation=relu with model.init=he"])], ("vanishing_gradient",))
    page = Page(findings._repr_html_())
    assert "Gradients vanish in the first layers" in page.text and "ratio = 1.234e-06" in page.text
    assert "model.activation=relu with model.init=he" in page.text and "1 problem" in page.text
    assert repr(findings).splitlines()[1] == "WARNING: Gradients vanish in the first layers"
    assert "<script" not in Findings([Finding("x", "info", "<script>alert(1)</script>", "e")])._repr_html_()  # escaped


class _Handle:
    def __init__(self, log: list) -> None:
        self.log = log

    def update(self, view) -> None:
        self.log.append(view)


def test_live_display_redraws_within_budget_and_always_draws_the_last_epoch(monkeypatch) -> None:
    """Redraws are spaced by MIN_INTERVAL (a fake clock): 20 fast epochs give far fewer than 20 redraws, the last included."""
    from deepwell.notebook import live

    clock = iter(i * 0.05 for i in range(10_000))  # every call to the clock advances 50 ms
    monkeypatch.setattr(live.time, "perf_counter", lambda: next(clock))
    shown: list = []
    progress = live.NotebookProgress(display=lambda view, display_id: shown.append(view) or _Handle(shown))
    monkeypatch.setattr(progress, "_view", lambda state, status, curves: f"{status} {len(state.history)}")
    state = FitState(model=None, optimizer=None, epochs=20, steps_per_epoch=1, metric_names=[])
    progress.on_fit_start(state)
    for epoch in range(20):
        state.epoch = epoch
        state.history.append({"epoch": epoch + 1})
        progress.on_epoch_end(state)
    progress.on_fit_end(state)
    assert shown[0] == "starting 0" and shown[-2:] == ["training 20", "completed 20"]
    assert 3 <= len(shown) <= 10


def test_progress_mode_is_validated() -> None:
    from deepwell.training.progress import ProgressReporter, make_progress

    assert isinstance(make_progress("auto"), ProgressReporter)  # pytest is no notebook kernel
    with pytest.raises(deepwell.ConfigError, match="Did you mean .notebook.. Known: auto, bar, lines, none, notebook"):
        make_progress("notebok")


def execute(cells: list[str], tmp_path: Path, timeout: int = 240):
    """Run code cells in a fresh IPython kernel (nbclient), like Jupyter does; return the executed notebook."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for cell in cells])
    nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return notebook


def test_train_in_a_kernel_leaves_exactly_one_display_with_the_final_curves(tmp_path: Path) -> None:
    """auto picks the live display in a kernel: one output, updated in place, holding the last epoch; none shows nothing."""
    overrides = [*TINY, f"output.dir={tmp_path}"]
    notebook = execute(["import os; os.environ['DEEPWELL_THREADS'] = '1'\nimport deepwell",
                        f"run = deepwell.train(overrides={overrides!r})",
                        "print(run.path)",
                        f"quiet = deepwell.train(overrides={[*overrides, 'train.epochs=1']!r}, progress='none')"], tmp_path)
    outputs = notebook.cells[1].outputs
    assert [output["output_type"] for output in outputs] == ["display_data"], outputs
    page = Page(outputs[0]["data"]["text/html"])
    assert "epoch 3/3" in page.text and "completed" in page.text and "Latest health" in page.text
    run = deepwell.Run(notebook.cells[2].outputs[0]["text"].strip())
    assert f"val/loss {run.history[-1]['val/loss']:.4g}" in page.text  # the final epoch's numbers
    from deepwell.notebook.html import figure_uri
    from deepwell.reporting.figures import learning_curves_figure

    assert page.images == [figure_uri(learning_curves_figure(run.history))]  # the final curves, pixel for pixel
    assert notebook.cells[3].outputs == []  # progress="none"
