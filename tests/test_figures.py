"""The one figure style: tick locators that cannot collide, and a check that finds overlapping text.

Every figure a test renders through ``save_figure`` or ``png_data_uri`` is checked (conftest sets
DEEPWELL_STRICT_FIGURES); here the check itself is tested, and the study figures whose inputs are
cheap to make are rendered from synthetic numbers.
"""

from __future__ import annotations

import math

import pytest

import numpy as np

from deepwell.reporting.style import (FigureLayoutError, check_figure, legend_outside, legends_over_data, new_figure,
                                     overlapping_text, tidy)
from deepwell.studies import depth, layers_converge, relu_speed


def test_overlap_check_finds_overlapping_and_cut_off_text_and_passes_a_clean_figure():
    figure, axes = new_figure(4, 3)
    axes[0][0].plot([0, 1], [0, 1])
    axes[0][0].set(title="a clean plot", xlabel="x", ylabel="y")
    assert overlapping_text(figure) == []
    axes[0][0].text(0.5, 0.5, "first label")
    axes[0][0].text(0.5, 0.5, "second label")
    axes[0][0].text(1.2, 0.5, "far outside the figure on the right", transform=axes[0][0].transAxes)
    problems = overlapping_text(figure)
    assert "'first label' overlaps 'second label'" in problems
    assert any("sticks out" in p for p in problems)
    with pytest.raises(FigureLayoutError, match="overlaps"):
        check_figure(figure, "demo")


def test_a_legend_over_the_data_is_found_and_one_outside_passes():
    x = np.linspace(0, 1, 200)
    figure, axes = new_figure(4, 3)
    for k in range(4):   # curves filling the whole plot: no corner is free
        axes[0][0].plot(x, x + k / 4, label=f"curve {k}")
        axes[0][0].scatter(x[::20], x[::20] + k / 4 + 0.1, s=4)
    axes[0][0].legend(loc="center")
    overlapping_text(figure)   # draws it
    problems = legends_over_data(figure)
    assert len(problems) == 1 and "covers" in problems[0]
    covered = int(problems[0].split("covers ")[1].split()[0])
    assert 0 < covered < 4 * 210
    with pytest.raises(FigureLayoutError, match="legend"):
        check_figure(figure, "demo")
    size = axes[0][0].get_legend().prop.get_size()
    tidy(figure)   # moves it to a free corner (the upper left), same entries and font size
    legend = axes[0][0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"curve {k}" for k in range(4)] and legend.prop.get_size() == size
    overlapping_text(figure)
    assert legends_over_data(figure) == [] and legend.get_window_extent().x1 < axes[0][0].bbox.x1
    figure, axes = new_figure(5, 3)   # points everywhere: no free corner, so outside
    axes[0][0].scatter(*np.random.default_rng(0).uniform(size=(2, 3000)), s=2, label="uniform")
    axes[0][0].legend()
    tidy(figure)
    overlapping_text(figure)
    assert legends_over_data(figure) == [] and axes[0][0].get_legend().get_window_extent().x0 > axes[0][0].bbox.x1
    figure, axes = new_figure(5, 3)
    for k in range(4):
        axes[0][0].plot(x, x + k / 4, label=f"curve {k}")
    legend_outside(axes[0][0])
    overlapping_text(figure)
    assert legends_over_data(figure) == []
    figure, axes = new_figure(4, 3)   # data in the lower right only: the upper left is free
    axes[0][0].plot(x[150:], x[150:] - 1, label="low right")
    axes[0][0].set(xlim=(0, 1), ylim=(-1, 1))
    axes[0][0].legend(loc="upper left")
    overlapping_text(figure)
    assert legends_over_data(figure) == []


def test_crowded_tick_labels_are_found_and_tidy_prevents_them():
    figure, axes = new_figure(2.0, 2.0)
    ax = axes[0][0]
    ax.plot([100000, 100100], [0, 1])
    ax.set_xticks([100000 + 10 * i for i in range(11)])   # fixed and crowded: tidy keeps chosen ticks
    assert any("overlaps" in p for p in overlapping_text(figure))
    figure, axes = new_figure(2.0, 2.0)
    axes[0][0].semilogx([200, 3000], [0, 1])   # a narrow log range labels its minor ticks by default: they collide
    assert any("overlaps" in p for p in overlapping_text(figure))
    tidy(figure)
    assert overlapping_text(figure) == []


def test_study_figures_from_synthetic_numbers_have_no_overlapping_text(tmp_path):
    rows = depth.construction_rows(range(3, 6))
    depth._construction_figure(tmp_path, rows)   # save_figure raises on overlap (strict mode)
    speed = [{"regime": r.name, "activation": a, "lr": 0.1, "seed": s, "steps": 100.0 + 10 * s + i, "use": "measured"}
             for r in relu_speed.REGIMES for i, a in enumerate(relu_speed.ACTIVATIONS) for s in range(3)]
    relu_speed.speed_figure(tmp_path / "speed.png", speed)
    distances = {(net, measure): {s: [[math.exp(-t / (layer + 1)) for layer in range(5)] for t in range(8)] for s in range(3)}
                 for net in layers_converge.NETS for measure in layers_converge.MEASURES}
    layers_converge._figure(tmp_path, distances, [0, 1, 2])
    assert {p.name for p in tmp_path.glob("*.png")} == {"depth_construction.png", "speed.png", "layers_converge.png"}
