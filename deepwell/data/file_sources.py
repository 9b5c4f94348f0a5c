"""The datasets read from the user's files: CSV tables, NumPy archives, image folders, CSV texts and WAV folders.

Registered in :data:`deepwell.data.sources.DATASETS` beside the built-in ones (importing
:mod:`deepwell.data` registers them); each reads its file with :mod:`deepwell.data.files` (or the
text/audio modules) and splits it with :func:`~deepwell.data.sources.dataset_from_arrays`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from deepwell.data.dataset import Dataset, count_nonfinite, describe_nonfinite
from deepwell.data.files import read_csv_table, read_image_folder, read_npz, read_text_table
from deepwell.data.sources import DATASETS, TaskChoice, TestFraction, dataset_from_arrays
from deepwell.errors import DataError

__all__ = ["csv_file", "npz_file", "image_folder", "csv_text", "wav_folder"]


@DATASETS.register("csv")
def csv_file(path: str, target: str = "target", test_fraction: TestFraction = 0.2, task: TaskChoice = "auto", *, seed: int) -> Dataset:
    """A CSV table with a header row: column ``target`` is predicted from every other (numeric) column.

    Text targets become classes (sorted names); with ``task=auto`` an integer target with at most
    50 distinct values is a class label, anything else a regression target.
    """
    table = read_csv_table(path, target)
    return dataset_from_arrays(
        Path(path).stem, table.features, table.target, task=task, seed=seed, test_fraction=test_fraction, feature_names=table.feature_names,
        missing=table.missing,
    )


@DATASETS.register("npz")
def npz_file(path: str, test_fraction: TestFraction = 0.2, task: TaskChoice = "auto", *, seed: int) -> Dataset:
    """A NumPy ``.npz`` archive with inputs ``x`` and targets ``y``; ``x_test``/``y_test`` replace the random split."""
    arrays = read_npz(path)
    return dataset_from_arrays(
        Path(path).stem, arrays["x"], arrays["y"], task=task, seed=seed, test_fraction=test_fraction,
        x_test=arrays.get("x_test"), y_test=arrays.get("y_test"), missing=_npz_nonfinite(path, arrays),
    )


def _npz_nonfinite(path: str, arrays: dict[str, np.ndarray]) -> str | None:
    """"'f.npz' has 3 NaN and 2 infinite values in x (first at example 4)", over x and x_test, or None."""
    found = []
    for key in ("x", "x_test"):
        if key in arrays and arrays[key].dtype.kind == "f":
            nan, inf, first = count_nonfinite(torch.from_numpy(np.asarray(arrays[key])))
            if nan or inf:
                found.append(f"{describe_nonfinite(key, nan, inf).removeprefix(key + ' has ')} in {key} (first at example {first})")
    return f"'{path}' has {' and '.join(found)}" if found else None


@DATASETS.register("images")
def image_folder(
    path: str, size: Annotated[int, Field(ge=1, le=4096)] = 32, grayscale: bool = False, test_fraction: TestFraction = 0.2, *, seed: int
) -> Dataset:
    """A folder with one sub-folder of images per class, resized to (C, size, size) with values in [0, 1]."""
    images, labels, class_names = read_image_folder(path, size, grayscale)
    return dataset_from_arrays(
        Path(path).name, images.numpy(), labels, task="classification", seed=seed, test_fraction=test_fraction, class_names=class_names
    )


@DATASETS.register("csv_text")
def csv_text(
    path: str,
    text: str = "text",
    target: str = "label",
    max_length: Annotated[int, Field(ge=1, le=10_000)] = 64,
    min_count: Annotated[int, Field(ge=1)] = 1,
    max_size: Annotated[int, Field(ge=1)] | None = 20_000,
    test_fraction: TestFraction = 0.2,
    *,
    seed: int,
) -> Dataset:
    """A CSV table of texts: column ``text`` is tokenised (lower-case words) into ``max_length`` token ids.

    The vocabulary (words seen ``min_count`` times, the ``max_size`` most frequent) is fitted on the
    training split only, after the validation split (see :mod:`deepwell.data.text`); ``<pad>`` is id
    0 and ``<unk>`` id 1. ``model.arch=auto`` picks a bag-of-embeddings classifier for token data.

    Args:
        path: the CSV file (header row; other columns are ignored).
        text: the column holding the texts.
        target: the column holding the labels (class names or numbers).
        max_length: token ids per text; longer texts keep their first words, shorter ones are padded.
        min_count: a word enters the vocabulary when seen this often in the training split.
        max_size: at most this many words (the most frequent); <pad> and <unk> come on top.
    """
    from deepwell.data.text import TextEncoding

    texts, labels = read_text_table(path, text, target)
    encoding = TextEncoding.from_texts(texts, max_length, min_count, max_size)
    return dataset_from_arrays(Path(path).stem, encoding.encode(texts).numpy(), labels, task="classification", seed=seed,
                               test_fraction=test_fraction, encoding=encoding)


@DATASETS.register("wav")
def wav_folder(
    path: str,
    sample_rate: Annotated[int, Field(ge=1000, le=192_000)] = 16_000,
    duration: Annotated[float, Field(gt=0.0, le=60.0)] = 1.0,
    n_mels: Annotated[int, Field(ge=1, le=256)] = 40,
    n_fft: Annotated[int, Field(ge=16)] = 512,
    hop_length: Annotated[int, Field(ge=1)] | None = None,
    test_fraction: TestFraction = 0.2,
    *,
    seed: int,
) -> Dataset:
    """A folder with one sub-folder of WAV files per class, as mono waveforms (N, samples); the network's
    first layer turns them into log-mel features (n_mels, frames), read by a 1-D CNN with ``arch=auto``.

    Files are resampled to ``sample_rate``, cut or zero-padded to ``duration`` seconds. The waveforms
    stay in the dataset so pitch / speed augmentation can act before the features (see
    :mod:`deepwell.data.audio`).

    Args:
        path: the folder (``root/yes/*.wav``, ``root/no/*.wav``, ...).
        sample_rate: Hz every file is resampled to.
        duration: seconds per example.
        n_mels: mel bands of the features.
        n_fft: STFT window in samples (512 = 32 ms at 16 kHz).
        hop_length: samples between frames; default 10 ms.
    """
    from deepwell.data.audio import AudioEncoding, read_wav_folder

    waveforms, labels, class_names = read_wav_folder(path, sample_rate, duration)
    encoding = AudioEncoding(sample_rate, waveforms.shape[1], n_mels, n_fft, hop_length or max(1, sample_rate // 100))
    if n_fft > encoding.samples:
        raise DataError(f"n_fft={n_fft} is longer than the {encoding.samples} samples of one example; lower n_fft or raise duration.")
    return dataset_from_arrays(Path(path).name, waveforms.numpy(), labels, task="classification", seed=seed,
                               test_fraction=test_fraction, class_names=class_names, encoding=encoding)
