"""deepwell's compiled kernels: C++ built with the machine's compiler on first use, cached on disk.

Two kernels, each a registry entry (:data:`EXTENSIONS`) built and loaded the same way:

- ``padded_step`` (deepwell/sweep/padded_step.cpp): :meth:`deepwell.sweep.padded._Padded.train_step`
  in C++: the same calls in the same order, so the same numbers bit for bit, without the
  interpreter between them (~4% of a double-descent sweep step, measured paired on one thread) and
  without the GIL, which is what it is for: a sweep's shards can then be threads of one process
  instead of spawned workers (deepwell.sweep.executors). Its batched matmuls are OpenBLAS's sgemm
  (scipy-openblas32; :func:`_openblas_flags` says why), which the Python step then calls too.
  bench/double_descent.py measures it.
- ``chain_losses`` (deepwell/diagnostics/chain_losses.cpp): a chain MLP's cross-entropy at many
  parameter points, one point per thread, each point's activations kept in the core's cache
  (deepwell.diagnostics.chain_losses; bench/landscape.py and bench/peers.py measure it).

Each is built with torch's own extension builder (``torch.utils.cpp_extension.load``: ninja and the
C++ compiler, ~15-20 s once) into ``$DEEPWELL_NATIVE_CACHE`` (default ``~/.cache/deepwell/native``),
in a folder keyed by its source, flags, torch's version and the Python version, so a new torch or a
changed source builds anew, and two processes building at once wait for each other (torch's file
lock). ``make install`` builds both (:func:`main`). ``DEEPWELL_NATIVE=off`` turns them off; where no
compiler is found or a build fails, the Python path runs and one warning says why.

Example::

    module = native.extension("padded_step")   # None: off, or not buildable here
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["EXTENSIONS", "extension", "cache_folder", "is_built", "enabled"]

HERE = Path(__file__).parent
_log = logging.getLogger(__name__)
_loaded: dict[str, ModuleType | None] = {}


@dataclass(frozen=True)
class Extension:
    """One kernel: its C++ source, compiler and linker flags, and what runs without it (for the warnings)."""

    source: Path
    what: str
    fallback: str
    cflags: tuple[str, ...] = ("-O3",)
    ldflags: tuple[str, ...] = ()
    openblas: bool = False   # links scipy-openblas32 (see _openblas_flags)


# -fopenmp: chain_losses spreads its points over torch's threads with at::parallel_for, whose OpenMP
# pragma compiles to one thread without it (the process then shares torch's own libgomp).
EXTENSIONS = {
    "padded_step": Extension(HERE / "sweep" / "padded_step.cpp", "compiled sweep step",
                             "the Python step runs, its sweep shards in worker processes", openblas=True),
    "chain_losses": Extension(HERE / "diagnostics" / "chain_losses.cpp", "compiled loss-landscape kernel",
                              "the landscape's batched Python path runs", ("-O3", "-fopenmp"), ("-fopenmp",)),
}


def _openblas_folder() -> Path | None:
    """scipy-openblas32's package folder, found without importing it (its import loads the library)."""
    found = importlib.util.find_spec("scipy_openblas32")
    return Path(found.submodule_search_locations[0]) if found and found.submodule_search_locations else None


def _openblas_flags() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(cflags, ldflags) that compile against scipy-openblas32 and load it from where pip put it; empty without it.

    torch's own float32 GEMM is MKL's, which on AMD CPUs runs its AVX2 path whatever the CPU has,
    and is slower than OpenBLAS at the sweep's small shapes even then: on this 2-core AMD EPYC the
    double-descent sweep's batched matmuls, replayed, ran at 58-79 GFLOP/s a core through
    ``torch.bmm``, 79-93 through OpenBLAS with the AVX2 (Haswell) kernels this machine's environment
    pins (``OPENBLAS_CORETYPE``) and ~150 with the AVX-512 (SkylakeX) kernels OpenBLAS picks by
    itself here (bench/double_descent.py prints both in one run).
    OpenBLAS reads ``OPENBLAS_CORETYPE`` when it loads; deepwell leaves it to the user.
    """
    folder = _openblas_folder()
    libraries = sorted((folder / "lib").glob("libscipy_openblas*.so")) if folder else []
    if not libraries:
        return (), ()
    lib = folder / "lib"
    return ((f"-I{folder / 'include'}", "-DDEEPWELL_OPENBLAS"),
            (f"-L{lib}", f"-l{libraries[0].name[3:-3]}", f"-Wl,-rpath,{lib}"))


def _load_openblas() -> None:
    """Load scipy-openblas32 (its import does) before the kernel that links it, and keep it to one thread a call."""
    import scipy_openblas32

    library = ctypes.CDLL(str(Path(scipy_openblas32.get_lib_dir()) / scipy_openblas32.get_library(fullname=True)),
                          mode=ctypes.RTLD_GLOBAL)   # loaded already: a handle to it
    library.scipy_openblas_set_num_threads(1)   # called from torch's threads and the sweep's shards: one thread each


def enabled() -> bool:
    """False when ``DEEPWELL_NATIVE`` says off (0, off, false, no)."""
    return os.environ.get("DEEPWELL_NATIVE", "auto").lower() not in ("0", "off", "false", "no")


def cache_folder(name: str) -> Path:
    """Where ``name``'s build lives: one folder per (source, flags, torch, Python, machine)."""
    spec = EXTENSIONS[name]
    cflags, ldflags = _flags(spec)
    root = Path(os.environ.get("DEEPWELL_NATIVE_CACHE") or Path.home() / ".cache" / "deepwell" / "native")
    key = hashlib.sha256(b"\0".join([spec.source.read_bytes(), " ".join(cflags + ldflags).encode(),
                                     torch.__version__.encode(), sys.version.encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    return root / key


def _flags(spec: Extension) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The compiler and linker flags, OpenBLAS's included where the kernel links it and it is installed."""
    extra_c, extra_ld = _openblas_flags() if spec.openblas else ((), ())
    return spec.cflags + extra_c, spec.ldflags + extra_ld


def is_built(name: str) -> bool:
    """Whether the cache holds a build of ``name`` for this source, torch and Python (loading it then takes milliseconds)."""
    return any(cache_folder(name).glob(f"deepwell_{name}*.so"))


def extension(name: str) -> ModuleType | None:
    """The kernel's module, built on first use; None when off or not buildable (a warning says why).

    Example::

        step = native.extension("padded_step")
    """
    if not enabled():
        return None
    if name not in _loaded:
        _loaded[name] = _build(name)
    return _loaded[name]


def _build(name: str) -> ModuleType | None:
    spec = EXTENSIONS[name]
    missing = [tool for tool in ("ninja", os.environ.get("CXX", "c++")) if shutil.which(tool) is None]
    if missing:
        _log.warning("deepwell's %s is off: %s not found (install a C++ compiler and ninja, e.g. apt-get install g++ "
                     "ninja-build); %s.", spec.what, " and ".join(missing), spec.fallback)
        return None
    folder = cache_folder(name)
    if not is_built(name):
        _log.warning("compiling deepwell's %s once into %s (~15 s; `make install` does it ahead)", spec.what, folder)
    try:
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found": not needed here
        from torch.utils.cpp_extension import load

        folder.mkdir(parents=True, exist_ok=True)
        cflags, ldflags = _flags(spec)
        if "-DDEEPWELL_OPENBLAS" in cflags:
            _load_openblas()
        return load(f"deepwell_{name}", [str(spec.source)], extra_cflags=list(cflags), extra_ldflags=list(ldflags),
                    build_directory=str(folder), verbose=False)
    except (OSError, RuntimeError, ImportError) as error:  # a compiler error, a read-only home, a broken toolchain
        _log.warning("deepwell's %s could not be built (%s); %s. Set DEEPWELL_NATIVE=off to skip the attempt.",
                     spec.what, str(error).strip().splitlines()[-1][:300], spec.fallback)
        return None


def main() -> None:
    """``make install``: build every kernel now, not at first use; say where each is."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, spec in EXTENSIONS.items():
        module = extension(name)
        print(f"deepwell's {spec.what}: {'ready in ' + str(cache_folder(name)) if module else 'not built (see above)'}")


if __name__ == "__main__":
    main()
