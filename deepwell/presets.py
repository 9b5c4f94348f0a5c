"""Defaults that depend on the data, filled in once the data is known (where the spec leaves a key unset).

Example::

    from deepwell.presets import apply_data_defaults
    spec = apply_data_defaults(spec, "regression", (10,), n_train=1440, arch_was_auto=True)
"""

from __future__ import annotations

from collections.abc import Sequence

from deepwell.config import RunSpec, TrainSpec

__all__ = ["MAX_AUTO_EPOCHS", "STEP_BUDGET", "TABULAR_REGRESSION", "apply_data_defaults"]

# Defaults for small tabular regression (flat feature vectors, arch auto -> mlp), used where the
# spec leaves the key unset. BatchNorm's batch-dependent normalisation adds noise to every
# prediction, which a regression's squared error pays for directly, so the MLP trains without it;
# small data gives few steps per epoch, so a minimum step budget (in batches of 32: more, noisier
# updates per epoch, Masters & Luschi 2018) replaces the fixed epoch count: 25 epochs of 64 cover
# barely 600 steps on 1,500 rows. Tables large enough that the default epochs already make the
# step budget (12,800 rows and more at 25 epochs of 32) are not small: they keep every default.
TABULAR_REGRESSION = {"model.norm": "none", "train.batch_size": 32}
STEP_BUDGET, MAX_AUTO_EPOCHS = 10_000, 500


def apply_data_defaults(spec: RunSpec, task: str, input_shape: Sequence[int], n_train: int, arch_was_auto: bool) -> RunSpec:
    """The spec with the defaults that depend on the data filled in where the user set nothing.

    Small tabular regression (flat features, ``model.arch=auto``) gets :data:`TABULAR_REGRESSION`
    and enough epochs for :data:`STEP_BUDGET` optimiser steps (at most :data:`MAX_AUTO_EPOCHS`).
    Keys the user gave (in the YAML or with ``--set``) are kept; a saved run's config.yaml holds the
    values chosen, so resuming it changes nothing. Other data (signals, images, text, classification)
    is returned unchanged.

    Example::

        spec = apply_data_defaults(RunSpec(), "regression", (10,), 1440, arch_was_auto=True)
        spec.model.norm.name, spec.train.batch_size, spec.train.epochs  # ('none', 32, 223)
    """
    if task != "regression" or len(input_shape) != 1 or not arch_was_auto:
        return spec
    chosen = {key: value for key, value in TABULAR_REGRESSION.items() if not _was_set(spec, key)}
    steps_per_epoch = max(1, -(-n_train // chosen.get("train.batch_size", spec.train.batch_size)))
    epochs = min(MAX_AUTO_EPOCHS, -(-STEP_BUDGET // steps_per_epoch))
    if epochs <= TrainSpec.model_fields["epochs"].default:
        return spec  # not small: the default epochs already make the step budget
    if not _was_set(spec, "train.epochs"):
        chosen["train.epochs"] = epochs
    values = spec.to_dict()
    for key, value in chosen.items():
        section, field = key.split(".")
        values[section][field] = value
    return RunSpec.from_dict(values)


def _was_set(spec: RunSpec, key: str) -> bool:
    section, field = key.split(".")
    return field in getattr(spec, section).model_fields_set
