"""probes.jsonl read back (the rows :class:`deepwell.diagnostics.probes.Probes` writes; schema there).

Example::

    log = load_probes("runs/<run>/probes.jsonl")
    steps, values = log.series("dead", 0)    # the first layer's dead fraction over training
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepwell.training.checkpoint import read_jsonl

__all__ = ["ProbeLog", "load_probes"]


@dataclass
class ProbeLog:
    """probes.jsonl read back: samples (step order) and per-epoch rows."""

    samples: list[dict[str, Any]]
    epochs: list[dict[str, Any]]

    @property
    def layers(self) -> list[str]:
        return self.samples[0]["layers"] if self.samples else []

    def initial(self) -> dict[str, Any] | None:
        """The sample taken at initialisation, before any update."""
        return next((s for s in self.samples if s["epoch"] == -1), None)

    def series(self, quantity: str, layer: str | int) -> tuple[list[int], list[float | None]]:
        """(steps, values) of one quantity for one layer (by name or index)."""
        index = layer if isinstance(layer, int) else self.layers.index(layer)
        return [s["step"] for s in self.samples], [s[quantity][index] for s in self.samples]


def load_probes(path: str | Path) -> ProbeLog:
    """Read a probes.jsonl file (an empty log when it does not exist)."""
    path = Path(path)
    rows = read_jsonl(path)
    return ProbeLog([r for r in rows if r["kind"] == "sample"], [r for r in rows if r["kind"] == "epoch"])
