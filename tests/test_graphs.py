"""train.cuda_graphs: which steps are graphed, and graphed training equal to eager.

On a CPU the key is ignored; the quick tests let graphs apply to the CPU too (``graphs.DEVICES``)
and compile the step with a counting backend that runs the captured graph as captured: they check
the wiring (full batches no callback looks inside are graphed; probe samples and the last smaller
batch run eagerly; results, probe rows and resume unchanged) without a GPU. The CUDA tests compile
with inductor's CUDA graphs (``mode="reduce-overhead"``) and are skipped without a GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepwell.config import ModelSpec, TrainSpec
from deepwell.diagnostics.probes import Probes, load_probes
from deepwell.models import build_model
from deepwell.training import graphs
from deepwell.training import loop as loop_module
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import CheckpointSaver, TensorData, fit

from counting_backend import CountingBackend

pytestmark = pytest.mark.usefixtures("single_thread")
EVERY, BATCH = 3, 16  # probe period; 70 examples -> 4 full batches and one of 6 per epoch


@pytest.fixture
def on_cpu(monkeypatch):
    """Graphs apply to the CPU, compiled by a counting backend; returns the list of graphed step calls."""
    torch._dynamo.reset()
    monkeypatch.setattr(graphs, "BACKEND", CountingBackend())
    monkeypatch.setattr(graphs, "DEVICES", ("cuda", "cpu"))
    calls: list[int] = []

    def counted(step_loss):
        compiled = graphs.graph_step(step_loss)

        def call(x, y):
            calls.append(len(x))
            return compiled(x, y)
        return call
    monkeypatch.setattr(loop_module, "graph_step", counted)
    yield calls
    torch._dynamo.reset()


class Kill(Callback):
    def on_batch_end(self, state: FitState) -> None:
        if state.step == 8:
            raise KeyboardInterrupt


def data(device: str = "cpu") -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 8, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorData(*(t.to(device) for t in (x[:70], y[:70], x[70:], y[70:])))


def spec(**changes) -> TrainSpec:
    return TrainSpec(**{"epochs": 3, "batch_size": BATCH, "optimizer": "adam", "lr": 0.01, "schedule": "constant"} | changes)


def probed(tmp_path, name: str, train: TrainSpec, device: str = "cpu", callbacks=(), dropout: str = "dropout:0.2",
           **kwargs):
    d = data(device)
    net = build_model(ModelSpec(arch="mlp", depth=2, width=16, dropout=dropout), (8,), 2,
                      generator=torch.Generator().manual_seed(0)).to(device)
    probes = Probes(tmp_path / f"{name}.jsonl", d.x_train[:32], d.y_train[:32], F.cross_entropy, every=EVERY)
    result = fit(net, d, train, callbacks=[probes, *callbacks], **kwargs)
    return net, result, load_probes(tmp_path / f"{name}.jsonl")


def test_on_a_cpu_the_key_is_accepted_and_ignored(tmp_path, monkeypatch):
    assert TrainSpec().cuda_graphs is True
    monkeypatch.setattr(loop_module, "graph_step", lambda step_loss: pytest.fail("graphed on a CPU"))
    probed(tmp_path, "cpu", spec())
    assert not graphs.graphs_apply(True, torch.device("cpu"), distributed=False)
    assert not graphs.graphs_apply(True, torch.device("cuda"), distributed=True)   # data-parallel: eager
    assert not graphs.graphs_apply(False, torch.device("cuda"), distributed=False)
    assert graphs.graphs_apply(True, torch.device("cuda"), distributed=False)


def test_graphed_steps_are_the_full_unsampled_ones_and_training_is_unchanged(tmp_path, on_cpu):
    eager, eager_result, eager_probes = probed(tmp_path, "eager", spec(cuda_graphs=False))
    assert on_cpu == []
    graphed, graphed_result, graphed_probes = probed(tmp_path, "graphed", spec())
    steps, per_epoch = 3 * 5, 5
    eager_steps = [s for s in range(steps) if s % EVERY == 0 or s % per_epoch == per_epoch - 1]  # sampled, or the batch of 6
    assert on_cpu == [BATCH] * (steps - len(eager_steps))
    assert graphs.BACKEND.graphs >= 1
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(eager_result.history, graphed_result.history):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-5)
    # the probes sampled the same steps with the same numbers; the graphed steps counted fired units too
    for a, b in zip(eager_probes.samples, graphed_probes.samples):
        assert a["step"] == b["step"]
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
        assert a["signal_grad_norm"] == pytest.approx(b["signal_grad_norm"], rel=1e-4)
    assert [row["dead_epoch"] for row in graphed_probes.epochs] == [row["dead_epoch"] for row in eager_probes.epochs]


def test_graphed_run_resumes_to_the_uninterrupted_one(tmp_path, on_cpu):
    whole, whole_result, _ = probed(tmp_path, "whole", spec())
    checkpoint = tmp_path / "killed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        probed(tmp_path, "killed", spec(), callbacks=[CheckpointSaver(checkpoint), Kill()])
    resumed, resumed_result, _ = probed(tmp_path, "killed", spec(), callbacks=[CheckpointSaver(checkpoint)],
                                        resume_from=checkpoint)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert len(resumed_result.history) == len(whole_result.history) == 3


def test_every_fit_of_a_process_gets_its_graphs(tmp_path, on_cpu):
    """Dynamo compiles a code object at most recompile_limit times; each fit's step has its own (graphs.graph_step)."""
    counts = []
    # torch's own patch: monkeypatch's undo of a config module attribute hid it from later compiles (AttributeError)
    with torch._dynamo.config.patch(recompile_limit=2):
        for index in range(4):
            probed(tmp_path, f"fit{index}", spec(epochs=1))
            counts.append(graphs.BACKEND.graphs)
    assert all(later > earlier for earlier, later in zip([0, *counts], counts)), counts


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: CUDA graphs of the training step")
def test_cuda_graphed_training_equals_eager_within_float_tolerance(tmp_path):
    torch._dynamo.reset()
    # without dropout: inductor draws its masks from its own generator, so masks would differ
    eager, eager_result, eager_probes = probed(tmp_path, "eager", spec(cuda_graphs=False), device="cuda", dropout="none")
    graphed, graphed_result, graphed_probes = probed(tmp_path, "graphed", spec(), device="cuda", dropout="none")
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)  # fused kernels round differently
    for a, b in zip(eager_result.history, graphed_result.history):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
    assert [s["step"] for s in graphed_probes.samples] == [s["step"] for s in eager_probes.samples]
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: CUDA graphs of the training step")
def test_cuda_graphed_deterministic_run_resumes_bitwise(tmp_path):
    from deepwell.runtime import set_deterministic

    torch._dynamo.reset()
    set_deterministic(True)
    try:
        whole, _, _ = probed(tmp_path, "whole", spec(), device="cuda")
        checkpoint = tmp_path / "killed.safetensors"
        with pytest.raises(KeyboardInterrupt):
            probed(tmp_path, "killed", spec(), device="cuda", callbacks=[CheckpointSaver(checkpoint), Kill()])
        resumed, _, _ = probed(tmp_path, "killed", spec(), device="cuda", callbacks=[CheckpointSaver(checkpoint)],
                               resume_from=checkpoint)
        for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), name
    finally:
        set_deterministic(False)
        torch._dynamo.reset()
