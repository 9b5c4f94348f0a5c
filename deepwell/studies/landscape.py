"""Study ``landscape``: the loss is a non-convex function of all the weights (lecture: loss
landscape, Figure 3, after Li, Xu, Taylor, Studer and Goldstein, NeurIPS 2018).

Setup: deep MLPs on the three-class ``spirals`` data (standardised, all 800 training points, no
validation split), 10 hidden layers with BatchNorm, ReLU, He init -- one plain and one with skip
connections (``residual=True``) -- each trained from two seeds (AdamW, one-cycle schedule).
Everything is measured on the training loss, in eval mode (BatchNorm uses its running statistics).

Measurements (deepwell.diagnostics.landscape):
1. 1-D interpolation (1 - a) theta_0 + a theta_1 from the initial to the trained weights, and between
   the two minima of different seeds; the barrier is max loss on the path minus the larger endpoint.
2. 1-D and 2-D slices theta* + a dx + b dy along Gaussian, filter-normalised directions (bias and
   BatchNorm directions zero), a, b in [-1, 1] (21 x 21 grid in quick mode, 51 x 51 in full mode).
3. Non-convexity of the 2-D slice: the fraction of interior grid points whose central-difference
   Hessian has lambda_min < 0 with |lambda_min / lambda_max| > 5% (Li et al.'s ratio maps).
4. The optimisation trajectory (Li et al., section 7): the weights after every epoch, projected on
   the path's two principal directions (PCA of theta_t - theta_final), drawn over the loss on that
   plane -- random directions would miss the path, which lies in a tiny subspace.

The directions and the centre weights are saved (``landscape_directions_<model>.safetensors``,
keys ``center/<name>``, ``buffer/<name>``, ``x/<name>``, ``y/<name>``, and the trajectory's
``pca_x/<name>``, ``pca_y/<name>`` and ``path`` coordinates) so every figure can be redrawn.

Verdict nonconvex: a barrier on the path between two minima, or a non-convex 2-D slice (measured).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.diagnostics.landscape import (NONCONVEX_RATIO, WeightSnapshots, interpolate, nonconvexity, path_barrier,
                                            random_direction, slice_1d, slice_2d, trajectory_pca)
from deepwell.models import build_model
from deepwell.runtime import resolve_device
from deepwell.studies.animations import trajectory_animation
from deepwell.studies.base import StudyOutput, Verdict, status_from, write_table
from deepwell.studies.figures import COLORS, new_figure, save_figure
from deepwell.training.checkpoint import save_tensors
from deepwell.training.loop import TensorData, fit

__all__ = ["MODELS", "train_pair", "measure_landscape", "nonconvex_verdict", "run"]

# --- thresholds: what "holds" means (named, so a reader can argue with them) ------------------
BARRIER_MIN = 0.05              # a barrier of at least 0.05 nats (cross-entropy) above both endpoints ...
NONCONVEX_FRACTION_MIN = 0.05   # ... or at least 5% of the 2-D slice non-convex (|lmin/lmax| > NONCONVEX_RATIO)
TRAINED_FRACTION = 0.5          # sanity check: every trained model below half the chance loss ln(classes)
SURFACE_CLIP = 10.0             # the 3-D surfaces show log10 of the loss clipped here (Li et al. clip too)

MODELS: dict[str, bool] = {"plain": False, "residual": True}   # name -> residual
SOURCE, DEPTH = "spirals", 10


def _loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target)


def train_pair(residual: bool, width: int, epochs: int, seed: int, device: torch.device) -> dict[str, Any]:
    """Train one architecture from seeds ``seed`` and ``seed + 1``; return the models, the seed's initial weights and the data."""
    splits = prepare_data(DataSpec(source=SOURCE, val_fraction=0.0, preprocess="standardize"), seed)
    x, y = splits.x_train.to(device), splits.y_train.to(device)
    spec = ModelSpec(arch="mlp", depth=DEPTH, width=width, residual=residual)
    models, initial, snapshots = [], None, WeightSnapshots()
    for run_seed in (seed, seed + 1):
        model = build_model(spec, splits.input_shape, splits.output_size,
                            generator=torch.Generator().manual_seed(run_seed)).to(device)
        if initial is None:
            initial = copy.deepcopy(model)
        fit(model, TensorData(x, y), TrainSpec(epochs=epochs, batch_size=64, lr=3e-3), seed=run_seed,
            callbacks=[snapshots] if run_seed == seed else [])
        models.append(model.eval())
    return {"models": models, "initial": initial.eval(), "x": x, "y": y, "num_classes": splits.num_classes,
            "spec": str(spec), "snapshots": snapshots.snapshots}


def measure_landscape(pair: dict[str, Any], points: int, path_points: int, seed: int) -> dict[str, Any]:
    """Paths, 1-D and 2-D slices and the non-convexity of the slice for one trained pair."""
    model, other, x, y = pair["models"][0], pair["models"][1], pair["x"], pair["y"]
    generator = torch.Generator().manual_seed(seed)
    dx, dy = random_direction(model, generator), random_direction(model, generator)
    path_alphas, grid = torch.linspace(0, 1, path_points), torch.linspace(-1, 1, points)
    init_path = interpolate(pair["initial"], model, x, y, _loss, path_alphas)
    seeds_path = interpolate(model, other, x, y, _loss, path_alphas)
    line = slice_1d(model, dx, x, y, _loss, grid)
    surface = slice_2d(model, dx, dy, x, y, _loss, grid, grid)
    shape = nonconvexity(surface, grid, grid)
    path = trajectory_pca(pair["snapshots"])
    low, high = path.coords.min(0).values, path.coords.max(0).values
    margin = (high - low).clamp_min(1e-3) * 0.15
    pca_a = torch.linspace(float(low[0] - margin[0]), float(high[0] + margin[0]), points)
    pca_b = torch.linspace(float(low[1] - margin[1]), float(high[1] + margin[1]), points)
    pca_surface = slice_2d(model, {n: d.to(x.device) for n, d in path.dx.items()},
                           {n: d.to(x.device) for n, d in path.dy.items()}, x, y, _loss, pca_a, pca_b)
    return {"dx": dx, "dy": dy, "path_alphas": path_alphas, "grid": grid, "init_path": init_path, "seeds_path": seeds_path,
            "line": line, "surface": surface, "ratio": shape["ratio"], "trajectory": path, "pca_a": pca_a, "pca_b": pca_b,
            "pca_surface": pca_surface,
            "numbers": {"final_loss": float(init_path[-1]), "other_final_loss": float(seeds_path[-1]),
                        "init_loss": float(init_path[0]), "init_barrier": path_barrier(init_path),
                        "seeds_barrier": path_barrier(seeds_path), "line_barrier": _line_barrier(line),
                        "nonconvex_fraction": shape["nonconvex_fraction"], "mean_ratio": shape["mean_ratio"],
                        "trajectory_explained_1": float(path.explained[0]), "trajectory_explained_2": float(path.explained[1]),
                        "chance_loss": math.log(pair["num_classes"])}}


def _line_barrier(line: torch.Tensor) -> float:
    """How far a 1-D slice rises above its lowest point before falling again (0 for a unimodal curve)."""
    best = int(line.argmin())
    left, right = line[:best + 1].flip(0), line[best:]
    rise = [float((side.cummax(0).values - side).max()) for side in (left, right)]
    return max(rise)


def nonconvex_verdict(numbers: dict[str, float]) -> Verdict:
    """nonconvex: a barrier on the path between two minima, or a non-convex 2-D slice (measured)."""
    barrier = max(numbers["plain_seeds_barrier"], numbers["residual_seeds_barrier"])
    fraction = max(numbers["plain_nonconvex_fraction"], numbers["residual_nonconvex_fraction"])
    usable = max(numbers["plain_final_loss"], numbers["residual_final_loss"]) <= TRAINED_FRACTION * numbers["chance_loss"]
    supported = barrier >= BARRIER_MIN or fraction >= NONCONVEX_FRACTION_MIN
    evidence = (f"Barrier between the minima of two seeds: {numbers['plain_seeds_barrier']:.3g} (plain), "
                f"{numbers['residual_seeds_barrier']:.3g} (residual) nats (needs >= {BARRIER_MIN:g}); non-convex part of "
                f"the filter-normalised 2-D slice (|lmin/lmax| > {NONCONVEX_RATIO:g}): "
                f"{numbers['plain_nonconvex_fraction']:.0%} plain vs {numbers['residual_nonconvex_fraction']:.0%} residual "
                f"(needs >= {NONCONVEX_FRACTION_MIN:.0%}); init->final barrier {numbers['plain_init_barrier']:.3g} / "
                f"{numbers['residual_init_barrier']:.3g}.")
    if not usable:
        evidence += (f" A model did not train (final loss {max(numbers['plain_final_loss'], numbers['residual_final_loss']):.3g}"
                     f" vs chance {numbers['chance_loss']:.3g}), so the landscape is not around a minimum.")
    return Verdict("nonconvex", "The loss is a non-convex function of all the weights.", status_from(supported, usable),
                   evidence, numbers)


def run(folder: Path, quick: bool, seed: int) -> StudyOutput:
    """Run the whole study into ``folder``."""
    device = resolve_device("auto")
    width, epochs, points, path_points = (32, 15, 21, 21) if quick else (64, 60, 51, 51)
    results = {}
    for name, residual in MODELS.items():
        pair = train_pair(residual, width, epochs, seed, device)
        results[name] = measure_landscape(pair, points, path_points, seed)
        _save_directions(folder / f"landscape_directions_{name}.safetensors", pair, results[name], seed)
    numbers = {f"{name}_{key}": value for name, result in results.items() for key, value in result["numbers"].items()
               if key != "chance_loss"}
    numbers["chance_loss"] = results["plain"]["numbers"]["chance_loss"]
    verdict = nonconvex_verdict(numbers)
    setup = f"{DEPTH} x {width} BatchNorm-ReLU MLPs on spirals, {epochs} epochs"
    figures = [
        (_paths_figure(folder, results), f"1-D views of the training loss ({setup}): straight paths init -> trained and "
         "between the minima of two seeds (barrier = max on the path minus the larger endpoint), and a 1-D slice along a "
         "filter-normalised Gaussian direction."),
        (_contour_figure(folder, results), f"2-D filter-normalised slices, {points} x {points} grid over [-1, 1]^2 (log10 "
         f"training loss, eval mode) and Li et al.'s |lambda_min / lambda_max| maps (non-convex where > {NONCONVEX_RATIO:g})."),
        (_surface_figure(folder, results), f"The same slices as 3-D surfaces (log10 of the loss clipped at {SURFACE_CLIP:g}): plain vs "
         "residual."),
        (_trajectory_figure(folder, results), "The optimisation path (weights after every epoch, seed 0) projected on its own two "
         "principal directions, over the training loss on that plane (Li et al. 2018, section 7); axis labels give the share of "
         "the path's variance each direction explains."),
    ]
    tables = [(_paths_table(folder, results), "Loss along each path and 1-D slice (tidy)."),
              (_grid_table(folder, results), "Loss on each 2-D slice grid point (tidy)."),
              (_summary_table(folder, results), "Barriers and non-convexity per model.")]
    figures.append(trajectory_animation(folder, {name: (r["pca_a"], r["pca_b"], r["pca_surface"], r["trajectory"].coords)
                                                 for name, r in results.items()}, SURFACE_CLIP))  # GIF: the path moving
    return StudyOutput([verdict], figures, tables)


def _save_directions(path: Path, pair: dict[str, Any], result: dict[str, Any], seed: int) -> None:
    model = pair["models"][0]
    tensors = {f"center/{n}": p for n, p in model.named_parameters()}
    tensors.update({f"buffer/{n}": b for n, b in model.named_buffers()})
    tensors.update({f"x/{n}": d for n, d in result["dx"].items()})
    tensors.update({f"y/{n}": d for n, d in result["dy"].items()})
    tensors.update({f"pca_x/{n}": d for n, d in result["trajectory"].dx.items()})
    tensors.update({f"pca_y/{n}": d for n, d in result["trajectory"].dy.items()})
    tensors["path"] = result["trajectory"].coords
    save_tensors(path, tensors, metadata={"model": pair["spec"], "seed": str(seed), "source": SOURCE,
                                          "normalization": "filter", "ignore": "biasbn"})


def _paths_table(folder: Path, results: dict[str, Any]) -> str:
    rows = [{"model": name, "path": path, "alpha": float(a), "loss": float(v)}
            for name, r in results.items()
            for path, alphas, values in (("init_to_final", r["path_alphas"], r["init_path"]),
                                         ("seed_to_seed", r["path_alphas"], r["seeds_path"]), ("random_1d", r["grid"], r["line"]))
            for a, v in zip(alphas, values)]
    write_table(folder / "landscape_paths.csv", rows, ["model", "path", "alpha", "loss"])
    return "landscape_paths.csv"


def _grid_table(folder: Path, results: dict[str, Any]) -> str:
    rows = [{"model": name, "alpha": float(a), "beta": float(b), "loss": float(r["surface"][i, j])}
            for name, r in results.items() for i, a in enumerate(r["grid"]) for j, b in enumerate(r["grid"])]
    write_table(folder / "landscape_grid.csv", rows, ["model", "alpha", "beta", "loss"])
    return "landscape_grid.csv"


def _summary_table(folder: Path, results: dict[str, Any]) -> str:
    rows = [{"model": name, "quantity": key, "value": value} for name, r in results.items() for key, value in r["numbers"].items()]
    write_table(folder / "landscape_summary.csv", rows, ["model", "quantity", "value"])
    return "landscape_summary.csv"


def _paths_figure(folder: Path, results: dict[str, Any]) -> str:
    figure, axes = new_figure(15, 4.4, 1, 3)
    for index, (name, r) in enumerate(results.items()):
        style = dict(color=COLORS[index], marker=".")
        n = r["numbers"]
        axes[0][0].plot(r["path_alphas"], r["init_path"], label=f"{name} (barrier {n['init_barrier']:.3g})", **style)
        axes[0][1].plot(r["path_alphas"], r["seeds_path"], label=f"{name} (barrier {n['seeds_barrier']:.3g})", **style)
        axes[0][2].plot(r["grid"], r["line"], label=name, **style)
    axes[0][0].set(title="Initial -> trained weights", xlabel="alpha (0 = init, 1 = trained)")
    axes[0][1].set(title="Minimum of seed s -> minimum of seed s+1", xlabel="alpha")
    axes[0][2].set(title="1-D filter-normalised random slice", xlabel="alpha (0 = trained weights)")
    for ax in axes[0]:
        ax.set(yscale="log", ylabel="training loss (log)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(figure, folder / "landscape_paths.png")
    return "landscape_paths.png"


def _contour_figure(folder: Path, results: dict[str, Any]) -> str:
    figure, axes = new_figure(10, 9, 2, 2)
    for col, (name, r) in enumerate(results.items()):
        grid = r["grid"].numpy()
        ax = axes[0][col]
        filled = ax.contourf(grid, grid, r["surface"].log10().T.numpy(), levels=30, cmap="viridis")
        ax.contour(grid, grid, r["surface"].log10().T.numpy(), levels=15, colors="white", linewidths=0.4)
        ax.plot(0, 0, marker="*", color="red", markersize=10)
        figure.colorbar(filled, ax=ax, label="log10 training loss")
        ax.set(title=f"{name}: 2-D slice", xlabel="alpha (dx)", ylabel="beta (dy)")
        ax = axes[1][col]
        inner = grid[1:-1]
        image = ax.pcolormesh(inner, inner, r["ratio"].T.numpy(), cmap="magma", vmin=0, vmax=1, shading="auto")
        figure.colorbar(image, ax=ax, label="|lambda_min / lambda_max| where lambda_min < 0")
        ax.set(title=f"{name}: non-convex on {r['numbers']['nonconvex_fraction']:.0%} of the slice",
               xlabel="alpha (dx)", ylabel="beta (dy)")
    save_figure(figure, folder / "landscape_contours.png")
    return "landscape_contours.png"


def _trajectory_figure(folder: Path, results: dict[str, Any]) -> str:
    figure, axes = new_figure(11, 4.6, 1, len(results))
    for col, (name, r) in enumerate(results.items()):
        ax, path = axes[0][col], r["trajectory"]
        levels = r["pca_surface"].clamp(max=SURFACE_CLIP).log10().T.numpy()
        filled = ax.contourf(r["pca_a"].numpy(), r["pca_b"].numpy(), levels, levels=30, cmap="viridis")
        ax.contour(r["pca_a"].numpy(), r["pca_b"].numpy(), levels, levels=15, colors="white", linewidths=0.4)
        coords = path.coords.numpy()
        ax.plot(coords[:, 0], coords[:, 1], color="red", marker="o", markersize=3, linewidth=1.2, label="epochs")
        ax.plot(coords[0, 0], coords[0, 1], marker="s", color="orange", markersize=8, label="initial weights")
        ax.plot(0, 0, marker="*", color="red", markersize=12, label="final weights")
        figure.colorbar(filled, ax=ax, label="log10 training loss")
        ax.set(title=f"{name}: optimisation path on its PCA plane",
               xlabel=f"1st PCA direction ({float(path.explained[0]):.0%} of the path's variance)",
               ylabel=f"2nd PCA direction ({float(path.explained[1]):.0%})")
        ax.legend(fontsize=8, loc="best")
    save_figure(figure, folder / "landscape_trajectory.png")
    return "landscape_trajectory.png"


def _surface_figure(folder: Path, results: dict[str, Any]) -> str:
    figure, axes = new_figure(12, 5.5, 1, 2, subplot_kw={"projection": "3d"})
    for col, (name, r) in enumerate(results.items()):
        a, b = torch.meshgrid(r["grid"], r["grid"], indexing="ij")
        ax = axes[0][col]
        ax.plot_surface(a.numpy(), b.numpy(), r["surface"].clamp(max=SURFACE_CLIP).log10().numpy(), cmap="viridis",
                        linewidth=0, antialiased=True)
        ax.view_init(elev=40, azim=-120)
        ax.set(title=f"{name}", xlabel="alpha", ylabel="beta", zlabel=f"log10 loss (clipped at {SURFACE_CLIP:g})")
    save_figure(figure, folder / "landscape_surfaces.png")
    return "landscape_surfaces.png"
