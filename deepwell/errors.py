"""Errors users see: each says what happened, what was expected, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["DeepwellError", "ConfigError", "DataError", "CheckpointError", "TrainingError", "did_you_mean", "missing_extra"]


class DeepwellError(Exception):
    """Base of every error deepwell raises on purpose (the CLI turns these into exit code 2).

    Example::

        try:
            deepwell.train(overrides=["model.activation=leaky_rlu"])
        except deepwell.DeepwellError as error:
            print(error)   # Invalid spec: model.activation: Unknown activation 'leaky_rlu'. Did you mean ...
    """


class ConfigError(DeepwellError, ValueError):
    """A spec, option string or argument is invalid.

    Example::

        deepwell.load_spec(overrides=["train.lr=-1"])   # raises ConfigError: Invalid spec: train.lr: ... greater than 0
    """


class DataError(DeepwellError, ValueError):
    """Data is missing, unreadable or inconsistent (NaN, shapes, labels out of range, ...).

    Example::

        deepwell.train(overrides=["data.source=csv:path=missing.csv,target=y"])   # raises DataError: ... not found
    """


class CheckpointError(DeepwellError, ValueError):
    """A run folder or checkpoint is missing, corrupt or does not match the model.

    Example::

        deepwell.Run.load("not/a/run")   # raises CheckpointError: 'not/a/run' is not a run folder ...
    """


class TrainingError(DeepwellError, RuntimeError):
    """Training cannot go on (for example the loss became non-finite).

    Example::

        except deepwell.TrainingError as error:   # e.g. a data-parallel worker failed
            print(error)
    """


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest known name, or '' when none is close."""
    matches = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" Did you mean '{matches[0]}'?" if matches else ""


def unknown_name(kind: str, word: str, known: Iterable[str]) -> ConfigError:
    """The one 'unknown X' error: names the closest match and every known choice."""
    known = sorted(known)
    return ConfigError(f"Unknown {kind} '{word}'.{did_you_mean(word, known)} Known: {', '.join(known)}.")


def missing_extra(package: str, extra: str, purpose: str) -> ConfigError:
    """The one 'optional package missing' error: names the package, what needs it, and the extra to install."""
    return ConfigError(f"{purpose.capitalize()} needs the Python package '{package}', which is not installed. "
                       f"Install it with: pip install 'deepwell[{extra}]'")
