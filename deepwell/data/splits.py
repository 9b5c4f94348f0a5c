"""Random splits, subsets and label noise, each drawn from a caller's ``torch.Generator``.

Every function takes its randomness from the generator it is given, so a seed fixes the
result and two stages seeded separately do not disturb each other.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from deepwell.errors import ConfigError, DataError

__all__ = ["split_indices", "split_validation", "subset", "add_label_noise"]


def _is_class_labels(y: Tensor) -> bool:
    return y.ndim == 1 and not y.is_floating_point()


def split_indices(y: Tensor, fraction: float, generator: torch.Generator, stratify: bool | None = None) -> tuple[Tensor, Tensor]:
    """Draw ``round(fraction * N)`` held-out indices, stratified by class when ``y`` holds class labels.

    Stratification keeps each class's share in both parts: every class gives ``fraction`` of its
    examples, with the rounding remainders going to the classes with the largest fractional
    parts, so the held-out part still has exactly ``round(fraction * N)`` examples.

    Args:
        y: targets (N,) int64 labels or (N, k) float; only their count and classes are used.
        fraction: share held out, in [0, 1].
        generator: the source of randomness.
        stratify: stratify by class; default: when ``y`` holds class labels.

    Returns:
        (kept indices, held-out indices), each sorted so the original order is preserved.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"Split fraction must be in [0, 1]; got {fraction}.")
    count = len(y)
    num_held = round(fraction * count)
    if stratify is None:
        stratify = _is_class_labels(y)
    permutation = torch.randperm(count, generator=generator)
    if not stratify or num_held in (0, count):
        held = permutation[:num_held]
    else:
        labels = y[permutation]
        classes, sizes = torch.unique(labels, return_counts=True)
        quotas = sizes.double() * fraction
        per_class = quotas.floor().long()
        remainder = num_held - int(per_class.sum())
        # Largest-remainder rounding: the classes closest to their next example get one more.
        order = torch.argsort(quotas - per_class, descending=True, stable=True)
        per_class[order[:remainder]] += 1
        held = torch.cat([permutation[labels == c][: int(n)] for c, n in zip(classes, per_class)])
    mask = torch.zeros(count, dtype=torch.bool)
    mask[held] = True
    return (~mask).nonzero().flatten(), mask.nonzero().flatten()


def split_validation(
    x: Tensor, y: Tensor, fraction: float, generator: torch.Generator, stratify: bool | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Hold out ``round(fraction * N)`` examples for validation (stratified for class labels).

    Args:
        x: inputs (N, ...).
        y: targets (N,) or (N, k).
        fraction: share of examples held out, in [0, 1); 0 gives an empty validation set.
        generator: the source of randomness.
        stratify: see :func:`split_indices`.

    Returns:
        (x_train, y_train, x_val, y_val).

    Raises:
        DataError: the split would leave no training examples.
    """
    kept, held = split_indices(y, fraction, generator, stratify)
    if len(kept) == 0:
        raise DataError(
            f"A validation fraction of {fraction} of {len(y)} examples leaves none for training; lower val_fraction or give more data."
        )
    return x[kept], y[kept], x[held], y[held]


def subset(x: Tensor, y: Tensor, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Keep ``n`` examples drawn at random without replacement (in their original order).

    Args:
        x: inputs (N, ...).
        y: targets (N,) or (N, k).
        n: how many to keep, 1..N.
        generator: the source of randomness.

    Raises:
        DataError: ``n`` is larger than the number of examples, or below 1.
    """
    if n < 1 or n > len(x):
        raise DataError(f"Cannot keep {n} training examples: {len(x)} are available (after the validation split).")
    kept = torch.randperm(len(x), generator=generator)[:n].sort().values
    return x[kept], y[kept]


def add_label_noise(
    y: Tensor,
    fraction: float,
    num_classes: int,
    mode: Literal["incorrect", "uniform"],
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Replace the labels of exactly ``round(fraction * N)`` randomly chosen examples.

    ``incorrect`` gives each chosen example a uniformly random *wrong* label, as in Nakkiran et
    al. (2019, "Deep Double Descent"), so every chosen label changes. ``uniform`` draws any of the
    ``K`` labels, as the MNIST-1D notebook does, so about ``fraction * (1 - 1/K)`` of all labels
    change.

    Args:
        y: class indices (N,) int64 in 0..num_classes-1; not modified.
        fraction: share of examples chosen, in [0, 1].
        num_classes: K, at least 2.
        mode: ``"incorrect"`` or ``"uniform"``.
        generator: the source of randomness.

    Returns:
        (noisy labels, mask of the chosen examples). With ``uniform`` some chosen examples keep
        their label; ``noisy != y`` marks the ones that changed.

    Raises:
        ConfigError: fraction outside [0, 1], fewer than 2 classes, unknown mode.
        DataError: ``y`` is not a vector of class indices.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"Label noise fraction must be in [0, 1]; got {fraction}.")
    if num_classes < 2:
        raise ConfigError(f"Label noise needs at least 2 classes; got num_classes={num_classes}.")
    if mode not in ("incorrect", "uniform"):
        raise ConfigError(f"Unknown label noise mode '{mode}'. Known: incorrect, uniform.")
    if not _is_class_labels(y):
        raise DataError(f"Label noise applies to class labels (N,) int64; got shape {tuple(y.shape)}, dtype {y.dtype}.")
    count = round(fraction * len(y))
    chosen = torch.randperm(len(y), generator=generator)[:count]
    noisy = y.clone()
    if mode == "incorrect":
        # Adding an offset in 1..K-1 modulo K reaches every wrong label with equal probability.
        offsets = torch.randint(1, num_classes, (count,), generator=generator, dtype=y.dtype)
        noisy[chosen] = (y[chosen] + offsets) % num_classes
    else:
        noisy[chosen] = torch.randint(0, num_classes, (count,), generator=generator, dtype=y.dtype)
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[chosen] = True
    return noisy, mask
