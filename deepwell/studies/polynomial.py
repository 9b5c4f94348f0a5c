"""Study ``polynomial``: double descent of minimum-norm polynomial fits (lecture: double descent,
Figure 5, after Boaz Barak).

Data: the ``polynomial`` source, ``polynomial:n=20,degree=5,noise=0.1`` -- n = 20 points x ~ U[-1, 1],
targets y = p(x) + N(0, 0.1^2) where p has degree 5 and standard normal coefficients in the
Legendre basis; 1000 test points with the same noise (so the best possible test MSE is 0.01).
Each "draw" is one data seed (a new polynomial and new points).

Fit: for every degree d the minimum-norm least-squares solution ``w = pinv(F) y`` (``numpy.linalg.lstsq``
in float64) on the features F (n, d+1). Below the threshold (d+1 < n) this is ordinary least
squares, at d+1 = n the unique interpolant, beyond it the interpolant of smallest ||w||.
Which interpolant is "smallest" depends on how the features are scaled -- the prior:

- ``legendre`` (the main one): phi_k(x) = sqrt(2k+1) P_k(x) / (k+1). sqrt(2k+1) makes the columns
  orthonormal under x ~ U[-1, 1] (every column has the same RMS norm, 1, before the weight), and
  the weight 1/(k+1) turns min ||w|| into min sum_k (k+1)^2 c_k^2 over the Legendre coefficients
  c_k: a smoothness prior, so high degrees add little wiggle.
- ``legendre-flat``: phi_k = sqrt(2k+1) P_k, equal norms and no smoothness weight (flat prior).
- ``monomial``: phi_k = x^k, the naive basis: high powers are nearly collinear and vanish inside
  (-1, 1), so the min-norm interpolant puts huge weights on them.

Verdict poly-descent, one regime per feature scaling (``legendre`` is the lecture's): a spike at
d+1 = n (>= SPIKE_RATIO x the best low degree), the highest degree within RECOVERY_RATIO of the
best low degree and ORDERS_BELOW_SPIKE below the spike (medians over the draws). A steep step in a
high-degree interpolant between two close training points is the interpolation of their noise:
the features are well conditioned (condition number ~700 at d = 1000, seed 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.polynomial import legendre

from deepwell.config import DataSpec
from deepwell.data import prepare_data
from deepwell.studies.animations import polynomial_animation
from deepwell.studies.base import Regime, StudyOutput, Verdict, status_from, write_table
from deepwell.studies.evidence import regime_verdict
from deepwell.studies.figures import COLORS, legend_outside, new_figure, save_figure

__all__ = ["SOURCE", "N_TRAIN", "BASES", "REFERENCES", "feature_matrix", "min_norm_fit", "degree_sweep",
           "poly_descent_numbers", "poly_descent_verdict", "run"]

# --- thresholds: what "holds" means (named, so a reader can argue with them) ------------------
SPIKE_RATIO = 100.0            # test MSE at d+1 = n at least 100x the best low-degree MSE ...
RECOVERY_RATIO = 2.0           # ... the highest degree within 2x of it ...
ORDERS_BELOW_SPIKE = 100.0     # ... and the highest degree at least 100x (two orders of magnitude) below the spike
INTERPOLATION_MSE = 1e-8       # sanity check: at d+1 = n the fit must interpolate (train MSE below this)

N_TRAIN = 20
SOURCE = f"polynomial:n={N_TRAIN},degree=5,noise=0.1"
BASES: tuple[str, ...] = ("legendre", "legendre-flat", "monomial")
MAIN_BASIS = "legendre"
LOW_DEGREE_MAX = N_TRAIN // 2  # "low degree": d <= n/2, far below the threshold
CURVE_DEGREES = (5, N_TRAIN - 1, 1000)  # before, at and far after the threshold
REFERENCES: dict[int, float] = {5: 0.014, 1000: 0.033}  # the reference min-norm fits' test MSE at d=5 and d=1000 (d=19: huge)

QUICK_DEGREES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 17, 18, 19, 20, 21, 23, 26, 30, 40, 60, 100, 200, 400, 1000)
FULL_DEGREES = tuple(range(0, 41)) + (50, 60, 80, 100, 150, 200, 300, 400, 500, 700, 1000)


def feature_matrix(x: np.ndarray, degree: int, basis: str = MAIN_BASIS) -> np.ndarray:
    """Polynomial features of ``x`` (N,) up to ``degree``: an (N, degree+1) float64 matrix.

    Args:
        x: inputs in [-1, 1].
        degree: highest power / Legendre degree (>= 0).
        basis: ``legendre`` (sqrt(2k+1) P_k / (k+1)), ``legendre-flat`` (sqrt(2k+1) P_k) or ``monomial`` (x^k).

    Raises:
        ValueError: unknown basis (the message lists the known ones).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    k = np.arange(degree + 1, dtype=np.float64)
    if basis == "monomial":
        return np.vander(x, degree + 1, increasing=True)  # (N, d+1)
    if basis == "legendre":
        return legendre.legvander(x, degree) * (np.sqrt(2 * k + 1) / (k + 1))
    if basis == "legendre-flat":
        return legendre.legvander(x, degree) * np.sqrt(2 * k + 1)
    raise ValueError(f"Unknown polynomial basis '{basis}'. Known: {', '.join(BASES)}.")


def min_norm_fit(features: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The minimum-norm least-squares weights ``pinv(features) @ y`` (SVD-based ``lstsq``)."""
    return np.linalg.lstsq(features, np.asarray(y, dtype=np.float64).ravel(), rcond=None)[0]


def _draw(seed: int) -> tuple[np.ndarray, ...]:
    splits = prepare_data(DataSpec(source=SOURCE, val_fraction=0.0), seed)
    return tuple(t.numpy().astype(np.float64).ravel() for t in (splits.x_train, splits.y_train, splits.x_test, splits.y_test))


def degree_sweep(degrees: tuple[int, ...], draws: int, seed: int, bases: tuple[str, ...] = BASES) -> list[dict[str, Any]]:
    """Train and test MSE of the min-norm fit for every (draw, basis, degree); draw i uses data seed ``seed + i``."""
    rows = []
    for draw in range(draws):
        x_train, y_train, x_test, y_test = _draw(seed + draw)
        for basis in bases:
            full_train, full_test = feature_matrix(x_train, max(degrees), basis), feature_matrix(x_test, max(degrees), basis)
            for degree in degrees:  # features of degree d are the first d+1 columns of the largest matrix
                weights = min_norm_fit(full_train[:, :degree + 1], y_train)
                rows.append({"draw": draw, "seed": seed + draw, "basis": basis, "degree": degree,
                             "train_mse": float(np.mean((full_train[:, :degree + 1] @ weights - y_train) ** 2)),
                             "test_mse": float(np.mean((full_test[:, :degree + 1] @ weights - y_test) ** 2))})
    return rows


def median_curve(rows: list[dict[str, Any]], basis: str, key: str = "test_mse") -> dict[int, float]:
    """Median of ``key`` over the draws, per degree, for one basis."""
    degrees = sorted({row["degree"] for row in rows if row["basis"] == basis})
    return {d: float(np.median([r[key] for r in rows if r["basis"] == basis and r["degree"] == d])) for d in degrees}


def poly_descent_numbers(rows: list[dict[str, Any]], basis: str = MAIN_BASIS) -> dict[str, float]:
    """The numbers the verdict is computed from (medians over draws)."""
    test, train = median_curve(rows, basis), median_curve(rows, basis, "train_mse")
    low = {d: v for d, v in test.items() if d <= LOW_DEGREE_MAX}
    best_degree = min(low, key=low.get)
    high_degree = max(test)
    threshold = N_TRAIN - 1
    return {"best_low_degree": float(best_degree), "best_low_mse": low[best_degree],
            "threshold_degree": float(threshold), "threshold_mse": test[threshold], "threshold_train_mse": train[threshold],
            "high_degree": float(high_degree), "high_mse": test[high_degree],
            "spike_ratio": test[threshold] / low[best_degree], "recovery_ratio": test[high_degree] / low[best_degree]}


RULE = (f"per feature scaling, medians over draws: the test MSE at d+1 = n at least {SPIKE_RATIO:g}x the best low degree's "
        f"(d <= n/2), the highest degree within {RECOVERY_RATIO:g}x of the best low degree and at least "
        f"{ORDERS_BELOW_SPIKE:g}x below the spike; the fit at d+1 = n must interpolate. The lecture's regime: scaled "
        "Legendre features (a smoothness prior); flat Legendre and monomials show where it fails.")


def poly_descent_regime(numbers: dict[str, float], basis: str = MAIN_BASIS) -> Regime:
    """One feature scaling's status (see RULE)."""
    verdict = poly_descent_verdict(numbers, basis)
    return Regime(f"{basis} features", verdict.status, verdict.evidence, numbers, lecture=basis == MAIN_BASIS)


def poly_descent_verdict(numbers: dict[str, float], basis: str = MAIN_BASIS) -> Verdict:
    """poly-descent: spike at d+1 = n, the highest degree back near the best low-degree error."""
    usable = numbers["threshold_train_mse"] <= INTERPOLATION_MSE
    spike = numbers["spike_ratio"] >= SPIKE_RATIO
    recovered = numbers["recovery_ratio"] <= RECOVERY_RATIO and numbers["threshold_mse"] >= ORDERS_BELOW_SPIKE * numbers["high_mse"]
    evidence = (f"Median test MSE ({basis} features, min-norm): {numbers['best_low_mse']:.3g} at the best low degree "
                f"d={numbers['best_low_degree']:.0f}, {numbers['threshold_mse']:.3g} at d+1=n={N_TRAIN} "
                f"({numbers['spike_ratio']:.3g}x; needs >= {SPIKE_RATIO:g}x), {numbers['high_mse']:.3g} at "
                f"d={numbers['high_degree']:.0f} ({numbers['recovery_ratio']:.2g}x the best; needs <= {RECOVERY_RATIO:g}x).")
    evidence += f" The highest degree is {numbers['threshold_mse'] / numbers['high_mse']:.3g}x below the spike (needs >= {ORDERS_BELOW_SPIKE:g}x)."
    failed = [name for name, ok in (("no spike at the threshold", spike), ("high degree not back", recovered)) if not ok]
    if failed:
        evidence += f" Failed: {', '.join(failed)}."
    if not usable:
        evidence += f" The d+1=n fit did not interpolate (train MSE {numbers['threshold_train_mse']:.2g}), so the sweep is broken."
    return Verdict("poly-descent", "Polynomial fits underfit, blow up at d+1 = n and are smooth again far beyond n (min-norm).",
                   status_from(spike and recovered, usable), evidence, numbers)


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    degrees, draws = (QUICK_DEGREES, 9) if quick else (FULL_DEGREES, 50)
    rows = degree_sweep(degrees, draws, seed)
    verdict = regime_verdict("poly-descent", "Polynomial fits underfit, blow up at d+1 = n and are smooth again far beyond n "
                             "(min-norm).", RULE, [poly_descent_regime(poly_descent_numbers(rows, b), b) for b in BASES],
                             figure="polynomial_sweep.png")
    write_table(folder / "polynomial_sweep.csv", rows, ["draw", "seed", "basis", "degree", "train_mse", "test_mse"])
    medians = median_curve(rows, MAIN_BASIS)
    write_table(folder / "polynomial_references.csv",
                [{"degree": d, "measured_median": medians[d], "measured_draw0": _draw0(rows, d), "reference": ref}
                 for d, ref in REFERENCES.items()], ["degree", "measured_median", "measured_draw0", "reference"])
    figures = [
        (_curves_figure(folder, seed), f"Min-norm fits to n={N_TRAIN} noisy points (data seed {seed}) before (d=5), at "
         f"(d+1=n) and far beyond (d=1000) the interpolation threshold; top: scaled Legendre features "
         f"sqrt(2k+1) P_k/(k+1), bottom: monomials x^k. Grey: 1000 noisy test points. The steep step of the d=1000 fit "
         f"where two training points lie close together (seed 0: x=0.4590 and 0.4593) is the interpolation of their "
         f"different noise, not a solver artefact (the feature matrix's condition number is ~700)."),
        (_sweep_figure(folder, rows), f"Test MSE vs degree (log scale), median over {draws} draws (band: min-max) for each "
         f"feature scaling; dashed: d+1=n; stars: the reference run's numbers (one draw of the same setup, data seed 0: "
         f"compare them with the thin draw-0 line). Noise floor 0.01."),
    ]
    tables = [("polynomial_sweep.csv", "Train and test MSE per draw, feature basis and degree (tidy)."),
              ("polynomial_references.csv", "Measured test MSE (median over draws, and draw 0: the reference's own setup) "
               "vs the reference run.")]
    figures.append(polynomial_animation(folder, rows, seed))  # GIF: the fit as the degree grows
    return StudyOutput([verdict], figures, tables)


def _draw0(rows: list[dict[str, Any]], degree: int) -> float:
    return next(r["test_mse"] for r in rows if r["draw"] == 0 and r["basis"] == MAIN_BASIS and r["degree"] == degree)


def _curves_figure(folder: Path, seed: int) -> str:
    x_train, y_train, x_test, y_test = _draw(seed)
    grid = np.linspace(-1, 1, 801)
    low, high = y_test.min(), y_test.max()
    margin = 0.5 * (high - low)
    figure, axes = new_figure(13, 7, 2, len(CURVE_DEGREES), sharex=True)
    for row, basis in enumerate((MAIN_BASIS, "monomial")):
        for col, degree in enumerate(CURVE_DEGREES):
            ax = axes[row][col]
            weights = min_norm_fit(feature_matrix(x_train, degree, basis), y_train)
            test_mse = float(np.mean((feature_matrix(x_test, degree, basis) @ weights - y_test) ** 2))
            ax.scatter(x_test, y_test, s=3, color="0.75", label="test points")
            ax.plot(grid, feature_matrix(grid, degree, basis) @ weights, color=COLORS[row], linewidth=1.5, label="min-norm fit")
            ax.scatter(x_train, y_train, s=22, color="black", zorder=3, label=f"{N_TRAIN} training points")
            ax.set_ylim(low - margin, high + margin)
            ax.set_title(f"{basis}, d={degree} (d+1{'<' if degree + 1 < N_TRAIN else '=' if degree + 1 == N_TRAIN else '>'}n): "
                         f"test MSE {test_mse:.3g}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("x")
    axes[0][0].legend(fontsize=8, loc="best")
    figure.suptitle("Polynomial fits before, at and beyond the interpolation threshold (y clipped to the data range)")
    save_figure(figure, folder / "polynomial_fits.png")
    return "polynomial_fits.png"


def _sweep_figure(folder: Path, rows: list[dict[str, Any]]) -> str:
    figure, axes = new_figure(9, 5.2)
    ax = axes[0][0]
    for index, basis in enumerate(BASES):
        medians = median_curve(rows, basis)
        degrees = np.array(sorted(medians))
        values = np.array([[r["test_mse"] for r in rows if r["basis"] == basis and r["degree"] == d] for d in degrees])
        ax.plot(degrees + 1, [medians[d] for d in degrees], marker=".", color=COLORS[index], label=f"{basis} (median)")
        ax.fill_between(degrees + 1, values.min(1), values.max(1), color=COLORS[index], alpha=0.12)
    draw0 = sorted((r["degree"], r["test_mse"]) for r in rows if r["basis"] == MAIN_BASIS and r["draw"] == 0)
    ax.plot([d + 1 for d, _ in draw0], [v for _, v in draw0], color=COLORS[0], linewidth=0.8, linestyle="--",
            label=f"{MAIN_BASIS}, draw 0 alone")
    ax.scatter([d + 1 for d in REFERENCES], list(REFERENCES.values()), marker="*", s=140, color="black", zorder=4,
               label="reference run (same setup, one draw: compare with draw 0)")
    ax.axvline(N_TRAIN, color="black", linestyle="--", linewidth=1, label="d+1 = n")
    ax.axhline(0.01, color="0.5", linestyle=":", linewidth=1, label="noise floor 0.01")
    ax.set(xscale="log", yscale="log", xlabel="number of features d+1 (log)", ylabel="test MSE (log)",
           title=f"Polynomial double descent, n={N_TRAIN}, min-norm least squares")
    ax.set_ylim(bottom=1e-3)
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax, fontsize=8)
    save_figure(figure, folder / "polynomial_sweep.png")
    return "polynomial_sweep.png"
