"""``train.cuda_graphs``: the training step's forward and backward replayed as CUDA graphs.

Small networks on a GPU are bound by kernel launches: the default 1-D CNN spends ~4 ms of CPU time
launching a step's kernels against ~0.5 ms of GPU work (issue 17, measured on an H200). A CUDA
graph records the kernels once and replays them with one launch. ``fit`` gets them from
``torch.compile(mode="reduce-overhead")`` (inductor's CUDA-graph trees) of its *step loss*, the
function ``x, y -> loss_fn(model(x), y)`` under the run's precision: the forward, the loss and
(through AOTAutograd) the backward are captured; the optimiser's step stays eager (a few fused or
foreach kernels). torch handles what a hand-made capture would have to: static input buffers,
warm-up on a side stream, re-recording when the shapes change.

What stays eager, and why:

- the steps a callback reads inside (:meth:`Callback.needs_eager_step`: the probes' sampling steps
  register gradient hooks on the block outputs, a Python side effect a graph cannot replay);
- a last batch smaller than the others (a graph has static shapes: a second graph for one step an
  epoch is not worth its recording);
- data-parallel runs (DDP's bucketed all-reduce and CUDA graphs do not compose simply);
- every run not on CUDA: on a CPU the key is accepted and ignored. The factored step function is the
  same on both; tests run it compiled on a CPU with a debugging backend (``BACKEND``) to check the
  wiring, the numbers are checked against eager on a GPU (bench/gpu.py).

The step's loss lives in the graph's output memory, which the next replay overwrites: ``fit``
keeps a copy of it. Where graphs apply, ``train.compile`` adds nothing (the step is compiled
already) and is not applied on top.

bench/gpu.py measures the speed-up and prints torch's "skipping cudagraphs" hints where a step of
the default nets is not captured. The probes' fired-unit masks are marked static
(``torch._dynamo.mark_static_address``) because the graphed steps update them in place, which torch
captures only for inputs that stay at one address.

Example::

    graphed = graph_step(stepper.step_loss) if graphs_apply(spec, device, distributed) else None
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["graphs_apply", "graph_step", "BACKEND", "DEVICES"]

BACKEND: Any = "inductor"  # torch.compile's backend (tests: a counting or "aot_eager" backend)
DEVICES = ("cuda",)        # device types graphs apply to (tests add "cpu" to exercise the wiring)


def graphs_apply(enabled: bool, device: torch.device, distributed: bool) -> bool:
    """Whether a fit graphs its steps: ``train.cuda_graphs`` on, a CUDA device, one process."""
    return enabled and device.type in DEVICES and not distributed


def graph_step(step_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``step_loss`` compiled for CUDA-graph replay (``mode="reduce-overhead"``; inductor, or ``BACKEND``).

    Each fit's step gets its own copy of the calling code: dynamo keeps compiled graphs per code
    object and, after ``recompile_limit`` (8) of them, silently runs a code object eagerly. Every fit
    brings new objects (model, probes' hooks) its guards fail on, so a process running many fits
    (bench, studies, a test session) would lose its graphs from the ninth fit on. A copy starts an
    empty cache that dies with the fit. (``torch.compiler.reset()`` would do it too, but also drop
    the compiled code of fits running in other threads: the playground's sessions.)
    """
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return step_loss(x, y)
    step.__code__ = step.__code__.replace()  # a distinct code object, same bytecode
    if BACKEND == "inductor":
        return torch.compile(step, mode="reduce-overhead")
    return torch.compile(step, backend=BACKEND)  # modes are inductor's; other backends take none
