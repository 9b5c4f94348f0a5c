"""Study ``double-descent``: test error peaks near the interpolation threshold and falls again.

Belkin et al. 2019 ("Reconciling modern machine learning practice and the bias-variance
trade-off"); Nakkiran et al. 2019 ("Deep Double Descent"); the MNIST-1D notebook (Greydanus 2020)
gives the reference: MLP 40-h-h-10 with torch's default init, 15% label noise, 4000 train /
12000 test, SGD lr 0.01 momentum 0.9, batch 100, 500 epochs, h in np.geomspace(2, 300, 20)
(19 widths): first minimum ~47% (h=12..16), peak ~54% (h=47, params ~ n), 45.5% (h=300). Full
mode runs exactly that (over seeds); quick mode fewer widths and epochs, with He init.

1. Model-wise: the width sweep, with label noise drawn both ways (``uniform``: any label, as the
   notebook; ``incorrect``: a wrong label, as Nakkiran et al.), over seeds. Every run of one sweep
   trains as one batched ensemble (deepwell.sweep). Marked: params = n, and the first width whose
   training error reaches 0 (the interpolation threshold).
2. Epoch-wise: test and train error over training of the largest model (and the one nearest the
   threshold), from the same runs, and of one MLP (``epoch_width``) a little above the threshold,
   trained on n=4000 with 20% label noise (Nakkiran et al.'s noise) and SGD at lr 0.05, over
   ``epoch_seeds`` seeds, judged as its own regime (see ``epoch_wise_verdict``). Its test error falls,
   rises while the net fits the last noisy labels (peak about where its training error reaches 0) and
   falls again once it has fitted them all (h=128, 5 seeds: 49.6% -> 51.9% -> 49.4%). The second
   descent needs the larger step: at the study's lr 0.01 the same net rises (50.8% -> 53.1%) and stays
   up (52.9% after 200 epochs), and wider nets (h=256, n=2000) or Adam show no bump at all (README.md
   lists the settings tried).
3. Sample-wise: one fixed width trained on several training-set sizes (subsets of the same data),
   marked where its training error stops reaching 0 (the interpolation threshold in n) and judged as
   its own regime (``sample_wise_verdict``). Quick mode measures no sample-wise peak: h=32 fits n <= 750
   and not 1000, yet test error falls with every size (75.6% at n=250 -> 62.8% at n=2000).

Verdict double-descent: the peak (largest rise of test error above a preceding minimum) lies
within a factor PARAMS_WINDOW of params = n, rises at least PEAK_MARGIN above the first minimum,
the largest model ends at least PEAK_MARGIN below the peak, and the peak lies within ALIGN_STEPS
grid step of the first width whose training error reaches 0 (the interpolation threshold; both
widths are reported). A peak away from the threshold means under-trained nets (as quick mode's
n=4000 x 120 epochs was: peak h=63, threshold h=112).

The settings and the runs they make are in :mod:`deepwell.studies.double_descent_settings`; the figures
and the table are drawn by :mod:`deepwell.studies.double_descent_figures`.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from deepwell.studies.animations import double_descent_animations
from deepwell.studies.base import Regime, StudyOutput, Verdict, status_from
from deepwell.studies.double_descent_figures import cnn_figure, main_figure, write_tables
from deepwell.studies.double_descent_settings import (
    EPOCH_NOISE,
    FULL,
    INTERPOLATED,
    LABEL_NOISE,
    SMOOTH,
    NOISE_MODES,
    QUICK,
    Settings,
    cnn_tasks,
    epoch_wise_tasks,
    geometric_widths,
    mlp_params,
    model_wise_tasks,
    notebook_widths,
    sample_wise_tasks,
    smooth,
)
from deepwell.studies.evidence import MIN_SEEDS, NOISE_MULTIPLE, mean_se, regime_verdict
from deepwell.sweep import BatchedExecutor, run_sweep, summarize

__all__ = ["Settings", "QUICK", "FULL", "REFERENCE", "geometric_widths", "notebook_widths", "mlp_params", "model_wise_tasks",
           "cnn_tasks", "sample_wise_tasks", "epoch_wise_tasks", "curve_numbers", "double_descent_verdict",
           "epoch_wise_numbers", "epoch_wise_verdict", "sample_wise_verdict", "reference_rows", "run"]

PEAK_MARGIN = 0.02      # the peak must stand 2 points above the first minimum and above the largest model
PARAMS_WINDOW = 3.0     # "near params ~ n": the peak's parameter count within n/3 .. 3n
# MNIST-1D notebook (deep-double-descent.ipynb, one seed): the curve's landmarks -> (test error, width near which).
# Its printed run: 46.8% at h=12, 50.1% at h=16, peak 55.8% at h=47, 45.9% at h=300 (DESIGN.md rounds these).
REFERENCE = {"first_min": (0.47, 16), "peak": (0.54, 47), "largest": (0.455, 300)}
NEAR_FACTOR = 2.0  # a landmark "near h" lies within h/2 .. 2h
REFERENCE_TOLERANCE = 0.02
ALIGN_STEPS = 1         # the peak and the first zero-train-error width agree within one step of the width grid
EPOCH_MARGIN = 0.01     # the epoch-wise bump's rise and fall: each at least 1 point and beyond NOISE_MULTIPLE s.e. over seeds


def curve_numbers(rows: list[dict[str, Any]], n_train: int) -> dict[str, float]:
    """Peak, first minimum, last point and thresholds of one model-wise curve (summary rows sorted by width)."""
    errors = [row["test_error_mean"] for row in rows]
    peak, first_min = _peak(errors)
    interpolating = [i for i, row in enumerate(rows) if row["train_error_mean"] <= INTERPOLATED]
    return {"n_train": n_train, "peak_width": rows[peak]["width"], "peak_params": rows[peak]["params"],
            "peak_error": errors[peak], "peak_error_std": rows[peak]["test_error_std"],
            "peak_train_error": rows[peak]["train_error_mean"],
            "first_min_width": rows[first_min]["width"], "first_min_error": errors[first_min],
            "largest_width": rows[-1]["width"], "largest_error": errors[-1],
            "largest_train_error": rows[-1]["train_error_mean"],
            "interpolation_width": rows[interpolating[0]]["width"] if interpolating else math.nan,
            # grid steps from the first zero-train-error width to the peak (the threshold: within ALIGN_STEPS)
            "peak_threshold_steps": peak - interpolating[0] if interpolating else math.nan,
            "params_n_width": _width_for_params(n_train)}


def _peak(errors: list[float]) -> tuple[int, int]:
    """(peak, first minimum): the peak is the point of largest rise above the minimum before it.

    Example: ``_peak([0.6, 0.47, 0.54, 0.45]) == (2, 1)``.
    """
    rises = [errors[j] - min(errors[:j]) if j else -math.inf for j in range(len(errors))]
    peak = max(range(len(errors)), key=lambda j: rises[j])
    return peak, (min(range(peak), key=lambda i: errors[i]) if peak else 0)


def _width_for_params(n: int) -> float:
    """The (fractional) width whose MLP has n parameters: w^2 + 52 w + 10 = n."""
    return (-52 + math.sqrt(52 ** 2 - 4 * (10 - n))) / 2


RULE = (f"holds when the test-error peak lies at params within a factor {PARAMS_WINDOW:g} of n, stands at least "
        f"{PEAK_MARGIN:.0%} above the first minimum, the largest model is at least {PEAK_MARGIN:.0%} below the peak, and the "
        f"peak sits within {ALIGN_STEPS} grid step of the first width whose training error reaches 0 "
        "(the largest model must fit its training set, else inconclusive); one regime per label-noise mode, uniform "
        "being the lecture's; the sample-wise and epoch-wise regimes have their own rules (sample_wise_verdict, "
        "epoch_wise_verdict).")


def double_descent_verdict(numbers: dict[str, float], mode: str = "uniform") -> Verdict:
    """double-descent: peak near params ~ n, above the first minimum; largest model below the peak."""
    ratio = numbers["peak_params"] / numbers["n_train"]
    near = 1 / PARAMS_WINDOW <= ratio <= PARAMS_WINDOW
    rise = numbers["peak_error"] - numbers["first_min_error"]
    fall = numbers["peak_error"] - numbers["largest_error"]
    usable = numbers["largest_train_error"] <= 0.05  # the largest model must (nearly) fit the training set
    aligned = abs(numbers["peak_threshold_steps"]) <= ALIGN_STEPS  # NaN (no width interpolates) is never aligned
    supported = near and rise >= PEAK_MARGIN and fall >= PEAK_MARGIN and aligned
    evidence = (f"Label noise '{mode}': test error {numbers['first_min_error']:.1%} at h={numbers['first_min_width']:g} -> peak "
                f"{numbers['peak_error']:.1%} at h={numbers['peak_width']:g} (train error {numbers['peak_train_error']:.1%}; params {numbers['peak_params']:g} = "
                f"{ratio:.2f} n, n={numbers['n_train']:g}) -> {numbers['largest_error']:.1%} at h={numbers['largest_width']:g}; "
                f"training error first reaches 0 at h={numbers['interpolation_width']:g} "
                f"({numbers['peak_threshold_steps']:g} grid steps from the peak; within {ALIGN_STEPS} needed).")
    if not usable:
        evidence += f" Inconclusive: the largest model did not fit the training set (train error {numbers['largest_train_error']:.1%})."
    return Verdict("double-descent", "Test error peaks near the interpolation threshold (params ~ n) and falls again "
                   "for much bigger models.", status_from(supported, usable), evidence,
                   numbers | {"peak_rise": rise, "peak_fall": fall, "peak_params_over_n": ratio})


def epoch_wise_numbers(records: list[dict[str, Any]]) -> dict[str, float]:
    """The epoch-wise curve's landmarks and the bump's size per seed.

    The landmarks (first minimum, peak, final test error) are found on the mean over the runs' curves,
    smoothed by a centred moving average over SMOOTH evaluations (one noisy evaluation makes no bump).
    Each run's smoothed curve read at those three epochs gives its rise (peak - first minimum) and fall
    (peak - final); their mean and standard error over the runs are ``rise``/``rise_se``, ``fall``/``fall_se``.
    """
    epochs = [point["epoch"] for point in records[0]["curve"]]
    runs = [smooth([point["test_error"] for point in r["curve"]]) for r in records]
    mean = [statistics.fmean(run[i] for run in runs) for i in range(len(epochs))]
    peak, first_min = _peak(mean)
    rise, rise_se = mean_se([run[peak] - run[first_min] for run in runs])
    fall, fall_se = mean_se([run[peak] - run[-1] for run in runs])
    final_train = statistics.fmean(r["curve"][-1]["train_error"] for r in records)
    return {"width": records[0]["width"], "n_train": records[0]["n_train"], "lr": records[0].get("lr", math.nan),
            "seeds": len(records), "first_min_epoch": epochs[first_min], "first_min_error": mean[first_min],
            "peak_epoch": epochs[peak], "peak_error": mean[peak], "final_epoch": epochs[-1], "final_error": mean[-1],
            "final_train_error": final_train, "rise": rise, "rise_se": rise_se, "fall": fall, "fall_se": fall_se}


def epoch_wise_verdict(numbers: dict[str, float]) -> Verdict:
    """Epoch-wise: test error falls, rises above its minimum, then falls below that peak, each beyond seed noise.

    The rise and the fall must each exceed ``max(NOISE_MULTIPLE * s.e., EPOCH_MARGIN)`` over at least
    MIN_SEEDS seeds (fewer: inconclusive). A rise that does not come down although the net fits every
    label (train error 0) does not hold; no rise, or a rise before the net fits, is inconclusive (the
    bump may lie beyond the epochs run).
    """
    seeds = int(numbers["seeds"])
    rise_bound = max(NOISE_MULTIPLE * numbers["rise_se"], EPOCH_MARGIN)
    fall_bound = max(NOISE_MULTIPLE * numbers["fall_se"], EPOCH_MARGIN)
    rises, falls = numbers["rise"] > rise_bound, numbers["fall"] > fall_bound
    fitted = numbers["final_train_error"] <= INTERPOLATED
    status = "inconclusive" if seeds < MIN_SEEDS else "holds" if rises and falls else (
        "does_not_hold" if rises and fitted else "inconclusive")
    lr = f", lr {numbers['lr']:g}" if math.isfinite(numbers["lr"]) else ""
    evidence = (f"Epoch-wise, h={numbers['width']:g}, n={numbers['n_train']:g}, {EPOCH_NOISE:.0%} label noise{lr}, "
                f"{seeds} seeds: test error {numbers['first_min_error']:.1%} at epoch {numbers['first_min_epoch']:g} -> "
                f"{numbers['peak_error']:.1%} at epoch {numbers['peak_epoch']:g} -> {numbers['final_error']:.1%} at epoch "
                f"{numbers['final_epoch']:g} (train error {numbers['final_train_error']:.1%}); rise "
                f"{numbers['rise']:+.1%} ± {numbers['rise_se']:.1%}, fall {numbers['fall']:+.1%} ± {numbers['fall_se']:.1%} "
                f"(s.e.); each must exceed {NOISE_MULTIPLE:g} s.e. and {EPOCH_MARGIN:.0%}"
                + (f", with at least {MIN_SEEDS} seeds." if seeds < MIN_SEEDS else "."))
    return Verdict("double-descent", "Test error over training falls, rises and falls again.", status, evidence, dict(numbers))


def sample_wise_verdict(rows: list[dict[str, Any]], width: int) -> Verdict:
    """Sample-wise: test error rises PEAK_MARGIN with more data (above the minimum at a smaller n) and falls
    PEAK_MARGIN again by the largest n (summary rows sorted by n).

    No such peak although the net's interpolation threshold lies inside the sizes (training error 0 at
    the smallest n, above 0 at the largest) does not hold; a threshold outside them is inconclusive.
    """
    errors = [row["test_error_mean"] for row in rows]
    peak, first_min = _peak(errors)
    fitted = [row["n_train"] for row in rows if row["train_error_mean"] <= INTERPOLATED]
    threshold = max(fitted) if fitted else math.nan
    rise, fall = errors[peak] - errors[first_min], errors[peak] - errors[-1]
    crossed = bool(fitted) and threshold < rows[-1]["n_train"]
    status = "holds" if rise >= PEAK_MARGIN and fall >= PEAK_MARGIN else "does_not_hold" if crossed else "inconclusive"
    curve = " -> ".join(f"{e:.1%} (n={row['n_train']})" for e, row in zip(errors, rows))
    reach = f"reaches 0 up to n={threshold:g}" if fitted else "reaches 0 at none of the sizes"
    evidence = (f"Sample-wise, h={width} ({mlp_params(width)} params): test error {curve}; training error {reach}; "
                f"a peak needs a rise and a fall of {PEAK_MARGIN:.0%} each.")
    numbers = {"width": width, "params": mlp_params(width), "threshold_n": threshold, "peak_n": rows[peak]["n_train"],
               "peak_error": errors[peak], "first_min_n": rows[first_min]["n_train"], "first_min_error": errors[first_min],
               "largest_error": errors[-1], "rise": rise, "fall": fall}
    return Verdict("double-descent", "More data can hurt: test error peaks where n reaches what the model can fit.", status,
                   evidence, numbers)


def reference_rows(rows: list[dict[str, Any]], n_train: int = 4000) -> list[dict[str, Any]]:
    """The measured curve's landmarks (first minimum, peak, largest model) beside the notebook's.

    A landmark agrees when its error is within REFERENCE_TOLERANCE and it lies near the notebook's
    width (within a factor NEAR_FACTOR).
    """
    numbers = curve_numbers(rows, n_train)
    measured = {"first_min": (numbers["first_min_error"], numbers["first_min_width"]),
                "peak": (numbers["peak_error"], numbers["peak_width"]),
                "largest": (numbers["largest_error"], numbers["largest_width"])}
    out = []
    for landmark, (expected, width) in REFERENCE.items():
        error, at = measured[landmark]
        near = width / NEAR_FACTOR <= at <= width * NEAR_FACTOR
        out.append({"landmark": landmark, "reference": expected, "reference_width": width, "measured": error,
                    "width": at, "difference": error - expected,
                    "within_tolerance": abs(error - expected) <= REFERENCE_TOLERANCE and near})
    return out


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder`` (records.jsonl makes an interrupted run resume)."""

    settings = QUICK if quick else FULL
    executor = BatchedExecutor()
    model_records = run_sweep(model_wise_tasks(settings, seed), executor, folder / "records.jsonl")
    sample_records = run_sweep(sample_wise_tasks(settings, seed), executor, folder / "records.jsonl")
    epoch_records = run_sweep(epoch_wise_tasks(settings, seed), executor, folder / "records.jsonl")
    metrics = ["test_error", "train_error"]
    summary = {mode: sorted(summarize([r for r in model_records if r["mode"] == mode], ["width", "params"], metrics),
                            key=lambda row: row["width"]) for mode in NOISE_MODES}
    samples = sorted(summarize(sample_records, ["n_train"], metrics), key=lambda row: row["n_train"])
    per_mode = [double_descent_verdict(curve_numbers(summary[mode], settings.n_train), mode) for mode in NOISE_MODES]
    regimes = [Regime(f"label noise {mode}", v.status, v.evidence, v.numbers, lecture=mode == NOISE_MODES[0])
               for mode, v in zip(NOISE_MODES, per_mode)]
    sample_wise = sample_wise_verdict(samples, settings.sample_width)
    regimes.append(Regime(f"sample-wise, h={settings.sample_width}", sample_wise.status, sample_wise.evidence,
                          sample_wise.numbers))
    if epoch_records:
        epoch_wise = epoch_wise_verdict(epoch_wise_numbers(epoch_records))
        regimes.append(Regime(f"epoch-wise, h={settings.epoch_width}", epoch_wise.status, epoch_wise.evidence, epoch_wise.numbers))
    verdicts = [regime_verdict("double-descent", per_mode[0].text, RULE, regimes, figure="double_descent.png")]
    references = [] if quick else reference_rows(summary["uniform"], settings.n_train)
    figure = main_figure(folder, settings, summary, model_records + epoch_records, samples, verdicts, references)
    cnn_records = run_sweep(cnn_tasks(settings, seed), executor, folder / "records.jsonl") if settings.cnn_channels else []
    cnn = sorted(summarize(cnn_records, ["width", "params"], metrics), key=lambda row: row["width"])
    tables = [write_tables(folder, model_records + sample_records + epoch_records + cnn_records, summary | {"cnn": cnn}, samples, references)]
    caption = (f"Double descent on MNIST-1D, MLP 40-h-h-10, batched training (deepwell.sweep). Model-wise: {LABEL_NOISE:.0%} "
               f"label noise, n={settings.n_train}, {settings.epochs} epochs, mean ± std over {settings.seeds} seeds. "
               + (f"Epoch-wise: two of those runs, and h={settings.epoch_width} on n={settings.epoch_n_train} with "
                  f"{EPOCH_NOISE:.0%} label noise at lr {settings.epoch_lr:g} for {settings.epoch_epochs} epochs, "
                  f"{settings.epoch_seeds} seeds (inset: its smoothed test error ± s.e.). " if settings.epoch_width else "")
               + f"Sample-wise: h={settings.sample_width} "
               f"on n = {', '.join(map(str, settings.sample_sizes))}, {settings.sample_epochs} epochs, {settings.seeds} seeds.")
    figures = [(figure, caption)]
    if cnn:
        numbers = curve_numbers(cnn, settings.n_train)
        figures.append((cnn_figure(folder, cnn, settings), (
            f"The notebook's CNN (3 conv layers of c channels, kernel 3, max-pool, flatten) over c, {LABEL_NOISE:.0%} label noise, "
            f"{settings.cnn_epochs} epochs, one seed: {numbers['first_min_error']:.1%} at c={numbers['first_min_width']:g} -> peak "
            f"{numbers['peak_error']:.1%} at c={numbers['peak_width']:g} -> {numbers['largest_error']:.1%} at "
            f"c={numbers['largest_width']:g} (the notebook: 20.8% at c=10, ~36% near c=20, ~28% at c=100).")))
    # GIFs: the model-wise curve width by width, the epoch-wise curve epoch by epoch
    figures += double_descent_animations(folder, summary["uniform"], model_records, settings.n_train)
    return StudyOutput(verdicts, figures, tables)
