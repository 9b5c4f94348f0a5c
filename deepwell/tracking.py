"""Trackers: a run mirrored into TensorBoard event files or an MLflow run, next to the run folder.

The run folder stays the record; a tracker copies what the folder holds into the tool people
already look at. Chosen with ``output.tracking`` (option strings, like every other choice)::

    output:
      tracking: [tensorboard, mlflow]     # RUN/tensorboard/ event files; an MLflow file store in RUN/mlruns
      # or: ["mlflow:uri=http://localhost:5000,experiment=mnist1d"]

- ``tensorboard``: every metric of every epoch as a scalar (x-axis: the optimisation step, the
  ``step`` of metrics.jsonl); with probes on, each probe quantity per layer as a scalar
  (``diag/<quantity>/<layer>``) and the activation histograms (``diag/activations/<layer>``),
  taken from the probes' own rows (nothing is measured twice); the test metrics at the end.
- ``mlflow:uri=...,experiment=deepwell``: the spec flattened into params (``train.lr``), every
  epoch's metrics with their step, the test metrics, the summary as tags, and config.yaml,
  summary.json, findings.json and report.html as artifacts. The default ``uri`` is a local file
  store in ``RUN/mlruns``; MLflow 3 refuses file stores unless ``MLFLOW_ALLOW_FILE_STORE=true``,
  which deepwell sets for ``file:`` URIs (mlflow-skinny has no database backend; give a server
  ``http://...`` or, with full mlflow, ``sqlite:///...`` for a database). The MLflow run id is kept in
  ``RUN/tracking.json`` so that ``--resume`` continues the same MLflow run.

Resume never duplicates a step: TensorBoard's ``purge_step`` hides the events a killed run wrote
after its last checkpoint, and MLflow skips (metric, step) pairs its run already holds (MLflow
cannot delete metric values; a resumed run reproduces them exactly, so the first ones stay).
Only rank 0 of a data-parallel job tracks.

Example::

    run = deepwell.train(overrides=["output.tracking=[tensorboard]"])
    # tensorboard --logdir runs/   (every run folder has its tensorboard/ sub-folder)
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from deepwell.errors import ConfigError
from deepwell.registry import Registry
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.checkpoint import atomic_write_text

__all__ = ["TRACKERS", "Tracker", "TensorBoardTracker", "MLflowTracker", "flatten_spec"]

TRACKING_FILE = "tracking.json"  # in the run folder: the MLflow run id, for --resume
SERVER_TIMEOUT = 10.0  # seconds an http(s) tracking server has to answer before training starts
ARTIFACTS = ("config.yaml", "summary.json", "findings.json", "report.html")
_INSTALL = "pip install 'deepwell[tracking]'"


def _require(module: str, tracker: str) -> Any:
    """Import an optional package, or say which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"output.tracking '{tracker}' needs a package that is not installed ({error}). "
            f"Install it with: {_INSTALL}, or remove '{tracker}' from output.tracking.") from None


class Tracker(Callback):
    """A callback that mirrors a run into an outside tool.

    Besides the loop's events, ``deepwell.train`` calls :meth:`finish` once the run folder is
    complete (summary, report) and :meth:`abort` when training raised.
    """

    def finish(self, run_dir: Path, summary: dict[str, Any]) -> None:
        """Add the finished run's summary and files, and close."""

    def abort(self, error: BaseException) -> None:
        """Training raised ``error``: record that and close."""

    def listen_to_probes(self, rows: list[dict[str, Any]]) -> None:
        """Probe rows as :class:`~deepwell.diagnostics.probes.Probes` writes them (probes.jsonl schema)."""


class TensorBoardTracker(Tracker):
    """TensorBoard event files under ``log_dir``: metrics per epoch, probe scalars and histograms.

    Args:
        log_dir: the folder of the event files (``RUN/tensorboard``).
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.summary_writer = _require("torch.utils.tensorboard", "tensorboard").SummaryWriter
        self.writer: Any = None

    def on_fit_start(self, state: FitState) -> None:
        # purge_step: readers drop older events at or after this step. Resuming: what a killed run
        # wrote after its checkpoint; a fresh fit (step 0): everything an earlier run left here.
        purge = state.step + 1 if state.history else 0
        self.writer = self.summary_writer(log_dir=str(self.log_dir), purge_step=purge)

    def on_epoch_end(self, state: FitState) -> None:
        for key, value in state.metrics.items():
            if key != "step":
                self.writer.add_scalar(key, value, state.step)
        self.writer.flush()  # once per epoch: a killed run keeps what it logged up to its checkpoint

    def listen_to_probes(self, rows: list[dict[str, Any]]) -> None:
        if self.writer is None:
            return
        from deepwell.diagnostics.probes import QUANTITIES

        for row in rows:
            quantities = QUANTITIES if row["kind"] == "sample" else ("dead_epoch",)
            for quantity in quantities:
                for layer, value in zip(row["layers"], row[quantity]):
                    if value is not None:
                        self.writer.add_scalar(f"diag/{quantity}/{layer}", value, row["step"])
            if "hist" in row:
                for index, layer in enumerate(row["layers"]):
                    self._histogram(f"diag/activations/{layer}", row, index)
        self.writer.flush()

    def _histogram(self, tag: str, row: dict[str, Any], index: int) -> None:
        """One layer's activation histogram; count, sum and sum of squares from the row's mean and std."""
        edges, counts = row["hist"]["edges"][index], row["hist"]["counts"][index]
        num = sum(counts)
        mean, std = row["act_mean"][index], row["act_std"][index]
        if num == 0 or mean is None or std is None:
            return
        sum_squares = std * std * (num - 1) + num * mean * mean  # torch's std is the unbiased one
        self.writer.add_histogram_raw(tag, min=edges[0], max=edges[-1], num=num, sum=mean * num, sum_squares=sum_squares,
                                      bucket_limits=edges[1:], bucket_counts=counts, global_step=row["step"])

    def finish(self, run_dir: Path, summary: dict[str, Any]) -> None:
        for key, value in summary.get("test", {}).items():
            self.writer.add_scalar(key, value, summary["steps"])
        self._close()

    def abort(self, error: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def flatten_spec(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested spec mapping as flat ``section.key -> text`` params (JSON text for non-strings).

    Example::

        flatten_spec({"train": {"lr": 0.01, "hidden": [8, 8]}})  # {'train.lr': '0.01', 'train.hidden': '[8, 8]'}
    """
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= flatten_spec(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return flat


class MLflowTracker(Tracker):
    """An MLflow run: params from the spec, metrics per epoch with their step, summary and artifacts.

    Args:
        run_dir: the run folder (its name is the MLflow run name; tracking.json goes there).
        spec: the resolved spec as a plain mapping (``RunSpec.to_dict()``).
        uri: the tracking URI; None: a local file store in ``RUN/mlruns``.
        experiment: the MLflow experiment (created when missing).
    """

    def __init__(self, run_dir: Path, spec: dict[str, Any], uri: str | None = None, experiment: str = "deepwell") -> None:
        self.client_class = _require("mlflow.tracking", "mlflow").MlflowClient
        self.run_dir, self.spec, self.experiment = Path(run_dir), spec, experiment
        self.uri = uri or (self.run_dir / "mlruns").absolute().as_uri()
        if self.uri.startswith("file:") or "://" not in self.uri:
            # MLflow 3 raises for file stores unless asked; a local store needs no server (our default).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        elif self.uri.startswith(("http://", "https://")):
            _check_server(self.uri)
        self.client: Any = None
        self.run_id: str | None = None
        self.logged: dict[str, set[int]] = {}

    def on_fit_start(self, state: FitState) -> None:
        self.client = self.client_class(self.uri)
        self.run_id = self._resumable_run() if state.history else None
        if self.run_id is None:
            self.run_id = self._new_run()
        else:
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged = {key: {m.step for m in self.client.get_metric_history(self.run_id, key)}
                           for key in ["epoch", *state.metric_names]}
        for row in state.history:  # a tracker added on resume, or rows a killed run did not log
            self._log_row(row)

    def _resumable_run(self) -> str | None:
        saved = _read_tracking(self.run_dir).get("mlflow", {})
        if saved.get("tracking_uri") != self.uri or not saved.get("run_id"):
            return None
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(saved["run_id"])
        except MlflowException:  # deleted from the store: start a new one
            return None
        return saved["run_id"]

    def _new_run(self) -> str:
        from mlflow.entities import Param

        experiment = self.client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(experiment_id, run_name=self.run_dir.name,
                                     tags={"deepwell.run_dir": str(self.run_dir.absolute())})
        params = [Param(key, value) for key, value in flatten_spec(self.spec).items()]
        self.client.log_batch(run.info.run_id, params=params)
        tracking = _read_tracking(self.run_dir) | {
            "mlflow": {"tracking_uri": self.uri, "experiment_id": experiment_id, "run_id": run.info.run_id}}
        atomic_write_text(self.run_dir / TRACKING_FILE, json.dumps(tracking, indent=2) + "\n")
        self.logged = {}
        return run.info.run_id

    def _log_row(self, row: dict[str, float], extra: dict[str, float] | None = None) -> None:
        from mlflow.entities import Metric

        step, now = int(row["step"]), int(time.time() * 1000)
        metrics = []
        for key, value in (extra or row).items():
            if key == "step" or step in self.logged.get(key, ()) or not math.isfinite(value):
                continue
            metrics.append(Metric(key, float(value), now, step))
            self.logged.setdefault(key, set()).add(step)
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_epoch_end(self, state: FitState) -> None:
        self._log_row(state.history[-1])

    def finish(self, run_dir: Path, summary: dict[str, Any]) -> None:
        self._log_row({"step": summary["steps"]}, extra=summary.get("test", {}))
        self.client.set_tag(self.run_id, "deepwell.status", summary["status"])
        self.client.set_tag(self.run_id, "deepwell.message", summary["message"])
        for name in ARTIFACTS:
            if (Path(run_dir) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(run_dir) / name))
        self.client.set_terminated(self.run_id, "FAILED" if summary["status"] == "non_finite" else "FINISHED")

    def abort(self, error: BaseException) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


def _check_server(uri: str) -> None:
    """Raise ConfigError unless an HTTP server answers at ``uri`` (any HTTP status counts as an answer).

    MLflow's client retries a server that is not there for minutes before it fails; a run should
    say so at once, before it trains."""
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    try:
        urlopen(uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT).close()  # MLflow's server answers "OK"
    except HTTPError:
        return  # a server answered (a proxy's 401/404 included): MLflow says the rest
    except (URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError(
            f"output.tracking mlflow: no server answers at {uri} ({reason}). Start one (e.g. `mlflow server "
            f"--host 127.0.0.1 --port 5000`), correct the uri, or leave uri out to log to a local store in "
            f"RUN/mlruns.") from None


def _read_tracking(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / TRACKING_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}  # a damaged record: start a new MLflow run rather than fail the training


TRACKERS: Registry[Tracker] = Registry("tracker")


@TRACKERS.register("tensorboard")
def tensorboard(*, run_dir: Path, spec: dict[str, Any]) -> TensorBoardTracker:
    """TensorBoard event files in RUN/tensorboard: metrics per epoch, probe scalars and histograms."""
    return TensorBoardTracker(Path(run_dir) / "tensorboard")


@TRACKERS.register("mlflow")
def mlflow(uri: str | None = None, experiment: str = "deepwell", *, run_dir: Path, spec: dict[str, Any]) -> MLflowTracker:
    """An MLflow run (params, metrics per epoch, summary, artifacts); uri default: a file store in RUN/mlruns."""
    return MLflowTracker(run_dir, spec, uri, experiment)
