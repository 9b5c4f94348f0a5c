"""The double-descent study's figures and table (split from :mod:`deepwell.studies.double_descent` to keep files short).

``main_figure``: the model-wise, epoch-wise and sample-wise panels; ``cnn_figure``: the notebook's CNN
sweep (full mode); ``write_tables``: summaries, learning curves and the reference comparison as one tidy CSV.

Example::

    main_figure(folder, QUICK, summary, model_records + epoch_records, samples, verdicts, references=[])
"""

from __future__ import annotations

import math
from pathlib import Path

from deepwell.studies.base import Verdict, write_table
from deepwell.studies.double_descent_settings import (
    EPOCH_NOISE,
    INTERPOLATED,
    LABEL_NOISE,
    NOISE_MODES,
    Settings,
    mlp_params,
    smooth,
)
from deepwell.studies.evidence import mean_se
from deepwell.studies.figures import COLORS, new_figure, save_figure

__all__ = ["main_figure", "cnn_figure", "write_tables"]

def cnn_figure(folder: Path, rows: list[dict], settings: Settings) -> str:
    figure, axes = new_figure(6.5, 4.4)
    ax = axes[0][0]
    params = [r["params"] for r in rows]
    ax.plot(params, [r["test_error_mean"] for r in rows], marker="o", ms=3, color=COLORS[0], label="test")
    ax.plot(params, [r["train_error_mean"] for r in rows], marker="o", ms=3, linestyle="--", color=COLORS[0],
            label="train (noisy labels)")
    ax.axvline(settings.n_train, color="black", linestyle=":", label=f"params = n ({settings.n_train})")
    for row in rows:
        ax.annotate(f"c={row['width']}", (row["params"], row["test_error_mean"]), fontsize=6, xytext=(2, 4),
                    textcoords="offset points")
    ax.set(xscale="log", xlabel="parameters (log)", ylabel="error", ylim=(-0.02, 0.9),
           title="Model-wise double descent, CNN (channels c)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(figure, folder / "double_descent_cnn.png")
    return "double_descent_cnn.png"


def write_tables(folder: Path, records: list[dict], summary: dict, samples: list[dict], references: list[dict]) -> tuple[str, str]:
    rows = [{"table": "summary", "experiment": "cnn_model_wise" if mode == "cnn" else "model_wise",
             "mode": "uniform" if mode == "cnn" else mode, **row} for mode, part in summary.items() for row in part]
    rows += [{"table": "summary", "experiment": "sample_wise", "mode": "uniform", **row} for row in samples]
    rows += [{"table": "curve", "experiment": r["experiment"], "mode": r["mode"], "width": r["width"], "params": r["params"],
              "n_train": r["n_train"], "seed": r["seed"], **point} for r in records for point in r["curve"]]
    rows += [{"table": "reference", **row} for row in references]
    columns = ["table", "experiment", "mode", "width", "params", "n_train", "seed", "epoch", "n", "test_error_mean",
               "test_error_std", "train_error_mean", "train_error_std", "train_error", "test_error", "train_loss", "test_loss",
               "landmark", "reference", "reference_width", "measured", "difference", "within_tolerance"]
    write_table(folder / "double_descent.csv", rows, columns)
    return "double_descent.csv", "Summaries (mean/std over seeds), learning curves per run, and the reference comparison."


def _epoch_wise_inset(ax, runs: list[dict], marks: dict) -> None:
    """The epoch-wise run's test error zoomed in (a bump of 2 points is flat on the 0..0.9 axis): mean +- s.e. over
    seeds, and the landmarks (first minimum, peak, final) of the smoothed mean curve that the verdict reads."""
    epochs = [p["epoch"] for p in runs[0]["curve"]]
    curves = [smooth([p["test_error"] for p in r["curve"]]) for r in runs]   # each run's curve as the verdict reads it
    mean, se = zip(*(mean_se([curve[i] for curve in curves]) for i in range(len(epochs))))
    start = next((i for i, e in enumerate(epochs) if e >= marks["first_min_epoch"] / 2), 0)  # from before the first minimum
    inset = ax.inset_axes((0.07, 0.05, 0.36, 0.28))  # the empty corner: few epochs, low error
    color = COLORS[4]
    inset.plot(epochs[start:], mean[start:], color=color, lw=1)
    inset.fill_between(epochs[start:], [m - e for m, e in zip(mean, se)][start:], [m + e for m, e in zip(mean, se)][start:],
                       color=color, alpha=0.25, lw=0)
    keys = ("first_min", "peak", "final")
    inset.plot([marks[f"{k}_epoch"] for k in keys], [marks[f"{k}_error"] for k in keys], marker="v", color="black", ms=5,
               linestyle="none")
    inset.set_title(f"h={marks['width']:g}, n={marks['n_train']:g}: test (smoothed) ± s.e., {len(runs)} seeds",
                    fontsize=6, pad=2)
    inset.tick_params(labelsize=6)
    inset.grid(alpha=0.3)


def main_figure(folder: Path, settings: Settings, summary: dict, records: list[dict], samples: list[dict],
            verdicts: list[Verdict], references: list[dict]) -> str:
    figure, axes = new_figure(15, 4.6, 1, 3)
    ax = axes[0][0]
    for color, mode in zip(COLORS, NOISE_MODES):
        rows = summary[mode]
        params = [r["params"] for r in rows]
        test = [r["test_error_mean"] for r in rows]
        spread = [r["test_error_std"] for r in rows]
        ax.plot(params, test, marker="o", ms=3, color=color, label=f"test, label noise '{mode}'")
        ax.fill_between(params, [t - s for t, s in zip(test, spread)], [t + s for t, s in zip(test, spread)], color=color, alpha=0.2)
        ax.plot(params, [r["train_error_mean"] for r in rows], linestyle="--", color=color,
                label=f"train, label noise '{mode}'")
    numbers = verdicts[0].regimes[0].numbers if verdicts[0].regimes else verdicts[0].numbers
    ax.axvline(settings.n_train, color="black", linestyle=":", label=f"params = n ({settings.n_train})")
    if math.isfinite(numbers["interpolation_width"]):
        ax.axvline(mlp_params(int(numbers["interpolation_width"])), color="gray", linestyle="-.",
                   label=f"train error ≤ {INTERPOLATED:.1%} (h={numbers['interpolation_width']:g})")
    ax.plot([numbers["peak_params"]], [numbers["peak_error"]], marker="v", color="black", ms=9, linestyle="none", label="peak")
    if references:
        ax.plot([mlp_params(r["reference_width"]) for r in references], [r["reference"] for r in references], marker="x", color="black",
                ms=9, mew=2, linestyle="none", label="MNIST-1D notebook")
    ax.set(xscale="log", xlabel="parameters (log)", ylabel="error", title="Model-wise: error vs model size", ylim=(-0.02, 0.9))
    ax.grid(alpha=0.3)
    # in two columns above the curves (test error stays under ~0.7), under the top where the vertical markers end: at "best"
    # (lower left) the train curves ran under it once the other panels' legends and labels had resized this one
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 0.975), ncols=2)

    ax = axes[0][1]
    largest, near = settings.widths[-1], min(settings.widths, key=lambda w: abs(mlp_params(w) - settings.n_train))
    curves = [("model_wise", largest, f"{LABEL_NOISE:.0%}"), ("model_wise", near, f"{LABEL_NOISE:.0%}")]
    if settings.epoch_width:
        curves.append(("epoch_wise", settings.epoch_width, f"{EPOCH_NOISE:.0%}, lr {settings.epoch_lr:g}"))
    for color, (experiment, width, noise) in zip(COLORS[2:], curves):
        runs = [r for r in records if r["experiment"] == experiment and r["mode"] == "uniform" and r["width"] == width]
        epochs = [p["epoch"] for p in runs[0]["curve"]]
        mean = lambda key: [sum(r["curve"][i][key] for r in runs) / len(runs) for i in range(len(epochs))]  # noqa: E731
        ax.plot(epochs, mean("test_error"), color=color, label=f"test, h={width}, n={runs[0]['n_train']}, noise {noise}")
        ax.plot(epochs, mean("train_error"), color=color, linestyle="--", label=f"train, h={width}")
    epoch_wise = [r for r in (verdicts[0].regimes if verdicts else ()) if r.name.startswith("epoch-wise")]
    if epoch_wise:
        _epoch_wise_inset(ax, [r for r in records if r["experiment"] == "epoch_wise"], epoch_wise[0].numbers)
    ax.set(xscale="log", xlabel="epoch (log)", ylabel="error", title="Epoch-wise: error during training (label noise 'uniform')",
           ylim=(-0.02, 0.9))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

    ax = axes[0][2]
    sizes = [r["n_train"] for r in samples]
    test = [r["test_error_mean"] for r in samples]
    ax.errorbar(sizes, test, yerr=[r["test_error_std"] for r in samples], marker="o", color=COLORS[0], label="test", capsize=3)
    ax.plot(sizes, [r["train_error_mean"] for r in samples], marker="o", linestyle="--", color=COLORS[0], label="train (noisy labels)")
    params = mlp_params(settings.sample_width)
    inside = min(sizes) <= params <= max(sizes)
    if inside:   # a marker outside the data would stretch the axis and mark nothing
        ax.axvline(params, color="black", linestyle=":", label=f"n = params ({params})")
    fitted = [r["n_train"] for r in samples if r["train_error_mean"] <= INTERPOLATED]
    if fitted and fitted[-1] < sizes[-1]:  # the interpolation threshold in n lies inside the sizes measured
        ax.axvline(fitted[-1], color="gray", linestyle="-.",
                   label=f"train error ≤ {INTERPOLATED:.1%} up to n={fitted[-1]}")
    ax.set(xlabel="training examples n" + ("" if inside else f" (n = params = {params} lies beyond)"), ylabel="error",
           ylim=(-0.02, 0.9),
           title=f"Sample-wise: fixed width h={settings.sample_width}")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()   # matplotlib lists the errorbar (test) last: put it first
    order = sorted(range(len(labels)), key=lambda i: labels[i] != "test")
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7)
    save_figure(figure, folder / "double_descent.png")
    return "double_descent.png"
