"""Regenerate docs/notebook.png, the README's picture of a rendered lecture notebook.

Executes notebooks/01_deep_networks.py in a fresh kernel, renders it to HTML with nbconvert and
photographs the page in headless Debian chromium::

    python docs/notebook_screenshot.py          # about a minute
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from deepwell.notebook.lecture import execute, notebook_paths, screenshot, to_html

WIDTH, HEIGHT = 1000, 1030  # the first screenful: the text, the code and the live training display left behind


def main() -> None:
    target = Path(__file__).resolve().parent / "notebook.png"
    with tempfile.TemporaryDirectory() as folder:
        notebook = execute(notebook_paths()[0], folder, env={"DEEPWELL_THREADS": "1"})
        page = Path(folder) / "notebook.html"
        page.write_text(to_html(notebook))
        screenshot(page, target, width=WIDTH, height=HEIGHT)
    print(f"Wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
