"""What the doctor reads from a run folder (:class:`RunEvidence`) and what it says (:class:`Finding`)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from deepwell.config import RunSpec, load_spec
from deepwell.diagnostics.probe_log import ProbeLog, load_probes
from deepwell.errors import CheckpointError
from deepwell.training.checkpoint import load_tensors, read_jsonl
from deepwell.training.precision import resolution

__all__ = ["Finding", "RunEvidence", "SEVERITIES", "Unchecked"]

SEVERITIES = ("error", "warning", "info")  # most serious first; findings are sorted this way
TINY = 1e-30  # below this a norm is zero (weights never initialised / gradients never flowed)


@dataclass(frozen=True)
class Finding:
    """One problem the doctor found, with its evidence and what to try.

    Args:
        rule: id of the rule that found it, e.g. ``"vanishing_gradient"``.
        severity: ``"error"`` (training cannot work), ``"warning"`` (it works badly), ``"info"``.
        title: the problem in plain words.
        evidence: one or two sentences with the numbers, layers and steps.
        layers: the layers concerned (module names, as in probes.jsonl).
        steps: the optimisation steps the evidence comes from (0 = at initialisation).
        numbers: the key measurements, by name.
        remedies: concrete things to try, as spec settings where possible.
        withheld: remedies left out because they contradict a more serious finding's
            (:func:`deepwell.diagnostics.remedies.resolve_conflicts`), each with the reason.

    Example::

        Finding("dead_relu", "warning", "ReLU units are dead", "In epoch 3, 80% of dense.1's units never fired.",
                layers=["dense.1"], remedies=["use model.activation=leaky_relu:0.01"])
    """

    rule: str
    severity: str
    title: str
    evidence: str
    layers: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    remedies: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"Finding severity must be one of {', '.join(SEVERITIES)}; got '{self.severity}'.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Unchecked:
    """What a rule returns when the run lacks what it needs: the check did not run, and why.

    The doctor lists these as "not checked: ..." instead of counting them as passed.

    Example::

        def overfitting(evidence):
            if not evidence.has_validation:
                return Unchecked("no validation data")
    """

    reason: str


@dataclass
class RunEvidence:
    """What the rules read from one run folder. Missing optional files read as empty."""

    path: Path
    spec: RunSpec
    meta: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, float]]
    probes: ProbeLog

    @classmethod
    def load(cls, path: str | Path) -> RunEvidence:
        """Read a run folder. Raises CheckpointError when it is not one (no config.yaml)."""
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise CheckpointError(f"'{path}' is not a run folder (no config.yaml). List runs with `deepwell runs`.")
        metrics = path / "metrics.jsonl"
        history = read_jsonl(metrics)
        return cls(path, load_spec(path / "config.yaml"), _read_json(path / "meta.json"), _read_json(path / "summary.json"),
                   history, load_probes(path / "probes.jsonl"))

    @cached_property
    def weights(self) -> dict[str, torch.Tensor]:
        """Final hidden-layer weights by layer name (``dense.0``), from model.safetensors; {} when absent."""
        file = self.path / "model.safetensors"
        if not file.is_file():
            return {}
        tensors, _ = load_tensors(file)
        suffix = ".transform.weight"
        found = {k.removeprefix("model.").removesuffix(suffix): v for k, v in tensors.items()
                 if k.startswith("model.") and k.endswith(suffix)}
        order = self.probes.layers or sorted(found, key=_natural)
        return {name: found[name] for name in order if name in found}

    def metric(self, name: str) -> list[tuple[int, float]]:
        """(epoch, value) of one metric over the epochs that have a finite value for it."""
        return [(int(row["epoch"]), row[name]) for row in self.history
                if isinstance(row.get(name), (int, float)) and math.isfinite(row[name])]

    @property
    def chance_loss(self) -> float | None:
        """Cross-entropy of guessing uniformly, ln(classes); None for regression."""
        classes = self.meta.get("num_classes")
        return math.log(classes) if self.meta.get("task") == "classification" and classes and classes > 1 else None

    @property
    def precision(self) -> str:
        """The number format the run computed in (``train.precision``: fp32, bf16 or tf32)."""
        return self.spec.train.precision

    def rounding(self, layers: int) -> float:
        """Worst-case factor by which rounding can move a gradient ratio read across ``layers`` layers.

        Going back through one layer the signal is rounded twice (the matmul's output, then the
        product with the activation's derivative), each time by at most the unit roundoff u
        (half the machine epsilon of ``train.precision``): (1 + u)^(2 (layers - 1)). fp32: 1 + 2e-6
        for 20 layers (nothing; on CUDA, torch's default TF32 convolutions round more, which this
        factor does not include); bf16 (u = 2^-8): 1.16 for 20 layers. Rounding only ever perturbs a
        reading by this factor (bf16 keeps float32's exponent range: no underflow to zero).
        """
        unit = resolution(self.precision) / 2
        return (1 + unit) ** (2 * max(layers - 1, 0))

    @property
    def has_validation(self) -> bool:
        """The run measured a validation split (meta.json's n_val, or val/loss in the metrics)."""
        return bool(self.meta.get("n_val")) or bool(self.metric("val/loss"))

    @property
    def test(self) -> dict[str, float]:
        """The test metrics measured once at the end (summary.json), e.g. ``{"test/loss": 0.3, "test/acc": 0.9}``."""
        return {k: v for k, v in (self.summary.get("test") or {}).items() if isinstance(v, (int, float)) and math.isfinite(v)}

    def latest(self) -> dict[str, Any] | None:
        """The last probe sample taken after initialisation, or None (no probes, or only the step-0 one)."""
        samples = self.probes.samples
        return samples[-1] if samples and samples[-1]["epoch"] != -1 else None

    def initial(self, quantity: str) -> list[float | None] | None:
        """One probe quantity per layer at initialisation, or None without probes."""
        sample = self.probes.initial()
        return sample[quantity] if sample else None

    def zero_layers(self) -> list[str]:
        """Hidden layers whose weights were all zero at initialisation."""
        norms = self.initial("weight_norm")
        if norms is not None:
            return [name for name, norm in zip(self.probes.layers, norms) if norm is not None and norm <= TINY]
        return [name for name, w in self.weights.items() if not w.any()]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError as error:
        raise CheckpointError(f"'{path}' is corrupt ({error}).") from None


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


