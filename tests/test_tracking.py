"""Trackers: TensorBoard event files and MLflow runs mirror the run folder; resume adds no step twice."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import deepwell
from deepwell.diagnostics.probes import load_probes
from deepwell.errors import ConfigError
from killing import Kill

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = ["output.report=false", "data.source=moons:n=300", "model.hidden=[8,8]", "train.epochs=3", "train.batch_size=32",
         "train.lr=0.01", "diagnostics.every=4"]


def small_run(tmp_path: Path, *extra: str, name: str = "run", **kwargs) -> deepwell.Run:
    return deepwell.train(overrides=[*SMALL, f"output.dir={tmp_path}", f"output.name={name}", *extra], progress="none", **kwargs)


def events(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def scalar_series(accumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def metric_series(run: deepwell.Run, key: str) -> list[tuple[int, float]]:
    return [(row["step"], row[key]) for row in run.history if key in row]


def mlflow_client(run: deepwell.Run):
    from mlflow.tracking import MlflowClient

    saved = json.loads((run.path / "tracking.json").read_text())["mlflow"]
    return MlflowClient(saved["tracking_uri"]), saved["run_id"]


def test_tensorboard_scalars_equal_metrics_and_probes_give_histograms(tmp_path):
    run = small_run(tmp_path, "output.tracking=[tensorboard]")
    board = events(run.path / "tensorboard")
    keys = [key for key in run.history[0] if key != "step"]
    assert {"train/loss", "val/acc", "lr", "epoch"} <= set(keys)
    for key in keys:  # event files hold float32: equal to the JSON values up to that precision
        steps, values = zip(*scalar_series(board, key))
        expected_steps, expected = zip(*metric_series(run, key))
        assert steps == expected_steps, key
        assert values == pytest.approx(expected, rel=1e-6, abs=1e-9), key
    assert scalar_series(board, "test/acc")[0][1] == pytest.approx(run.summary["test"]["test/acc"], rel=1e-6)

    probes = load_probes(run.path / "probes.jsonl")
    layer = probes.layers[0]
    steps, values = probes.series("grad_norm", layer)
    assert scalar_series(board, f"diag/grad_norm/{layer}") == [(s, pytest.approx(v, rel=1e-6)) for s, v in zip(steps, values)]
    histogram_steps = [sample["step"] for sample in probes.samples if "hist" in sample]
    assert len(histogram_steps) == 1 + run.summary["epochs_run"]  # at initialisation and once per epoch
    for index, name in enumerate(probes.layers):
        recorded = board.Histograms(f"diag/activations/{name}")
        assert [event.step for event in recorded] == histogram_steps
        first = next(sample for sample in probes.samples if "hist" in sample)
        assert recorded[0].histogram_value.bucket == pytest.approx(first["hist"]["counts"][index])
        assert recorded[0].histogram_value.num == pytest.approx(sum(first["hist"]["counts"][index]))


def test_tensorboard_without_probes_has_metrics_only(tmp_path):
    run = small_run(tmp_path, "output.tracking=[tensorboard]", "diagnostics.probes=false")
    board = events(run.path / "tensorboard")
    assert board.Tags()["histograms"] == []
    assert not [tag for tag in board.Tags()["scalars"] if tag.startswith("diag/")]
    assert len(board.Scalars("train/loss")) == 3


def test_mlflow_local_store_holds_params_metrics_summary_and_artifacts(tmp_path):
    run = small_run(tmp_path, "output.tracking=[mlflow]")
    client, run_id = mlflow_client(run)
    assert client.tracking_uri == (run.path / "mlruns").absolute().as_uri()
    recorded = client.get_run(run_id)
    assert recorded.info.status == "FINISHED" and recorded.info.run_name == "run"
    assert recorded.data.params["train.lr"] == "0.01" and recorded.data.params["model.hidden"] == "[8, 8]"
    assert recorded.data.tags["deepwell.status"] == "completed"
    for key in [key for key in run.history[0] if key != "step"]:
        history = [(metric.step, metric.value) for metric in client.get_metric_history(run_id, key)]
        assert history == metric_series(run, key), key
    assert recorded.data.metrics["test/acc"] == pytest.approx(run.summary["test"]["test/acc"])
    assert {artifact.path for artifact in client.list_artifacts(run_id)} == {"config.yaml", "summary.json"}


def test_mlflow_tracking_uri_and_experiment_are_options(tmp_path):
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "store").absolute().as_uri()
    run = small_run(tmp_path, f"output.tracking=['mlflow:uri={store},experiment=lecture']", "train.epochs=1")
    option = run.spec.output.tracking[0]
    assert option.params == {"uri": store, "experiment": "lecture"} and run.spec.output.tracking == deepwell.Run(run.path).spec.output.tracking
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("lecture")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [mlflow_client(run)[1]]
    assert not (run.path / "mlruns").exists()


def test_resume_does_not_duplicate_steps(tmp_path):
    # Checkpoints every 2 epochs: the run killed after epoch 3 logged epoch 3, the resumed run redoes it.
    extra = ["output.tracking=[tensorboard, mlflow]", "train.epochs=5", "train.checkpoint_every=2"]
    with pytest.raises(KeyboardInterrupt):
        small_run(tmp_path, *extra, name="killed", callbacks=[Kill(after=3)])
    killed = tmp_path / "killed"
    first_id = json.loads((killed / "tracking.json").read_text())["mlflow"]["run_id"]
    client, _ = mlflow_client(deepwell.Run(killed))
    assert client.get_run(first_id).info.status == "KILLED"
    assert len(client.get_metric_history(first_id, "train/loss")) == 3

    run = deepwell.train(resume=killed, progress="none")
    assert len(run.history) == 5
    client, run_id = mlflow_client(run)
    assert run_id == first_id and client.get_run(run_id).info.status == "FINISHED"
    board = events(run.path / "tensorboard")
    for key in ("train/loss", "val/loss", "epoch"):
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, key)] == metric_series(run, key), key
        steps, values = zip(*scalar_series(board, key))
        assert list(steps) == [step for step, _ in metric_series(run, key)], key
        assert values == pytest.approx([value for _, value in metric_series(run, key)], rel=1e-6), key
    layer = load_probes(run.path / "probes.jsonl").layers[0]
    steps = [step for step, _ in scalar_series(board, f"diag/grad_norm/{layer}")]
    assert steps == sorted(set(steps)) == load_probes(run.path / "probes.jsonl").series("grad_norm", layer)[0]


@pytest.mark.parametrize(("tracker", "module"), [("mlflow", "mlflow.tracking"), ("tensorboard", "torch.utils.tensorboard")])
def test_missing_package_names_the_extra(tmp_path, monkeypatch, tracker, module):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as when the package is absent
    with pytest.raises(ConfigError, match=r"pip install 'deepwell\[tracking\]'"):
        small_run(tmp_path, f"output.tracking=[{tracker}]")
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_an_mlflow_server_that_does_not_answer_is_a_clear_error_before_training(tmp_path):
    import socket

    with socket.socket() as probe:   # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"no server answers at http://127.0.0.1:{port} .*mlflow server.*leave uri out"):
        small_run(tmp_path, f"output.tracking=[mlflow:uri=http://127.0.0.1:{port}]")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()   # refused before the first epoch


def test_an_answering_server_passes_the_check():
    import http.server
    import threading

    from deepwell.tracking import _check_server

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _check_server(f"http://127.0.0.1:{server.server_port}")       # /health: 200
        _check_server(f"http://127.0.0.1:{server.server_port}/sub/")   # a 404 is an answer too
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_tracker_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"Unknown tracker 'tensorbord'. Did you mean 'tensorboard'\? Known: mlflow, tensorboard"):
        deepwell.train(overrides=["output.tracking=[tensorbord]"], progress="none")
