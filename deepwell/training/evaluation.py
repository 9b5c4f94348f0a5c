"""Evaluation: the loss a task trains on, and loss / accuracy (classification) or R^2 / MAE (regression) of a model.

``fit`` reports these every epoch; ``Run.evaluate`` and the test split use the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import TrainSpec
from deepwell.errors import ConfigError
from deepwell.runtime import forward_measuring
from deepwell.training.distributed import DataParallel
from deepwell.training.precision import autocast_factory

__all__ = ["EVAL_BATCH", "Task", "evaluate", "loss_function"]

Task = Literal["classification", "regression"]
EVAL_BATCH = 4096  # at most this many examples per forward pass when evaluating (bounds memory, not results)
# On a CPU, fewer where that many examples' largest activation would leave the core's cache. Measured on
# this 2-core machine: the default 1-D CNN evaluated 1024 examples in 25.6 ms as one forward and in
# 11.2 ms as forwards of 256; the MLPs' small activations keep large forwards (40-100-100-10: 3.8 ms for
# 12,000 examples in forwards of 4096, 8.2 ms in forwards of 256).
CACHE_ELEMENTS = 1 << 18   # numbers in one forward's largest activation: ~1 MiB of float32
FIRST_BATCH = 32           # the first forward's examples: its activations' sizes set the other forwards'


def loss_function(task: Task, spec: TrainSpec) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy for classification, mean squared error for regression (or as the spec says)."""
    name = spec.loss if spec.loss != "auto" else ("cross_entropy" if task == "classification" else "mse")
    if name == "cross_entropy" and task != "classification":
        raise ConfigError("train.loss=cross_entropy needs a classification task; this data is regression. Use mse.")
    return F.cross_entropy if name == "cross_entropy" else F.mse_loss


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, *,
             distributed: DataParallel | None = None, target_scale: torch.Tensor | None = None,
             precision: str = "fp32") -> dict[str, float]:
    """Loss and accuracy (classification) or loss, R^2 and MAE (regression) of ``model`` on (x, y) in eval mode.

    R^2 = 1 - SS_res / SS_tot per target column, averaged over columns (scikit-learn's ``r2_score``);
    MAE is the mean absolute error in the target's units: with ``target_scale`` (the std the
    targets were standardised by, per column) the errors are scaled back. The loss stays in the
    units training sees. The model's mode is restored after. With ``distributed`` each process
    evaluates its part of (x, y) and the sums are added up. ``precision`` (``train.precision``):
    ``bf16`` runs the forward passes under autocast, as training did; the sums are float32 or wider.

    Example::

        evaluate(model, x_test, y_test, "regression")  # {'loss': 0.02, 'r2': 0.98, 'mae': 0.11}
    """
    loss_fn = loss_fn or (F.cross_entropy if task == "classification" else F.mse_loss)
    count = len(x)
    if distributed is not None:
        part = distributed.shard(count)
        x, y = x[part], y[part]
    was_training = model.training
    model.eval()
    total, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    columns = y.shape[1] if task == "regression" else 0
    # Regression, per target column: sum |error|, sum error^2, sum y, sum y^2 (float64: R^2 subtracts near-equal sums).
    moments = torch.zeros(4 * columns, device=x.device, dtype=torch.float64)
    autocast = autocast_factory(precision, x.device)
    start, batch = 0, EVAL_BATCH if x.device.type != "cpu" else FIRST_BATCH
    while start < len(x):
        stop = start + batch
        with autocast():
            if start == 0 and x.device.type == "cpu":
                out, largest = forward_measuring(model, x[:stop])
                batch = max(FIRST_BATCH, min(EVAL_BATCH, CACHE_ELEMENTS * len(out) // max(1, largest)))
            else:
                out = model(x[start:stop])
        out = out.float()  # bf16 logits: the loss and the comparisons in float32 (a no-op in fp32)
        target = y[start:stop]
        start = stop
        total += loss_fn(out, target, reduction="sum") / (out.shape[1] if task == "regression" else 1)
        if task == "classification":
            correct += (out.argmax(1) == target).sum()
        else:
            error, target64 = (out - target).double(), target.double()
            moments += torch.cat([error.abs().sum(0), error.square().sum(0), target64.sum(0), target64.square().sum(0)])
    model.train(was_training)
    if distributed is not None:
        total, correct = distributed.all_reduce(torch.stack([total, correct]))
        moments = distributed.all_reduce(moments) if columns else moments
    result = {"loss": (total / count).item()}
    if task == "classification":
        result["acc"] = (correct / count).item()
    else:
        result |= _regression_metrics(moments.view(4, columns), count, target_scale)
    return result


def _regression_metrics(moments: torch.Tensor, count: int, target_scale: torch.Tensor | None) -> dict[str, float]:
    """R^2 (mean over columns) and MAE from per-column sums of |error|, error^2, y and y^2 (rows of ``moments``)."""
    absolute, squared, target_sum, target_square_sum = moments
    scale = torch.ones_like(absolute) if target_scale is None else target_scale.to(absolute)
    variance = target_square_sum - target_sum.square() / count  # SS_tot = sum (y - mean)^2
    # A constant target column has SS_tot = 0: scikit-learn scores a perfect fit 1 and anything else 0.
    r2 = torch.where(variance > 0, 1 - squared / variance.clamp_min(1e-300), (squared == 0).double())
    return {"r2": r2.mean().item(), "mae": (absolute * scale).mean().item() / count}
