"""See what an augmentation does: a PNG grid of augmented samples (``deepwell augment --preview``).

The input picks the kind of data: an image (default: the cat photo scikit-image ships,
``skimage.data.chelsea()``, as in the lecture's grid of augmented cats), a 1-D signal (``.npy``, or
``mnist1d`` for one MNIST-1D example), a sentence (``text=``; the grid lists the augmented sentences),
or a WAV file (log-mel spectrograms; the augmented sounds are written next to the PNG as WAV files).
The first tile is always the original. Files are written atomically.

Example::

    paths = write_preview(["rotate:15", "crop:0.9"], "cats.png", count=8)
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deepwell.data.augment.base import AUGMENTATIONS, build_augmentation
from deepwell.data.files import IMAGE_SUFFIXES
from deepwell.errors import ConfigError, DataError, missing_extra
from deepwell.training.checkpoint import _atomic  # the one atomic-write helper (temp file + fsync + rename)

__all__ = ["TILE_PIXELS", "TEXT_LINE_PIXELS", "write_preview"]

DPI = 100
TILE_PIXELS = 250  # each grid tile is 250 x 250 pixels
TEXT_WIDTH_PIXELS, TEXT_LINE_PIXELS = 1000, 40  # text previews: one 40-pixel line per sentence, plus one for the title
PREVIEW_SAMPLES = 100  # MNIST-1D examples generated for a signal preview


def _write_png(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)  # no tight bbox: the size is exactly the figure's
    plt.close(figure)
    _atomic(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def _grid(count: int, columns: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(columns, count + 1)
    rows = math.ceil((count + 1) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * TILE_PIXELS / DPI, rows * TILE_PIXELS / DPI), dpi=DPI,
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    return figure, list(axes.flat)


def _augmented(options: Sequence[str], x: torch.Tensor, count: int, seed: int, inputs=None) -> torch.Tensor:
    """``count`` augmented copies of the one example ``x`` (1, ...)."""
    augment = build_augmentation(options, tuple(x.shape[1:]), seed, inputs=inputs)
    batch = x.repeat(count, *([1] * (x.ndim - 1)))
    with torch.no_grad():
        return augment(batch, torch.zeros(count, dtype=torch.int64))[0]


def _load_image(path: str | None) -> torch.Tensor:
    if path is None:
        try:
            from skimage import data
        except ImportError:
            raise missing_extra("scikit-image", "images", "the default preview image (scikit-image's cat)") from None
        pixels = data.chelsea()  # (300, 451, 3) uint8
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as opened:
                pixels = np.asarray(opened.convert("RGB"))
        except (OSError, ValueError, UnidentifiedImageError) as error:
            raise DataError(f"Cannot read image '{path}': {error}. Give a PNG or JPEG file.") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0  # (1, 3, H, W)


def _image_preview(options, path, output, count, columns, seed) -> list[Path]:
    x = _load_image(path)
    out = _augmented(options, x, count, seed)
    figure, axes = _grid(count, columns)
    for index, (axis, image) in enumerate(zip(axes, torch.cat([x, out]))):
        axis.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        axis.set_title("original" if index == 0 else f"#{index}", fontsize=9)
    figure.suptitle(", ".join(options), fontsize=10)
    _write_png(figure, output)
    return [output]


def _load_signal(path: str) -> torch.Tensor:
    if path == "mnist1d":
        from deepwell.data.sources import build_dataset

        return build_dataset(f"mnist1d:num_samples={PREVIEW_SAMPLES}", seed=0).x_train[:1]  # (1, 1, 40)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"Cannot read NPY file '{path}': {error}. Save a signal with numpy.save(path, array).") from None
    if array.dtype.kind not in "iuf" or array.ndim not in (1, 2) or array.shape[-1] < 2:
        raise DataError(f"'{path}' holds a {array.dtype} array of shape {array.shape}; expected one signal, (L,) or (C, L).")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).unsqueeze(0)  # (1, L) or (1, C, L)


def _signal_preview(options, path, output, count, columns, seed) -> list[Path]:
    x = _load_signal(path)
    out = _augmented(options, x, count, seed)
    figure, axes = _grid(count, columns)
    for index, (axis, signal) in enumerate(zip(axes, torch.cat([x, out]))):
        axis.axis("on")
        for channel in signal.reshape(-1, signal.shape[-1]):
            axis.plot(channel.numpy(), linewidth=1)
        axis.set_title("original" if index == 0 else f"#{index}", fontsize=9)
        axis.tick_params(labelsize=6)
    figure.suptitle(", ".join(options), fontsize=10)
    _write_png(figure, output)
    return [output]


def _check(options: Sequence[str], count: int, columns: int = 1) -> None:
    if not options:
        raise ConfigError("Give at least one augmentation, e.g. -a rotate:15 -a crop:0.9 (see `deepwell options augmentation`).")
    if count < 1 or columns < 1:
        raise ConfigError(f"count and columns must be at least 1; got count={count}, columns={columns}.")


def augmented_sentences(options: Sequence[str], sentence: str, count: int = 8, seed: int = 0) -> list[str]:
    """The sentence (lower-case word tokens) followed by ``count`` augmented versions of it.

    Example::

        augmented_sentences(["swap:1"], "the quick brown fox", count=2)
        # ['the quick brown fox', 'the brown quick fox', 'fox quick brown the']

    Raises:
        ConfigError: no augmentation, an unknown one, or one that is not for text.
        DataError: a sentence without words.
    """
    _check(options, count)
    from deepwell.data.augment.text import load_wordnet, read_synonym_file, wordnet_synonyms
    from deepwell.data.text import PAD, UNK, TextEncoding, tokenize

    words = tokenize(sentence)
    if not words:
        raise DataError(f"The text {sentence!r} has no words; give a sentence, e.g. --text 'the quick brown fox'.")
    vocabulary = set(words)
    for option in (AUGMENTATIONS.parse(o) for o in options):
        if option.name == "synonym":  # the preview's vocabulary: the sentence's words and their synonyms
            if option.params.get("synonyms"):
                table = read_synonym_file(option.params["synonyms"])
                vocabulary |= {s for word in words for s in table.get(word, [])}
            else:
                reader = load_wordnet(option.params.get("wordnet", "/usr/share/wordnet"))
                vocabulary |= {s for word in words for s in wordnet_synonyms(word, reader)}
    encoding = TextEncoding((PAD, UNK, *sorted(vocabulary - {PAD, UNK})), max_length=len(words), fitted=True)
    x = encoding.encode([sentence])
    return [" ".join(words), *encoding.decode(_augmented(options, x, count, seed, inputs=encoding))]


def _text_preview(options, sentence, output, count, seed) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = augmented_sentences(options, sentence, count, seed)
    height = TEXT_LINE_PIXELS * (len(lines) + 1)
    figure = plt.figure(figsize=(TEXT_WIDTH_PIXELS / DPI, height / DPI), dpi=DPI)
    figure.text(0.01, 1 - 0.5 / (len(lines) + 1), ", ".join(options), fontsize=11, weight="bold", va="center")
    for index, line in enumerate(lines):
        label = "original" if index == 0 else f"#{index}"
        figure.text(0.01, 1 - (index + 1.5) / (len(lines) + 1), f"{label:>9}  {line}", fontsize=11, family="monospace", va="center")
    _write_png(figure, output)
    return [output]


def _wav_preview(options, path, output, count, columns, seed) -> list[Path]:
    from deepwell.data.audio import AudioEncoding, _soundfile, read_wav
    from deepwell.models.frontends import LogMel

    soundfile = _soundfile()
    try:
        rate = soundfile.info(str(path)).samplerate
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise DataError(f"Cannot read '{path}' as a WAV file ({error}).") from None
    waveform = torch.from_numpy(read_wav(path, rate)).unsqueeze(0)  # (1, S)
    inputs = AudioEncoding(rate, waveform.shape[1], 64, 1024 if rate >= 16000 else 512, max(1, rate // 100))
    out = _augmented(options, waveform, count, seed, inputs=inputs)
    frontend = LogMel(rate, inputs.n_fft, inputs.hop_length, inputs.n_mels)
    figure, axes = _grid(count, columns)
    with torch.no_grad():
        spectrograms = frontend.power_db(torch.cat([waveform, out]))
    for index, (axis, spectrogram) in enumerate(zip(axes, spectrograms)):
        axis.imshow(spectrogram.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0)
        axis.set_title("original" if index == 0 else f"#{index}", fontsize=9)
    figure.suptitle(", ".join(options) + " (log-mel)", fontsize=10)
    _write_png(figure, output)
    written = [output]
    for index, sound in enumerate(out, start=1):
        target = output.with_name(f"{output.stem}-{index}.wav")
        _atomic(target, lambda tmp, sound=sound: soundfile.write(tmp, sound.numpy(), rate, format="WAV"))
        written.append(target)
    return written


def write_preview(options: Sequence[str], output: str | Path, *, input: str | None = None, text: str | None = None,  # noqa: A002
                  count: int = 8, columns: int = 4, seed: int = 0) -> list[Path]:
    """Write a PNG grid of ``count`` augmented samples (plus the original) and return the files written.

    Args:
        options: augmentation options, applied in order (e.g. ``["rotate:15", "crop:0.9"]``).
        output: the PNG to write.
        input: an image file, a ``.npy`` signal, ``mnist1d``, or a ``.wav`` file; default: scikit-image's cat.
        text: a sentence to augment instead (text augmentations).
        count: augmented samples.
        columns: tiles per row of the grid (each tile 250 x 250 pixels).
        seed: seeds the augmentation's random draws.

    Returns:
        the PNG path, then (for a WAV input) the augmented sounds ``<output stem>-<i>.wav``.

    Raises:
        ConfigError: no augmentation, an unknown one, or one that does not fit the input.
        DataError: an unreadable or unknown kind of input file.
    """
    _check(options, count, columns)
    output = Path(output)
    if text is not None:
        return _text_preview(options, text, output, count, seed)
    suffix = Path(input).suffix.lower() if input is not None else ".png"
    if input is None or suffix in IMAGE_SUFFIXES:
        return _image_preview(options, input, output, count, columns, seed)
    if suffix == ".wav":
        return _wav_preview(options, input, output, count, columns, seed)
    if input == "mnist1d" or suffix == ".npy":
        return _signal_preview(options, input, output, count, columns, seed)
    raise DataError(f"Cannot preview '{input}': expected an image ({', '.join(IMAGE_SUFFIXES)}), a .npy signal, 'mnist1d', "
                    "a .wav file, or --text 'a sentence'.")
