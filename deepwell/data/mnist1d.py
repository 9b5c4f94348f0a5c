"""MNIST-1D arrays (Greydanus 2020): generated offline by the ``mnist1d`` package, cached on disk.

Generation takes seconds (8 s for 16,000 examples), so each argument set is generated once and
kept in :func:`cache_dir` (atomic writes, the package version in the file name); the ``mnist1d``
data source (deepwell.data.sources) turns the arrays into a Dataset.
"""

from __future__ import annotations

import functools
import os
import random
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "mnist1d_arrays", "generate_mnist1d"]


def cache_dir() -> Path | None:
    """Where generated data is cached: ``$DEEPWELL_CACHE``, else ``$XDG_CACHE_HOME/deepwell`` or
    ``~/.cache/deepwell``; ``DEEPWELL_CACHE=off`` turns the cache off (None)."""
    root = os.environ.get("DEEPWELL_CACHE")
    if root is not None and root.lower() in ("", "0", "off", "none"):
        return None
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepwell"


@functools.lru_cache(maxsize=8)
def mnist1d_arrays(num_samples: int, train_split: float, shuffle_seq: bool, noise: float, data_seed: int) -> tuple[np.ndarray, ...]:
    """MNIST-1D for one argument set: generated once (8 s for 16,000 examples), then read from the cache folder.

    The file name holds every argument and mnist1d's version; a missing, unreadable or unwritable
    cache only means generating again (the data are a pure function of the arguments).
    """
    from importlib.metadata import version

    folder = cache_dir()
    name = f"mnist1d-{version('mnist1d')}-{num_samples}-{train_split!r}-{shuffle_seq}-{noise!r}-{data_seed}.npz"
    if folder is not None and (folder / name).is_file():
        try:
            with np.load(folder / name, allow_pickle=False) as cached:
                arrays = tuple(cached[key] for key in ("x", "y", "x_test", "y_test"))
            for array in arrays:
                array.setflags(write=False)
            return arrays
        except (OSError, ValueError, KeyError):
            pass  # a damaged file: generate again (and overwrite it)
    arrays = generate_mnist1d(num_samples, train_split, shuffle_seq, noise, data_seed)
    if folder is not None:
        temporary = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", suffix=".tmp", delete=False) as handle:
                temporary = Path(handle.name)
                np.savez(handle, **dict(zip(("x", "y", "x_test", "y_test"), arrays)))
            os.replace(temporary, folder / name)  # atomic: a reader sees the whole file or none
        except OSError:
            pass  # a read-only home: no cache, same data
        finally:
            if temporary is not None:  # left only when writing failed
                temporary.unlink(missing_ok=True)
    return arrays


def generate_mnist1d(num_samples: int, train_split: float, shuffle_seq: bool, noise: float, data_seed: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.shuffle_seq, args.seed = num_samples, train_split, shuffle_seq, data_seed
    args.corr_noise_scale *= noise
    args.iid_noise_scale *= noise
    # make_dataset seeds the global `random` and NumPy generators; restore them so building data has no side effect.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = (data["x"], data["y"], data["x_test"], data["y_test"])
    for array in arrays:
        array.setflags(write=False)
    return arrays
