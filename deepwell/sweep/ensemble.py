"""Batched ensembles: K small networks trained together as one computation.

Small networks are overhead-bound: a 40-16-16-10 MLP spends its step in Python and kernel
launches, not in arithmetic. Training K of them as one computation pays that overhead once per
step instead of K times. Three layouts (deepwell.sweep.layouts):

- **stacked** (networks of one architecture, any of deepwell's stateless networks, CNNs included):
  parameters stacked with ``torch.func.stack_module_state``, forward by ``vmap`` over
  ``functional_call``.
- **padded** (MLPs of one depth and activation, different widths): members are grouped into
  width buckets (:func:`plan_buckets`); inside a bucket every member is padded to the bucket's
  widest layer and a layer is one batched matmul ``(G, B, in) @ (G, in, out)``. Padded weights and
  biases start at exactly zero and their gradients are exactly zero (padded units are masked to
  zero, or are already zero for activations with f(0) = f'(0) = 0 such as ReLU), so they stay zero
  under every elementwise optimiser and contribute nothing: the result equals separate trainings
  up to float rounding. Its training step is written out by hand (:meth:`_Padded.train_step`).
- **padded_stacked** (any other networks that differ only in width, e.g. CNNs of different channel
  counts): each member zero-padded into a copy of the widest, then stacked as above. Exact for
  activations with f(0) = 0 by the same argument.

The optimiser is torch's own (SGD, Adam, AdamW, RMSProp) applied to the stacked tensors, and the
schedule is torch's scheduler: both act elementwise, so each member gets exactly the update it
would get alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import TrainSpec
from deepwell.errors import ConfigError
from deepwell.models.network import Network
from deepwell.sweep.layouts import _Buckets, _PaddedStacked, _Stacked, ensemble_layout, plan_buckets
from deepwell.sweep.padded import _Padded, compiled_step
from deepwell.training.distributed import plan_batches
from deepwell.training.loop import EVAL_BATCH, TensorData
from deepwell.training.optim import OPTIMIZERS, build_schedule

__all__ = ["train_ensemble", "EnsembleResult", "bucket_cost"]

EVAL_ELEMENTS = 1 << 24  # hidden activations per evaluation chunk (K x examples x width); bounds memory only
CPU_BUCKET_OVERHEAD = 20_000      # per-bucket cost in parameter-equivalents on a CPU (measured: ~0.12 ms a step a bucket,
                                  # ~10 ns a padded parameter; 1e4 and 2e4 give equally fast plans)
COMPILED_BUCKET_OVERHEAD = 1_000  # the same with the compiled step (deepwell.native): the double-descent sweep's
                                  # step 10% faster with 12 buckets than with 2e4's 6 (paired, one thread; 500-2000 alike)
GPU_BUCKET_OVERHEAD = 10_000_000  # on a GPU padding is nearly free and every launch counts: one bucket


@dataclass
class EnsembleResult:
    """Per-member histories in the keys of ``fit`` (``train/loss``, ``train/acc_clean``, ``val/acc``, ...)."""

    histories: list[list[dict[str, float]]]
    layout: str
    buckets: list[list[int]]
    steps: int


def bucket_cost(models: Sequence[Network], device: torch.device) -> float:
    """What one more width bucket costs on ``device``, in parameter-equivalents (see plan_buckets)."""
    if device.type == "cuda":
        return GPU_BUCKET_OVERHEAD
    return COMPILED_BUCKET_OVERHEAD if compiled_step(models) else CPU_BUCKET_OVERHEAD


def _unique(tensors: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """Deduplicate tensors (identity, then equal values): (unique tensors, index of each input)."""
    unique: list[torch.Tensor] = []
    index = []
    for t in tensors:
        for i, u in enumerate(unique):
            if u is t or (u.shape == t.shape and u.dtype == t.dtype and torch.equal(u, t)):
                index.append(i)
                break
        else:
            unique.append(t)
            index.append(len(unique) - 1)
    return unique, index


def _check_spec(spec: TrainSpec) -> None:
    unsupported = {"penalty": spec.penalty.name != "none", "clip_grad_norm": spec.clip_grad_norm is not None,
                   "early_stopping": spec.early_stopping is not None, "loss": spec.loss == "mse"}
    bad = [key for key, flag in unsupported.items() if flag]
    if bad:
        raise ConfigError(f"The batched ensemble does not support train.{', train.'.join(bad)} (their effect is not "
                          "elementwise per member). Use the in-process or process executor for these runs.")


def train_ensemble(models: Sequence[Network], data: Sequence[TensorData], spec: TrainSpec, seeds: Sequence[int], *,
                   bucket_overhead: float | None = None, on_epoch: Callable[[int, int], None] | None = None) -> EnsembleResult:
    """Train K classifiers as one computation; each ends with the weights ``fit(model, data[k], spec, seed=seeds[k])`` gives.

    ``fit`` is deepwell's only training loop for one model; this is the one justified exception:
    K models in one computation cannot go through a per-model loop. Its semantics are ``fit``'s
    for the supported subset: cross-entropy, any elementwise optimiser (SGD with momentum,
    Adam, ...) and schedule, no penalty / clipping / early stopping / augmentation, stateless
    networks. Each member draws its batch order from ``torch.Generator().manual_seed(seed)``
    exactly as ``fit`` does; members with the same seed and training data share one batch.
    Unlike ``fit``, a member whose loss becomes non-finite does not stop the others; its
    history marks it (``non_finite``) and its weights are left as they are.

    Args:
        models: K deepwell Networks on one device; trained in place (weights copied back at the end).
        data: per member, training tensors and (optional) validation tensors; all with the same
            number of training examples. Identical tensors are detected and shared.
        spec: the training spec all members share.
        seeds: per member, the seed ``fit`` would be given (batch order).
        bucket_overhead: padded layout only: cost of one more width bucket in parameter-equivalents
            (default: small on CPU, one bucket on a GPU).
        on_epoch: called with (epoch, epochs) after each epoch (progress display).

    Returns:
        per-member histories in ``fit``'s keys, the layout and buckets used.

    Example::

        models = [build_model(ModelSpec(arch="mlp", width=w, norm="none"), (40,), 10) for w in (8, 32, 128)]
        result = train_ensemble(models, [data] * 3, TrainSpec(optimizer="sgd:momentum=0.9", schedule="constant"), [0, 0, 0])
    """
    if not (len(models) == len(data) == len(seeds)) or not models:
        raise ConfigError(f"train_ensemble needs one data and one seed per model; got {len(models)} models, "
                          f"{len(data)} data, {len(seeds)} seeds.")
    _check_spec(spec)
    layout_name = ensemble_layout(models)
    device = data[0].x_train.device
    sizes = {len(d.x_train) for d in data}
    if len(sizes) != 1:
        raise ConfigError(f"Ensemble members need the same number of training examples (one batch schedule); got {sorted(sizes)}.")
    n = sizes.pop()
    if layout_name in ("padded", "padded_stacked"):
        overhead = bucket_overhead if bucket_overhead is not None else bucket_cost(models, device)
        buckets = plan_buckets([[tuple(p.shape) for p in m.parameters()] for m in models], overhead)
    else:
        buckets = [list(range(len(models)))]
    slots = [k for bucket in buckets for k in bucket]  # internal member order: bucket by bucket
    members = [models[k] for k in slots]
    layouts = {"padded": lambda: _Padded(members, _renumber(buckets, slots)), "stacked": lambda: _Stacked(members),
               "padded_stacked": lambda: _Buckets([_PaddedStacked([members[k] for k in bucket])
                                                   for bucket in _renumber(buckets, slots)], _renumber(buckets, slots))}
    net: nn.Module = layouts[layout_name]()
    flat = layout_name == "padded"

    def inputs(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) if flat else x

    train_x, train_index = _unique([inputs(data[k].x_train) for k in slots])
    streams, stream_of = _unique([torch.tensor([train_index[i], seeds[k]]) for i, k in enumerate(slots)])
    stream_x = torch.stack(train_x)                                           # (U, N, ...)
    stream_x_index = torch.tensor([int(s[0]) for s in streams], device=device)
    y_train = torch.stack([data[k].y_train for k in slots])                  # (K, N)
    member_stream = torch.tensor(stream_of, device=device)
    generators = [torch.Generator().manual_seed(int(s[1])) for s in streams]

    plan = plan_batches(n, spec.batch_size)  # fit's batches: a lone last example is dropped
    steps = plan.steps
    batch_sizes = torch.tensor(plan.sizes, dtype=torch.float32, device=device)
    optimizer = OPTIMIZERS.build(spec.optimizer, params=net.parameters(), lr=spec.lr)
    for group in optimizer.param_groups:  # without a fused kernel (RMSProp): the multi-tensor one, same math
        if "foreach" in group and not group.get("fused"):
            group["foreach"] = True
    warmup = round(spec.warmup_epochs * steps)
    scheduler = None
    if spec.schedule.name != "constant" or warmup:
        scheduler = build_schedule(spec.schedule, optimizer, total_steps=steps * spec.epochs, steps_per_epoch=steps,
                                   warmup_steps=warmup)
    evaluator = _Evaluator(net, [inputs(data[k].x_train) for k in slots], y_train,
                           [inputs(data[k].x_val) if data[k].x_val is not None else None for k in slots],
                           [data[k].y_val for k in slots])
    histories: list[list[dict[str, float]]] = [[] for _ in slots]
    single = len(streams) == 1
    manual = isinstance(net, _Padded) and net.manual
    for epoch in range(spec.epochs):
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)  # (S, N)
        # the epoch's data in batch order, gathered once: a step's batch is then a slice
        if single:
            epoch_x, source, epoch_y = stream_x[stream_x_index[0], orders[0]], None, y_train[:, orders[0]]  # (N, ...), (K, N)
        else:
            epoch_x = stream_x[stream_x_index.unsqueeze(1), orders]          # (S, N, ...)
            source, epoch_y = member_stream, y_train.gather(1, orders[member_stream])
        step_losses = []  # (K,) a step, stacked once an epoch
        net.train()
        for i in range(steps):
            batch = slice(plan.bounds[i], plan.bounds[i + 1])
            x, y = epoch_x[batch] if single else epoch_x[:, batch], epoch_y[:, batch]
            if manual:
                with torch.no_grad():
                    losses = net.train_step(x, source, y)                    # sets .grad by hand (see _Padded.train_step)
            else:
                logits = net(x, source)                                      # (K, B, C)
                losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)  # (K,)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()                                      # members are independent: d sum / d member = its own
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step_losses.append(losses.detach())
        epoch_loss = (torch.stack(step_losses, 1) * batch_sizes).sum(1) / plan.examples  # (K,)
        metrics = {"train/loss": epoch_loss}
        if (epoch + 1) % spec.eval_every == 0 or epoch + 1 == spec.epochs:
            metrics |= evaluator()
        values = {key: value.tolist() for key, value in metrics.items()}  # one transfer per metric
        for slot, history in enumerate(histories):
            row = {"epoch": epoch + 1, "step": (epoch + 1) * steps} | {key: v[slot] for key, v in values.items()}
            if not math.isfinite(row["train/loss"]):
                row["non_finite"] = 1.0
            history.append(row)
        if on_epoch is not None:
            on_epoch(epoch + 1, spec.epochs)
    net.export_(members)
    ordered: list[list[dict[str, float]]] = [[] for _ in models]
    for slot, k in enumerate(slots):
        ordered[k] = histories[slot]
    return EnsembleResult(ordered, layout_name, buckets, steps * spec.epochs)


def _renumber(buckets: list[list[int]], slots: list[int]) -> list[list[int]]:
    position = {k: slot for slot, k in enumerate(slots)}
    return [[position[k] for k in bucket] for bucket in buckets]


class _Evaluator:
    """Clean (eval-mode) loss and accuracy of every member on its own training and validation data."""

    def __init__(self, net: nn.Module, x_train: list[torch.Tensor], y_train: torch.Tensor,
                 x_val: list[torch.Tensor | None], y_val: list[torch.Tensor | None]) -> None:
        self.net = net
        self.train = self._prepare(x_train, y_train)
        self.val = None
        if all(x is not None and len(x) > 0 for x in x_val):
            self.val = self._prepare(x_val, torch.stack(y_val))

    @staticmethod
    def _prepare(xs: list[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        unique, index = _unique(xs)
        source = None if len(unique) == 1 else torch.tensor(index, device=y.device)
        return torch.stack(unique), source, y

    @torch.no_grad()
    def __call__(self) -> dict[str, torch.Tensor]:
        self.net.eval()
        out = {}
        for prefix, suffix, part in (("train/", "_clean", self.train), ("val/", "", self.val)):
            if part is None:
                continue
            x, source, y = part
            members, count = y.shape
            widest = max((p.shape[1] for p in self.net.parameters() if p.dim() == 3), default=1)
            chunk = max(1, min(EVAL_BATCH, EVAL_ELEMENTS // (members * widest)))
            loss = torch.zeros(members, device=y.device)
            correct = torch.zeros(members, device=y.device)
            for start in range(0, count, chunk):
                xs = x[0, start:start + chunk] if source is None else x[:, start:start + chunk]
                logits = self.net(xs, source)                                  # (K, b, C)
                target = y[:, start:start + chunk]
                loss += F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).sum(1)
                correct += (logits.argmax(2) == target).sum(1)
            out[f"{prefix}loss{suffix}"] = loss / count
            out[f"{prefix}acc{suffix}"] = correct / count
        self.net.train()
        return out
