"""Run folders claimed safely: one run per folder, even when several start at once.

- :func:`claim_run_folder` creates the folder with one ``mkdir`` (atomic: of two processes, one
  wins). An unnamed run that loses (another run started in the same second) takes the next free
  suffix (``-2``, ``-3``, ...). A named folder that exists is refused unless the spec says
  ``output.overwrite=true`` (then a previous run's files are removed first).
- :class:`FolderLock` holds an advisory ``flock`` on ``<folder>/.lock`` while a run writes, so a
  second ``--resume`` or an overwrite of a folder being written is refused, not mixed in. The
  kernel drops the lock when the process dies, kill -9 included: a lock never goes stale (a
  killed run leaves the file, unlocked; a finished one removes it).

Example::

    path = claim_run_folder(Path("runs"), "mnist1d-mlp-20261207-101500", named=False, overwrite=False)
    with FolderLock(path):
        ...  # write the run
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from deepwell.errors import ConfigError

__all__ = ["claim_run_folder", "check_name_free", "FolderLock", "release_if_empty"]

LOCK_NAME = ".lock"


def claim_run_folder(parent: Path, name: str, *, named: bool, overwrite: bool = False) -> Path:
    """Create ``parent/name`` (or, unnamed, the first free ``name-N``) and return it.

    Raises:
        ConfigError: a named folder that already exists, without ``overwrite``; or one that another
            process is writing; or one that is not a run folder (overwrite never deletes those).
        OSError: the parent cannot be created or written (the caller maps it to a one-line error).
    """
    parent.mkdir(parents=True, exist_ok=True)
    path, suffix = parent / name, 1
    while True:
        try:
            path.mkdir()  # no exist_ok: of two processes claiming one name, exactly one succeeds
            return path
        except FileExistsError:
            if named:
                return _reclaim(path, overwrite)
            suffix += 1
            path = parent / f"{name}-{suffix}"


def check_name_free(path: Path, overwrite: bool) -> None:
    """Refuse a named run folder that already exists (unless ``overwrite``): early, before any work.

    Raises:
        ConfigError: saying how to resume it, name another, or replace it.
    """
    if overwrite or not path.exists():
        return
    if path.is_dir() and not (path / "config.yaml").is_file() and any(entry.name != LOCK_NAME for entry in path.iterdir()):
        raise ConfigError(f"Folder '{path}' already exists and is not a run folder (no config.yaml): the run's files would be "
                          "mixed with what it holds. Choose another output.name (or output.dir).")
    what = "holds a run" if (path / "config.yaml").is_file() else "exists (another run may be starting in it)"
    raise ConfigError(f"Run folder '{path}' already {what}. Resume it with `deepwell train --resume {path}`, choose "
                      "another output.name, or set output.overwrite=true to replace it.")


def _reclaim(path: Path, overwrite: bool) -> Path:
    """An existing named folder: refused, or (overwrite, a run folder not being written) emptied."""
    check_name_free(path, overwrite)
    if path.is_dir() and not (path / "config.yaml").is_file() and any(entry.name != LOCK_NAME for entry in path.iterdir()):
        raise ConfigError(f"Run folder '{path}' exists and is not a run folder (no config.yaml); output.overwrite only "
                          "replaces runs. Choose another output.name.")
    with FolderLock(path):  # refuses a folder another process is writing
        for entry in path.iterdir():
            if entry.name == LOCK_NAME:
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    return path


def release_if_empty(path: Path) -> bool:
    """Remove a claimed folder nothing was written into (a run that failed before training); True when removed."""
    if not path.is_dir() or any(entry.name != LOCK_NAME for entry in path.iterdir()):
        return False  # the run wrote files worth keeping (or resuming)
    (path / LOCK_NAME).unlink(missing_ok=True)
    path.rmdir()
    return True


class FolderLock:
    """An exclusive, non-blocking ``flock`` on ``<folder>/.lock`` (a context manager; :meth:`release` ends it).

    Raises:
        ConfigError: another process holds it (names its process id when it wrote one).
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        while True:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
                self._close()
                raise ConfigError(f"Run folder '{folder}' is being written by another deepwell process"
                                  f"{f' (pid {holder})' if holder else ''}. Wait for it to finish, or stop it first; "
                                  "two runs in one folder would mix their files.") from None
            if self._still_linked():
                break
            self._close()  # its holder removed the file as we opened it: lock the new one
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def _still_linked(self) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return False

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def release(self) -> None:
        """Remove the lock file (while still holding it: a waiting process then locks a new one) and unlock."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            self._close()

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
