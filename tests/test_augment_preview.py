"""`deepwell augment --preview`: a PNG of the expected size for images, signals, text and WAV files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deepwell.reporting.preview import TEXT_LINE_PIXELS, TILE_PIXELS

pytestmark = pytest.mark.usefixtures("single_thread")


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size  # (width, height)


def test_default_cat_image_grid(cli, tmp_path):
    pytest.importorskip("skimage")
    output = tmp_path / "cats.png"
    code, out, err = cli("augment", "--preview", "-a", "rotate:15", "-a", "crop:0.9", "--count", "3", "--columns", "2",
                         "-o", str(output))
    assert code == 0, err
    assert png_size(output) == (2 * TILE_PIXELS, 2 * TILE_PIXELS)  # original + 3 samples in 2 columns
    assert f"Preview: {output}" in out
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, nothing left behind


def test_image_file_and_signal_inputs(cli, tmp_path):
    image = tmp_path / "square.png"
    Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)).save(image)
    code, _, err = cli("augment", "--preview", "-a", "hflip", "-i", str(image), "--count", "4", "-o", str(tmp_path / "a.png"))
    assert code == 0, err
    assert png_size(tmp_path / "a.png") == (4 * TILE_PIXELS, 2 * TILE_PIXELS)
    signal = tmp_path / "signal.npy"
    np.save(signal, np.sin(np.linspace(0, 12, 64)))
    code, _, err = cli("augment", "--preview", "-a", "shift:5", "-a", "noise:0.1", "-i", str(signal), "--count", "2",
                       "-o", str(tmp_path / "s.png"))
    assert code == 0, err
    assert png_size(tmp_path / "s.png") == (3 * TILE_PIXELS, TILE_PIXELS)  # 3 tiles fit one row


def test_text_preview_lists_the_sentences(cli, tmp_path):
    synonyms = tmp_path / "synonyms.tsv"
    synonyms.write_text("quick\tfast,speedy\n")
    code, _, err = cli("augment", "--preview", "-a", f"synonym:0.5,synonyms={synonyms}", "-a", "swap:1",
                       "--text", "The quick brown fox", "--count", "3", "-o", str(tmp_path / "t.png"))
    assert code == 0, err
    assert png_size(tmp_path / "t.png") == (1000, TEXT_LINE_PIXELS * (1 + 1 + 3))  # title, original, 3 sentences


def test_wav_preview_writes_spectrograms_and_augmented_sounds(cli, tmp_path):
    sf = pytest.importorskip("soundfile")
    rate = 8000
    sf.write(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate), rate)
    output = tmp_path / "tone-preview.png"
    code, out, err = cli("augment", "--preview", "-a", "pitch:3", "-a", "speed:0.2", "-i", str(tmp_path / "tone.wav"),
                         "--count", "2", "-o", str(output))
    assert code == 0, err
    assert png_size(output) == (3 * TILE_PIXELS, TILE_PIXELS)
    for index in (1, 2):
        sound, sound_rate = sf.read(tmp_path / f"tone-preview-{index}.wav")
        assert sound_rate == rate and len(sound) == rate // 2 and np.abs(sound).max() > 0.1


@pytest.mark.parametrize(("args", "message"), [
    (["-a", "rotate:15"], "add --preview"),
    (["--preview"], "at least one augmentation"),
    (["--preview", "-a", "rotate:15", "-i", "notes.txt"], "Cannot preview 'notes.txt'"),
    (["--preview", "-a", "pitch:2", "--text", "hello there"], "is for audio"),
])
def test_bad_preview_requests_exit_2_with_the_reason(cli, tmp_path, args, message):
    code, _, err = cli("augment", *args, "-o", str(tmp_path / "x.png"))
    assert code == 2 and message in err
