"""Errors users see: each says what happened, what was expected, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["DeepwellError", "ConfigError", "DataError", "DataWarning", "CheckpointError", "TrainingError", "StorageError",
           "Interrupted", "storage_error", "did_you_mean", "missing_extra"]


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


class DataWarning(UserWarning):
    """Data that trains, but probably not as meant (odd class labels, classes too small for the splits).

    Raised as an error instead under ``data.strict_labels: true``; the CLI prints it as one ``warning:`` line.
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


class StorageError(DeepwellError, OSError):
    """A file or folder could not be written (full disk, read-only or missing folder, a file where a folder should be)."""


class Interrupted(BaseException):
    """Training was stopped by a signal (Ctrl-C, SIGTERM) at a step boundary, after saving what can be resumed.

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` does not swallow it; not a
    KeyboardInterrupt, which click (under the CLI) turns into a silent exit before deepwell can say how
    to resume. ``run_dir`` (set by ``deepwell.train``) is the folder to resume and ``resumable`` whether
    it holds a checkpoint; ``epoch`` the completed epochs the checkpoint holds (0: not known).

    Example::

        try:
            deepwell.train(spec)
        except Interrupted as stop:
            print(stop.resume_hint())
    """

    def __init__(self, signum: int, epoch: int = 0, run_dir: object = None, resumable: bool = False) -> None:
        super().__init__(signum)
        self.signum, self.epoch, self.run_dir, self.resumable = signum, epoch, run_dir, resumable
        self.hint: str | None = None  # set by what knows better how to go on (a sweep: run it again)

    def __str__(self) -> str:
        return self.resume_hint()

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def resume_hint(self) -> str:
        import signal

        name = signal.Signals(self.signum).name
        if self.hint is not None:
            return f"Interrupted ({name}). {self.hint}"
        if self.run_dir is None:
            return f"Interrupted ({name}) before a run folder was written; nothing to resume."
        if not self.resumable:
            return (f"Interrupted ({name}) before the first checkpoint: nothing to resume. Train again (the "
                    f"folder {self.run_dir} can be deleted, or reused with output.overwrite=true).")
        saved = f"the checkpoint of epoch {self.epoch} is saved" if self.epoch else "its last checkpoint is kept"
        return f"Interrupted ({name}); {saved}. Resume with: deepwell train --resume {self.run_dir}"


def storage_error(error: OSError, run_dir: object = None, verb: str = "write") -> StorageError:
    """The one-line error for an OSError while writing: what failed, why, what to do (and how to resume)."""
    import errno

    where = f" '{error.filename}'" if error.filename else ""
    advice = {
        errno.ENOSPC: "the disk is full: free some space",
        errno.EDQUOT: "the disk quota is exceeded: free some space",
        errno.EROFS: "the file system is read-only: choose another folder (output.dir or --out)",
        errno.EACCES: "permission denied: choose a folder you can write (output.dir or --out)",
        errno.EPERM: "the folder refuses writes (permissions or an immutable flag): choose another folder (output.dir or --out)",
        errno.ENOTDIR: "a part of the path is a file, not a folder: choose another folder (output.dir or --out)",
        errno.ENOENT: "that folder cannot be created there: choose another folder (output.dir or --out)",
    }.get(error.errno, "check the path, its permissions and the free space")
    resume = f", then resume with: deepwell train --resume {run_dir}" if run_dir is not None else ""
    result = StorageError(f"Cannot {verb}{where}: {error.strerror or error}; {advice}{resume}.")
    result.errno = error.errno
    return result


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
