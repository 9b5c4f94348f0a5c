"""The Python face of ``deepwell study``, ``deepwell tour`` and ``deepwell sweep``: same names, same arguments.

Each returns a result object that shows itself in a notebook (verdicts, figures inline, the table)
and gives the numbers to code: ``.verdicts``, ``.table`` (a pandas DataFrame when pandas is
installed, else a list of dicts), ``.figures``, ``.path``.

Example::

    import deepwell
    result = deepwell.study("polynomial")                  # = deepwell study polynomial
    [(v.claim, v.status) for v in result.verdicts]          # [('poly-descent', 'holds')]
    result.table.head()                                     # the tidy CSV as a DataFrame
    sweep = deepwell.sweep(overrides=["model.arch=mlp", "train.epochs=2"], over={"model.width": [8, 32]})
    sweep.table                                             # mean and std over seeds per width
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from deepwell.notebook.html import file_uri, fmt, render, rows_html, verdicts_html

__all__ = ["study", "tour", "sweep", "StudyResults", "SweepResults", "Figure", "read_table", "TABLE_ROWS"]

TABLE_ROWS = 12  # rows of a table the HTML view shows (the whole table is in .table)


def read_table(path: str | Path) -> Any:
    """A CSV as a pandas DataFrame when pandas is installed, else a list of dicts (numbers parsed)."""
    try:
        import pandas
    except ImportError:
        with Path(path).open(newline="") as handle:
            return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]
    return pandas.read_csv(path)


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


class Figure(NamedTuple):
    """One figure of a result: its file and caption. Shows the image in a notebook."""

    path: Path
    caption: str

    def _repr_html_(self) -> str:
        return render('<figure style="margin:0;">{{ image(uri, caption) }}<figcaption style="opacity:.75;">{{ caption }}'
                      '</figcaption></figure>', uri=file_uri(self.path), caption=self.caption)


_STUDY = """<div style="{{ box }}">
<div style="font-size:15px; font-weight:600;">{{ title }}</div>
<div style="opacity:.75;">study <code>{{ name }}</code> · {{ mode }} · seed {{ seed }} · {{ seconds }} s · folder <code>{{ path }}</code></div>
{{ verdicts | safe }}
{% for figure in figures %}<figure style="margin:0 0 10px;">{% if figure.uri %}{{ image(figure.uri, figure.caption) }}{% endif %}
<figcaption style="opacity:.75;">{{ figure.caption }}</figcaption></figure>{% endfor %}
{% if table_html %}<details><summary style="cursor:pointer;">table {{ table_name }} ({{ table_total }} rows; <code>.table</code> has them all)</summary>{{ table_html | safe }}</details>{% endif %}
</div>"""


class StudyResults:
    """A finished study (or tour) folder: its verdicts, figures and tables, and how it shows itself.

    Example::

        result = StudyResults.load("studies/polynomial")
        result.verdicts[0].status, result.figures[0].path, result.table
    """

    def __init__(self, path: str | Path) -> None:
        from deepwell.errors import CheckpointError
        from deepwell.studies.base import Verdict

        self.path = Path(path)
        record_path = self.path / "study.json"
        if not record_path.is_file():
            raise CheckpointError(f"'{self.path}' is not a study folder (no study.json). Run one with deepwell.study(name).")
        self.record: dict[str, Any] = json.loads(record_path.read_text())
        self.name, self.title = self.record.get("name", self.path.name), self.record.get("title", "")
        self.verdicts = [Verdict(v["claim"], v["text"], v["status"], v["evidence"],
                                 {k: x for k, x in v.get("numbers", {}).items() if x is not None})
                         for v in self.record["verdicts"]]
        self.figures = [Figure(self.path / f["path"], f["caption"]) for f in self.record.get("figures", [])]

    load = classmethod(lambda cls, path: cls(path))

    @property
    def tables(self) -> dict[str, Any]:
        """Every table of the study by file name (DataFrames with pandas, else lists of dicts)."""
        return {t["path"]: read_table(self.path / t["path"]) for t in self.record.get("tables", [])}

    @property
    def table(self) -> Any:
        """The study's main (first) table; None when it wrote none."""
        tables = self.record.get("tables", [])
        return read_table(self.path / tables[0]["path"]) if tables else None

    def _table_preview(self) -> tuple[str, str, int]:
        tables = self.record.get("tables", [])
        if not tables:
            return "", "", 0
        with (self.path / tables[0]["path"]).open(newline="") as handle:
            rows = list(csv.reader(handle))
        return rows_html(rows[0], [[_number(c) for c in row] for row in rows[1:TABLE_ROWS + 1]]), tables[0]["path"], len(rows) - 1

    def _repr_html_(self) -> str:
        table, table_name, total = self._table_preview()
        mode = "quick mode" if self.record.get("quick") else "full settings"
        return render(_STUDY, title=self.title, name=self.name, mode=mode,
                      seed=self.record.get("seed"), seconds=fmt(self.record.get("seconds")), path=str(self.path),
                      verdicts=verdicts_html(self.verdicts), table_html=table, table_name=table_name, table_total=total,
                      figures=[{"uri": file_uri(f.path), "caption": f.caption} for f in self.figures])

    def __repr__(self) -> str:
        lines = [f"{self.title} ({self.path})"]
        lines += [f"  {v.claim}: {v.status} - {v.evidence}" for v in self.verdicts]
        return "\n".join(lines)


def study(name: str, full: bool = False, out: str | Path = "studies", seed: int = 0) -> StudyResults:
    """Run one of the lecture's experiments, as ``deepwell study NAME [--full] [--out DIR] [--seed N]``.

    Args:
        name: init, activations, dead-relu, polynomial, landscape, double-descent, ... (``deepwell.studies.STUDIES``).
        full: the reference settings (slow) instead of quick mode.
        out: the folder that receives the study folder ``out/name``.
        seed: seeds every random draw.

    Raises:
        ConfigError: an unknown study name (the message lists the known ones).

    Example::

        result = deepwell.study("polynomial", out="studies")
        result.verdicts[0].status       # 'holds'
    """
    from deepwell.studies import run_study

    return StudyResults(run_study(name, quick=not full, output=Path(out), seed=seed).path)


def tour(full: bool = False, out: str | Path = "tour", seed: int = 0, fresh: bool = False) -> StudyResults:
    """Every claim of the lecture, measured, as ``deepwell tour``; also writes ``out/report.html``.

    Example::

        result = deepwell.tour()        # minutes; a finished study is not run again
        [v.claim for v in result.verdicts if v.status != "holds"]
    """
    from deepwell.reporting import write_report
    from deepwell.studies.tour import run_tour

    result = run_tour(quick=not full, output=Path(out), seed=seed, fresh=fresh)
    write_report(result.path)
    return StudyResults(result.path)


_SWEEP = """<div style="{{ box }}">
<div style="font-size:15px; font-weight:600;">Sweep over {{ keys | join(", ") }}</div>
<div style="opacity:.75;">{{ runs }} runs ({{ seeds }} seed{{ "s" if seeds != 1 }} each) · folder <code>{{ path }}</code></div>
{{ table_html | safe }}
{% if uri %}{{ image(uri, "sweep figure") }}{% endif %}
{% for note in notes %}<div style="{{ tones.warn }} padding:2px 8px; border-radius:4px; margin:4px 0;">note: {{ note }}</div>{% endfor %}
</div>"""


class SweepResults:
    """A finished grid sweep: ``.table`` (mean/std over seeds per combination), ``.records``, ``.figures``, ``.path``.

    Example::

        grid = deepwell.sweep(overrides=["model.arch=mlp"], over={"model.width": [8, 32]}, seeds=2)
        grid.table            # one row per width: test accuracy mean and std over the seeds
        grid                  # in a notebook: the table and the sweep's figure
    """

    def __init__(self, grid: Any, seeds: int) -> None:
        self.path, self.records, self.rows, self.keys = grid.path, grid.records, grid.rows, grid.keys
        self.metric, self.notes, self.seeds = grid.metric, grid.notes, seeds
        self.figures = [Figure(self.path / "sweep.png", f"{self.metric.replace('_', ' ')} against {self.keys[0]}")]

    @property
    def table(self) -> Any:
        """summary.csv: one row per combination (DataFrame with pandas, else a list of dicts)."""
        return read_table(self.path / "summary.csv")

    def _rows(self) -> tuple[list[str], list[list[Any]]]:
        train = self.metric.replace("test", "train")
        header = [*self.keys, "n", self.metric, train]
        rows = [[*(row[k] for k in self.keys), row["n"], f"{fmt(row[f'{self.metric}_mean'])} ± {fmt(row[f'{self.metric}_std'])}",
                 fmt(row.get(f"{train}_mean"))] for row in self.rows]
        return header, rows

    def _repr_html_(self) -> str:
        return render(_SWEEP, keys=self.keys, runs=len(self.records), seeds=self.seeds, path=str(self.path),
                      table_html=rows_html(*self._rows()), uri=file_uri(self.figures[0].path), notes=self.notes)

    def __repr__(self) -> str:
        header, rows = self._rows()
        return "\n".join([f"Sweep over {', '.join(self.keys)} ({self.path})", "  ".join(header),
                          *("  ".join(str(c) for c in row) for row in rows)])


def sweep(spec: Any = None, over: Mapping[str, Sequence[Any]] | Sequence[str] = (), seeds: int = 1,
          overrides: Sequence[str] = (), executor: str = "batched", workers: int | None = None, address: str | None = None,
          out: str | Path = "sweeps", name: str | None = None) -> SweepResults:
    """Train a grid of runs, as ``deepwell sweep [SPEC] --over KEY=V1,V2 --seeds N --set K=V ...``; resumes when rerun.

    Args:
        spec: a RunSpec, a YAML path, or None for the defaults (the CLI's SPEC argument).
        over: swept keys and values, ``{"model.width": [8, 32]}``, or the CLI's strings ``["model.width=8,32"]``.
        seeds: runs per combination (seed, seed+1, ...).
        overrides: ``key=value`` strings applied to the spec first (``--set``).
        executor, workers, address: how the runs are run (``--executor``, ``--workers``, ``--address``).
        out, name: the sweep's parent folder and folder name (``--out``, ``--name``).

    Raises:
        ConfigError: a bad spec, swept key or value, or executor option.

    Example::

        result = deepwell.sweep(overrides=["model.arch=mlp", "train.epochs=2"], over={"model.width": [8, 32]}, seeds=2)
        result.table[["width", "test_error_mean"]]
    """
    from deepwell.config import RunSpec, apply_overrides, load_spec
    from deepwell.sweep.grid import make_executor, parse_over, run_grid

    if isinstance(spec, RunSpec):
        base = RunSpec.from_dict(apply_overrides(spec.to_dict(), list(overrides))) if overrides else spec
    else:
        base = load_spec(spec, list(overrides))
    grid = dict(over) if isinstance(over, Mapping) else parse_over(list(over))
    if not grid:
        parse_over([])  # the CLI's error: a sweep needs at least one key
    result = run_grid(base, grid, seeds=seeds, executor=make_executor(executor, workers=workers, address=address),
                      output=out, name=name)
    return SweepResults(result, seeds)
