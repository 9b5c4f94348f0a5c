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


def test_verdict_needs_the_peak_within_one_grid_step_of_the_first_zero_train_error_width() -> None:
    errors = [0.6, 0.5, 0.47, 0.50, 0.54, 0.52, 0.48, 0.455]  # peak at h=47 (index 4)
    for train, steps, status in [(TRAIN, -1, "holds"), ([0.6, 0.5, 0.4, 0.2, 0.0, 0.0, 0.0, 0.0], 0, "holds"),
                                 ([0.6, 0.5, 0.4, 0.2, 0.05, 0.01, 0.0, 0.0], -2, "does_not_hold"),  # fits only at h=128
                                 ([0.6, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 2, "does_not_hold")]:   # fits already at h=16
        numbers = dd.curve_numbers(_rows(errors, train, WIDTHS), 4000)
        assert numbers["peak_width"] == 47 and numbers["peak_threshold_steps"] == steps
        verdict = dd.double_descent_verdict(numbers)
        assert verdict.status == status and f"h=47 (train error {train[4]:.1%};" in verdict.evidence
        assert f"reaches 0 at h={numbers['interpolation_width']:g}" in verdict.evidence


def _curve_records(test: list[float], train_end: float, seeds: int = 3, offsets: list[float] | None = None) -> list[dict]:
    """Epoch-wise runs whose mean test curve is ``test``, each value held for 3 evaluations; seed s is shifted by a
    constant ``offsets[s]`` (default -0.01, 0, +0.01, ...), so every seed shows the same bump (standard error 0)."""
    held = [e for e in test for _ in range(3)]
    offsets = offsets if offsets is not None else [0.01 * (s - (seeds - 1) / 2) for s in range(seeds)]
    return [{"width": 128, "n_train": 4000, "lr": 0.05, "curve": [
        {"epoch": 10 * (i + 1), "test_error": e + offsets[s], "train_error": train_end if i == len(held) - 1 else 0.5}
        for i, e in enumerate(held)]} for s in range(seeds)]


def test_epoch_wise_verdict_needs_a_fall_a_rise_and_a_second_fall() -> None:
    bump = dd.epoch_wise_numbers(_curve_records([0.8, 0.45, 0.40, 0.44, 0.47, 0.43, 0.41], 0.0))
    assert (bump["first_min_epoch"], bump["peak_epoch"], bump["final_epoch"]) == (80, 140, 210)  # plateaus' middles
    assert bump["peak_error"] == pytest.approx(0.47) and bump["final_error"] == pytest.approx(0.41)
    assert bump["rise"] == pytest.approx(0.07) and bump["fall"] == pytest.approx(0.06) and bump["seeds"] == 3
    assert bump["rise_se"] == pytest.approx(0.0, abs=1e-12)  # every seed shifted by a constant: the same bump
    verdict = dd.epoch_wise_verdict(bump)
    assert verdict.status == "holds" and "lr 0.05, 3 seeds" in verdict.evidence and "rise +7.0% ± 0.0%" in verdict.evidence
    overfits = dd.epoch_wise_numbers(_curve_records([0.8, 0.45, 0.40, 0.44, 0.47, 0.47, 0.465], 0.0))
    assert dd.epoch_wise_verdict(overfits).status == "does_not_hold"  # fits every label and stays up
    still_fitting = dd.epoch_wise_numbers(_curve_records([0.8, 0.45, 0.40, 0.44, 0.47, 0.47, 0.465], 0.1))
    assert dd.epoch_wise_verdict(still_fitting).status == "inconclusive"  # the second descent may come later
    flat = dd.epoch_wise_numbers(_curve_records([0.8, 0.45, 0.40, 0.405, 0.405, 0.40, 0.40], 0.0))
    assert dd.epoch_wise_verdict(flat).status == "inconclusive"  # a rise within the margin is no bump
    spike = dd.epoch_wise_numbers([{"width": 256, "n_train": 1000, "curve": [  # one noisy evaluation is smoothed away
        {"epoch": i + 1, "test_error": 0.43 if i == 10 else 0.40, "train_error": 0.0} for i in range(21)]}])
    assert spike["peak_error"] == pytest.approx(0.41) and dd.epoch_wise_verdict(spike).status == "inconclusive"


def test_epoch_wise_verdict_needs_the_bump_beyond_seed_noise() -> None:
    two_seeds = dd.epoch_wise_numbers(_curve_records([0.8, 0.45, 0.40, 0.44, 0.47, 0.43, 0.41], 0.0, seeds=2))
    verdict = dd.epoch_wise_verdict(two_seeds)  # a clear bump, but no standard error worth trusting
    assert verdict.status == "inconclusive" and "at least 3 seeds" in verdict.evidence
    bump, flat = [0.8, 0.45, 0.40, 0.50, 0.50, 0.40, 0.40], [0.8, 0.45, 0.40, 0.40, 0.40, 0.40, 0.40]
    one_seed_bumps = dd.epoch_wise_numbers(_curve_records(bump, 0.0, 1, [0.0]) + _curve_records(flat, 0.0, 2, [0.0, 0.0]))
    assert one_seed_bumps["rise"] == pytest.approx(0.1 / 3) and one_seed_bumps["rise_se"] == pytest.approx(0.1 / 3)
    assert dd.epoch_wise_verdict(one_seed_bumps).status == "inconclusive"  # 3.3 points, but within 2 s.e. (6.7)
    all_bump = dd.epoch_wise_numbers(_curve_records(bump, 0.0, 3, [0.0, 0.005, -0.005]))
    assert dd.epoch_wise_verdict(all_bump).status == "holds"


def _sample_rows(errors: list[float], train: list[float], sizes: tuple[int, ...] = (250, 500, 750, 1000, 2000)) -> list[dict]:
    return [{"n_train": n, "test_error_mean": e, "train_error_mean": t} for n, e, t in zip(sizes, errors, train)]


def test_sample_wise_verdict_needs_a_peak_in_n_and_judges_only_across_the_threshold() -> None:
    fits_small = [0.0, 0.0, 0.0, 0.02, 0.15]  # the net fits n <= 750: its threshold lies inside the sizes
    peak = dd.sample_wise_verdict(_sample_rows([0.70, 0.66, 0.70, 0.68, 0.62], fits_small), 32)
    assert peak.status == "holds" and (peak.numbers["peak_n"], peak.numbers["first_min_n"]) == (750, 500)
    assert peak.numbers["threshold_n"] == 750 and "reaches 0 up to n=750" in peak.evidence
    monotone = dd.sample_wise_verdict(_sample_rows([0.756, 0.726, 0.702, 0.678, 0.628], fits_small), 32)
    assert monotone.status == "does_not_hold"  # crossed the threshold and more data only helped
    never_fits = dd.sample_wise_verdict(_sample_rows([0.756, 0.726, 0.702, 0.678, 0.628], [0.1] * 5), 18)
    assert never_fits.status == "inconclusive" and "at none of the sizes" in never_fits.evidence
    fits_all = dd.sample_wise_verdict(_sample_rows([0.756, 0.726, 0.702, 0.678, 0.628], [0.0] * 5), 128)
    assert fits_all.status == "inconclusive"  # the threshold lies beyond the largest n


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
                   sample_sizes=(100, 200), sample_epochs=2, epoch_width=24, epoch_n_train=100, epoch_epochs=4,
                   epoch_seeds=3, cnn_channels=(2, 6), cnn_epochs=2)


def test_tiny_study_writes_curve_threshold_marker_and_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dd, "QUICK", TINY)
    result = run_study("double-descent", quick=True, output=tmp_path)
    folder = tmp_path / "double-descent"
    assert (folder / "double_descent.png").stat().st_size > 10_000
    assert [v.id for v in result.verdicts] == ["double-descent"]  # one verdict, a regime per noise mode
    assert [r.name for r in result.verdicts[0].regimes] == [f"label noise {m}" for m in dd.NOISE_MODES] + [
        "sample-wise, h=6", "epoch-wise, h=24"]
    epoch_wise = result.verdicts[0].regimes[-1]
    assert not epoch_wise.lecture and epoch_wise.numbers["final_epoch"] == 4 and "20% label noise" in epoch_wise.evidence
    assert result.verdicts[0].regimes[0].lecture and result.verdicts[0].status == result.verdicts[0].regimes[0].status
    numbers = result.verdicts[0].regimes[0].numbers
    assert numbers["params_n_width"] == pytest.approx(-26 + math.sqrt(26 ** 2 + 190))  # w^2 + 52w + 10 = 200
    assert {"peak_width", "first_min_error", "largest_error", "interpolation_width", "peak_threshold_steps"} <= set(numbers)
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
    numbers = result.verdicts[0].regimes[0].numbers  # the peak sits at the interpolation threshold, as in full mode
    assert abs(numbers["peak_threshold_steps"]) <= 1, result.verdicts[0].regimes[0].evidence
    epoch_wise = result.verdicts[0].regimes[-1]  # down, up while the last noisy labels are fitted, down again
    assert epoch_wise.name.startswith("epoch-wise") and epoch_wise.status == "holds", epoch_wise.evidence
