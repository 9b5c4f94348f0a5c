"""Checks on class labels that train without error but probably not as the user meant.

Two things pass :func:`~deepwell.data.dataset.validate_dataset` yet deserve a word:

- integer labels that are not the contiguous 0..K-1 (a stray -1 or 7 among 0..2, labels that skip
  a value or start at 1): every distinct value becomes a class, or a class without examples
  gets an output of its own;
- classes with too few examples for the splits: a class missing from the training split cannot be
  learnt, one missing from the validation or test split is never measured.

Each is a :class:`~deepwell.errors.DataWarning` naming the odd labels, or a
:class:`~deepwell.errors.DataError` under ``data.strict_labels: true``.

Example::

    check_labels(dataset, {"train": y_train, "validation": y_val}, strict=False)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import Tensor

from deepwell.data.dataset import Dataset
from deepwell.errors import DataError, DataWarning

__all__ = ["check_labels", "label_problems"]

_STRICT = "set data.strict_labels=true to make this an error"


def check_labels(dataset: Dataset, splits: Mapping[str, Tensor], strict: bool) -> None:
    """Warn (or raise, when ``strict``) about odd integer labels and classes missing from a split.

    Args:
        dataset: the dataset as read (its train and test labels together are the whole file).
        splits: the labels of each split after splitting, by name, the training split first.
        strict: raise a DataError instead of warning.

    Raises:
        DataError: with ``strict``, when there is anything to say.
    """
    for problem in label_problems(dataset, splits):
        if strict:
            raise DataError(f"{problem} (data.strict_labels=true).")
        warnings.warn(f"{problem}; {_STRICT}.", DataWarning, stacklevel=3)


def label_problems(dataset: Dataset, splits: Mapping[str, Tensor]) -> list[str]:
    """The label problems of a classification dataset, each as one sentence (empty when all is well)."""
    if dataset.task != "classification":
        return []
    counts = torch.bincount(torch.cat([dataset.y_train, dataset.y_test]), minlength=dataset.num_classes)
    names = dataset.class_names or [str(i) for i in range(dataset.num_classes)]
    problems = [_non_contiguous(dataset.name, names, counts), _short_classes(names, counts, splits)]
    return [problem for problem in problems if problem]


def _as_int(name: str) -> int | None:
    try:
        return int(name)
    except ValueError:
        return None


def _non_contiguous(dataset: str, names: list[str], counts: Tensor) -> str | None:
    """Integer labels other than 0..K-1: name the odd ones (negatives, values beyond a gap) and the empty classes."""
    values = [_as_int(name) for name in names]
    if None in values:
        return None  # class names (cat, dog): any set of them is fine
    present = sorted(value for value, count in zip(values, counts.tolist()) if count)
    empty = [name for name, count in zip(names, counts.tolist()) if not count]
    if present == list(range(len(present))) and not empty:
        return None
    if len(present) == 2 and not empty:
        return None  # binary codes (-1/1, 1/2) mapped to 0/1: a convention, nothing odd
    by_value = {value: int(count) for value, count in zip(values, counts.tolist())}
    main = _main_run(present, by_value)
    odd = [value for value in present if value not in main]
    parts = [f"Class labels of dataset '{dataset}' are not the integers 0..K-1"]
    if odd:
        listed = ", ".join(f"{value} ({by_value[value]} example{'s' if by_value[value] > 1 else ''})" for value in odd)
        parts.append(f"label(s) {listed} lie outside {main[0]}..{main[-1]}")
    if empty:
        parts.append(f"class(es) {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''} have no examples "
                     "(non-negative labels are used as class indices)")
    return (f"{'; '.join(parts)}. They train as {len(names)} classes ({', '.join(names[:12])}{' ...' if len(names) > 12 else ''}): "
            "fix or remove those examples if they are mistakes")


def _main_run(present: list[int], by_value: dict[int, int]) -> list[int]:
    """The run of consecutive non-negative labels holding the most examples (the labels meant)."""
    runs: list[list[int]] = []
    for value in (v for v in present if v >= 0):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    if not runs:
        return present  # only negative codes: no run to prefer
    return max(runs, key=lambda run: sum(by_value[v] for v in run))


def _short_classes(names: list[str], counts: Tensor, splits: Mapping[str, Tensor]) -> str | None:
    """Classes with fewer examples than there are splits, or none in the training split, and the splits they miss.

    A class with at least one example per split can still miss the small validation split by
    chance (stratification rounds); that is normal for small data and not reported.
    """
    used = {split: labels for split, labels in splits.items() if len(labels)}
    lines = []
    for index, total in enumerate(counts.tolist()):
        if not total:
            continue
        absent = [split for split, labels in used.items() if not bool((labels == index).any())]
        training = next(iter(used), None)  # the first split is the one the model learns from
        if absent and (total < len(used) or training in absent):
            lines.append(f"'{names[index]}' ({int(total)} example{'s' if total > 1 else ''}; none in the {' or '.join(absent)} split)")
    if not lines:
        return None
    return (f"Class(es) with too few examples for the splits: {', '.join(lines[:10])}{' ...' if len(lines) > 10 else ''}. "
            "Give more examples of these classes, merge or remove them, or lower val_fraction / test_fraction")
