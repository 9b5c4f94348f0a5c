"""The lecture's notebooks (``notebooks/*.py``): execute them, render them to HTML, photograph them.

The notebooks are stored as jupytext percent-format ``.py`` files: plain Python that diffs line by
line in review and can hold no outputs, so git never carries stale figures or megabytes of base64.
:func:`execute` converts one with jupytext and runs it top to bottom in a fresh IPython kernel with
nbclient (as Jupyter would); CI does that for every notebook (tests/test_lecture_notebooks.py).

Needs the ``test`` extra (jupytext, nbclient, nbconvert, ipykernel). Example::

    notebook = execute("notebooks/01_deep_networks.py", cwd="/tmp/nb")
    Path("/tmp/nb/01.html").write_text(to_html(notebook))
    screenshot("/tmp/nb/01.html", "docs/notebook.png")
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from deepwell.errors import missing_extra

__all__ = ["NOTEBOOKS", "notebook_paths", "execute", "to_html", "screenshot", "KERNEL", "TIMEOUT"]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"  # the repository's notebooks/ (a source checkout)
KERNEL = "python3"  # ipykernel's own kernel: it runs this interpreter (jupyter_client maps "python" to sys.executable)
TIMEOUT = 300       # seconds per cell at most


def notebook_paths(folder: str | Path = NOTEBOOKS) -> list[Path]:
    """The lecture's notebooks in order (``NN_name.py``)."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.py"))


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra(module, "test", "running the lecture notebooks") from None


def execute(path: str | Path, cwd: str | Path, timeout: int = TIMEOUT, env: dict[str, str] | None = None) -> Any:
    """Run the notebook at ``path`` top to bottom in a fresh kernel whose working directory is ``cwd``.

    Returns:
        the executed ``nbformat`` notebook (outputs filled in).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised (the message names the cell and the error).
    """
    jupytext, nbclient = _require("jupytext"), _require("nbclient")
    notebook = jupytext.read(path)
    Path(cwd).mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}})
    saved = {key: os.environ.get(key) for key in (env or {})}
    os.environ.update(env or {})  # the kernel inherits this process's environment
    try:
        client.execute()
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return notebook


def to_html(notebook: Any) -> str:
    """An executed notebook as one HTML page (nbconvert's lab template; outputs' images are already data URIs)."""
    exporter = _require("nbconvert").HTMLExporter(template_name="lab")
    html, _ = exporter.from_notebook_node(notebook)
    return html


def screenshot(html: str | Path, png: str | Path, width: int = 1100, height: int = 1400, chromium: str | None = None) -> Path:
    """Open ``html`` in headless Debian chromium and save what it shows as ``png`` (``width`` x ``height`` pixels).

    Raises:
        FileNotFoundError: chromium is not installed (``make test`` installs Debian's).
    """
    binary = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise FileNotFoundError("chromium not found: install Debian's chromium package (make test does).")
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
                    f"--screenshot={png}", Path(html).resolve().as_uri()], check=True, capture_output=True, timeout=120)
    return png
