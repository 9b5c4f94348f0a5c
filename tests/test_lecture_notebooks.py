"""The lecture's notebooks run top to bottom (CI executes every one), and one renders in a real browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from html_page import Page

from deepwell.notebook.lecture import execute, notebook_paths, screenshot, to_html

pytest.importorskip("nbclient")
pytest.importorskip("jupytext")
pytestmark = pytest.mark.usefixtures("single_thread")
PATHS = notebook_paths()
ENV = {"DEEPWELL_THREADS": "1"}  # two notebooks never fight over the cores of a shared CI machine
CHROMIUM = shutil.which("chromium")
_EXECUTED: dict[str, object] = {}


def test_there_are_seven_lecture_notebooks_each_with_try_this_cells() -> None:
    import jupytext

    assert [path.name[:2] for path in PATHS] == ["01", "02", "03", "04", "05", "06", "07"]
    for path in PATHS:
        notebook = jupytext.read(path)
        headings = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
        assert any(h.startswith("## Try this") for h in headings) and any("verdict" in h for h in headings), path.name
        assert notebook.cells[-2].cell_type == "code"  # a try-this cell to run, then what else to try
        assert not any(cell.get("outputs") for cell in notebook.cells)  # stored without outputs


def executed(path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The notebook executed once per session (the HTML test reuses the first notebook's run)."""
    if path.name not in _EXECUTED:
        _EXECUTED[path.name] = execute(path, tmp_path_factory.mktemp(path.stem), env=ENV)
    return _EXECUTED[path.name]


@pytest.mark.parametrize("path", PATHS, ids=[path.stem for path in PATHS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every cell runs without an error (nbclient raises CellExecutionError naming the cell), and the verdict is printed."""
    notebook = executed(path, tmp_path_factory)
    printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []) if o["output_type"] == "stream")
    assert any(word in printed for word in ("holds", "does not hold", "visible")), printed
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "data" in o
              and ("image/png" in o["data"] or "data:image/" in o["data"].get("text/html", ""))]
    assert images, "the notebook shows no figure"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (make test installs it)")
def test_executed_notebook_renders_to_html_and_shows_in_chromium(tmp_path: Path, tmp_path_factory) -> None:
    notebook = executed(PATHS[0], tmp_path_factory)
    page = tmp_path / "notebook.html"
    page.write_text(to_html(notebook))
    static = Page(page.read_text())
    assert "Deep networks and their two challenges" in static.text and "overfitting holds" in static.text
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    shown = Page(dom)  # what the browser built from the page
    assert "Training completed" in shown.text and "epoch 8/8" in shown.text
    assert sum(src.startswith("data:image/png;base64,") for src in shown.images) >= 3  # live display, run, run.plot()
    shot = screenshot(page, tmp_path / "notebook.png", width=1000, height=900)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1000, 900)
        colours = image.convert("L").getextrema()
    assert colours[1] - colours[0] > 100  # something was drawn, not a blank page
