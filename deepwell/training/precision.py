"""``train.precision``: the number format of a run's matrix products (``fp32``, ``bf16`` or ``tf32``).

- ``fp32`` (the default): everything in float32, bitwise as before this option existed.
- ``bf16``: the forward passes (training steps, evaluation, the probes' measuring passes) run under
  ``torch.autocast(device_type, dtype=torch.bfloat16)``: matmuls and convolutions in bfloat16,
  the ops autocast keeps in float32 (losses, softmax, norms) in float32. The weights, their
  gradients and the optimiser's state stay float32 ("master weights"). bfloat16 has float32's
  exponent range, so gradients cannot underflow and no loss scaling is needed (float16 would need
  it). Backward runs outside autocast (torch's advice: its ops follow the forward's dtypes).
  CPUs support it too (slower than fp32 on CPUs without bf16 units, but numerically the same format).
- ``tf32``: float32 tensors, but on CUDA (Ampere and later) matmuls and cuDNN convolutions round their
  inputs to TensorFloat-32 (10 mantissa bits) inside the tensor cores. Set for the duration of
  ``fit`` and restored after. No effect on a CPU (a log line says so, once per process). Note that
  torch's own default already lets cuDNN convolutions use TF32 (``torch.backends.cudnn.allow_tf32``),
  so on CUDA ``fp32`` differs from ``tf32`` in the matmuls; ``fp32`` leaves torch's settings as they are.

:data:`PRECISIONS` also gives each format's relative resolution (its machine epsilon, the gap
between 1 and the next number): the doctor reads it so that it does not mistake rounding for a
finding (deepwell.diagnostics.rules.network).

Example::

    autocast = autocast_factory("bf16", torch.device("cpu"))
    with tf32_context("bf16", torch.device("cpu")), autocast():
        out = model(x)                # out.dtype == torch.bfloat16
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

__all__ = ["PRECISIONS", "Precision", "autocast_factory", "tf32_context", "resolution"]

_log = logging.getLogger(__name__)
_said_no_tf32 = False


@dataclass(frozen=True)
class Precision:
    """One ``train.precision`` value: the autocast dtype (None: no autocast) and the format's machine epsilon."""

    autocast_dtype: torch.dtype | None
    epsilon: float     # relative resolution of the products: 2^-(mantissa bits)
    tf32: bool = False  # TF32 tensor cores on CUDA


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision(None, 2.0 ** -23),
    "tf32": Precision(None, 2.0 ** -10, tf32=True),   # 10 explicit mantissa bits
    "bf16": Precision(torch.bfloat16, 2.0 ** -7),     # 7 explicit mantissa bits: ~3 significant digits
}


def resolution(precision: str) -> float:
    """Machine epsilon of a ``train.precision`` value, e.g. ``resolution("bf16") == 2**-7``."""
    return PRECISIONS[precision].epsilon


def autocast_factory(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the contexts every forward pass of a run runs in: ``torch.autocast`` for ``bf16``, else a no-op.

    Call it once per forward pass (each call is a fresh context manager).
    """
    dtype = PRECISIONS[precision].autocast_dtype
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def tf32_context(precision: str, device: torch.device) -> Iterator[None]:
    """TF32 matmuls and cuDNN convolutions on CUDA while inside (``tf32``); the previous settings restored after."""
    global _said_no_tf32
    enabled = PRECISIONS[precision].tf32
    if not enabled:
        yield
        return
    if device.type != "cuda":
        if not _said_no_tf32:
            _log.warning("train.precision=tf32 changes only CUDA matmuls and convolutions; on %s it has no effect "
                         "(the run is plain fp32).", device.type)
            _said_no_tf32 = True
        yield
        return
    # set_float32_matmul_precision("high") = TF32 matmuls, and it keeps torch's old (allow_tf32) and new
    # (fp32_precision) settings consistent: setting only the new matmul one makes every later read of
    # the old flag raise ("mix of the legacy and new APIs"), and inductor reads it when it compiles.
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True  # torch's default already; a user may have switched it off
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]
