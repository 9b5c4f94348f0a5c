"""train.compile: the auto rule, compiled training equal to eager, probes' hooks firing, resume.

The quick tests compile through dynamo with a counting backend that runs the captured graph
eagerly: they check the capture (hooks traced in, guards, resume) without inductor's C++ build,
which takes minutes on a loaded 2-core machine. The slow test compiles with inductor itself.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepwell.config import ModelSpec, TrainSpec
from deepwell.diagnostics.probes import Probes, load_probes
from deepwell.models import build_model
from deepwell.training import compile as compiling
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import CheckpointSaver, TensorData, fit

from counting_backend import CountingBackend

pytestmark = pytest.mark.usefixtures("single_thread")


class Kill(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_batch_end(self, state: FitState) -> None:
        if state.step == self.at_step:
            raise KeyboardInterrupt(f"killed at step {state.step}")


@pytest.fixture
def backend(monkeypatch):
    torch._dynamo.reset()
    counting = CountingBackend()
    monkeypatch.setattr(compiling, "BACKEND", counting)
    yield counting
    torch._dynamo.reset()


def data() -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorData(x[:64], y[:64], x[64:], y[64:])


def model() -> torch.nn.Module:
    return build_model(ModelSpec(arch="mlp", depth=2, width=16), (8,), 2, generator=torch.Generator().manual_seed(0))


def spec(**changes) -> TrainSpec:
    return TrainSpec(**{"epochs": 3, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "schedule": "constant"} | changes)


def probed(tmp_path, name: str, train: TrainSpec, callbacks=(), **kwargs):
    d, net = data(), model()
    probes = Probes(tmp_path / f"{name}.jsonl", d.x_train[:32], d.y_train[:32], F.cross_entropy, every=2)
    result = fit(net, d, train, callbacks=[probes, *callbacks], **kwargs)
    return net, result, load_probes(tmp_path / f"{name}.jsonl")


def assert_close_tree(got, expected, rel: float, where: str = "") -> None:
    """Equal structure; floats within ``rel`` (compiled kernels may round differently), everything else equal."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key in expected:
            if key != "time":
                assert_close_tree(got[key], expected[key], rel, f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for index, (a, b) in enumerate(zip(got, expected)):
            assert_close_tree(a, b, rel, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=rel, abs=1e-6), where
    else:
        assert got == expected, where


def assert_same_rows(got: list[dict], expected: list[dict], rel: float = 1e-4, skip: tuple[str, ...] = ()) -> None:
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert_close_tree({k: v for k, v in a.items() if k not in skip}, {k: v for k, v in b.items() if k not in skip}, rel)


def test_auto_rule_compiles_only_when_the_rest_of_the_run_repays_it():
    saving, cost = compiling.EXPECTED_SAVING, compiling.COMPILE_S
    assert compiling.should_compile(remaining_epochs=round(1.1 * cost / saving), epoch_s=1.0)  # saves 1.1x the cost
    assert not compiling.should_compile(remaining_epochs=round(0.9 * cost / saving), epoch_s=1.0)
    assert compiling.should_compile(10, 2.0, compile_s=3.9, saving=0.2)          # 4.0 > 3.9
    assert not compiling.should_compile(10, 2.0, compile_s=4.1, saving=0.2)
    assert not compiling.should_compile(0, 100.0)                                # nothing left to repay it


def test_off_is_the_default_and_never_compiles(backend):
    assert TrainSpec().compile == "off"
    fit(model(), data(), spec())
    assert backend.graphs == 0


def test_compiled_training_equals_eager_and_probes_still_fire(tmp_path, backend):
    eager, eager_result, eager_probes = probed(tmp_path, "eager", spec())
    compiled, compiled_result, compiled_probes = probed(tmp_path, "compiled", spec(compile="on"))
    assert backend.graphs >= 1
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(eager_result.history, compiled_result.history):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
    # the probes' hooks fired in the compiled steps: the same samples and epoch rows (gradient signal, fired units)
    assert_same_rows(compiled_probes.samples, eager_probes.samples)
    assert_same_rows(compiled_probes.epochs, eager_probes.epochs)


@pytest.mark.parametrize(("epoch_s", "compiled"), [(1e9, True), (0.0, False)])
def test_auto_compiles_after_the_first_epoch_when_it_pays(monkeypatch, backend, epoch_s, compiled):
    monkeypatch.setattr("deepwell.training.loop.should_compile",
                        lambda remaining, seconds: compiling.should_compile(remaining, epoch_s))
    fit(model(), data(), spec(compile="auto"))
    assert (backend.graphs > 0) == compiled


def test_compiled_run_resumes_to_the_uninterrupted_run(tmp_path, backend):
    whole, whole_result, _ = probed(tmp_path, "whole", spec(compile="on"))
    checkpoint = tmp_path / "killed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        probed(tmp_path, "killed", spec(compile="on"), callbacks=[CheckpointSaver(checkpoint), Kill(6)])
    resumed, resumed_result, _ = probed(tmp_path, "killed", spec(compile="on"), callbacks=[CheckpointSaver(checkpoint)],
                                        resume_from=checkpoint)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert len(resumed_result.history) == len(whole_result.history) == 3


@pytest.mark.slow
def test_inductor_compiled_training_equals_eager_within_float_tolerance(tmp_path):
    torch._dynamo.reset()
    eager, _, eager_probes = probed(tmp_path, "eager", spec(epochs=2))
    compiled, _, compiled_probes = probed(tmp_path, "compiled", spec(epochs=2, compile="on"))
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    # histogram counts may move by one where a value sits on a bin edge: compared without them
    assert_same_rows(compiled_probes.samples, eager_probes.samples, rel=1e-3, skip=("hist",))
    assert_same_rows(compiled_probes.epochs, eager_probes.epochs, rel=1e-3, skip=("hist",))
    torch._dynamo.reset()
