"""The batched engine's compiled step: C++ built with the machine's compiler on first use, cached on disk.

``padded_step.cpp`` is :meth:`deepwell.sweep.padded._Padded.train_step` written against ATen: the
same calls in the same order, so the same numbers bit for bit, without the interpreter between
them (~4% of a double-descent sweep step, measured paired on one thread) and without the GIL,
which is what it is for: a sweep's shards can then be threads of one process instead of spawned
workers (deepwell.sweep.executors). bench/double_descent.py measures the sweep it serves.

It is built with torch's own extension builder (``torch.utils.cpp_extension.load``: ninja and the
C++ compiler, ~15 s once) into ``$DEEPWELL_NATIVE_CACHE`` (default ``~/.cache/deepwell/native``),
in a folder keyed by the source, torch's version and the Python version, so a new torch or a changed
source builds anew and two processes building at once wait for each other (torch's file lock).
``make install`` builds it (:func:`main`). ``DEEPWELL_NATIVE=off`` turns it
off; where no compiler is found or the build fails, the Python step runs and one warning says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import sys
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["padded_step", "cache_folder", "is_built"]

SOURCE = Path(__file__).with_name("padded_step.cpp")
NAME = "deepwell_padded_step"
FLAGS = ["-O3"]
_log = logging.getLogger(__name__)
_loaded: dict[str, ModuleType | None] = {}


def cache_folder() -> Path:
    """Where the build lives: one folder per (source, flags, torch, Python, machine)."""
    root = Path(os.environ.get("DEEPWELL_NATIVE_CACHE") or Path.home() / ".cache" / "deepwell" / "native")
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join(FLAGS).encode(), torch.__version__.encode(),
                                     sys.version.encode(), platform.machine().encode()])).hexdigest()[:16]
    return root / key


def is_built() -> bool:
    """Whether the cache holds a build for this source, torch and Python (loading it then takes milliseconds)."""
    return any(cache_folder().glob(f"{NAME}*.so"))


def padded_step() -> ModuleType | None:
    """The compiled step's module (``train_step``), built on first use; None when off or not buildable (a warning says why)."""
    if os.environ.get("DEEPWELL_NATIVE", "auto").lower() in ("0", "off", "false", "no"):
        return None
    if "padded_step" not in _loaded:
        _loaded["padded_step"] = _build()
    return _loaded["padded_step"]


def _build() -> ModuleType | None:
    missing = [tool for tool in ("ninja", os.environ.get("CXX", "c++")) if shutil.which(tool) is None]
    if missing:
        _log.warning("deepwell's compiled sweep step is off: %s not found (install a C++ compiler and ninja, e.g. "
                     "apt-get install g++ ninja-build); the Python step runs, its sweep shards in worker processes.",
                     " and ".join(missing))
        return None
    folder = cache_folder()
    if not is_built():
        _log.warning("compiling deepwell's C++ sweep step once into %s (~15 s; `make install` does it ahead)", folder)
    try:
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found": not needed here
        from torch.utils.cpp_extension import load

        folder.mkdir(parents=True, exist_ok=True)
        return load(NAME, [str(SOURCE)], extra_cflags=FLAGS, build_directory=str(folder), verbose=False)
    except (OSError, RuntimeError, ImportError) as error:  # a compiler error, a read-only home, a broken toolchain
        _log.warning("deepwell's compiled sweep step could not be built (%s); the Python step runs instead. "
                     "Set DEEPWELL_NATIVE=off to skip the attempt.", str(error).strip().splitlines()[-1][:300])
        return None


def main() -> None:
    """``make install``: build it now, not in the first sweep; say where it is."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    module = padded_step()
    print(f"deepwell's compiled sweep step: {'ready in ' + str(cache_folder()) if module else 'not built (see above)'}")
