"""The tour page: one card per verdict (statement, verdict and why, its figure beside it, numbers in a
small table), unique verdict ids, counts that add up -- and it draws in headless chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deepwell.reporting import write_report
from deepwell.studies import base
from deepwell.studies.base import Regime, StudyOutput, Verdict
from deepwell.studies.claims import CLAIMS
from deepwell.studies.evidence import regime_verdict
from deepwell.studies.figures import new_figure, save_figure
from deepwell.studies.tour import run_tour

CHROMIUM = shutil.which("chromium")


def _red_figure(folder: Path, name: str) -> None:
    figure, axes = new_figure(5, 4)
    figure.set_facecolor("#ff0000")   # a colour nothing else on the page has: where the figure landed
    axes[0][0].plot([0, 1], [1, 0])
    save_figure(figure, folder / name)


@pytest.fixture
def tour_page(tmp_path, monkeypatch) -> Path:
    def speed(folder: Path, quick: bool, seed: int) -> StudyOutput:
        _red_figure(folder, "relu_faster.png")
        verdict = regime_verdict("relu-faster", "ReLU converges faster than sigmoid/tanh.", "beyond 2 s.e.", [
            Regime("CNN", "holds", "ReLU 110 vs tanh 200 steps", {"speedup": 1.8}, lecture=True),
            Regime("depth 10, own init", "does_not_hold", "tanh 1.7x faster", {"speedup": 0.6})], figure="relu_faster.png")
        return StudyOutput([verdict], [("relu_faster.png", "steps per regime")], [])

    def drop(folder: Path, quick: bool, seed: int) -> StudyOutput:
        return StudyOutput([Verdict("dropout", "Dropout reduces overfitting.", "holds", "Gap 0.10 vs 0.20. More.", {"gap": 0.1}),
                            Verdict("dropout", "Classic and inverted scaling agree.", "inconclusive", "e", key="dropout/scaling")],
                           [], [])

    monkeypatch.setattr("deepwell.studies.STUDIES", {"activations": base.Study("activations", "A", ("relu-faster",), speed),
                                                     "dropout": base.Study("dropout", "D", ("dropout",), drop)})
    run_tour(quick=True, output=tmp_path / "tour", workers=1)
    return write_report(tmp_path / "tour")


def test_tour_page_is_one_card_per_verdict_with_unique_ids_and_counts_that_add_up(tour_page: Path) -> None:
    html = tour_page.read_text()
    ids = re.findall(r'<article class="claim" id="verdict-([^"]+)"', html)
    assert len(ids) == len(set(ids)) == len(CLAIMS) + 1 and {"dropout", "dropout/scaling", "relu-faster"} <= set(ids)
    counts = re.search(r"(\d+) hold</span> <span class=\"badge bad\">(\d+) do not hold</span>\s*"
                       r"<span class=\"badge warn\">(\d+) inconclusive", html)
    assert counts and sum(map(int, counts.groups())) == len(CLAIMS) and counts.group(1) == "2"
    card = html[html.index('id="verdict-relu-faster"'):]
    card = card[:card.index("</article>")]
    assert "Holds in the lecture&#39;s regime (CNN); does not hold in depth 10, own init." in card
    assert "<img src=\"data:image/png;base64," in card and '<table class="small">' in card and "Holds when:" in card
    assert "relu-faster: depth 10, own init -- does not hold" in html   # the regime limits


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (make test installs it)")
def test_tour_page_draws_its_figure_beside_the_claim_in_chromium(tour_page: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    shot = tmp_path / "shot.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,7000",
               tour_page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium wrote no screenshot (exit {result.returncode}):\n{result.stderr[-2000:]}"
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    red = (rgb[..., 0] > 230) & (rgb[..., 1] < 40) & (rgb[..., 2] < 40)
    assert red.sum() > 20_000, "the card's figure was not drawn"
    columns = np.nonzero(red.any(axis=0))[0]
    assert columns.min() > rgb.shape[1] * 0.45   # beside the text (right column), not below it
    grey = rgb.mean(axis=2)
    left = grey[:, : int(columns.min()) - 10][red.any(axis=1)]
    assert (left < 100).mean() > 0.002   # the claim's text sits to its left, at the same height
