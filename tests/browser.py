"""Headless Debian chromium for page tests: open a self-contained HTML file, screenshot it, collect console errors.

Example::

    pixels, errors = screenshot(page, tmp_path)   # greyscale pixels (height x 1280), error lines
    assert pixels.std() > 10 and not errors
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium")
CHROMIUM_MISSING = "Debian package chromium not installed (make test installs it)"


def screenshot(page: Path, tmp_path: Path, height: int = 2400, width: int = 1280):
    """Draw ``page`` in headless chromium; return (greyscale pixels as a numpy array, console/JS error lines)."""
    import numpy as np
    from PIL import Image

    shot = tmp_path / f"{page.stem}-shot.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
               f"--screenshot={shot}", f"--window-size={width},{height}", page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium wrote no screenshot (exit {result.returncode}):\n{result.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    errors = [line for line in result.stderr.splitlines()
              if "Uncaught" in line or re.search(r"ERROR:.*(console|CONSOLE)", line) or "Not allowed to load" in line]
    return pixels, errors
