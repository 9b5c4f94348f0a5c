"""Data for training: sources, validation, splits, label noise and preprocessing.

:func:`prepare_data` runs the whole pipeline of a :class:`~deepwell.config.DataSpec`::

    source -> validate -> validation split -> label check -> [drop rows with blanks] -> subset (n_train)
           -> label noise -> impute (fit on train only) -> preprocess (fit on train only)

Text and audio sources also return an ``encoding`` (how raw inputs became tensors); a text vocabulary
is fitted here, on the final training split only, like preprocessing (see :mod:`deepwell.data.text`).

Example::

    from deepwell.config import DataSpec
    splits = prepare_data(DataSpec(source="moons", preprocess="standardize"), seed=0)
    splits.x_train.shape, splits.x_val.shape  # (720, 2), (80, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from deepwell.config import DataSpec
from deepwell.data.dataset import Dataset, Task, validate_dataset
from deepwell.data.files import load_array_file
from deepwell.data.impute import Imputer, build_imputer, drop_missing_rows
from deepwell.data.labels import check_labels
from deepwell.data.preprocess import PREPROCESSORS, Preprocessor
from deepwell.data.sources import DATASETS, build_dataset, dataset_from_arrays
from deepwell.data import file_sources  # noqa: E402,F401  (registers the datasets read from the user's files)
from deepwell.data.splits import add_label_noise, split_validation, subset
from deepwell.errors import CheckpointError, ConfigError

__all__ = [
    "DATASETS",
    "PREPROCESSORS",
    "Dataset",
    "Imputer",
    "Preprocessor",
    "Splits",
    "add_label_noise",
    "build_dataset",
    "build_imputer",
    "dataset_from_arrays",
    "encoding_from_json",
    "load_array_file",
    "prepare_data",
    "split_validation",
    "subset",
    "validate_dataset",
]

# Each pipeline stage draws from its own generator, so changing one stage (say n_train) leaves
# the random draws of the others (the validation split) unchanged.
_STAGE_VALIDATION, _STAGE_SUBSET, _STAGE_NOISE = 1, 2, 3


@dataclass
class Splits:
    """Train/validation/test tensors after splitting, label noise and preprocessing.

    Args:
        x_train: preprocessed training inputs (N, *input_shape).
        y_train: training targets, with label noise applied when asked.
        x_val: preprocessed validation inputs, or None without a validation split.
        y_val: validation targets (clean), or None.
        x_test: preprocessed test inputs.
        y_test: test targets (clean).
        task: ``"classification"`` or ``"regression"``.
        num_classes: number of classes; 0 for regression.
        input_shape: shape of one example after preprocessing (what the model sees).
        raw_input_shape: shape of one example before preprocessing (what ``predict`` is given).
        class_names: names of the classes, or None.
        feature_names: names of the raw input features, or None.
        preprocessor: the fitted preprocessing (apply it to new inputs before the model).
        name: the dataset's name.
        noisy_mask: bool (N_train,) marking examples whose label was redrawn, or None without label noise.
        encoding: the fitted text vocabulary or the audio settings, or None for numeric inputs.
        imputer: the fitted filling of missing inputs (``data.impute``; apply it before the preprocessor).
    """

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor | None
    y_val: Tensor | None
    x_test: Tensor
    y_test: Tensor
    task: Task
    num_classes: int
    input_shape: tuple[int, ...]
    raw_input_shape: tuple[int, ...]
    class_names: list[str] | None
    feature_names: list[str] | None
    preprocessor: Preprocessor
    name: str
    noisy_mask: Tensor | None = None
    encoding: Any = None
    imputer: Imputer | None = None

    @property
    def output_size(self) -> int:
        """Number of model outputs: classes for classification, target columns for regression."""
        return self.num_classes if self.task == "classification" else int(self.y_train.shape[1])


def _stage_generator(seed: int, stage: int) -> torch.Generator:
    # Integer tuples hash the same in every process (no hash randomisation), so this is reproducible.
    return torch.Generator().manual_seed(hash((seed, stage)) & 0x7FFF_FFFF_FFFF_FFFF)


def prepare_data(spec: DataSpec, seed: int, encoding: Any = None, imputer: Imputer | None = None) -> Splits:
    """Build, check, split, corrupt and preprocess the data a spec describes.

    Args:
        spec: the data section of a run spec.
        seed: the run seed; fixes the test split, validation split, subset and label noise.
        encoding: a fitted encoding to use instead of fitting one (a trained run's vocabulary).
        imputer: a fitted imputer to use instead of fitting one (a trained run's ``data.impute``).

    Returns:
        the splits, with the preprocessor fitted on the (final) training inputs only.

    Raises:
        ConfigError: unknown dataset or preprocessing, label noise on a regression task.
        DataError: missing, unreadable or inconsistent data; n_train larger than what is left.
    """
    imputer = imputer or build_imputer(spec.impute)
    dataset = build_dataset(spec.source, seed=seed, allow_missing=imputer.how != "none")
    if spec.label_noise > 0 and dataset.task != "classification":
        raise ConfigError(
            f"label_noise={spec.label_noise} needs class labels, but dataset '{dataset.name}' is a regression task; set label_noise=0."
        )
    x_train, y_train, x_val, y_val = split_validation(
        dataset.x_train, dataset.y_train, spec.val_fraction, _stage_generator(seed, _STAGE_VALIDATION)
    )
    check_labels(dataset, {"training": y_train, "validation": y_val, "test": dataset.y_test}, spec.strict_labels)
    x_test, y_test = dataset.x_test, dataset.y_test
    if imputer.how == "drop":  # before the subset and the label noise, so n_train counts complete rows
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = (drop_missing_rows(x, y) for x, y in
                                                                ((x_train, y_train), (x_val, y_val), (x_test, y_test)))
    if spec.n_train is not None:
        x_train, y_train = subset(x_train, y_train, spec.n_train, _stage_generator(seed, _STAGE_SUBSET))
    noisy_mask = None
    if spec.label_noise > 0:
        y_train, noisy_mask = add_label_noise(
            y_train, spec.label_noise, dataset.num_classes, spec.label_noise_mode, _stage_generator(seed, _STAGE_NOISE)
        )
    if not imputer.fitted:
        imputer.fit(x_train)  # on the final training split only, like the preprocessing
    x_train, x_val, x_test = imputer(x_train), imputer(x_val), imputer(x_test)
    if dataset.encoding is not None:
        if str(spec.preprocess) != "none":
            what = ("token ids (indices, not amounts)" if dataset.encoding.kind == "tokens"
                    else "waveforms (the network computes normalised log-mel features)")
            raise ConfigError(f"data.preprocess='{spec.preprocess}' cannot apply to {what}; set data.preprocess=none.")
        fitted = encoding if encoding is not None else dataset.encoding.fit(x_train)
        x_train, x_val, x_test = (fitted.adapt(x, dataset.encoding) for x in (x_train, x_val, x_test))
        encoding = fitted
    preprocessor = PREPROCESSORS.build(spec.preprocess).fit(x_train)
    has_validation = len(x_val) > 0
    with torch.no_grad():
        return Splits(
            x_train=preprocessor(x_train),
            y_train=y_train,
            x_val=preprocessor(x_val) if has_validation else None,
            y_val=y_val if has_validation else None,
            x_test=preprocessor(x_test),
            y_test=y_test,
            task=dataset.task,
            num_classes=dataset.num_classes,
            input_shape=preprocessor.output_shape(dataset.input_shape),
            raw_input_shape=dataset.input_shape,
            class_names=dataset.class_names,
            feature_names=dataset.feature_names,
            preprocessor=preprocessor,
            name=dataset.name,
            noisy_mask=noisy_mask,
            encoding=encoding,
            imputer=imputer,
        )


def encoding_from_json(values: dict[str, Any]) -> Any:
    """Rebuild a saved encoding (``TextEncoding`` or ``AudioEncoding``) from its ``to_json()``.

    Raises:
        CheckpointError: an unknown kind or missing keys.
    """
    from deepwell.data.audio import AudioEncoding
    from deepwell.data.text import TextEncoding

    kinds = {TextEncoding.kind: TextEncoding, AudioEncoding.kind: AudioEncoding}
    if values.get("kind") not in kinds:
        raise CheckpointError(f"Saved input encoding has kind {values.get('kind')!r}; expected one of {sorted(kinds)}.")
    return kinds[values["kind"]].from_json(values)
