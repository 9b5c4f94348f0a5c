"""The playground's server (deepwell.serve) through Starlette's TestClient: security, limits, keys, sessions, saving."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from deepwell.config import RunSpec, apply_overrides, load_spec  # noqa: E402
from deepwell.serve.app import Playground, create_app  # noqa: E402
from deepwell.serve.controls import change_kind, command_line, remedy_actions, spec_diff  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")
TINY = ("data.source=moons:n=200", "model.hidden=[4]", "model.norm=none", "train.epochs=3", "train.batch_size=32",
        "train.optimizer=adam", "train.lr=0.01", "train.schedule=constant", "diagnostics.every=2")


@pytest.fixture
def served(tmp_path: Path):
    """(client, playground) of a server on a tiny spec, data folder tmp_path/data, at most 2 sessions, 1 KiB uploads."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "points.csv").write_text("a,b,target\n" + "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(40)))
    playground = Playground(load_spec(None, TINY), data, tmp_path / "runs", max_sessions=2, max_upload_bytes=1024)
    with TestClient(create_app(playground)) as client:
        yield client, playground


def _messages(socket, until, limit: int = 500) -> list[dict]:
    seen = []
    for _ in range(limit):
        seen.append(json.loads(socket.receive_text()))
        if until(seen[-1]):
            return seen
    raise AssertionError(f"no matching message among {[m.get('type') for m in seen]}")


def _eventually(condition, timeout: float = 60.0) -> bool:
    """Whether ``condition()`` becomes true within ``timeout`` s (the server closes sessions in its own threads)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_page_and_static_modules_are_served_but_nothing_outside(served) -> None:
    client, _ = served
    assert '<script type="module" src="/static/app.js">' in client.get("/").text
    assert "export function drawBoundary" in client.get("/static/draw.js").text
    for path in ("/static/../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fapp.py"):
        response = client.get(path)
        assert response.status_code == 404 and "root:" not in response.text


def test_data_files_outside_the_data_folder_are_refused(served, tmp_path: Path) -> None:
    client, _ = served
    sid = client.post("/api/sessions", json={}).json()["id"]
    (tmp_path / "secret.csv").write_text("a,target\n1,0\n2,1\n")
    for path in ("../secret.csv", str(tmp_path / "secret.csv"), "/etc/passwd", "sub/../../secret.csv"):
        response = client.post(f"/api/sessions/{sid}/set", json={"changes": {"data.source": f"csv:path={path}"}})
        assert response.status_code == 400, path
        assert response.json()["key"] == "data.source" and "outside the data folder" in response.json()["error"]
    inside = client.post(f"/api/sessions/{sid}/set", json={"changes": {"data.source": "csv:path=points.csv,target=target"}})
    assert inside.status_code == 200, inside.json()
    assert str(tmp_path / 'data' / 'points.csv') in inside.json()['spec']['data']['source']  # resolved inside the data folder
    assert "points.csv" in client.get("/api/meta").json()["files"]


def test_bad_keys_get_the_set_message_and_change_nothing(served) -> None:
    client, playground = served
    sid = client.post("/api/sessions", json={}).json()["id"]
    before = playground.sessions[sid].spec
    cases = {"model.activation": ("sigmod", "Did you mean 'sigmoid'?"), "train.lr": ("-1", "greater than 0"),
             "model.actvation": ("relu", "Did you mean 'activation'?"), "output.dir": ("/tmp/x", "cannot be set from the playground"),
             "device": ("cuda", "cannot be set from the playground"), "model.backbone": ("run:/etc", "cannot be set")}
    for key, (value, expected) in cases.items():
        response = client.post(f"/api/sessions/{sid}/set", json={"changes": {key: value}})
        assert response.status_code == 400 and response.json()["key"] == key
        assert expected in response.json()["error"], response.json()["error"]
    assert playground.sessions[sid].spec == before


def test_uploads_are_size_limited_and_read_by_the_validating_readers(served) -> None:
    client, playground = served
    too_big = client.post("/api/upload?name=big.csv", content=b"a,target\n" + b"1,0\n" * 400)
    assert too_big.status_code == 413 and "too large" in too_big.json()["error"]
    ragged = client.post("/api/upload?name=bad.csv&target=target", content=b"a,b,target\n1,2,0\n3,1\n")
    assert ragged.status_code == 400
    error = ragged.json()["error"]
    assert "rows of different lengths" in error and "Traceback" not in error and "\n" not in error
    missing = client.post("/api/upload?name=t.csv&target=label", content=b"a,target\n1,0\n2,1\n")
    assert missing.status_code == 400 and "label" in missing.json()["error"]
    assert client.post("/api/upload?name=evil.pkl", content=b"x").status_code == 400
    good = client.post("/api/upload?name=../../ok.csv&target=target", content=b"a,target\n" + b"1,0\n2,1\n" * 20)
    assert good.status_code == 200
    stored = Path(good.json()["source"].split("path=")[1].split(",")[0])
    assert stored.parent == playground.upload_dir and stored.name.endswith("ok.csv")
    assert list(playground.upload_dir.iterdir()) == [stored]  # the refused files were not kept


def test_sessions_are_bounded_and_a_closed_socket_frees_its_slot(served) -> None:
    client, playground = served
    first = client.post("/api/sessions", json={}).json()["id"]
    client.post("/api/sessions", json={})
    busy = client.post("/api/sessions", json={})
    assert busy.status_code == 503 and "busy" in busy.json()["error"] and "--max-sessions 2" in busy.json()["error"]
    session = playground.sessions[first]
    with client.websocket_connect(f"/ws/{first}") as socket:
        _messages(socket, lambda m: m["type"] == "frame")
        client.post(f"/api/sessions/{first}/play")
        _messages(socket, lambda m: m["type"] == "frame" and m["epoch"] >= 1)
    assert _eventually(lambda: first not in playground.sessions)  # the tab closed: its slot is free ...
    session.thread.join(60)
    assert not session.thread.is_alive()  # ... and its training stopped
    assert client.post("/api/sessions", json={}).status_code == 200
    assert client.post(f"/api/sessions/{first}/play").status_code == 404


def test_idle_and_never_connected_sessions_are_freed(served) -> None:
    from deepwell.serve.app import CONNECT_GRACE

    client, playground = served
    idle = client.post("/api/sessions", json={}).json()["id"]
    fresh = client.post("/api/sessions", json={}).json()["id"]
    playground.connected[idle] = playground.connected[fresh] = True
    assert playground.stale() == []
    playground.sessions[idle].last_active -= playground.idle_timeout + 1  # as if no action for longer than the timeout
    assert playground.stale() == [idle]
    playground.connected[fresh] = False
    playground.created[fresh] -= CONNECT_GRACE + 1  # never connected within the grace period
    assert sorted(playground.stale()) == sorted([idle, fresh])
    for sid in playground.stale():
        playground.close_session(sid)
    assert playground.sessions == {}


def test_step_streams_exactly_one_epoch_and_keep_changes_keep_the_weights(served) -> None:
    client, playground = served
    sid = client.post("/api/sessions", json={}).json()["id"]
    with client.websocket_connect(f"/ws/{sid}") as socket:
        kinds = [m["type"] for m in _messages(socket, lambda m: m["type"] == "frame")]
        assert kinds[0] == "data"
        client.post(f"/api/sessions/{sid}/step")
        frame = _messages(socket, lambda m: m["type"] == "frame" and m["epoch"] == 1)[-1]
        assert frame["step"] == 5  # 160 training examples (200 - 20% test), batches of 32
        assert len(base64.b64decode(frame["view"]["cls"])) == 48 * 48 and frame["probe"]["layers"] == ["dense.0"]
        assert [sum(counts) for counts in frame["grad_hist"]["counts"]] == [4 * 2]  # every weight of dense.0, once
        session = playground.sessions[sid]
        assert session.wait_held(60)
        weights = {k: v.clone() for k, v in session.parts.model.state_dict().items()}
        answer = client.post(f"/api/sessions/{sid}/set", json={"changes": {"train.lr": "0.001"}}).json()
        assert answer["kind"] == "keep" and answer["keys"]["train.lr"] == "0.001"
        assert session.wait_held(60)
        assert all((weights[k] == v).all() for k, v in session.parts.model.state_dict().items())
        assert session.parts.spec.train.lr == 0.001
        rebuilt = client.post(f"/api/sessions/{sid}/set", json={"changes": {"model.hidden": "[5]"}}).json()
        assert rebuilt["kind"] == "rebuild" and session.parts.model.state_dict()["dense.0.transform.weight"].shape == (5, 2)


def test_gradient_histograms_count_torchs_own_weight_gradients(tmp_path: Path) -> None:
    """A probe sample's grad_hist is numpy's histogram of dL/dW as torch computed it: at initialisation (the probe
    batch, eval mode) and at the first step of the fit, per hidden layer, over (-max|g|, max|g|)."""
    import copy

    import numpy as np
    import torch

    from deepwell.diagnostics.probes import HISTOGRAM_BINS, Probes, load_probes, probe_blocks
    from deepwell.run import build_run
    from deepwell.serve.stream import _hist_view
    from deepwell.training.callbacks import Callback
    from deepwell.training.loop import fit, loss_function

    spec = load_spec(None, TINY + ("model.hidden=[6, 5]", "train.epochs=2"))
    parts = build_run(spec, torch.device("cpu"))
    x, y = parts.data.x_train[:64], parts.data.y_train[:64]
    loss_fn = loss_function("classification", spec.train)
    reference = copy.deepcopy(parts.model).eval()
    loss_fn(reference(x), y).backward()

    class FirstStep(Callback):
        grads: list | None = None

        def after_backward(self, state) -> None:
            if self.grads is None:
                self.grads = [block.transform.weight.grad.clone() for _, block in probe_blocks(state.model)]

    first = FirstStep()
    fit(parts.model, parts.data, spec.train, callbacks=[Probes(tmp_path / "probes.jsonl", x, y, loss_fn, every=2), first])
    rows = [row for row in load_probes(tmp_path / "probes.jsonl").samples if "grad_hist" in row]
    assert [row["epoch"] for row in rows] == [-1, 0, 1]  # at init and with each epoch's first activation histograms
    for row, grads in zip(rows, ([block.transform.weight.grad for _, block in probe_blocks(reference)], first.grads)):
        for index, grad in enumerate(grads):
            top = grad.abs().max().item()
            expected, _ = np.histogram(grad.numpy(), bins=HISTOGRAM_BINS, range=(-top, top))
            counts = row["grad_hist"]["counts"][index]
            assert sum(counts) == grad.numel() and np.abs(np.array(counts) - expected).sum() <= 2, (row["epoch"], index)
            assert row["grad_hist"]["edges"][index][-1] == pytest.approx(top, rel=1e-6)
    assert _hist_view(rows[0]["grad_hist"])["edges"][0][-1] == pytest.approx(rows[0]["grad_hist"]["edges"][0][-1], rel=1e-3)


def test_lr_edit_under_a_schedule_keeps_the_weights_and_rescales_the_schedule(tmp_path: Path) -> None:
    """With cosine decay and warm-up, a new train.lr is the schedule's new peak from the next epoch: same weights and
    step, the optimiser's lr = new peak x the schedule's factor at that step (closed form); onecycle still rebuilds."""
    import math

    from deepwell.serve.session import Session

    keys = TINY + ("train.schedule=cosine", "train.warmup_epochs=1", "train.epochs=4")
    assert change_kind(load_spec(None, keys), load_spec(None, keys + ("train.lr=0.05",))) == "keep"
    onecycle = TINY + ("train.schedule=onecycle",)
    assert change_kind(load_spec(None, onecycle), load_spec(None, onecycle + ("train.lr=0.05",))) == "rebuild"
    session = Session(load_spec(None, keys), [tmp_path], tmp_path / "session")
    try:
        session.controller.step(2)
        assert session.wait_held(120)
        weights = {k: v.clone() for k, v in session.parts.model.state_dict().items()}
        assert session.update({"train.lr": "0.05"}) == "keep"
        assert session.wait_held(120)
        state = session.stream.state
        assert state.step == 10 and all((weights[k] == v).all() for k, v in state.model.state_dict().items())
        total, warmup = 4 * 5, 5  # 4 epochs of 5 steps; warm-up: 1 epoch
        factor = min(1.0, (state.step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * state.step / total))
        assert state.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * factor, rel=1e-9)
        session.step()
        assert session.wait_held(120) and session.stream.state.step == 15
        factor = 0.5 * (1 + math.cos(math.pi * 15 / total))
        assert session.stream.state.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * factor, rel=1e-9)
    finally:
        session.close()


def test_saved_run_loads_evaluates_and_resumes(served, tmp_path: Path) -> None:
    from deepwell.run import Run, train

    client, _ = served
    sid = client.post("/api/sessions", json={}).json()["id"]
    assert client.post(f"/api/sessions/{sid}/save").status_code == 400  # nothing trained yet
    client.post(f"/api/sessions/{sid}/step")
    response = client.post(f"/api/sessions/{sid}/save")
    assert response.status_code == 200, response.json()
    run = Run.load(response.json()["path"])
    assert len(run.history) == 1 and run.spec.model.hidden == [4]
    assert {"config.yaml", "meta.json", "metrics.jsonl", "model.safetensors", "probes.jsonl", "findings.json",
            "summary.json", "checkpoints"} <= {p.name for p in run.path.iterdir()}
    assert 0.0 <= run.evaluate()["test/acc"] <= 1.0
    resumed = train(resume=run.path, progress="none")
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]


def test_url_keys_and_the_copied_command_reproduce_the_spec() -> None:
    spec = load_spec(None, TINY + ("model.activation=leaky_relu:0.1", "train.early_stopping={patience: 3}", "seed=4"))
    keys = spec_diff(spec)
    assert RunSpec.from_dict(apply_overrides(RunSpec().to_dict(), [f"{k}={v}" for k, v in keys.items()])) == spec
    assert "--set model.activation=leaky_relu:0.1" in command_line(spec) and "--set 'model.hidden=[4]'" in command_line(spec)


def test_change_kinds_and_remedy_actions() -> None:
    base = load_spec(None, TINY)
    kind = lambda *keys: change_kind(base, load_spec(None, TINY + keys))  # noqa: E731
    assert kind() == "none"
    assert kind("train.lr=0.1", "train.batch_size=8", "model.dropout=dropout:0.2") == "keep"
    assert kind("model.activation=tanh") == "rebuild" and kind("model.init=xavier") == "rebuild" and kind("seed=1") == "rebuild"
    assert kind("train.schedule=cosine") == "rebuild"
    assert remedy_actions("use model.activation=relu with model.init=he (the sigmoid derivative is at most 0.25)") == \
        [{"model.activation": "relu", "model.init": "he"}]
    assert remedy_actions("set train.lr=0.5 (100x higher), or use train.optimizer=adam with train.lr=0.001") == \
        [{"train.lr": "0.5"}, {"train.optimizer": "adam", "train.lr": "0.001"}]
    assert remedy_actions("fix the other findings first (init, gradients, learning rate)") == []


def test_views_match_the_data_kind() -> None:
    """2-D: a class grid; 1-D regression: the curve over the inputs; other classification: a confusion matrix
    whose entries count the evaluated examples, compared with the model's own predictions."""
    import torch

    from deepwell.run import build_run
    from deepwell.serve.views import GRID, describe, model_view, view_inputs

    def view_of(*keys):
        parts = build_run(load_spec(None, TINY + keys), torch.device("cpu"))
        inputs = view_inputs(parts)
        return parts, inputs, model_view(parts, inputs, [])

    parts, inputs, view = view_of()
    probabilities = parts.model.eval()(inputs["inputs"]).softmax(1)
    classes = torch.frombuffer(bytearray(base64.b64decode(view["view"]["cls"])), dtype=torch.uint8)
    confidence = torch.frombuffer(bytearray(base64.b64decode(view["view"]["conf"])), dtype=torch.uint8)
    assert view["view"]["kind"] == "boundary" and len(classes) == len(confidence) == GRID ** 2
    assert torch.equal(classes.long(), probabilities.argmax(1))
    assert torch.allclose(confidence.float() / 255, probabilities.max(1).values, atol=1 / 255)
    assert len(describe(parts, inputs)["train"]) == len(parts.splits.x_train)
    parts, inputs, view = view_of("data.source=polynomial:n=30")
    expected = parts.target.inverse(parts.model.eval()(inputs["inputs"]))[:, 0]  # in the target's units, as the points
    assert not torch.allclose(expected, parts.model(inputs["inputs"])[:, 0])  # the target is standardised: the inverse matters
    assert view["view"]["kind"] == "curve" and view["view"]["y"] == pytest.approx(expected.tolist(), abs=1e-3)
    parts, inputs, view = view_of("data.source=iris", "data.val_fraction=0.3")
    matrix = torch.tensor(view["view"]["matrix"])
    predicted = parts.model.eval()(parts.splits.x_val).argmax(1)
    assert matrix.sum() == len(parts.splits.x_val) and matrix.diagonal().sum() == (predicted == parts.splits.y_val).sum()


def test_serve_command_checks_its_input_and_warns_off_localhost(cli, monkeypatch, tmp_path: Path) -> None:
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.append(kwargs))
    code, _, err = cli("serve", "--data-dir", str(tmp_path / "missing"))
    assert code == 2 and "is not a folder" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("serve", "--set", "model.activation=sigmod", "--data-dir", str(tmp_path))
    assert code == 2 and "Did you mean 'sigmoid'?" in err and not started
    code, out, err = cli("serve", "--data-dir", str(tmp_path), "--port", "8123")
    assert code == 0 and "http://127.0.0.1:8123" in out and "warning" not in err
    assert started[-1] == {"host": "127.0.0.1", "port": 8123, "log_level": "warning"}
    code, out, err = cli("serve", "--data-dir", str(tmp_path), "--host", "0.0.0.0")
    assert code == 0 and "warning: binding 0.0.0.0" in err and started[-1]["host"] == "0.0.0.0"


def test_the_doctor_has_its_own_time_budget_and_never_slows_the_frames(monkeypatch):
    """A long session's history makes the doctor dear; frames keep their rate, findings come less often (fake clocks)."""
    import types
    from collections import deque

    from deepwell.serve import stream as S

    clock = {"cpu": 0.0, "wall": 0.0}
    monkeypatch.setattr(S, "time", types.SimpleNamespace(thread_time=lambda: clock["cpu"], perf_counter=lambda: clock["wall"],
                                                         time=lambda: clock["wall"]))

    def view(*args):  # a frame's own work: 1 ms of CPU
        clock["cpu"] += 0.001
        return {}

    def doctor(self, state):  # the doctor on a long history: 200 ms of CPU
        clock["cpu"] += 0.2
        return []

    monkeypatch.setattr(S, "model_view", view)
    monkeypatch.setattr(S.Stream, "_findings", doctor)
    frames = []
    stream = S.Stream.__new__(S.Stream)   # no model or data needed: the views are replaced above
    stream.__dict__.update(parts=None, publish=frames.append, sent_rows=0, last_step=0, last_frame=-1e9, last_findings=-1e9,
                           probe_initial=None, probe_samples=deque(), probe_epochs=deque(), latest_hist=None, hist_sent=None,
                           frame_cost=0.0, findings_cost=0.0, rate_mark=None, steps_per_s=0.0, findings=[], blocks=[], view=None)
    state = types.SimpleNamespace(history=[], step=0, stop_reason=None)
    for step in range(6000):   # 60 s of training, a step every 10 ms
        clock["wall"] += 0.01
        clock["cpu"] += 0.01
        state.step = step
        stream.on_batch_end(state)
    with_findings = sum("findings" in frame for frame in frames)
    assert len(frames) / 60 >= 10, len(frames)                  # the frame rate holds (1/12 s apart)
    assert 60 / 4 - 2 <= with_findings <= 60 / 4 + 1, with_findings  # the doctor: 0.2 s / 5% = every 4 s, not every second
