"""Animations (GIF via matplotlib's Pillow writer): frame count, frames that differ, a file Pillow decodes, embedded in reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from html_page import Page
from PIL import Image, ImageChops

from deepwell.studies import animations, polynomial
from deepwell.studies import double_descent as dd

pytestmark = pytest.mark.usefixtures("single_thread")


def frames(path: Path) -> list[tuple[Image.Image, int]]:
    """Every frame of a GIF, fully decoded, with its duration (ms)."""
    decoded = []
    with Image.open(path) as image:
        assert image.format == "GIF"
        for index in range(image.n_frames):
            image.seek(index)
            image.load()
            decoded.append((image.convert("RGB"), image.info["duration"]))
    return decoded


def check_gif(path: Path, expected_frames: int) -> list[Image.Image]:
    """The GIF decodes, has one frame per step (Pillow merges identical neighbours, so every frame differs from the
    previous one), and holds the last frame HOLD frame-times."""
    decoded = frames(path)
    assert len(decoded) == expected_frames
    step = round(1000 / animations.FPS)
    assert [d for _, d in decoded[:-1]] == [step] * (expected_frames - 1) and decoded[-1][1] == animations.HOLD * step
    images = [image for image, _ in decoded]
    assert all(ImageChops.difference(a, b).getbbox() is not None for a, b in zip(images, images[1:]))
    return images


def test_polynomial_animation_shows_every_quick_degree(tmp_path: Path) -> None:
    rows = polynomial.degree_sweep(polynomial.QUICK_DEGREES, 1, 0, bases=(polynomial.MAIN_BASIS,))
    name, caption = animations.polynomial_animation(tmp_path, rows, 0)
    assert name == "polynomial_fits.gif" and "d+1=n=20" in caption
    images = check_gif(tmp_path / name, len(polynomial.QUICK_DEGREES))
    assert images[0].size[0] > 400


def _curve(width: int, epochs: int, every: int) -> list[dict]:
    return [{"epoch": e, "test_error": 0.5 + 0.1 * math.sin(e / 10 + width), "train_error": max(0.0, 0.6 - e / 100)}
            for e in range(every, epochs + 1, every)]


def test_double_descent_animations_draw_width_by_width_and_epoch_by_epoch(tmp_path: Path) -> None:
    settings = dd.QUICK
    rows = [{"width": w, "params": dd.mlp_params(w), "test_error_mean": 0.4 + 0.1 * (i % 3), "train_error_mean": 0.3 / (i + 1)}
            for i, w in enumerate(settings.widths)]
    records = [{"experiment": "model_wise", "mode": "uniform", "width": w, "seed": s, "curve": _curve(w + s, settings.epochs,
                                                                                                   settings.eval_every)}
               for w in settings.widths for s in range(settings.seeds)]
    (model_wise, _), (epoch_wise, _) = animations.double_descent_animations(tmp_path, rows, records, settings.n_train)
    check_gif(tmp_path / model_wise, len(settings.widths))
    check_gif(tmp_path / epoch_wise, min(settings.epochs // settings.eval_every, animations.MAX_FRAMES))


def test_trajectory_animation_moves_along_the_path(tmp_path: Path) -> None:
    grid = np.linspace(-1, 1, 21)  # quick mode: 21 x 21 grid, 15 epochs -> 16 snapshots
    surface = 0.1 + grid[:, None] ** 2 + 2 * grid[None, :] ** 2
    path = np.stack([np.linspace(0.8, 0, 16), 0.5 * np.linspace(0.8, 0, 16) ** 2], 1)
    name, _ = animations.trajectory_animation(tmp_path, {"plain": (grid, grid, surface, path), "residual": (grid, grid, surface, path)})
    check_gif(tmp_path / name, 16)


def test_study_report_embeds_gif_animations(tmp_path: Path) -> None:
    """Study reports (and so the tour's report.html, which lists every study's figures) embed GIFs as data URIs."""
    from deepwell.reporting import render_report

    grid = np.linspace(-1, 1, 5)
    name, caption = animations.trajectory_animation(tmp_path, {"plain": (grid, grid, 1 + grid[:, None] ** 2 + 0 * grid,
                                                                         np.array([[1.0, 1.0], [0.0, 0.0]]))})
    (tmp_path / "study.json").write_text(json.dumps({"name": "s", "title": "S", "verdicts": [], "tables": [],
                                                     "figures": [{"path": name, "caption": caption}]}))
    page = Page(render_report(tmp_path))
    assert len(page.images) == 1 and page.images[0].startswith("data:image/gif;base64,R0lGOD")  # "GIF8" in base64
