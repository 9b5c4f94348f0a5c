"""Readers for the files users bring: CSV tables (numbers or texts), NumPy ``.npz`` archives, folders of images.

Each reader returns plain arrays and names; :mod:`deepwell.data.sources` turns them into a
:class:`~deepwell.data.dataset.Dataset`. Only safe formats are read: NumPy files are loaded with
``allow_pickle=False`` so a user file can never run code.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from deepwell.errors import DataError, did_you_mean

__all__ = ["CsvTable", "read_csv_table", "read_text_table", "read_npz", "read_image_folder", "load_array_file", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Cells read as missing values; they become NaN so validation reports them with the others.
_MISSING = {"", "na", "nan", "null", "none", "?"}


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        hint = " It is a folder." if path.is_dir() else ""
        raise DataError(f"File '{path}' not found.{hint} Give the path of an existing {what} file.")
    return path


def _to_float(cell: str) -> float | None:
    """The cell as a float (NaN for a missing value), or None when it is text."""
    text = cell.strip()
    if text.lower() in _MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _read_rows(path: Path) -> list[list[str]]:
    return _read_numbered_rows(path)[0]


def _read_numbered_rows(path: Path) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows of a CSV file and the (1-based) line of the file each one ends on."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            sample = handle.read(4096)
            handle.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.reader(handle, dialect)
            numbered = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
            lines, rows = [line for line, _ in numbered], [row for _, row in numbered]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"Cannot read CSV file '{path}': {error}. Give a UTF-8 text file with comma-separated columns.") from None
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        first_width = len(rows[0])
        bad = next(i for i, row in enumerate(rows) if len(row) != first_width)
        raise DataError(
            f"CSV file '{path}' has rows of different lengths (line {bad + 1} has {len(rows[bad])} cells, "
            f"the first line {first_width}); every row needs the same columns."
        )
    return rows, lines


@dataclass
class CsvTable:
    """A CSV file split into numeric features and one raw target column.

    Args:
        features: float64 (N, D); NaN where a cell was missing.
        target: the target column as float64 when every cell is a number, else as strings.
        feature_names: the D feature column names.
        missing: where the features have blank cells, in words (file, columns with counts, first
            line), or None when none are blank; messages about missing values quote it.
    """

    features: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    missing: str | None = None


def read_csv_table(path: str | Path, target: str) -> CsvTable:
    """Read a CSV file with a header row into numeric features and a target column.

    Args:
        path: the CSV file (comma, semicolon or tab separated; first row = column names).
        target: name of the target column; every other column is a feature.

    Raises:
        DataError: missing or unreadable file, no data rows, missing target column (with
            did-you-mean and the list of columns), a feature column that is not numeric.
    """
    path = _existing_file(path, "CSV")
    rows, lines = _read_numbered_rows(path)
    if len(rows) < 2:
        raise DataError(f"CSV file '{path}' has no data rows; expected a header row followed by one row per example.")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    if target not in header:
        raise DataError(
            f"Target column '{target}' not found in '{path}'.{did_you_mean(target, header)} "
            f"Columns: {', '.join(header)}. Set the dataset's target=COLUMN."
        )
    target_index = header.index(target)
    columns = list(zip(*body))
    features, names = [], []
    for index, (name, cells) in enumerate(zip(header, columns)):
        if index == target_index:
            continue
        values = [_to_float(cell) for cell in cells]
        if None in values:
            row = values.index(None)
            raise DataError(
                f"Column '{name}' of '{path}' is not numeric (row {row + 1}: {cells[row]!r}). "
                "Encode it as numbers (e.g. one-hot columns) or remove it."
            )
        features.append(values)
        names.append(name)
    feature_array = np.asarray(features, dtype=np.float64).T.reshape(len(body), len(names))
    target_cells = columns[target_index]
    numbers = [_to_float(cell) for cell in target_cells]
    # A numeric column's NA/?/blank cells are missing; in a column of class names only an empty cell is ("none" may be a class).
    blank_targets = [i for i, (cell, number) in enumerate(zip(target_cells, numbers))
                     if not cell.strip() or (None not in numbers and math.isnan(number))]
    if blank_targets:
        raise DataError(
            f"Target column '{target}' of '{path}' is blank in {len(blank_targets)} row(s), the first on line "
            f"{lines[blank_targets[0] + 1]} (the header is line {lines[0]}); every example needs a target. "
            "Fill them in or remove those rows."
        )
    target_array = np.asarray(numbers, dtype=np.float64) if None not in numbers else np.asarray([c.strip() for c in target_cells])
    return CsvTable(feature_array, target_array, names, _describe_blanks(path, feature_array, names, lines))


def _describe_blanks(path: Path, features: np.ndarray, names: list[str], lines: list[int]) -> str | None:
    """'f.csv' has blank cells in columns a (12), b (3); the first on line 5 ... or None without blanks."""
    blank = np.isnan(features)  # (N, D)
    if not blank.any():
        return None
    counts = blank.sum(axis=0)
    columns = ", ".join(f"{name} ({int(count)})" for name, count in zip(names, counts) if count)
    first_row = int(np.flatnonzero(blank.any(axis=1))[0])
    total = int(counts.sum())
    return (f"'{path}' has {total} missing (blank or NaN) cell{'s' if total > 1 else ''} in column(s) {columns}; the first is on line "
            f"{lines[first_row + 1]} (the header is line {lines[0]})")


def read_text_table(path: str | Path, text: str, target: str | None) -> tuple[list[str], np.ndarray | None]:
    """Read a CSV file with a header row into one text column and one target column (other columns ignored).

    Args:
        path: the CSV file (comma, semicolon or tab separated; quote cells that hold the separator).
        text: name of the column holding the texts.
        target: name of the target column (class names or numbers); None reads the texts alone (to predict).

    Returns:
        (the texts, the target column as float64 when every cell is a number, else as strings; None without target).

    Example::

        texts, labels = read_text_table("reviews.csv", text="review", target="sentiment")
        texts, _ = read_text_table("new_reviews.csv", text="review", target=None)

    Raises:
        DataError: missing or unreadable file, no data rows, a missing column (with did-you-mean and
            the list of columns), an empty text cell.
    """
    path = _existing_file(path, "CSV")
    rows = _read_rows(path)
    if len(rows) < 2:
        raise DataError(f"CSV file '{path}' has no data rows; expected a header row followed by one row per example.")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    for role, column in (("Text", text), ("Target", target)):
        if column is not None and column not in header:
            key = "text" if role == "Text" else "target"
            raise DataError(
                f"{role} column '{column}' not found in '{path}'.{did_you_mean(column, header)} "
                f"Columns: {', '.join(header)}. Set the dataset's {key}=COLUMN."
            )
    text_index = header.index(text)
    texts = [row[text_index].strip() for row in body]
    if "" in texts:
        row = texts.index("")
        raise DataError(f"Text column '{text}' of '{path}' is empty in data row {row + 1}; every example needs a text. "
                        "Fill it in or remove the row.")
    if target is None:
        return texts, None
    target_index = header.index(target)
    target_cells = [row[target_index] for row in body]
    numbers = [_to_float(cell) for cell in target_cells]
    target_array = np.asarray(numbers, dtype=np.float64) if None not in numbers else np.asarray([c.strip() for c in target_cells])
    return texts, target_array


# What a file's first bytes say it is, and the dataset source that reads that kind of file.
_ZIP_MAGIC, _NPY_MAGIC = b"PK", b"\x93NUMPY"
_READ_BY = {".csv": "csv:path={path},target=COLUMN (csv_text for a column of texts)", ".tsv": "csv:path={path},target=COLUMN",
            ".txt": "csv:path={path},target=COLUMN", ".wav": "wav:path=FOLDER (one sub-folder of .wav files per class)",
            **{suffix: "images:path=FOLDER (one sub-folder of images per class)" for suffix in IMAGE_SUFFIXES}}


def _not_npz(path: Path) -> str | None:
    """Why ``path`` is not an .npz archive (and which source reads it), or None when it starts like one."""
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(_ZIP_MAGIC):
        return None
    if head.startswith(_NPY_MAGIC):
        return f"'{path}' holds a single .npy array, not an .npz archive; save it with numpy.savez(path, x=..., y=...)."
    looks_like = ".csv" if head and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head) else path.suffix.lower()
    kind = "a text (CSV) file" if looks_like == ".csv" else f"a '{path.suffix or 'no suffix'}' file"
    reader = _READ_BY.get(looks_like)
    advice = f" Read it with data.source={reader.format(path=path)}." if reader else ""
    return (f"'{path}' is not an .npz archive (it is {kind}; an .npz is a zip of arrays written by numpy.savez).{advice} "
            "The npz source reads files saved with numpy.savez(path, x=inputs, y=targets).")


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    reason = _not_npz(path)
    if reason is not None:
        raise DataError(reason)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(
            f"Cannot read '{path}' as an NPZ archive ({error}). Save plain numeric arrays with numpy.savez(path, x=..., y=...)."
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"'{path}' holds a single array, not an NPZ archive; save it with numpy.savez(path, x=..., y=...).")
    try:
        arrays = {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError) as error:
        # Object arrays need unpickling, which could run code from the file: refuse them.
        raise DataError(f"Cannot read '{path}' without unpickling ({error}); save plain numeric arrays with numpy.savez.") from None
    finally:
        loaded.close()
    return arrays


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` archive holding ``x`` and ``y`` (and optionally ``x_test``, ``y_test``).

    Raises:
        DataError: missing or unreadable file, pickled (object) arrays, missing keys, only one
            of ``x_test`` / ``y_test``.
    """
    path = _existing_file(path, "NPZ")
    arrays = _npz_arrays(path)
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataError(
            f"NPZ file '{path}' has no key(s) {', '.join(repr(k) for k in missing)}; found {sorted(arrays) or 'none'}. "
            "Save inputs as x and targets as y: numpy.savez(path, x=inputs, y=targets)."
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"NPZ file '{path}' has only one of x_test / y_test; give both or neither.")
    return arrays


def class_folders(path: str | Path, kind: str, what: str, example: str) -> list[Path]:
    """The class sub-folders of a one-folder-per-class data set, sorted by name (hidden ones skipped).

    Raises:
        DataError: the folder is missing or has no sub-folders (``kind`` / ``what`` / ``example`` word the message).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{kind} folder '{root}' not found. Give a folder with one sub-folder of {what} per class.")
    class_dirs = sorted(child for child in root.iterdir() if child.is_dir() and not child.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{kind} folder '{root}' has no sub-folders; put each class's {what} in its own sub-folder "
                        f"(e.g. {example}).")
    return class_dirs


def read_image_folder(path: str | Path, size: int, grayscale: bool) -> tuple[Tensor, np.ndarray, list[str]]:
    """Read a folder with one sub-folder of images per class into (N, C, size, size) floats in [0, 1].

    Args:
        path: the folder; each sub-folder's name is a class name.
        size: images are resized to ``size`` x ``size`` (antialiased).
        grayscale: read one channel instead of three (RGB).

    Returns:
        (images, class indices (N,), class names in sorted order).

    Raises:
        DataError: missing folder, no class sub-folders, a class without images, an unreadable image.
    """
    class_dirs = class_folders(path, "Image", "images", "cats/, dogs/")
    # Imported here, after the cheap checks: torchvision takes a second to import.
    # Pillow decodes; torchvision.io's decoders are deprecated since torchvision 0.29.
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as transforms

    mode = "L" if grayscale else "RGB"
    images, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"Class folder '{class_dir}' has no images; expected files ending in {', '.join(IMAGE_SUFFIXES)}."
            )
        for file in files:
            try:
                with Image.open(file) as opened:
                    pixels = np.asarray(opened.convert(mode), dtype=np.uint8)  # (H, W) or (H, W, 3)
            except (OSError, ValueError, UnidentifiedImageError) as error:
                raise DataError(f"Cannot read image '{file}': {error}. Remove or replace the file.") from None
            image = torch.from_numpy(pixels.copy()).reshape(*pixels.shape[:2], -1).permute(2, 0, 1)  # (C, H, W)
            image = transforms.resize(image, [size, size], antialias=True)
            images.append(image.float() / 255.0)
            labels.append(label)
    return torch.stack(images), np.asarray(labels, dtype=np.int64), [d.name for d in class_dirs]


def load_array_file(path: str | Path) -> Tensor:
    """Read inputs for prediction: a numeric CSV (header optional), an ``.npz`` with key ``x``, or a ``.npy``.

    Args:
        path: the file; its suffix picks the reader.

    Returns:
        float32 tensor (N, ...).

    Raises:
        DataError: missing or unreadable file, unknown suffix, non-numeric cells, missing key ``x``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz", ".npy"):
        raise DataError(f"Cannot read '{path}': expected a .csv, .npz (key x) or .npy file, got '{suffix or 'no suffix'}'.")
    path = _existing_file(path, suffix[1:].upper())
    if suffix == ".csv":
        rows = _read_rows(path)
        values = [[_to_float(cell) for cell in row] for row in rows]
        # A first row with text is a header; text anywhere else is an error.
        if values and None in values[0]:
            values = values[1:]
        for row_number, row in enumerate(values):
            if None in row:
                raise DataError(f"CSV file '{path}' has a non-numeric cell in data row {row_number + 1}; every input column must be numeric.")
        if not values:
            raise DataError(f"CSV file '{path}' has no data rows.")
        array = np.asarray(values, dtype=np.float64)
    elif suffix == ".npz":
        arrays = _npz_arrays(path)
        if "x" not in arrays:
            raise DataError(
                f"NPZ file '{path}' has no key 'x'; found {sorted(arrays) or 'none'}. Save inputs with numpy.savez(path, x=inputs)."
            )
        array = arrays["x"]
    else:
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise DataError(f"Cannot read NPY file '{path}': {error}.") from None
    if array.dtype.kind not in "iufb":
        raise DataError(f"'{path}' holds {array.dtype} values; expected numbers.")
    if array.ndim < 2 or len(array) == 0:
        raise DataError(f"'{path}' holds an array of shape {array.shape}; expected (examples, features...) with at least one example.")
    return torch.from_numpy(np.ascontiguousarray(array)).float()
