"""Animations where the lecture animates, written as GIF by matplotlib's Pillow writer (no ffmpeg needed).

- :func:`polynomial_animation`: the min-norm fit over the points as the degree grows, beside the test-error
  curve with a moving marker -- through the blow-up at d + 1 = n and back.
- :func:`model_wise_animation`: the model-wise double-descent curve drawn width by width.
- :func:`epoch_wise_animation`: test and training error drawn epoch by epoch.
- :func:`trajectory_animation`: the training path moving over the loss on its PCA plane.

Each takes the records its study already computed (no training here), writes ``<folder>/<name>.gif``
atomically and returns ``(file name, caption)`` -- an entry of the study's figures, so the study
report, the tour's report.html and a notebook show it like any other figure (as a GIF data URI).

Frames are drawn on one Agg figure (no pyplot); the last frame is held (Pillow merges the repeated
frames into one longer frame). Example::

    figures.append(polynomial_animation(folder, rows, seed))      # at the end of polynomial.run
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.animation import PillowWriter

from deepwell.studies.figures import COLORS, new_figure

__all__ = ["save_gif", "polynomial_animation", "double_descent_animations", "model_wise_animation", "epoch_wise_animation",
           "trajectory_animation",
           "FPS", "HOLD", "DPI", "MAX_FRAMES"]

FPS = 4          # frames per second
HOLD = 4         # the last frame is shown this many frame-times (1 s) before the loop restarts
DPI = 72         # GIFs are embedded in reports and notebooks: keep them a few hundred kB
MAX_FRAMES = 40  # longer sequences are subsampled evenly (first and last kept)


def _picked(count: int) -> list[int]:
    """Indices of at most MAX_FRAMES evenly spaced frames out of ``count``, first and last included."""
    if count <= MAX_FRAMES:
        return list(range(count))
    return sorted({round(i * (count - 1) / (MAX_FRAMES - 1)) for i in range(MAX_FRAMES)})


def save_gif(figure: Any, draw: Callable[[int], None], frames: int, path: Path) -> Path:
    """Call ``draw(i)`` for each frame and write the GIF via a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.gif")
    os.close(fd)
    try:
        writer = PillowWriter(fps=FPS)
        figure.set_dpi(DPI)  # grab_frame saves at DPI: a figure at another dpi would be re-laid out twice a frame
        with writer.saving(figure, tmp, DPI):
            for index in range(frames):
                draw(index)
                writer.grab_frame()
                # The first frame fixed the layout; re-solving it every frame would double each frame's cost.
                figure.set_layout_engine("none")
            for _ in range(HOLD - 1):
                writer.grab_frame()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- polynomial fits ------------------------------------------------------------------------------
def polynomial_animation(folder: Path, rows: Sequence[Mapping[str, Any]], seed: int) -> tuple[str, str]:
    """The fit of each degree of the sweep (data seed ``seed``) beside the median test-error curve of ``rows``.

    Args:
        rows: the polynomial study's tidy rows (draw, basis, degree, test_mse); the scaled Legendre basis is shown.
    """
    from deepwell.config import DataSpec
    from deepwell.data import prepare_data
    from deepwell.studies import polynomial

    splits = prepare_data(DataSpec(source=polynomial.SOURCE, val_fraction=0.0), seed)
    x, y, x_test, y_test = (t.numpy().astype(np.float64).ravel() for t in (splits.x_train, splits.y_train, splits.x_test,
                                                                           splits.y_test))
    curve = polynomial.median_curve(list(rows), polynomial.MAIN_BASIS)
    every = sorted(curve)
    degrees = [every[i] for i in _picked(len(every))]
    grid = np.linspace(-1, 1, 401)
    full_train = polynomial.feature_matrix(x, max(degrees))
    full_grid, full_test = polynomial.feature_matrix(grid, max(degrees)), polynomial.feature_matrix(x_test, max(degrees))
    fits = []
    for degree in degrees:
        weights = polynomial.min_norm_fit(full_train[:, :degree + 1], y)
        fits.append((full_grid[:, :degree + 1] @ weights, float(np.mean((full_test[:, :degree + 1] @ weights - y_test) ** 2))))
    low, high = y_test.min(), y_test.max()
    margin = 0.5 * (high - low)
    n = polynomial.N_TRAIN
    figure, axes = new_figure(9.5, 3.6, 1, 2)
    left, right = axes[0]
    right.plot([d + 1 for d in curve], list(curve.values()), color="0.6", marker=".", label="median test MSE")
    right.axvline(n, color="black", linestyle="--", linewidth=1, label="d+1 = n")
    right.set(xscale="log", yscale="log", xlabel="number of features d+1 (log)", ylabel="test MSE (log)")
    right.minorticks_off()  # every frame redraws the axes: dozens of minor ticks would cost more than the curves
    right.grid(alpha=0.3)
    marker, = right.plot([], [], marker="o", markersize=11, color=COLORS[1], linestyle="none", label="this degree")
    right.legend(fontsize=7, loc="upper right")
    left.scatter(x_test, y_test, s=2, color="0.75")
    left.scatter(x, y, s=18, color="black", zorder=3)
    line, = left.plot([], [], color=COLORS[0], linewidth=1.8)
    left.set(xlim=(-1, 1), ylim=(low - margin, high + margin), xlabel="x", ylabel="y")
    left.grid(alpha=0.3)

    def draw(index: int) -> None:
        degree, (values, mse) = degrees[index], fits[index]
        line.set_data(grid, values)
        marker.set_data([degree + 1], [curve[degree]])
        side = "<" if degree + 1 < n else "=" if degree + 1 == n else ">"
        left.set_title(f"min-norm fit, degree d={degree} (d+1 {side} n={n}); test MSE {mse:.3g}", fontsize=9)
        right.set_title(f"test error vs degree (median of draws): {curve[degree]:.3g}", fontsize=9)

    save_gif(figure, draw, len(degrees), folder / "polynomial_fits.gif")
    return "polynomial_fits.gif", (f"Animation: the min-norm fit (scaled Legendre features, data seed {seed}) as the degree "
                                   f"grows, beside the test error with a moving marker: underfit, the blow-up at d+1=n={n}, "
                                   "and smooth again far beyond.")


# --- double descent -------------------------------------------------------------------------------
def model_wise_animation(folder: Path, rows: Sequence[Mapping[str, Any]], n_train: int) -> tuple[str, str]:
    """The model-wise curve (summary rows sorted by width: width, params, test/train_error_mean) drawn width by width."""
    rows = sorted(rows, key=lambda row: row["params"])
    params = [row["params"] for row in rows]
    test, train = [row["test_error_mean"] for row in rows], [row["train_error_mean"] for row in rows]
    figure, axes = new_figure(6.4, 4.0)
    ax = axes[0][0]
    ax.set(xscale="log", xlim=(min(params) / 1.5, max(params) * 1.5), ylim=(-0.02, max(0.9, max(test) + 0.05)),
           xlabel="parameters (log)", ylabel="error")
    ax.axvline(n_train, color="black", linestyle=":", label=f"params = n ({n_train})")
    test_line, = ax.plot([], [], marker="o", markersize=4, color=COLORS[0], label="test")
    train_line, = ax.plot([], [], marker="o", markersize=3, linestyle="--", color=COLORS[0], alpha=0.7,
                          label="train (noisy labels)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")

    def draw(index: int) -> None:
        test_line.set_data(params[:index + 1], test[:index + 1])
        train_line.set_data(params[:index + 1], train[:index + 1])
        ax.set_title(f"Model-wise double descent: width h={rows[index]['width']}, {params[index]:,} parameters, "
                     f"test error {test[index]:.1%}", fontsize=9)

    save_gif(figure, draw, len(rows), folder / "double_descent_model_wise.gif")
    return "double_descent_model_wise.gif", ("Animation: the model-wise double-descent curve drawn width by width (mean over "
                                             "seeds); test error rises towards params = n and falls again beyond it.")


def double_descent_animations(folder: Path, rows: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]],
                              n_train: int) -> list[tuple[str, str]]:
    """Both double-descent animations from the study's summary rows (one noise mode) and its run records.

    The epoch-wise one follows the largest model and the one nearest params = n (curves averaged over seeds).
    """
    rows = sorted(rows, key=lambda row: row["params"])
    largest, near = rows[-1], min(rows, key=lambda row: abs(math.log(row["params"] / n_train)))
    curves = {}
    for row in (largest, near):
        runs = [r for r in records if r.get("experiment") == "model_wise" and r["width"] == row["width"]
                and r.get("mode", "uniform") == row.get("mode", "uniform")]
        points = zip(*(r["curve"] for r in runs))
        curves[f"h={row['width']}"] = [{"epoch": group[0]["epoch"], **{key: sum(p[key] for p in group) / len(group)
                                                                       for key in ("test_error", "train_error")}}
                                       for group in points]
    return [model_wise_animation(folder, rows, n_train), epoch_wise_animation(folder, curves)]


def epoch_wise_animation(folder: Path, curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[str, str]:
    """Test and train error during training, drawn epoch by epoch, one colour per model.

    Args:
        curves: label -> the run's curve points (epoch, train_error, test_error), all at the same epochs.
    """
    labels = list(curves)
    epochs = [point["epoch"] for point in curves[labels[0]]]
    frames = _picked(len(epochs))
    figure, axes = new_figure(6.4, 4.0)
    ax = axes[0][0]
    ax.set(xscale="log", xlim=(max(min(epochs), 1) / 1.2, max(epochs) * 1.2), ylim=(-0.02, 0.9), xlabel="epoch (log)",
           ylabel="error")
    lines = []
    for color, label in zip(COLORS[2:], labels):
        lines.append((ax.plot([], [], color=color, label=f"test, {label}")[0],
                      ax.plot([], [], color=color, linestyle="--", label=f"train, {label}")[0], curves[label]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")

    def draw(index: int) -> None:
        end = frames[index] + 1
        for test_line, train_line, points in lines:
            test_line.set_data(epochs[:end], [p["test_error"] for p in points[:end]])
            train_line.set_data(epochs[:end], [p["train_error"] for p in points[:end]])
        ax.set_title(f"Epoch-wise: error during training, epoch {epochs[end - 1]}", fontsize=9)

    save_gif(figure, draw, len(frames), folder / "double_descent_epoch_wise.gif")
    return "double_descent_epoch_wise.gif", "Animation: test (solid) and training (dashed) error during training, epoch by epoch."


# --- loss landscape -------------------------------------------------------------------------------
def trajectory_animation(folder: Path, planes: Mapping[str, tuple[Any, Any, Any, Any]], clip: float = 10.0) -> tuple[str, str]:
    """The optimisation path moving over the loss on its PCA plane, one panel per model.

    Args:
        planes: model name -> (a (A,), b (B,), loss on the plane (A, B), path coordinates (T, 2)), tensors or arrays.
        clip: the loss is shown as log10 of min(loss, clip).
    """
    names = list(planes)
    data = {name: tuple(np.asarray(part, dtype=np.float64) for part in planes[name]) for name in names}
    steps = min(len(data[name][3]) for name in names)
    figure, axes = new_figure(4.6 * len(names), 4.0, 1, len(names))
    artists = []
    for ax, name in zip(axes[0], names):
        a, b, surface, path = data[name]
        levels = np.log10(np.minimum(surface, clip)).T
        # An image, not contourf: redrawn every frame, thirty filled contour paths per panel would dominate the cost.
        ax.imshow(levels, extent=(a[0], a[-1], b[0], b[-1]), origin="lower", aspect="auto", cmap="viridis",
                  interpolation="bilinear")
        ax.contour(a, b, levels, levels=12, colors="white", linewidths=0.4)
        ax.plot(0, 0, marker="*", color="red", markersize=12)
        trail, = ax.plot([], [], color="red", linewidth=1.2)
        dot, = ax.plot([], [], marker="o", color="orange", markeredgecolor="black", markersize=9)
        ax.set(xlabel="1st PCA direction", ylabel="2nd PCA direction")
        artists.append((ax, name, trail, dot, path))

    def draw(index: int) -> None:
        for ax, name, trail, dot, path in artists:
            trail.set_data(path[:index + 1, 0], path[:index + 1, 1])
            dot.set_data([path[index, 0]], [path[index, 1]])
            ax.set_title(f"{name}: weights after epoch {index} of {steps - 1}", fontsize=9)

    save_gif(figure, draw, steps, folder / "landscape_trajectory.gif")
    return "landscape_trajectory.gif", ("Animation: the weights after each epoch (orange) moving over the training loss "
                                        "(log10) on the path's own PCA plane, towards the final weights (red star).")
