"""``train.compile``: ``torch.compile`` of the training forward (``off``, ``on`` or ``auto``).

Only the forward of the training steps is compiled (``torch.compile`` wraps the module; the
parameters are the model's own, so the optimiser, checkpoints and ``state_dict`` are untouched).
Evaluation and the probes' own measuring passes call the eager model. Forward hooks on the
blocks (the probes' hooks) are traced into the compiled graph and still fire: dynamo guards on
what they read (the probes' sampling flag), so the sampling and non-sampling steps each get a
graph, compiled once.

The ``auto`` rule: compile after the first epoch when the rest of the run would save more than
the compile costs, ``remaining_epochs x first_epoch_s x EXPECTED_SAVING > COMPILE_S``, with
``COMPILE_S`` the one-off compile time (inductor's C++ build of the forward and backward graphs:
33 s measured for the paper MLP on a loaded 2-core machine, bench/loop.py) and ``EXPECTED_SAVING``
the fraction of an epoch compiling removes (5% assumed: on that MLP on CPU bench/loop.py measured
0.99x eager per epoch, as its steps are matmul-bound; elementwise-heavy nets save more). So ``auto``
compiles only runs that have more than ~10 minutes left after their first epoch.

Example::

    should_compile(remaining_epochs=1000, epoch_s=1.0)   # True: 1000 x 1.0 x 0.05 = 50 s > 30 s
    should_compile(remaining_epochs=100, epoch_s=1.0)    # False: 5 s saved would not repay 30 s
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["should_compile", "compile_forward", "COMPILE_S", "EXPECTED_SAVING"]

COMPILE_S = 30.0        # assumed one-off compile time in seconds (see the module docstring)
EXPECTED_SAVING = 0.05  # assumed fraction of an epoch's time that compiling removes
BACKEND = "inductor"    # torch.compile's backend; tests set "aot_eager" to check the wiring without the C++ build


def should_compile(remaining_epochs: int, epoch_s: float, compile_s: float = COMPILE_S,
                   saving: float = EXPECTED_SAVING) -> bool:
    """The ``auto`` rule: does compiling now repay its cost over the remaining epochs?"""
    return remaining_epochs * epoch_s * saving > compile_s


def compile_forward(forward: nn.Module) -> Callable[..., torch.Tensor]:
    """``torch.compile(forward)``: a callable sharing the module's parameters, buffers and hooks."""
    compiled = torch.compile(forward, backend=BACKEND)

    def call(*args: torch.Tensor) -> torch.Tensor:
        # While tracing a hook that reads ``output.requires_grad`` (the probes'), dynamo itself reads
        # ``.grad`` of a non-leaf tensor and torch warns; the warning is about dynamo's internals, not the user's code.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf", category=UserWarning)
            return compiled(*args)
    return call
