"""Every dataset deepwell can train on, built-in or user-given, as one registry of typed factories.

A factory's parameters are its option schema (``moons:noise=0.3``, ``csv:path=f.csv,target=y``);
the run seed arrives as the keyword-only ``seed`` and fixes the train/test split and any random
generation. Nothing is downloaded: MNIST-1D is generated offline, scikit-learn's datasets ship
with the package, the rest is synthetic or read from the user's files (:mod:`deepwell.data.file_sources`).

Example::

    dataset = build_dataset("moons:n=500,noise=0.1", seed=0)
    dataset.x_train.shape  # (400, 2)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field

from deepwell.data.dataset import Dataset, encode_class_labels, infer_task, validate_dataset
from deepwell.data.mnist1d import mnist1d_arrays
from deepwell.data.splits import split_indices
from deepwell.errors import DataError
from deepwell.registry import Option, Registry

__all__ = ["DATASETS", "build_dataset", "dataset_from_arrays"]

DATASETS: Registry[Dataset] = Registry("dataset")

TestFraction = Annotated[float, Field(gt=0.0, lt=1.0, description="share of examples held out as the test split")]
TaskChoice = Literal["auto", "classification", "regression"]
NumExamples = Annotated[int, Field(ge=2)]
Noise = Annotated[float, Field(ge=0.0)]


def build_dataset(option: str | Option, *, seed: int, allow_missing: bool = False) -> Dataset:
    """Build a dataset from its option string and check it.

    Args:
        option: a dataset option, e.g. ``"mnist1d"`` or ``"csv:path=data.csv,target=label"``.
        seed: fixes the train/test split and any random generation.
        allow_missing: let NaN inputs through (``data.impute`` handles them).

    Raises:
        ConfigError: unknown dataset or invalid parameter.
        DataError: the data is missing, unreadable or inconsistent (see :func:`validate_dataset`).
    """
    return validate_dataset(DATASETS.build(option, seed=seed), allow_missing)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def dataset_from_arrays(
    name: str,
    x: Any,
    y: Any,
    *,
    task: TaskChoice,
    seed: int,
    test_fraction: float = 0.2,
    x_test: Any = None,
    y_test: Any = None,
    class_names: list[str] | None = None,
    feature_names: list[str] | None = None,
    encoding: Any = None,
    missing: str | None = None,
) -> Dataset:
    """Turn raw arrays into a Dataset: decide the task, encode labels, split off a test set.

    Args:
        name: the dataset's name.
        x: inputs (N, ...) (a 1-D array is one feature per example).
        y: targets (N,) numbers or strings, or (N, k) numbers for several regression targets.
        task: ``"auto"`` (few distinct integers -> classification), ``"classification"`` or ``"regression"``.
        seed: fixes the stratified test split.
        test_fraction: share held out as the test split when ``x_test`` is not given.
        x_test: an explicit test split (then no split is drawn).
        y_test: targets of ``x_test``.
        class_names: names of classes 0..K-1 (default: taken from the labels).
        feature_names: names of the input features.
        encoding: how raw inputs (texts, audio) became ``x`` (see :class:`Dataset`).
        missing: where the file's inputs are missing or infinite, in words (see :class:`Dataset`).

    Raises:
        DataError: text targets for regression, non-integer class labels, non-numeric inputs.
    """
    arrays = [np.asarray(a) for a in ((x, y) if x_test is None else (x, y, x_test, y_test))]
    for label, array in zip(("x", "y", "x_test", "y_test"), arrays):
        numeric = array.dtype.kind in "iufb"
        if not numeric and (label.startswith("x") or array.dtype.kind not in "US"):
            raise DataError(f"'{label}' of dataset '{name}' holds {array.dtype} values; expected numbers.")
    targets = [arrays[1]] + ([arrays[3]] if x_test is not None else [])
    is_text = targets[0].dtype.kind in "US"
    if task == "auto":
        task = "classification" if is_text else infer_task(np.concatenate([t.astype(np.float64) for t in targets]))
    if task == "regression" and is_text:
        raise DataError(f"Dataset '{name}' has text targets ({targets[0][0]!r}, ...); use task=classification.")
    if task == "classification":
        encoded, num_classes, names = encode_class_labels(*targets)
        y_tensors = [torch.from_numpy(labels) for labels in encoded]
        class_names = class_names or names
    else:
        y_tensors = [torch.from_numpy(t.astype(np.float32).reshape(len(t), -1)) for t in targets]
        num_classes, class_names = 0, None
    x_tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays[0::2]]
    x_tensors = [t.reshape(-1, 1) if t.ndim == 1 else t for t in x_tensors]
    if x_test is None:
        train, test = split_indices(y_tensors[0], test_fraction, _generator(seed), stratify=task == "classification")
        x_tensors = [x_tensors[0][train], x_tensors[0][test]]
        y_tensors = [y_tensors[0][train], y_tensors[0][test]]
    return Dataset(name, x_tensors[0], y_tensors[0], x_tensors[1], y_tensors[1], task, num_classes, class_names, feature_names,
                   encoding, missing)


# ----- MNIST-1D (Greydanus 2020), generated offline -------------------------------------------


@DATASETS.register("mnist1d")
def mnist1d(
    num_samples: Annotated[int, Field(ge=20)] = 5000,
    train_split: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8,
    shuffle_seq: bool = False,
    noise: Annotated[float, Field(ge=0.0)] = 1.0,
    data_seed: int = 42,
    *,
    seed: int,
) -> Dataset:
    """MNIST-1D: ten 1-D digit templates, shifted, scaled, sheared and noised; x is (N, 1, 40).

    The defaults give the standard 4000/1000 split of the paper. The data does not depend on the
    run seed (``data_seed`` fixes it), so runs with different seeds see the same examples.

    Args:
        num_samples: total examples (train + test), split evenly over the ten classes.
        train_split: share of examples in the training split.
        shuffle_seq: permute the 40 positions (the same permutation for every example).
        noise: multiplier on both noise scales (correlated and i.i.d.); 0 gives clean templates.
        data_seed: the generator's seed.
    """
    x, y, x_test, y_test = mnist1d_arrays(num_samples, train_split, shuffle_seq, noise, data_seed)
    return Dataset(
        name="mnist1d",
        x_train=torch.tensor(x, dtype=torch.float32).unsqueeze(1),  # (N, 1, 40): one channel for Conv1d
        y_train=torch.tensor(y, dtype=torch.int64),
        x_test=torch.tensor(x_test, dtype=torch.float32).unsqueeze(1),
        y_test=torch.tensor(y_test, dtype=torch.int64),
        task="classification",
        num_classes=10,
        class_names=[str(digit) for digit in range(10)],
    )


# ----- scikit-learn's bundled datasets --------------------------------------------------------


@DATASETS.register("digits")
def digits(test_fraction: TestFraction = 0.2, *, seed: int) -> Dataset:
    """scikit-learn's 8x8 handwritten digits as images (N, 1, 8, 8), pixel values scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.reshape(-1, 1, 8, 8) / 16.0  # pixel counts run 0..16
    return dataset_from_arrays(
        "digits", images, bunch.target, task="classification", seed=seed, test_fraction=test_fraction,
        class_names=[str(name) for name in bunch.target_names],
    )


def _sklearn_table(name: str, loader_name: str, test_fraction: float, seed: int) -> Dataset:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)()
    return dataset_from_arrays(
        name, bunch.data, bunch.target, task="classification", seed=seed, test_fraction=test_fraction,
        class_names=[str(n) for n in bunch.target_names], feature_names=[str(n) for n in bunch.feature_names],
    )


@DATASETS.register("breast_cancer")
def breast_cancer(test_fraction: TestFraction = 0.2, *, seed: int) -> Dataset:
    """Wisconsin breast cancer: 569 tumours, 30 features, malignant or benign."""
    return _sklearn_table("breast_cancer", "load_breast_cancer", test_fraction, seed)


@DATASETS.register("wine")
def wine(test_fraction: TestFraction = 0.2, *, seed: int) -> Dataset:
    """Wine recognition: 178 wines, 13 chemical features, 3 cultivars."""
    return _sklearn_table("wine", "load_wine", test_fraction, seed)


@DATASETS.register("iris")
def iris(test_fraction: TestFraction = 0.2, *, seed: int) -> Dataset:
    """Fisher's iris: 150 flowers, 4 measurements, 3 species."""
    return _sklearn_table("iris", "load_iris", test_fraction, seed)


# ----- synthetic data ----------------------------------------------------------------------------


@DATASETS.register("moons")
def moons(
    n: NumExamples = 1000, noise: Noise = 0.2, test_fraction: TestFraction = 0.2, data_seed: int | None = None, *, seed: int
) -> Dataset:
    """Two interleaving half circles in 2-D (scikit-learn's make_moons); Gaussian noise of std ``noise``.

    Args:
        data_seed: fixes the generated points; default: the run seed.
    """
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=seed if data_seed is None else data_seed)
    return dataset_from_arrays("moons", x, y, task="classification", seed=seed, test_fraction=test_fraction, feature_names=["x1", "x2"])


@DATASETS.register("circles")
def circles(
    n: NumExamples = 1000,
    noise: Noise = 0.1,
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5,
    test_fraction: TestFraction = 0.2,
    data_seed: int | None = None,
    *,
    seed: int,
) -> Dataset:
    """A small circle inside a large one in 2-D (scikit-learn's make_circles); ``factor`` = radius ratio.

    Args:
        data_seed: fixes the generated points; default: the run seed.
    """
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=n, noise=noise, factor=factor, random_state=seed if data_seed is None else data_seed)
    return dataset_from_arrays("circles", x, y, task="classification", seed=seed, test_fraction=test_fraction, feature_names=["x1", "x2"])


@DATASETS.register("spirals")
def spirals(
    n: NumExamples = 1000,
    classes: Annotated[int, Field(ge=2)] = 3,
    noise: Noise = 0.2,
    turns: Annotated[float, Field(gt=0.0)] = 1.5,
    test_fraction: TestFraction = 0.2,
    data_seed: int | None = None,
    *,
    seed: int,
) -> Dataset:
    """Interleaved 2-D spiral arms, one per class (the CS231n toy problem that a linear model cannot fit).

    Arm ``k`` runs from the centre to radius 1 through ``turns`` turns, rotated by ``k/classes`` of
    a turn; ``noise`` is the std of Gaussian noise on the angle, in radians (as in CS231n).

    Args:
        data_seed: fixes the generated points; default: the run seed.
    """
    generator = _generator(seed if data_seed is None else data_seed)
    labels = torch.arange(n) % classes
    radius = torch.rand(n, generator=generator, dtype=torch.float64)
    angle = 2 * torch.pi * (turns * radius + labels / classes) + noise * torch.randn(n, generator=generator, dtype=torch.float64)
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)  # (N, 2)
    return dataset_from_arrays(
        "spirals", x.numpy(), labels.numpy(), task="classification", seed=seed, test_fraction=test_fraction, feature_names=["x1", "x2"]
    )


@DATASETS.register("xor")
def xor(n: NumExamples = 1000, noise: Noise = 0.1, test_fraction: TestFraction = 0.2, data_seed: int | None = None, *,
        seed: int) -> Dataset:
    """Points uniform in [-1, 1]^2, labelled by the sign of x1*x2 (TensorFlow Playground's XOR): no line separates it.

    Args:
        noise: std of Gaussian noise added to the points after labelling (labels near the axes flip).
        data_seed: fixes the generated points; default: the run seed.
    """
    generator = _generator(seed if data_seed is None else data_seed)
    x = 2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1
    labels = (x[:, 0] * x[:, 1] > 0).long()
    x = x + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return dataset_from_arrays("xor", x.numpy(), labels.numpy(), task="classification", seed=seed, test_fraction=test_fraction,
                               feature_names=["x1", "x2"])


@DATASETS.register("gaussians")
def gaussians(
    n: NumExamples = 1000,
    classes: Annotated[int, Field(ge=2)] = 2,
    noise: Noise = 0.3,
    test_fraction: TestFraction = 0.2,
    data_seed: int | None = None,
    *,
    seed: int,
) -> Dataset:
    """Gaussian blobs in 2-D, one per class, centres evenly on a circle of radius 1 (Playground's Gaussian data).

    Args:
        noise: std of each blob; about 0.5 and above, neighbouring blobs overlap.
        data_seed: fixes the generated points; default: the run seed.
    """
    generator = _generator(seed if data_seed is None else data_seed)
    labels = torch.arange(n) % classes
    angle = 2 * torch.pi * labels / classes
    centres = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1).double()
    x = centres + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return dataset_from_arrays("gaussians", x.numpy(), labels.numpy(), task="classification", seed=seed,
                               test_fraction=test_fraction, feature_names=["x1", "x2"])


@DATASETS.register("polynomial")
def polynomial(
    n: NumExamples = 20,
    degree: Annotated[int, Field(ge=0)] = 5,
    noise: Noise = 0.1,
    n_test: Annotated[int, Field(ge=1)] = 1000,
    data_seed: int | None = None,
    *,
    seed: int,
) -> Dataset:
    """Regression of a random polynomial on x uniform in [-1, 1]: y = p(x) + noise, shape (N, 1).

    The polynomial has standard normal coefficients in the Legendre basis, whose terms all have
    comparable size on [-1, 1]; train and test targets carry the same Gaussian noise (std
    ``noise``), so the best possible test MSE is ``noise**2``. This is the setting of the
    polynomial double-descent experiment (n=20 points).

    Args:
        n: training points.
        degree: degree of the true polynomial.
        noise: std of the target noise.
        n_test: test points.
        data_seed: fixes the polynomial and the points; default: the run seed.
    """
    rng = np.random.default_rng(seed if data_seed is None else data_seed)
    coefficients = rng.standard_normal(degree + 1)
    x = rng.uniform(-1.0, 1.0, size=(n + n_test, 1))
    y = np.polynomial.legendre.legval(x, coefficients) + noise * rng.standard_normal((n + n_test, 1))
    return dataset_from_arrays(
        "polynomial", x[:n], y[:n], task="regression", seed=seed, x_test=x[n:], y_test=y[n:], feature_names=["x"]
    )
