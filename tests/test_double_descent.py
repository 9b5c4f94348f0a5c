"""double-descent study: the verdict follows the curve; a tiny study writes its curve, markers and verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deepwell.studies import run_study
from deepwell.studies import double_descent as dd


def _rows(errors: list[float], train: list[float], widths: list[int]) -> list[dict]:
    return [{"width": w, "params": dd.mlp_params(w), "test_error_mean": e, "test_error_std": 0.01, "train_error_mean": t}
            for w, e, t in zip(widths, errors, train)]


WIDTHS = [4, 8, 16, 32, 47, 64, 128, 300]
TRAIN = [0.6, 0.5, 0.4, 0.2, 0.05, 0.0, 0.0, 0.0]


def test_geometric_widths_are_distinct_and_span_the_range() -> None:
    widths = dd.geometric_widths(2, 300, 19)
    assert len(set(widths)) == 19 and widths[0] == 2 and widths[-1] == 300 and list(widths) == sorted(widths)


def test_mlp_params_counts_weights_and_biases() -> None:
    from deepwell.models import build_model

    model = build_model(dd.FULL.model(47), (1, 40), 10)
    assert dd.mlp_params(47) == sum(p.numel() for p in model.parameters())


def test_verdict_holds_for_the_reference_shape() -> None:
    numbers = dd.curve_numbers(_rows([0.6, 0.5, 0.47, 0.50, 0.54, 0.52, 0.48, 0.455], TRAIN, WIDTHS), 4000)
    assert numbers["peak_width"] == 47 and numbers["first_min_width"] == 16 and numbers["interpolation_width"] == 64
    assert dd.double_descent_verdict(numbers).status == "holds"


def test_verdict_does_not_hold_for_a_monotone_curve_or_a_peak_far_from_n() -> None:
    monotone = dd.curve_numbers(_rows([0.6, 0.55, 0.52, 0.5, 0.49, 0.48, 0.47, 0.46], TRAIN, WIDTHS), 4000)
    assert dd.double_descent_verdict(monotone).status == "does_not_hold"
    far = dd.curve_numbers(_rows([0.6, 0.5, 0.47, 0.49, 0.49, 0.50, 0.55, 0.45], TRAIN, WIDTHS), 4000)
    assert far["peak_width"] == 128 and dd.double_descent_verdict(far).status == "does_not_hold"
    no_fall = dd.curve_numbers(_rows([0.6, 0.5, 0.47, 0.50, 0.54, 0.54, 0.54, 0.535], TRAIN, WIDTHS), 4000)
    assert dd.double_descent_verdict(no_fall).status == "does_not_hold"


def test_verdict_is_inconclusive_when_the_largest_model_does_not_fit() -> None:
    numbers = dd.curve_numbers(_rows([0.6, 0.5, 0.47, 0.50, 0.54, 0.52, 0.48, 0.455], [0.6] * 8, WIDTHS), 4000)
    assert math.isnan(numbers["interpolation_width"])
    assert dd.double_descent_verdict(numbers).status == "inconclusive"


def test_reference_rows_compare_the_curves_landmarks() -> None:
    widths = dd.notebook_widths(2, 300, 20)
    assert widths == (2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 47, 61, 80, 104, 135, 177, 230, 300)  # np.geomspace, as the notebook
    errors = {12: 0.468, 16: 0.501, 47: 0.558, 300: 0.459}  # the notebook's own printed run
    test = [errors.get(w, 0.60 if w < 12 else 0.52 if w < 47 else 0.50) for w in widths]
    rows = _rows(test, [0.5 if w < 61 else 0.0 for w in widths], widths)
    by = {r["landmark"]: r for r in dd.reference_rows(rows)}
    assert by["first_min"]["width"] == 12 and by["first_min"]["within_tolerance"]  # 46.8% near h=16: agrees
    assert by["peak"]["width"] == 47 and by["peak"]["measured"] == pytest.approx(0.558) and by["peak"]["within_tolerance"]
    assert by["largest"]["within_tolerance"]
    shifted = _rows([e + 0.03 for e in test], [0.5 if w < 61 else 0.0 for w in widths], widths)
    assert not any(r["within_tolerance"] for r in dd.reference_rows(shifted))


TINY = dd.Settings(n_train=200, n_test=200, widths=(2, 6, 24), epochs=3, seeds=2, eval_every=1, sample_width=6,
                   sample_sizes=(100, 200), sample_epochs=2, cnn_channels=(2, 6), cnn_epochs=2)


def test_tiny_study_writes_curve_threshold_marker_and_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dd, "QUICK", TINY)
    result = run_study("double-descent", quick=True, output=tmp_path)
    folder = tmp_path / "double-descent"
    assert (folder / "double_descent.png").stat().st_size > 10_000
    assert [v.id for v in result.verdicts] == ["double-descent"]  # one verdict, a regime per noise mode
    assert [r.name for r in result.verdicts[0].regimes] == [f"label noise {m}" for m in dd.NOISE_MODES]
    assert result.verdicts[0].regimes[0].lecture and result.verdicts[0].status == result.verdicts[0].regimes[0].status
    numbers = result.verdicts[0].regimes[0].numbers
    assert numbers["params_n_width"] == pytest.approx(-26 + math.sqrt(26 ** 2 + 190))  # w^2 + 52w + 10 = 200
    assert {"peak_width", "first_min_error", "largest_error", "interpolation_width"} <= set(numbers)
    saved = json.loads((folder / "study.json").read_text())
    assert saved["verdicts"][0]["status"] in ("holds", "does_not_hold", "inconclusive")
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    model_wise = [r for r in records if r["experiment"] == "model_wise"]
    assert len(model_wise) == len(TINY.widths) * TINY.seeds * len(dd.NOISE_MODES)
    assert all(r["executor"].startswith("batched") and len(r["curve"]) == TINY.epochs for r in model_wise)
    table = (folder / "double_descent.csv").read_text()
    assert "test_error_std" in table.splitlines()[0] and "sample_wise" in table and "cnn_model_wise" in table
    cnn = [r for r in records if r["experiment"] == "cnn_model_wise"]  # the CNN curve: batched over widths (padded)
    assert [r["width"] for r in cnn] == [2, 6] and all(r["executor"] == "batched:padded_stacked" for r in cnn)
    assert cnn[1]["params"] == cnn[1]["num_params"] and (folder / "double_descent_cnn.png").stat().st_size > 10_000
    rerun = run_study("double-descent", quick=True, output=tmp_path)  # resumes: every run is already recorded
    assert rerun.verdicts[0].numbers == result.verdicts[0].numbers


@pytest.mark.slow
def test_quick_study_shows_double_descent(tmp_path: Path) -> None:
    result = run_study("double-descent", quick=True, output=tmp_path)
    assert result.verdicts[0].status == "holds", result.verdicts[0].evidence
