"""The Python face of the CLI: deepwell.study / deepwell.sweep results, their tables, figures and HTML views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from html_page import Page, decoded

import deepwell
from deepwell.studies import STUDIES, Study, StudyOutput, Verdict

pytestmark = pytest.mark.usefixtures("single_thread")


def _fake_study(folder: Path, quick: bool, seed: int) -> StudyOutput:
    from deepwell.studies.base import write_table
    from deepwell.studies.figures import new_figure, save_figure

    figure, axes = new_figure(3, 2)
    axes[0][0].plot([1, 2, 3], [3, 1, 2])
    save_figure(figure, folder / "curve.png")
    write_table(folder / "rows.csv", [{"width": w, "error": 1 / w} for w in (2, 4, 8)], ["width", "error"])
    verdict = Verdict("fake-claim", "Errors fall with width.", "holds", "error 0.5 -> 0.125", {"ratio": 4.0, "peak": 0.123456})
    return StudyOutput([verdict], [("curve.png", "error against width")], [("rows.csv", "errors")])


def test_study_returns_verdicts_table_figures_and_shows_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STUDIES, "fake", Study("fake", "A fake study", ("fake-claim",), _fake_study))
    result = deepwell.study("fake", out=tmp_path, seed=3)
    assert result.path == tmp_path / "fake" and [v.status for v in result.verdicts] == ["holds"]
    assert result.verdicts[0].numbers == {"ratio": 4.0, "peak": 0.123456}
    assert list(result.table["width"]) == [2, 4, 8] and result.table["error"].iloc[2] == pytest.approx(0.125)
    assert result.figures[0].path == tmp_path / "fake" / "curve.png" and result.figures[0].caption == "error against width"
    page = Page(result._repr_html_())
    assert "fake-claim" in page.text and "ratio = 4" in page.text and "peak = 0.1235" in page.text and "seed 3" in page.text
    assert len(page.images) == 1 and decoded(page.images[0])[0] == "data:image/png"
    assert "table rows.csv (3 rows" in page.text and "width error 2 0.5 4 0.25 8 0.125" in page.text  # the table preview
    assert Page(result.figures[0]._repr_html_()).images == page.images
    assert "fake-claim: holds - error 0.5 -> 0.125" in repr(result)
    with pytest.raises(deepwell.ConfigError, match="Unknown study 'fak'"):
        deepwell.study("fak", out=tmp_path)


def test_table_without_pandas_is_rows_of_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from deepwell.notebook.results import read_table

    (tmp_path / "t.csv").write_text("width,error,name\n2,0.5,a\n4,0.25,b\n")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    assert read_table(tmp_path / "t.csv") == [{"width": 2, "error": 0.5, "name": "a"}, {"width": 4, "error": 0.25, "name": "b"}]


def test_sweep_is_callable_like_the_cli_and_shows_its_table_and_plot(tmp_path: Path) -> None:
    overrides = ["model.arch=mlp", "model.depth=1", "data.n_train=200", "train.epochs=1", "train.batch_size=100"]
    result = deepwell.sweep(overrides=overrides, over=["model.width=4,8"], seeds=2, executor="in_process", out=tmp_path)
    assert deepwell.sweep.run_sweep is deepwell.sweep.store.run_sweep  # still the package
    table = result.table
    assert list(table["model.width"]) == [4, 8] and list(table["n"]) == [2, 2]
    for width, mean in zip(table["model.width"], table["test_error_mean"]):
        errors = [r["test_error"] for r in result.records if r["model.width"] == width]
        assert mean == pytest.approx(sum(errors) / len(errors), abs=1e-6)
    page = Page(result._repr_html_())
    assert f"{table['test_error_mean'][0]:.4g}" in page.text and "model.width" in page.text
    assert len(page.images) == 1 and decoded(page.images[0])[0] == "data:image/png"
    again = deepwell.sweep(overrides=overrides, over={"model.width": [4, 8]}, seeds=2, executor="in_process", out=tmp_path)
    assert json.loads((again.path / "sweep.json").read_text())["runs"] == 4 and len(again.records) == 4  # resumed
    with pytest.raises(deepwell.ConfigError, match="at least one --over"):
        deepwell.sweep(overrides=overrides, out=tmp_path)
