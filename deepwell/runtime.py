"""Where and how computation runs: device choice, CPU threads, denormals."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from deepwell.errors import ConfigError

__all__ = ["resolve_device", "configure_cpu", "keep_freed_memory", "set_deterministic", "torch_threads", "usable_cores",
           "forward_measuring"]

_configured = False
# glibc's malloc on 64-bit: the most its mmap threshold rises to by itself (DEFAULT_MMAP_THRESHOLD_MAX, 32 MiB)
MALLOC_THRESHOLD_MAX = 32 << 20


def configure_cpu() -> None:
    """Flush denormals to zero and use one thread per physical core (once per process).

    Once training loss is near zero, float32 values underflow to denormals, which x86 CPUs
    handle ~100x slower; a small model then runs 10-100x slower (measured 176 s vs 10 s).
    ``DEEPWELL_THREADS`` overrides the thread count; ``OMP_NUM_THREADS`` (torchrun sets it) is left in force.
    """
    global _configured
    if _configured:
        return
    torch.set_flush_denormal(True)
    threads = os.environ.get("DEEPWELL_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    elif os.environ.get("OMP_NUM_THREADS"):
        pass  # set by the user or by torchrun for its processes: torch already follows it
    else:
        torch.set_num_threads(usable_cores())
    _configured = True


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's limit), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the number before it.

    Example::

        with torch_threads(1):   # one shard per core: each on one thread
            train_shard()
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def forward_measuring(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``model(x)`` and the number of values in its largest module output (or ``x``): what a batch's
    activations take, for sizing the batches of a pass that should stay near the core's cache.

    Example::

        out, largest = forward_measuring(model, x[:32])   # then batches of ~(1 << 18) * 32 // largest examples
    """
    sizes = [x.numel()]
    hooks = [m.register_forward_hook(lambda m, i, out: sizes.append(out.numel() if isinstance(out, torch.Tensor) else 0))
             for m in model.modules()]
    try:
        return model(x), max(sizes)
    finally:
        for hook in hooks:
            hook.remove()


def keep_freed_memory() -> None:
    """Let the C allocator keep freed tensors of up to ~31 MiB for reuse instead of returning them to the system.

    glibc's malloc serves a block above its mmap threshold (128 KiB at start) with a fresh mapping
    and returns memory at the top of its heap once more than twice the threshold is free; the
    threshold only rises when a mapped block larger than it is freed. A loop that allocates and
    frees the same few megabytes per step (the loss landscape's chunks) can then fault every page
    in again at every step: measured 21,000-200,000 page faults and +0.1-0.35 s of system time per
    40 x 41 plane. Freeing one untouched 31 MiB block raises the threshold to 31 MiB (what glibc
    does by itself after any such free), so freed blocks stay in the heap. Costs one mmap/munmap;
    other allocators ignore it.

    Example::

        keep_freed_memory()   # before a loop of same-sized large temporaries
    """
    torch.empty(MALLOC_THRESHOLD_MAX - (1 << 20), dtype=torch.uint8)   # freed at once, never touched


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA GPU when present (then Apple MPS), else the CPU.

    Raises:
        ConfigError: unknown device name, or a GPU asked for where none is present.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        configure_cpu()
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"Unknown device '{name}'. Use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} asks for a CUDA GPU but none is available here. Use device=auto or cpu.")
    if device.type == "cpu":
        configure_cpu()
    return device


def set_deterministic(enabled: bool) -> None:
    """Ask torch for bitwise-reproducible kernels (slower on GPUs; CPU kernels already are).

    cuDNN convolutions and cuBLAS pick non-deterministic algorithms by default, so two CUDA runs
    with one seed can drift apart; with this on they match exactly (Lightning's
    ``deterministic=True`` does the same).
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS for determinism
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False
