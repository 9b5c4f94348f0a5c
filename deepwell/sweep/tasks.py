"""One run of a sweep: a :class:`SweepTask` (data + model + train + seed) and the record it produces.

A task is plain, picklable data; its ``run_id`` is a hash of everything that decides its result,
so a resumed sweep recognises finished runs. Every executor turns tasks into the same tidy
records::

    {"run_id", <the task's params>, "seed", "num_params", "train_error", "train_loss",
     "test_error", "test_loss", "epochs", "steps", "seconds", "executor",
     "curve": [{"epoch", "train_loss", "train_error", "test_error", "test_loss"}, ...]}

``train_*`` is measured in eval mode on the (possibly noisy) training labels, ``test_*`` on the
data's test split (passed to ``fit`` as its validation data).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.data import prepare_data
from deepwell.models import Network, build_model
from deepwell.runtime import resolve_device
from deepwell.training.loop import TensorData

__all__ = ["SweepTask", "Record", "prepared_data", "build_member", "record_from_history"]

Record = dict[str, Any]


@dataclass(frozen=True)
class SweepTask:
    """One training run of a sweep.

    Args:
        data: the data spec (source, n_train, label noise, ...); prepared with ``seed``.
        model: the model spec; initial weights drawn from ``torch.Generator().manual_seed(seed)``.
        train: the training spec; ``fit`` runs it with ``seed`` (batch order).
        seed: the run's seed (label-noise draw, init, batch order).
        params: the swept values as plain labels (``{"width": 16}``), copied into the record.
        device: ``auto``, ``cpu``, ``cuda``, ...
    """

    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"

    @property
    def run_id(self) -> str:
        """A stable id from everything that decides the result (not the device, not the labels)."""
        canonical = json.dumps({"data": self.data.model_dump(mode="json"), "model": self.model.model_dump(mode="json"),
                                "train": self.train.model_dump(mode="json"), "seed": self.seed}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def group_key(self) -> str:
        """Tasks with equal keys can train as one batched ensemble (same data size and training spec)."""
        data = self.data.model_dump(mode="json")
        return json.dumps({"train": self.train.model_dump(mode="json"), "source": data["source"], "n_train": data["n_train"],
                           "val_fraction": data["val_fraction"], "preprocess": data["preprocess"], "device": self.device},
                          sort_keys=True)


@functools.lru_cache(maxsize=32)
def _prepared(data_json: str, seed: int, device: str) -> tuple[TensorData, tuple[int, ...], int]:
    splits = prepare_data(DataSpec.model_validate_json(data_json), seed=seed)
    target = torch.device(device)
    tensors = TensorData(splits.x_train.to(target), splits.y_train.to(target), splits.x_test.to(target), splits.y_test.to(target))
    return tensors, splits.input_shape, splits.output_size


def prepared_data(task: SweepTask) -> tuple[TensorData, tuple[int, ...], int]:
    """(train + test tensors on the device, input shape, number of classes); cached per process."""
    device = resolve_device(task.device)
    return _prepared(task.data.model_dump_json(), task.seed, str(device))


def build_member(task: SweepTask) -> tuple[Network, TensorData]:
    """The task's freshly initialised model (on the data's device) and its data."""
    data, input_shape, classes = prepared_data(task)
    model = build_model(task.model, input_shape, classes, generator=torch.Generator().manual_seed(task.seed))
    return model.to(data.x_train.device), data


def record_from_history(task: SweepTask, model: torch.nn.Module, history: list[dict[str, float]], seconds: float,
                        executor: str) -> Record:
    """The tidy record of a finished task from its ``fit``-style history."""
    curve = [{"epoch": int(row["epoch"]), "train_loss": row["train/loss_clean"], "train_error": 1.0 - row["train/acc_clean"],
              "test_loss": row.get("val/loss"), "test_error": 1.0 - row["val/acc"] if "val/acc" in row else None}
             for row in history if "train/acc_clean" in row]
    last = curve[-1] if curve else {}
    return {"run_id": task.run_id, **dict(task.params), "seed": task.seed,
            "num_params": sum(p.numel() for p in model.parameters()),
            "train_error": last.get("train_error"), "train_loss": last.get("train_loss"),
            "test_error": last.get("test_error"), "test_loss": last.get("test_loss"),
            "epochs": len(history), "steps": int(history[-1]["step"]) if history else 0,
            "non_finite": any(row.get("non_finite") for row in history) or any(
                "train/loss" in row and row["train/loss"] != row["train/loss"] for row in history),
            "seconds": round(seconds, 3), "executor": executor, "curve": curve}
