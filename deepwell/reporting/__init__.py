"""Reports: one self-contained ``report.html`` per run or study folder, rendered from its files alone.

Public API::

    from deepwell.reporting import write_report
    write_report("runs/mnist1d-cnn1d-20261127-101500")   # -> runs/.../report.html
    write_report("studies/init")                          # a study folder (it has study.json)

The page embeds its figures as base64 PNG ``data:`` URIs and its CSS inline; it loads nothing
from the network and runs no scripts, so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

from pathlib import Path

from deepwell.errors import CheckpointError

__all__ = ["write_report", "render_report", "REPORT_NAME"]

REPORT_NAME = "report.html"


def render_report(path: str | Path) -> str:
    """The report HTML of a run folder (has config.yaml) or a study folder (has study.json).

    Raises:
        CheckpointError: ``path`` is neither a run folder nor a study folder, or one of its files is corrupt.
    """
    from deepwell.reporting.html import render_run, render_study  # matplotlib loads only when a report is drawn

    path = Path(path)
    if (path / "study.json").is_file():
        return render_study(path)
    if (path / "config.yaml").is_file():
        return render_run(path)
    raise CheckpointError(f"Cannot write a report for '{path}': it is neither a run folder (config.yaml) nor a study "
                          "folder (study.json). Give a folder made by `deepwell train` or `deepwell study`.")


def write_report(path: str | Path) -> Path:
    """Write ``report.html`` into a run or study folder (atomically) and return its path.

    Example::

        run = deepwell.train(overrides=["train.epochs=3"])
        print(write_report(run.path))
    """
    from deepwell.training.checkpoint import atomic_write_text

    html = render_report(path)
    target = Path(path) / REPORT_NAME
    atomic_write_text(target, html)
    return target
