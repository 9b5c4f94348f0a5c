"""Data-parallel training: the same ``fit`` in one process per device, under ``torchrun``.

``torchrun --nproc_per_node N -m deepwell.cli train ...`` (or ``deepwell train --nproc N``) starts
N processes; each reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, joins a process group (gloo on CPUs,
NCCL on CUDA GPUs) and runs the one training loop, :func:`~deepwell.training.loop.fit`, on its
share of every batch. What that means, exactly:

- **Batches.** Every process draws the same shuffled order from the same seeded generator, so
  global batch i holds exactly the examples of the single-process batch i (``train.batch_size``
  of them). It is cut into N contiguous shards whose sizes differ by at most one (as
  ``torch.tensor_split``); process r trains on shard r.
- **Gradients.** ``DistributedDataParallel`` averages gradients over processes. Each process
  scales its mean loss by ``b_r * N / B`` (its shard size b_r, global batch size B), so the average
  is the gradient of the mean loss over the whole global batch, also when shards are uneven: the
  weights match a single-process run with the same batch size to float round-off.
- **The last batch** is kept when it gives every process at least 2 examples (single-process
  training keeps a last batch of at least 2: a lone example breaks BatchNorm); otherwise it is
  dropped, so with N processes up to 2N - 1 examples per epoch may go unused.
- **BatchNorm** normalises with each process's own shard statistics, not the global batch's
  (smaller batches, other results), unless ``train.sync_batchnorm`` (CUDA only: torch's
  SyncBatchNorm needs GPUs). Running statistics are rank 0's (DDP broadcasts them).
- **Randomness.** Dropout and DropConnect masks come from the global generator, re-seeded per
  epoch and rank (so a resumed run continues exactly); augmentation draws from ``seed + rank``.
  With either, results match single-process runs only in distribution.
- **Metrics** are global: the training loss is summed over processes, evaluations are split
  over processes and summed; a stop requested on rank 0 (early stopping, a callback) stops all.
- **Files**: only rank 0 writes the run folder (config, metrics, probes, checkpoints, report,
  tracking); the others write nothing.
"""

from __future__ import annotations

import datetime
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepwell.errors import ConfigError, Interrupted
from deepwell.runtime import usable_cores

__all__ = ["BatchPlan", "DataParallel", "plan_batches", "process_rank", "launch"]

COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)  # a collective (the closing barrier too) fails after this, not hangs
MIN_EXAMPLES = 2  # per process and batch: BatchNorm in training mode needs two examples


def process_rank() -> int:
    """This process's rank in a torchrun job (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class BatchPlan:
    """Which examples of an epoch's shuffled order one process trains on, step by step.

    Attributes:
        sizes: examples in each global batch (the loss of step i is averaged over sizes[i]).
        bounds: step i uses ``local[bounds[i]:bounds[i + 1]]`` of this process's order.
        positions: where this process's examples sit in the global order (None: all of it).
        scales: factor on this process's mean loss so that the averaged gradient is the global
            batch's (None in a single process, where it is 1).
    """

    sizes: list[int]
    bounds: list[int]
    positions: torch.Tensor | None
    scales: list[float] | None

    @property
    def steps(self) -> int:
        return len(self.sizes)

    @property
    def examples(self) -> int:
        """Training examples used per epoch (all of them, but for a dropped last batch)."""
        return sum(self.sizes)


def plan_batches(n: int, batch_size: int, world_size: int = 1, rank: int = 0) -> BatchPlan:
    """Split ``n`` shuffled examples into global batches and this process's shards of them.

    Args:
        n: training examples.
        batch_size: the global batch size (``train.batch_size``).
        world_size, rank: processes in the job and this one's rank.

    Returns:
        the :class:`BatchPlan`; with ``world_size=1`` the plain single-process batches.

    Raises:
        ConfigError: no batch at all, or a global batch too small to give every process ``MIN_EXAMPLES`` examples.

    Example::

        plan_batches(10, 4, world_size=2, rank=1)  # sizes [4, 4], rank 1 takes positions 2, 3, 6, 7
    """
    minimum = MIN_EXAMPLES * world_size
    if world_size > 1 and batch_size < minimum:
        raise ConfigError(
            f"train.batch_size={batch_size} is the global batch, split over {world_size} processes; each needs at least "
            f"{MIN_EXAMPLES} examples. Use train.batch_size >= {minimum} or fewer processes.")
    full, rest = divmod(n, batch_size)
    sizes = [batch_size] * full + ([rest] if rest >= minimum else [])
    if not sizes:
        raise ConfigError(f"train.batch_size={batch_size} leaves no batch for {n} training example(s); lower it.")
    if world_size == 1:
        return BatchPlan(sizes, [0, *torch.tensor(sizes, dtype=torch.long).cumsum(0).tolist()], None, None)
    bounds, pieces, scales, start = [0], [], [], 0
    for size in sizes:
        base, extra = divmod(size, world_size)  # torch.tensor_split: the first `extra` shards get one more
        shard = base + (1 if rank < extra else 0)
        offset = rank * base + min(rank, extra)
        pieces.append(torch.arange(start + offset, start + offset + shard))
        bounds.append(bounds[-1] + shard)
        scales.append(shard * world_size / size)
        start += size
    return BatchPlan(sizes, bounds, torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long), scales)


class DataParallel:
    """One process of a data-parallel job: its rank and the few collectives ``fit`` needs.

    Build it with :meth:`from_env` inside a torchrun job and pass it to ``fit(distributed=...)``;
    ``deepwell.train`` does that by itself.

    Args:
        rank, world_size: this process and the number of processes.
        device: this process's device (``cuda:LOCAL_RANK`` on GPUs).
        owns_group: destroy the process group in :meth:`close` (it was created here).
    """

    def __init__(self, rank: int, world_size: int, device: torch.device, owns_group: bool = False) -> None:
        self.rank, self.world_size, self.device, self.owns_group = rank, world_size, device, owns_group

    @classmethod
    def from_env(cls, device: torch.device) -> DataParallel | None:
        """Join the job torchrun started (gloo for CPUs, NCCL for CUDA); None when not launched with N > 1.

        Raises:
            ConfigError: a device other than CPU/CUDA, or fewer GPUs than processes on this machine.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return None
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(f"Process {local_rank} of this machine needs its own GPU but only {torch.cuda.device_count()} "
                                  "are visible. Use --nproc no larger than the number of GPUs, or device=cpu.")
            device = torch.device("cuda", local_rank)  # one GPU per process, whatever index the spec named
            torch.cuda.set_device(device)
        elif device.type != "cpu":
            raise ConfigError(f"Data-parallel training runs on CPUs (gloo) or CUDA GPUs (NCCL), not on {device}. "
                              "Use device=cpu or a CUDA machine.")
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
        return cls(rank, world_size, device, owns_group=owns)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def plan(self, n: int, batch_size: int) -> BatchPlan:
        return plan_batches(n, batch_size, self.world_size, self.rank)

    def wrap(self, model: nn.Module, sync_batchnorm: bool) -> tuple[nn.Module, Callable[[], None]]:
        """``model`` in DistributedDataParallel (parameters broadcast from rank 0); returns it and an undo.

        With ``sync_batchnorm`` the plain BatchNorm layers become SyncBatchNorm, sharing their
        parameters and statistics; the undo puts the originals back, so the caller's model keeps
        its classes. Subclasses (a frozen BatchNorm of a transfer model) are left as they are.
        """
        from torch.nn.parallel import DistributedDataParallel

        swapped: list[tuple[nn.Module, str, nn.Module]] = []
        if sync_batchnorm:
            if self.device.type != "cuda":
                raise ConfigError("train.sync_batchnorm needs CUDA GPUs (torch's SyncBatchNorm has no CPU kernel). "
                                  "Set it to false on CPUs: each process then normalises with its own shard's statistics.")
            for parent in list(model.modules()):
                for name, child in list(parent.named_children()):
                    if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
                        setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))  # shares the tensors
                        swapped.append((parent, name, child))

        def undo() -> None:
            for parent, name, child in swapped:
                setattr(parent, name, child)

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids), undo

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Seed dropout/DropConnect masks per (seed, epoch, rank): other masks per process, exact on resume."""
        torch.manual_seed((seed * 1_000_003 + epoch) * 1009 + self.rank)

    def reduce_step_losses(self, step_losses: torch.Tensor, plan: BatchPlan) -> torch.Tensor:
        """Per-step mean losses of the global batches, from each process's mean over its shard."""
        if plan.scales is None:  # a job of one process (bench/gpu.py's NCCL check): its shard is the whole batch
            return self.all_reduce(step_losses)
        shares = torch.tensor(plan.scales, device=step_losses.device) / self.world_size  # b_r / B
        return self.all_reduce(step_losses * shares)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over processes (in place; returned for convenience)."""
        import torch.distributed as dist

        dist.all_reduce(tensor)
        return tensor

    def shard(self, count: int) -> slice:
        """This process's contiguous part of ``count`` items (as torch.tensor_split)."""
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm running statistics), once per epoch."""
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, 0)

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (picklable Python objects)."""
        import torch.distributed as dist

        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def close(self, failed: bool = False) -> None:
        """Leave the process group when this object created it, once every process got here.

        Without the barrier a fast process could tear its group down while gloo's threads still
        serve a slower one's last collective: under load the slower one then aborts ("terminate
        called without an active exception"). The barrier fails after ``COLLECTIVE_TIMEOUT`` rather
        than hang, and is skipped when this process ``failed`` (the others will not come; torchrun stops them).
        """
        import torch.distributed as dist

        if not (self.owns_group and dist.is_initialized()):
            return
        try:
            if not failed:
                dist.barrier()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)  # NCCL kernels of the last collective done before the group goes
        finally:
            dist.destroy_process_group()


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``python ARGS`` as ``nproc`` processes of one torchrun job on this machine.

    ``torch.distributed.run --standalone`` through its Python API, so that the exit code of the
    first process that failed comes back (torchrun's own command exits 1 for every failure).

    Args:
        nproc: processes (one per GPU on a CUDA machine; on CPUs they share the cores).
        args: the Python command line after ``python``, e.g. ``["-m", "deepwell.cli", "train"]``.

    Returns:
        0 when every process succeeded, else the first failure's exit code (1 for a signal).

    Raises:
        ConfigError: ``nproc`` < 1, or already inside a torchrun job.
        Interrupted: this launcher got SIGINT/SIGTERM; torchrun has stopped the processes (rank 0
            has printed how to resume).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1; got {nproc}.")
    if "TORCHELASTIC_RUN_ID" in os.environ:
        raise ConfigError("--nproc was given inside a torchrun job; drop --nproc (torchrun already started the processes).")
    if "DEEPWELL_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
        os.environ["DEEPWELL_THREADS"] = str(max(1, usable_cores() // nproc))  # the processes share the cores
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0)
    try:
        elastic_launch(config, sys.executable)(*args)
    except ChildFailedError as error:
        _, failure = error.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    except SignalException as error:  # torchrun's own handler: it has sent the processes SIGTERM, then SIGKILL
        stop = Interrupted(int(error.sigval))
        stop.hint = "The training processes were stopped; the line above (rank 0) says how to resume."
        raise stop from None
    return 0
