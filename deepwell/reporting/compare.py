"""Runs side by side: ``compare(run_a, run_b, ...)`` -> one self-contained HTML page.

What differs between the runs' specs, their final metrics, their learning curves overlaid, each
layer's gradient and activation health at initialisation and at the end, and the doctor's
findings for each. Rendered from the run folders alone (config.yaml, meta.json, summary.json,
metrics.jsonl, probes.jsonl, findings.json) with the jinja2 template ``compare.html.j2``: figures
are ``data:`` URIs, no scripts, nothing loaded from the network. Runs trained on different data
are refused: their numbers do not compare.

Example::

    import deepwell
    page = deepwell.compare("runs/sigmoid", "runs/relu", "runs/relu-bn")
    page.differences        # {'model.activation': ['sigmoid', 'relu', 'relu'], 'model.norm': [...]}
    page.save("compare.html")
    page                    # in a notebook: the page itself (_repr_html_)
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

from deepwell.diagnostics.evidence import RunEvidence
from deepwell.errors import CheckpointError, ConfigError, DataError
from deepwell.reporting import figures
from deepwell.reporting.html import _ENVIRONMENT, _findings
from deepwell.tracking import flatten_spec

__all__ = ["Comparison", "compare", "curves_figure", "health_figure", "SAME_DATA_KEYS"]

# What makes two runs' numbers comparable: the same data set, split sizes and label noise. The seed
# may differ (it changes which examples are held out, not the data); preprocessing and augmentation
# are treatments a comparison is often about.
SAME_DATA_KEYS = ("data.source", "data.n_train", "data.val_fraction", "data.label_noise", "data.label_noise_mode")
_IGNORED_PREFIXES = ("output.",)  # where a run was written is not a difference between runs
_METRICS = [  # (label, where, key, format)
    ("test accuracy", "test", "test/acc", "percent"), ("test loss", "test", "test/loss", "num"),
    ("val accuracy (last epoch)", "final", "val/acc", "percent"), ("val loss (last epoch)", "final", "val/loss", "num"),
    ("train accuracy, clean", "final", "train/acc_clean", "percent"), ("train loss, clean", "final", "train/loss_clean", "num"),
    ("epochs run", "summary", "epochs_run", "num"), ("how it ended", "summary", "status", "num"),
    ("training time (s)", "summary", "train_seconds", "num"), ("parameters", "meta", "parameters", "num"),
]
_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


@dataclass
class _RunFiles(RunEvidence):
    """One run folder as the comparison reads it: the doctor's evidence, a short name and the findings."""

    name: str = ""
    findings: dict[str, Any] | None = None

    @classmethod
    def read(cls, path: str | Path, name: str) -> _RunFiles:
        path = Path(getattr(path, "path", path))  # a Run or a folder
        try:
            evidence = RunEvidence.load(path)
        except CheckpointError as error:
            raise CheckpointError(f"Cannot compare: {error}") from None
        if not (path / "findings.json").is_file() and (path / "summary.json").is_file():
            from deepwell.diagnostics.doctor import diagnose

            diagnose(evidence)  # a run trained with output.report=false has not been diagnosed yet
        return cls(**{f.name: getattr(evidence, f.name) for f in fields(RunEvidence)}, name=name, findings=_findings(path))

    @property
    def flat(self) -> dict[str, str]:
        return {k: v for k, v in flatten_spec(self.spec.to_dict()).items() if not k.startswith(_IGNORED_PREFIXES)}

    def reported(self, where: str, key: str) -> Any:
        source = {"test": self.summary.get("test", {}), "final": self.summary.get("final", {}), "summary": self.summary,
                  "meta": self.meta}[where]
        return source.get(key)


@dataclass
class Comparison:
    """Several runs side by side; ``html`` is the page, ``save(path)`` writes it, notebooks show it.

    Attributes:
        runs: the run folders, in the order given.
        names: their short names (folder names, made unique).
        differences: spec key -> each run's value, for the keys that differ (``output.*`` left out).
        metrics: label -> each run's final value (test, last epoch, epochs, time, parameters).
    """

    runs: list[Path]
    names: list[str]
    differences: dict[str, list[str]]
    metrics: dict[str, list[Any]]
    html: str = field(repr=False)

    def save(self, path: str | Path) -> Path:
        """Write the page (atomically) and return its path."""
        from deepwell.training.checkpoint import atomic_write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.html)
        return path

    def _repr_html_(self) -> str:
        return self.html


def compare(*runs: str | Path | Any, output: str | Path | None = None) -> Comparison:
    """Compare two or more runs (folders or :class:`deepwell.Run` objects); write the page to ``output`` if given.

    Raises:
        ConfigError: fewer than two runs.
        CheckpointError: a path is not a run folder.
        DataError: the runs were trained on different data (names the key and each run's value).

    Example::

        page = compare("runs/sigmoid", "runs/relu", output="compare.html")
    """
    if len(runs) == 1 and isinstance(runs[0], (list, tuple)):
        runs = tuple(runs[0])
    if len(runs) < 2:
        raise ConfigError(f"compare needs at least two runs; got {len(runs)}. Give two or more run folders.")
    files = [_RunFiles.read(run, name) for run, name in zip(runs, _unique_names(runs))]
    _check_same_data(files)
    flats = [f.flat for f in files]
    keys = sorted(set().union(*flats))
    differences = {k: [flat.get(k, "—") for flat in flats] for k in keys if len({flat.get(k) for flat in flats}) > 1}
    metrics = {label: [f.reported(where, key) for f in files] for label, where, key, _ in _METRICS}
    html = _render(files, differences)
    comparison = Comparison([f.path for f in files], [f.name for f in files], differences, metrics, html)
    if output is not None:
        comparison.save(output)
    return comparison


def _unique_names(runs: Sequence[Any]) -> list[str]:
    names = [Path(getattr(run, "path", run)).name for run in runs]
    return [name if names.count(name) == 1 else f"{name} ({i + 1})" for i, name in enumerate(names)]


def _check_same_data(files: list[_RunFiles]) -> None:
    """Refuse runs of different data: one line naming the key and every run's value."""
    for key in SAME_DATA_KEYS:
        values = [f.flat.get(key) for f in files]
        if len(set(values)) > 1:
            shown = ", ".join(f"{f.name}: {v}" for f, v in zip(files, values))
            raise DataError(f"Cannot compare runs trained on different data: {key} differs ({shown}). Compare runs of "
                            f"the same data (same {', '.join(SAME_DATA_KEYS)}); the seed, preprocessing and "
                            "augmentation may differ.")


# --- figures --------------------------------------------------------------------------------------
def curves_figure(files: list[_RunFiles]) -> Any:
    """Validation (solid) and clean training (dashed) loss and accuracy per epoch, one colour per run."""
    if not any(f.history for f in files):
        return None
    has_acc = any("val/acc" in row or "train/acc_clean" in row for f in files for row in f.history)
    panels = [("loss", "Loss (lower is better)")] + ([("acc", "Accuracy (higher is better)")] if has_acc else [])
    figure = figures._new_figure(4.8 * len(panels) + 0.4, 4.0)
    axes = figures._styled(figure, 1, len(panels))[0]
    with matplotlib.rc_context(figures._STYLE):
        for ax, (metric, title) in zip(axes, panels):
            for f, colour in zip(files, _COLOURS * 4):
                for key, style, suffix in ((f"val/{metric}", "-", "val"), (f"train/{metric}_clean", "--", "train")):
                    points = [(row["epoch"], row[key]) for row in f.history if figures._finite(row.get(key))]
                    if points:
                        ax.plot(*zip(*points), style, color=colour, linewidth=1.5, label=f"{f.name}, {suffix}")
            if metric == "acc":
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
            ax.set(title=title, xlabel="epoch", ylabel=metric if metric == "loss" else "accuracy")
            ax.xaxis.set_major_locator(figures._integer_ticks())
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    return figure


_HEALTH = [("grad_norm", "Gradient norm per layer", True), ("act_std", "Activation std per layer", True),
           ("dead", "Dead ReLU units per layer", False), ("saturated", "Saturated units per layer", False)]


def health_figure(files: list[_RunFiles]) -> Any:
    """Per layer (x: depth), each run's gradient norm, activation std, dead and saturated fractions: init dotted, end solid."""
    with_probes = [f for f in files if f.probes.samples]
    if not with_probes:
        return None
    figure = figures._new_figure(9.6, 6.6)
    axes = figures._styled(figure, 2, 2).ravel()
    with matplotlib.rc_context(figures._STYLE):
        for ax, (quantity, title, log) in zip(axes, _HEALTH):
            for f, colour in zip(files, _COLOURS * 4):
                if not f.probes.samples:
                    continue
                first, last = f.probes.initial() or f.probes.samples[0], f.probes.samples[-1]
                depth = list(range(1, len(f.probes.layers) + 1))
                for sample, style, when in ((first, ":", "init"), (last, "-", f"step {last['step']}")):
                    values = [v if v is not None and (v > 0 or not log) else float("nan") for v in sample[quantity]]
                    ax.plot(depth, values, style, color=colour, marker="o" if len(depth) <= 30 else None, markersize=3,
                            label=f"{f.name}, {when}")
            if log:
                ax.set_yscale("log")
            else:
                ax.set_ylim(0, 1.02)
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
            ax.set(title=title, xlabel="layer (1 = nearest the input)")
            ax.xaxis.set_major_locator(figures._integer_ticks())
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    return figure


# --- page -----------------------------------------------------------------------------------------
def _layer_table(files: list[_RunFiles]) -> list[dict[str, Any]]:
    """One row per layer depth: each run's gradient norm and activation std at the end (None where it has no such layer)."""
    depth = max((len(f.probes.layers) for f in files), default=0)
    rows = []
    for i in range(depth):
        cells = []
        for f in files:
            last = f.probes.samples[-1] if f.probes.samples else None
            inside = last is not None and i < len(f.probes.layers)
            cells.append({"grad": last["grad_norm"][i] if inside else None, "std": last["act_std"][i] if inside else None,
                          "layer": f.probes.layers[i] if inside else "—"})
        rows.append({"depth": i + 1, "cells": cells})
    return rows


def _render(files: list[_RunFiles], differences: dict[str, list[str]]) -> str:
    shown = {name: figures.png_data_uri(fig) if (fig := make(files)) is not None else None
             for name, make in (("curves", curves_figure), ("health", health_figure))}
    metrics = [{"label": label, "format": fmt, "cells": [f.reported(where, key) for f in files]}
               for label, where, key, fmt in _METRICS if any(f.reported(where, key) is not None for f in files)]
    context = {
        "title": " vs ".join(f.name for f in files), "generated": datetime.datetime.now().isoformat(timespec="seconds"),
        "runs": [{"name": f.name, "path": str(f.path.resolve()), "colour": colour, "findings": f.findings,
                  "data": f.flat.get("data.source")} for f, colour in zip(files, _COLOURS * 4)],
        "differences": differences, "metrics": metrics, "figures": shown, "layers": _layer_table(files),
        "same_data": {key: files[0].flat.get(key) for key in SAME_DATA_KEYS},
    }
    return _ENVIRONMENT.get_template("compare.html.j2").render(**context)
