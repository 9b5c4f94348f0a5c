"""What the page draws, measured inside the training worker and sent as compact numbers (not pictures).

:class:`Stream` is a callback of the session's fit. At most every ``FRAME_INTERVAL`` seconds (and
at fit start and end) it publishes a *frame*, and never spends more than ``FRAME_BUDGET`` of the
worker's time on frames (a frame that took long delays the next one, so a loaded CPU trains at
nearly full speed and the page updates less often): the metric rows since the last frame, the latest
probe sample, the model's view of the data (a class-probability grid under 2-D points, the fitted
curve of a 1-D regression, a confusion matrix otherwise), each narrow layer's units over the input
plane and their weights, and, every ``FINDINGS_INTERVAL`` seconds, the doctor's findings on the run
so far. The doctor reads the whole history, so its cost grows with a long session: it has its own
budget (``FINDINGS_BUDGET``; its findings come less often), and never slows the frames. Publishing
only merges into the session's outbox; the socket sends the newest merge.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from deepwell.diagnostics.doctor import examine
from deepwell.diagnostics.evidence import RunEvidence
from deepwell.diagnostics.probes import ProbeLog, probe_blocks
from deepwell.run import RunParts
from deepwell.serve.controls import remedy_actions
from deepwell.serve.views import model_view, rounded as _round, view_inputs
from deepwell.training.callbacks import Callback, FitState

__all__ = ["Stream", "FRAME_INTERVAL"]

FRAME_INTERVAL = 1 / 12   # ~12 frames a second: live (>= 10/s), and the page's drawing leaves the cores to training
FRAME_BUDGET = 0.05       # at most 5% of the worker's CPU time on frames (~3 ms a frame on 2-D data: 12/s stays)
FINDINGS_INTERVAL = 1.0   # the doctor reads the whole history: once a second is live enough
FINDINGS_BUDGET = 0.05    # and at most 5% of the worker's CPU time (a 20,000-epoch history: every few seconds)
KEEP_SAMPLES = 200        # probe samples kept for the doctor (plus the initial one): memory stays flat


@dataclass
class _LiveEvidence(RunEvidence):
    """The doctor's evidence of a run in progress: the live model's weights instead of model.safetensors."""

    live_weights: dict[str, torch.Tensor] | None = None

    @property
    def weights(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.live_weights or {}


class Stream(Callback):
    """Publishes frames of one session's fit (see module docstring).

    Args:
        parts: the session's data, model and spec.
        publish: called with each frame (a dict of JSON values); it must not block.
        meta: what the doctor needs of the data (task, num_classes, n_val).
    """

    def __init__(self, parts: RunParts, publish: Callable[[dict[str, Any]], None], meta: dict[str, Any]) -> None:
        self.parts, self.publish, self.meta = parts, publish, meta
        self.sent_rows = self.last_step = 0
        self.last_frame = self.last_findings = -1e9
        self.probe_initial: dict[str, Any] | None = None
        self.probe_samples: deque = deque(maxlen=KEEP_SAMPLES)
        self.probe_epochs: deque = deque(maxlen=KEEP_SAMPLES)
        self.latest_hist: dict[str, Any] | None = None
        self.hist_sent: dict[str, Any] | None = None  # histograms change a few times an epoch: sent only when new
        self.frame_cost = 0.0  # CPU seconds the last frame took, the doctor's findings left out (the time budget's measure)
        self.findings_cost = 0.0  # CPU seconds the doctor last took
        self.rate_mark: tuple[float, int] | None = None
        self.steps_per_s = 0.0
        self.findings: list[dict[str, Any]] = []
        self.blocks = probe_blocks(parts.model)
        self.view = view_inputs(parts)
        self.state: FitState | None = None

    # --- probes (a listener of the Probes callback) ---------------------------------------------
    def listen_to_probes(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["kind"] == "epoch":
                self.probe_epochs.append(row)
            elif row["epoch"] == -1:
                self.probe_initial = row
            else:
                self.probe_samples.append({k: v for k, v in row.items() if k != "hist"})
            if row.get("hist"):
                self.latest_hist = {"hist": row["hist"], "grad_hist": row.get("grad_hist")}

    def probe_log(self) -> ProbeLog:
        """The probe rows kept (initial + the latest): what the doctor and a saved run read."""
        return ProbeLog(([self.probe_initial] if self.probe_initial else []) + list(self.probe_samples), list(self.probe_epochs))

    # --- events --------------------------------------------------------------------------------
    def findings_now(self) -> list[dict[str, Any]]:
        """The doctor's findings on the run so far (call while the worker is held or finished)."""
        return self._findings(self.state) if self.state is not None else []

    def on_fit_start(self, state: FitState) -> None:
        self.state = state
        self.sent_rows = 0  # a resumed fit starts from the checkpoint's history: send it whole
        self.rate_mark = (time.perf_counter(), state.step)
        self._frame(state, findings=True)

    def _due(self, now: float) -> bool:
        return now - self.last_frame >= max(FRAME_INTERVAL, self.frame_cost / FRAME_BUDGET)

    def on_batch_end(self, state: FitState) -> None:
        if self._due(time.perf_counter()):  # long epochs (MNIST-1D, a loaded CPU): frames mid-epoch too
            self._frame(state)

    on_epoch_end = on_batch_end  # the same rate limit: a frame when one is due

    def publish_now(self, state: FitState) -> None:
        """A frame now, whatever the rate limit (the worker is about to pause: the page must see where it stopped)."""
        if self.sent_rows < len(state.history) or state.step != self.last_step:
            self._frame(state, findings=True)

    def on_fit_end(self, state: FitState) -> None:
        self._frame(state, findings=True)

    # --- frames --------------------------------------------------------------------------------
    def _frame(self, state: FitState, findings: bool = False) -> None:
        cpu, now = time.thread_time(), time.perf_counter()
        findings = findings or now - self.last_findings >= max(FINDINGS_INTERVAL, self.findings_cost / FINDINGS_BUDGET)
        self.last_frame = now
        if self.rate_mark is not None and now - self.rate_mark[0] >= 0.5:
            self.steps_per_s = (state.step - self.rate_mark[1]) / (now - self.rate_mark[0])
            self.rate_mark = (now, state.step)
        frame: dict[str, Any] = {"type": "frame", "t": time.time(), "epoch": len(state.history), "step": state.step,
                                 "steps_per_s": round(self.steps_per_s, 1), "rows": state.history[self.sent_rows:],
                                 "replace": self.sent_rows == 0}
        self.sent_rows, self.last_step = len(state.history), state.step
        frame |= self._probe_view() | model_view(self.parts, self.view, self.blocks)
        doctor = 0.0
        if findings:
            self.last_findings, started = now, time.thread_time()
            self.findings = self._findings(state)
            frame["findings"] = self.findings
            doctor = self.findings_cost = time.thread_time() - started
        self.publish(frame)
        self.frame_cost = time.thread_time() - cpu - doctor

    def _probe_view(self) -> dict[str, Any]:
        sample = self.probe_samples[-1] if self.probe_samples else self.probe_initial
        if sample is None:
            return {}
        keys = ("layers", "dead", "saturated", "signal_grad_norm", "grad_norm", "update_ratio", "act_std", "weight_norm")
        probe = {k: sample[k] if k == "layers" else _round(sample[k]) for k in keys}
        if self.probe_epochs:
            probe["dead_epoch"] = _round(self.probe_epochs[-1]["dead_epoch"])
        if self.probe_initial is not None:
            probe["signal_at_init"] = _round(self.probe_initial["signal_grad_norm"])
        view: dict[str, Any] = {"probe": probe}
        if self.latest_hist is not None and self.latest_hist is not self.hist_sent:
            self.hist_sent = self.latest_hist
            for key, hist in self.latest_hist.items():  # activations and weight gradients, per hidden layer
                if hist is not None:
                    view[key] = _hist_view(hist)
        return view

    def _findings(self, state: FitState) -> list[dict[str, Any]]:
        evidence = _LiveEvidence(
            path=None, spec=self.parts.spec, meta=self.meta, history=list(state.history), probes=self.probe_log(),
            summary={"steps": state.step, "status": state.stop_reason.value if state.stop_reason else "running"},
            live_weights={name: block.transform.weight.detach().cpu() for name, block in self.blocks})
        return [finding.to_dict() | {"actions": [action for remedy in finding.remedies for action in remedy_actions(remedy)]}
                for finding in examine(evidence)]


def _hist_view(hist: dict[str, list]) -> dict[str, list]:
    """A probe row's histograms for the page: the counts, every 5th edge to 4 significant digits (gradients are ~1e-5)."""
    return {"edges": [[float(f"{e:.4g}") for e in row[::5] + row[-1:]] for row in hist["edges"]], "counts": hist["counts"]}
