"""Shared matplotlib helpers for studies: figures in the project's one style (:mod:`deepwell.reporting.style`),
without pyplot (Agg canvas), tidied and checked for overlapping text, saved atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from matplotlib.figure import Figure

from deepwell.reporting.style import COLORS, check_figure, legend_outside, new_figure, tidy

__all__ = ["new_figure", "save_figure", "legend_outside", "COLORS"]

DPI = 110


def save_figure(figure: Figure, path: Path) -> Path:
    """Tidy the ticks, check the text (strict mode), save as PNG via a temporary file and a rename."""
    path = Path(path)
    tidy(figure)
    check_figure(figure, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.png")
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
