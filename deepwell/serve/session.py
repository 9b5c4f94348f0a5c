"""One playground session: a RunSpec, its data and model, and ``fit`` running in a worker thread.

The worker runs the one training loop (:func:`deepwell.training.loop.fit`) with the session's
callbacks: the probes, the :class:`~deepwell.serve.stream.Stream` that publishes frames, a
:class:`~deepwell.training.control.Controller` (play / pause / one epoch / stop, at epoch
boundaries, so a paused session computes nothing) and a checkpoint saver that writes only when a
fit ends. Commands come from the web server's threads and are serialised by a lock:

- an edit that keeps the model's parameters (learning rate, penalty, batch size, dropout rate,
  epochs, early stopping; see :data:`deepwell.serve.controls.KEEP_WEIGHTS`) stops the fit at the
  next epoch end and resumes the checkpoint under the new spec: same weights, optimiser state and
  history, the new setting from the next epoch on;
- any other edit, a scene, a remedy and "reset" rebuild: data (reused when its keys did not
  change) and a model initialised with the seed; the play state is kept;
- "save" stops at the epoch end, writes an ordinary run folder, and resumes.

Example::

    session = Session(RunSpec.from_dict({"data": {"source": "moons"}}), roots=[Path(".")], work_dir=Path("/tmp/s1"))
    session.step()                  # one epoch; frames arrive through session.take()
    session.update({"train.lr": "0.01"})
    session.close()
"""

from __future__ import annotations

import datetime
import json
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from deepwell.config import RunSpec
from deepwell.diagnostics.doctor import diagnose
from deepwell.diagnostics.probes import Probes, probe_blocks
from deepwell.errors import ConfigError, DeepwellError
from deepwell.data.preprocess import target_scale
from deepwell.run import RunParts, build_run, write_run_end, write_run_start
from deepwell.serve.controls import apply_changes, change_kind
from deepwell.serve.stream import Stream
from deepwell.serve.views import describe, view_inputs
from deepwell.training.callbacks import StopReason
from deepwell.training.checkpoint import atomic_write_text
from deepwell.training.control import Controller
from deepwell.training.loop import CheckpointSaver, FitResult, fit, loss_function

__all__ = ["Session"]

JOIN_TIMEOUT = 120.0  # an epoch ends long before this; a worker still running then is reported, not waited on forever


class Session:
    """A RunSpec trained by ``fit`` in a worker thread, steered by commands (see module docstring).

    Args:
        spec: the starting spec (validated).
        roots: folders the session may read data files from (``--data-dir``, the upload folder).
        work_dir: the session's own folder (probes, checkpoint); removed by :meth:`close`.
        device: where to train (default CPU: small nets are overhead-bound, and a GPU is shared).
    """

    def __init__(self, spec: RunSpec, roots: Sequence[Path], work_dir: Path, device: torch.device | None = None) -> None:
        self.spec, self.roots, self.work_dir = spec, list(roots), Path(work_dir)
        self.device = device or torch.device("cpu")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint = self.work_dir / "checkpoints" / "last.safetensors"
        self.lock = threading.RLock()
        self._out_lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.frame: dict[str, Any] | None = None
        self.notify: Callable[[], None] = lambda: None
        self.playing = False
        self.parts: RunParts | None = None
        self.stream: Stream | None = None
        self.controller: Controller | None = None
        self.thread: threading.Thread | None = None
        self.result: FitResult | None = None
        self.last_active = time.monotonic()
        self._rebuild(self.spec)

    # --- messages to the page ------------------------------------------------------------------
    def publish(self, message: dict[str, Any]) -> None:
        """Queue a message for the page and wake the sender.

        Frames are merged (their metric rows accumulate, every other key: the newest that has it wins), so a slow
        socket gets the latest view, never a backlog; other messages (data, status) are kept in order.
        A ``data`` message starts a new build: a frame still waiting belongs to the old one and is dropped.
        """
        with self._out_lock:
            if message.get("type") != "frame":
                if message.get("type") == "data":
                    self.frame = None
                self.events.append(message)
            elif self.frame is not None and not message.get("replace"):
                self.frame = self.frame | message | {"rows": self.frame["rows"] + message["rows"], "replace": self.frame["replace"]}
            else:
                self.frame = message
        self.notify()

    def take(self) -> list[dict[str, Any]]:
        """The messages to send now (possibly none), oldest first."""
        with self._out_lock:
            messages = self.events + ([self.frame] if self.frame is not None else [])
            self.events, self.frame = [], None
        return messages

    def _status(self, message: str = "", held: bool = False) -> None:
        """The play state; ``held``: the worker has stopped computing (a pause is asked for at once, done at the epoch end)."""
        finished = self.thread is None or not self.thread.is_alive()
        state = ("finished" if finished else "playing" if self.playing else "paused")
        self.publish({"type": "status", "state": state, "held": held or finished, "message": message, "spec": self.spec.to_dict()})

    def _held(self, state: Any) -> None:
        self.stream.publish_now(state)  # the page sees where it stopped
        self._status(held=True)

    # --- commands ------------------------------------------------------------------------------
    def play(self) -> None:
        with self.lock:
            self.playing = True
            self.controller.play()
            self._status()

    def pause(self) -> None:
        with self.lock:
            self.playing = False
            self.controller.pause()
            self._status()

    def step(self) -> None:
        """Exactly one epoch, then paused."""
        with self.lock:
            self.playing = False
            self.controller.step()
            self._status()

    def reset(self) -> None:
        """Re-initialise the model with the seed (same data); the play state is kept."""
        with self.lock:
            self._halt()
            self._rebuild(self.spec)

    def update(self, changes: Mapping[str, str], restart: bool = False) -> str:
        """Apply spec edits (validated as ``--set``); returns what happened: none, keep or rebuild.

        Raises:
            ControlError: an invalid or refused edit (the session is unchanged).
            DataError: the new data cannot be read (the session is unchanged).
        """
        with self.lock:
            new = apply_changes(self.spec, changes, self.roots)
            kind = "rebuild" if restart else change_kind(self.spec, new)
            if kind == "none":
                return kind
            if kind == "keep" and self._has_trained():
                if self._resume(new):
                    return kind
                kind = "rebuild"
            self._rebuild(new)
            return kind

    def replace(self, spec: RunSpec) -> None:
        """Load a whole spec (a scene): a rebuild."""
        with self.lock:
            self._rebuild(spec)

    def wait_held(self, timeout: float) -> bool:
        """Block until the worker is held (paused) or finished; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.thread is None or not self.thread.is_alive() or self.controller.wait_held(0.2):
                return True
        return False

    def findings(self) -> list[dict[str, Any]]:
        """The doctor's findings on the run so far, with their remedies' actions (while paused or finished)."""
        with self.lock:
            return self.stream.findings_now()

    def close(self) -> None:
        """Stop training and remove the session's folder."""
        with self.lock:
            self._halt()
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # --- building and running ------------------------------------------------------------------
    def _has_trained(self) -> bool:
        return bool(self.stream is not None and self.stream.sent_rows) or bool(self.result and self.result.epochs_run)

    def _rebuild(self, spec: RunSpec) -> None:
        """Data (reused when unchanged) and a model initialised with the seed; the old fit ends first."""
        old = self.parts
        same_data = old is not None and old.spec.data == spec.data and self.spec.seed == spec.seed
        parts = build_run(spec, self.device, splits=old.splits if same_data else None)  # may raise: nothing changed yet
        self._halt()
        self.spec, self.parts = spec, parts
        self._announce()
        self._start(resume=False)

    def _resume(self, spec: RunSpec) -> bool:
        """Stop at the epoch end and go on from its checkpoint under ``spec``; False when the weights cannot carry over."""
        parts = build_run(spec, self.device, splits=self.parts.splits)
        old_shapes = {k: v.shape for k, v in self.parts.model.state_dict().items()}
        if old_shapes != {k: v.shape for k, v in parts.model.state_dict().items()}:
            return False
        self._halt()
        if not self.checkpoint.is_file() or self.result is None or self.result.stop_reason is StopReason.NON_FINITE:
            return False
        self.spec, self.parts = spec, parts
        self._start(resume=True)
        return True

    def _halt(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.controller.stop("Stopped by the playground.")
            self.thread.join(JOIN_TIMEOUT)

    def _announce(self) -> None:
        """The data and network structure: sent once per build."""
        self.publish({"type": "data", **describe(self.parts, view_inputs(self.parts))})

    def _start(self, resume: bool) -> None:
        parts, spec = self.parts, self.parts.spec
        splits = parts.splits
        meta = {"task": splits.task, "num_classes": splits.num_classes, "n_train": len(splits.x_train),
                "n_val": 0 if splits.x_val is None else len(splits.x_val)}
        previous = self.stream
        self.stream = Stream(parts, self.publish, meta)
        if resume and previous is not None:  # the doctor keeps its view of the run so far
            self.stream.probe_initial, self.stream.probe_samples = previous.probe_initial, previous.probe_samples
            self.stream.probe_epochs = previous.probe_epochs
        callbacks: list = []
        if spec.diagnostics.probes and probe_blocks(parts.model):
            count = spec.diagnostics.probe_examples
            probes = Probes(self.work_dir / "probes.jsonl", parts.data.x_train[:count], parts.data.y_train[:count],
                            loss_function(splits.task, spec.train), every=spec.diagnostics.every)
            probes.listeners.append(self.stream.listen_to_probes)
            callbacks.append(probes)
        self.controller = Controller(playing=self.playing, on_hold=[self._held])
        callbacks += [self.stream, self.controller, CheckpointSaver(self.checkpoint, every=10**9)]  # saves when a fit ends
        if parts.augment is not None:
            callbacks.append(parts.augment)
        self.result = None
        self.thread = threading.Thread(target=self._work, args=(parts, callbacks, self.checkpoint if resume else None),
                                       name=f"deepwell-session-{self.work_dir.name}", daemon=True)
        self.thread.start()
        self._status()

    def _work(self, parts: RunParts, callbacks: list, resume_from: Path | None) -> None:
        """The worker: one fit, its errors published as one line."""
        message = ""
        try:
            self.result = fit(parts.model, parts.data, parts.spec.train, task=parts.splits.task, seed=parts.spec.seed,
                              callbacks=callbacks, resume_from=resume_from, batch_transform=parts.augment,
                              target_scale=target_scale(parts.target))
            if self.result.stop_reason is not StopReason.REQUESTED:
                message = self.result.stop_message
        except DeepwellError as error:
            message = f"error: {error}"
        except Exception as error:  # a bug: the page gets one line, the server's console the traceback
            traceback.print_exc()
            message = f"error: training failed ({type(error).__name__}: {error})."
        if message:
            self.playing = False
            self._status(message)

    # --- saving --------------------------------------------------------------------------------
    def save(self, runs_dir: Path) -> Path:
        """Write an ordinary run folder (config, meta, metrics, checkpoint, weights, probes, findings); training goes on.

        Raises:
            ConfigError: nothing trained yet (a run folder needs at least one epoch).
        """
        with self.lock:
            if not self.playing:
                self.wait_held(JOIN_TIMEOUT)  # an epoch asked for by "step" ends first
            self._halt()
            result, parts = self.result, self.parts
            if result is None or not result.epochs_run or not self.checkpoint.is_file() \
                    or result.stop_reason is StopReason.NON_FINITE:
                self._start(resume=result is not None and result.epochs_run > 0 and self.checkpoint.is_file())
                raise ConfigError("Nothing to save yet: train at least one epoch (press step or play), then save."
                                  if result is None or not result.epochs_run else
                                  "The last fit ended without a checkpoint (its loss diverged); reset and train again.")
            name = f"playground-{parts.splits.name}-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}"
            run_dir = Path(runs_dir) / name
            write_run_start(run_dir, parts, self.device)
            atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in result.history))
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            shutil.copyfile(self.checkpoint, run_dir / "checkpoints" / "last.safetensors")
            if (self.work_dir / "probes.jsonl").is_file():
                shutil.copyfile(self.work_dir / "probes.jsonl", run_dir / "probes.jsonl")
            seconds = sum(row.get("time/epoch_s", 0.0) for row in result.history)
            write_run_end(run_dir, parts, result, seconds, self.device, {"saved_from": "deepwell serve"})
            diagnose(run_dir)
            self._start(resume=True)  # go on where it was (paused or playing)
            return run_dir
