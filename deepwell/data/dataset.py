"""The in-memory dataset every source returns, and the one check every source passes through.

A :class:`Dataset` holds a train and a test split as tensors, ready to live on the device
(small data is indexed by slices, not streamed). :func:`validate_dataset` is the single place
that rejects NaN, infinities, shape and label problems, so every source, built-in or user file,
fails the same way with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from deepwell.errors import DataError

__all__ = ["Dataset", "Task", "validate_dataset", "infer_task", "encode_class_labels", "MAX_AUTO_CLASSES"]

Task = Literal["classification", "regression"]

# An integer target with at most this many distinct values is taken as class labels by task="auto";
# more distinct values look like a count or a measurement, which regression fits better.
MAX_AUTO_CLASSES = 50


@dataclass
class Dataset:
    """A train/test pair of tensors plus what the model needs to know about them.

    Args:
        name: short name used in run folders and reports, e.g. ``"mnist1d"``.
        x_train: inputs, float32, shape (N, *input_shape).
        y_train: int64 class indices (N,) for classification; float32 (N, k) for regression.
        x_test: test inputs, same per-example shape as ``x_train``.
        y_test: test targets, same kind as ``y_train``.
        task: ``"classification"`` or ``"regression"``.
        num_classes: number of classes; 0 for regression (the output size is then ``y_train.shape[1]``).
        class_names: one name per class index, or None.
        feature_names: one name per input feature for tabular data, or None.
        encoding: how raw inputs became these tensors when they are not plain numbers: a
            :class:`~deepwell.data.text.TextEncoding` (token ids) or an
            :class:`~deepwell.data.audio.AudioEncoding` (waveforms); None for numbers.
        missing: where the source file's inputs hold NaN (blank cells) or infinite values, in words
            (file, columns, first line), for the messages of :func:`validate_dataset`; None when
            there are none or the source cannot say.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    task: Task
    num_classes: int
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    encoding: Any = None
    missing: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example, e.g. (1, 40) for MNIST-1D."""
        return tuple(self.x_train.shape[1:])

    @property
    def output_size(self) -> int:
        """Number of model outputs: classes for classification, target columns for regression."""
        return self.num_classes if self.task == "classification" else int(self.y_train.shape[1])


def infer_task(values: np.ndarray) -> Task:
    """Guess the task from a numeric target: few distinct integers mean classes, else regression.

    Args:
        values: the target values of every example (1-D numeric, or 2-D for several targets).
    """
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        return "regression"
    integral = np.all(np.equal(np.mod(values, 1), 0))
    return "classification" if integral and len(np.unique(values)) <= MAX_AUTO_CLASSES else "regression"


def encode_class_labels(*label_sets: np.ndarray) -> tuple[list[np.ndarray], int, list[str]]:
    """Turn raw class labels (strings or integers) of several splits into shared class indices.

    Non-negative integer labels are kept as indices (``num_classes = max + 1``), the usual
    convention of label files; anything else (strings, negative codes such as -1/1) is mapped
    to 0..K-1 in sorted order so every split uses the same mapping.

    Args:
        label_sets: one 1-D array of labels per split.

    Returns:
        (int64 arrays, one per split), num_classes, class_names.

    Raises:
        DataError: numeric labels that are not whole numbers.
    """
    joined = np.concatenate([np.asarray(labels).reshape(-1) for labels in label_sets])
    if joined.dtype.kind in "iufb":
        numeric = joined.astype(np.float64)
        if not np.all(np.isfinite(numeric)):
            raise DataError("Class labels contain NaN or infinite values; every example needs a finite label.")
        if not np.all(np.mod(numeric, 1) == 0):
            first = numeric[np.mod(numeric, 1) != 0][0]
            raise DataError(
                f"Class labels must be whole numbers; found {first!r}. Use task=regression for a continuous target."
            )
        if joined.size == 0 or numeric.min() >= 0:
            num_classes = int(numeric.max()) + 1 if joined.size else 0
            encoded = [np.asarray(labels).reshape(-1).astype(np.int64) for labels in label_sets]
            return encoded, num_classes, [str(i) for i in range(num_classes)]
        joined = joined.astype(np.int64)
    names = np.unique(joined)
    encoded = [np.searchsorted(names, np.asarray(labels).reshape(-1).astype(joined.dtype)).astype(np.int64) for labels in label_sets]
    return encoded, len(names), [str(name) for name in names]


def count_nonfinite(tensor: Tensor) -> tuple[int, int, int | None]:
    """(NaN count, infinite count, first row with either or None) of a tensor (N, ...)."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return 0, 0, None
    flat = tensor.reshape(len(tensor), -1) if tensor.ndim else tensor.reshape(1, 1)
    nan, inf = torch.isnan(flat), torch.isinf(flat)
    rows = (nan | inf).any(dim=1).nonzero()
    return int(nan.sum()), int(inf.sum()), int(rows[0, 0]) if len(rows) else None


def describe_nonfinite(label: str, nan: int, inf: int) -> str:
    """'x_train has 3 NaN and 2 infinite values' (only the kinds present)."""
    parts = [f"{count} {word} value{'s' if count > 1 else ''}" for count, word in ((nan, "NaN"), (inf, "infinite")) if count]
    return f"{label} has {' and '.join(parts)}"


def _check_finite(tensor: Tensor, label: str, allow_nan: bool = False, where: str | None = None) -> None:
    """Raise on infinite values, and on NaN unless ``allow_nan`` (data.impute fills them later)."""
    nan, inf, first_row = count_nonfinite(tensor)
    nan = 0 if allow_nan else nan
    if not nan and not inf:
        return
    advice = []
    if nan:
        advice.append("clean or impute them: fill them in, or set data.impute=mean or median (fitted on the training split) "
                      "or drop (rows with one removed)" if label.startswith("x") else "clean them: every example needs a target")
    if inf:
        advice.append("replace the infinite values (data.impute fills only NaN)")
    what = where or f"{describe_nonfinite(label, nan, inf)} (first at row {first_row})"
    raise DataError(f"{what}; {'; '.join(advice)}.")


def validate_dataset(dataset: Dataset, allow_missing: bool = False) -> Dataset:
    """Check a dataset for the problems that make training fail or silently go wrong.

    Args:
        dataset: the dataset to check; returned unchanged so calls can be chained.
        allow_missing: let NaN inputs pass (``data.impute`` fills or drops them after the split).

    Raises:
        DataError: empty split, x/y length mismatch, different example shapes in train and test,
            wrong label dtype or shape, NaN or infinite values, labels out of range.
    """
    if dataset.task not in ("classification", "regression"):
        raise DataError(f"Dataset '{dataset.name}' has task '{dataset.task}'; expected 'classification' or 'regression'.")
    for split in ("train", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if x.ndim < 2:
            raise DataError(f"x_{split} has shape {tuple(x.shape)}; expected (examples, features...) with at least 2 dimensions.")
        if len(x) == 0:
            raise DataError(f"The {split} split of dataset '{dataset.name}' is empty; give at least one example.")
        if len(x) != len(y):
            raise DataError(
                f"x_{split} has {len(x)} examples but y_{split} has {len(y)}; every input needs exactly one target."
            )
        if not x.is_floating_point():
            raise DataError(f"x_{split} has dtype {x.dtype}; expected a floating-point tensor (float32).")
        _check_finite(x, f"x_{split}", allow_missing, dataset.missing)
        if dataset.task == "classification":
            _check_class_labels(y, f"y_{split}", dataset.num_classes)
        else:
            if y.ndim != 2 or not y.is_floating_point():
                raise DataError(
                    f"y_{split} has shape {tuple(y.shape)} and dtype {y.dtype}; regression targets must be float (examples, outputs)."
                )
            _check_finite(y, f"y_{split}")
    if dataset.x_train.shape[1:] != dataset.x_test.shape[1:]:
        raise DataError(
            f"Train examples have shape {tuple(dataset.x_train.shape[1:])} but test examples {tuple(dataset.x_test.shape[1:])}; "
            "both splits need the same features."
        )
    if dataset.task == "regression" and dataset.y_train.shape[1:] != dataset.y_test.shape[1:]:
        raise DataError(f"Train targets have {dataset.y_train.shape[1]} columns but test targets {dataset.y_test.shape[1]}.")
    return dataset


def _check_class_labels(y: Tensor, label: str, num_classes: int) -> None:
    if y.dtype != torch.int64 or y.ndim != 1:
        raise DataError(
            f"{label} has shape {tuple(y.shape)} and dtype {y.dtype}; class labels must be int64 indices of shape (examples,)."
        )
    if num_classes < 2:
        raise DataError(f"Classification needs at least 2 classes; this dataset declares {num_classes}.")
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        first_row = int(bad.nonzero()[0, 0])
        raise DataError(
            f"{label} has {int(bad.sum())} label(s) out of range (first at row {first_row}: {int(y[first_row])}); "
            f"labels must be class indices 0..{num_classes - 1}."
        )
