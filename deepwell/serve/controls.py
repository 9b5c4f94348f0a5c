"""Controls are spec keys: validate the page's edits like ``--set``, and say what an edit costs (keep weights or rebuild).

Every control of the page edits one :class:`~deepwell.config.RunSpec` key. An edit goes through
:func:`deepwell.config.apply_overrides` and :meth:`RunSpec.from_dict`, the path of ``--set``, so a
bad value gets the same message (did-you-mean included). On top, the playground refuses keys that
would let the page write or read outside its folders (``output.*``, ``device``, backbones) and file
paths outside ``--data-dir`` (or the upload folder).

Example::

    spec = apply_changes(RunSpec(), {"train.lr": "0.01", "model.activation": "tanh"}, roots=[Path("data")])
    change_kind(RunSpec(), spec)         # "rebuild": the activation changed
    command_line(spec)                   # "deepwell train --set model.activation=tanh --set train.lr=0.01"
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from deepwell.config import RunSpec, apply_overrides
from deepwell.errors import ConfigError
from deepwell.registry import Option

__all__ = ["ControlError", "apply_changes", "change_kind", "spec_diff", "command_line", "remedy_actions", "FORBIDDEN"]

# Keys the page may not set: where files are written, the device, and weights read from arbitrary paths.
FORBIDDEN = ("output", "device", "model.backbone", "model.freeze", "model.unfreeze", "model.bn_policy", "model.lr_mult_backbone")
# Edits that keep the weights (and the optimiser state) and apply from the next epoch: the model's
# parameters and the data stay what they are. Everything else re-initialises with the seed.
KEEP_WEIGHTS = ("train.lr", "train.penalty", "train.batch_size", "train.clip_grad_norm", "train.epochs", "train.early_stopping",
                "train.eval_every", "train.clean_train_examples", "train.checkpoint_every", "model.dropout", "diagnostics.every")
_REMEDY_KEY = re.compile(r"\b((?:data|model|train|diagnostics)\.[a-z_.]*[a-z_])=([^\s()]+)")


class ControlError(ConfigError):
    """An edit the playground refuses; ``key`` names the control it belongs to."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _refuse_forbidden(key: str) -> None:
    if any(key == bad or key.startswith(bad + ".") for bad in FORBIDDEN):
        raise ControlError(key, f"'{key}' cannot be set from the playground (it names files or devices on the server). "
                                "Use `deepwell train --set ...` for it.")


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _checked_path(option: Option, roots: Sequence[Path], key: str) -> Option:
    """The option with its ``path`` resolved against the first root; refused outside every root."""
    if "path" not in option.params:
        return option
    raw = Path(str(option.params["path"]))
    resolved = (raw if raw.is_absolute() else roots[0] / raw).resolve()
    if not _inside(resolved, [root.resolve() for root in roots]):
        raise ControlError(key, f"{key}: the file '{raw}' is outside the data folder ({roots[0]}); the playground reads "
                                "only files under --data-dir. Choose a file from the list or upload one.")
    return Option(option.kind, option.name, {**option.params, "path": str(resolved)}, option.first)


def apply_changes(spec: RunSpec, changes: Mapping[str, str], roots: Sequence[Path]) -> RunSpec:
    """``spec`` with ``changes`` (key -> YAML value text) applied and validated as ``--set`` does.

    Raises:
        ControlError: a forbidden key, an invalid value (the message of ``--set``), or a file outside ``roots``.
    """
    values = spec.to_dict()
    for key, value in changes.items():
        _refuse_forbidden(key.strip())
        try:
            values = apply_overrides(values, [f"{key}={value}"])
            RunSpec.from_dict(values)  # one key at a time: the message goes next to the control that caused it
        except ConfigError as error:
            raise ControlError(key, str(error)) from None
    new = RunSpec.from_dict(values)
    new.data.source = _checked_path(new.data.source, roots, "data.source")
    new.data.augment = [_checked_path(option, roots, "data.augment") for option in new.data.augment]
    return new


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changed_keys(old: RunSpec, new: RunSpec) -> set[str]:
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    return {key for key in a.keys() | b.keys() if a.get(key, a) != b.get(key, b)}


def change_kind(old: RunSpec, new: RunSpec) -> str:
    """``none``, ``keep`` (weights carried over, from the next epoch) or ``rebuild`` (re-initialised with the seed).

    A learning rate under onecycle is owned by torch's OneCycleLR's saved state, so it rebuilds; under
    the other schedules (and warm-up) it is the schedule's new peak from the next epoch (fit's resume).
    """
    changed = _changed_keys(old, new)
    if not changed:
        return "none"
    if "train.lr" in changed and any(str(s.train.schedule).startswith("onecycle") for s in (old, new)):
        return "rebuild"
    keep = all(any(key == k or key.startswith(k + ".") for k in KEEP_WEIGHTS) for key in changed)
    return "keep" if keep else "rebuild"


def _value_text(value: Any) -> str:
    """The value as ``--set`` reads it back (YAML): plain strings stay plain, the rest is JSON (valid YAML)."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def spec_diff(spec: RunSpec, base: RunSpec | None = None) -> dict[str, str]:
    """Every key whose value differs from ``base`` (default: deepwell's defaults), as ``key -> value text``.

    Applied to ``base`` with :func:`apply_overrides`, the result gives ``spec`` back (the URL and the copied command).
    """
    base_flat = _flatten((base or RunSpec()).to_dict())
    return {key: _value_text(value) for key, value in _flatten(spec.to_dict()).items()
            if not key.startswith("output.") and base_flat.get(key, base_flat) != value}


def command_line(spec: RunSpec) -> str:
    """The ``deepwell train`` command that trains this spec."""
    return " ".join(["deepwell", "train", *(f"--set {shlex.quote(f'{k}={v}')}" for k, v in spec_diff(spec).items())])


def remedy_actions(remedy: str) -> list[dict[str, str]]:
    """The spec settings a doctor's remedy names, one action per alternative ("... or ..."), as ``key -> value``.

    Example::

        remedy_actions("use model.activation=relu with model.init=he (ReLU does not saturate)")
        # [{"model.activation": "relu", "model.init": "he"}]
    """
    actions = []
    for alternative in re.split(r"\bor\b", remedy):
        found = {key: value.rstrip(".,;:") for key, value in _REMEDY_KEY.findall(alternative)}
        if found:
            actions.append(found)
    return actions
