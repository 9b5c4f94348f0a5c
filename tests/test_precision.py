"""train.precision: bf16 autocast really on (and only where asked), bf16 training close to fp32, tf32 a no-op off CUDA.

The fp32 default's bitwise behaviour is also held by every other test of the loop (test_training.py,
test_compile.py compare exact weights); here fp32 is checked against a hand-written loop.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import ModelSpec, RunSpec, TrainSpec
from deepwell.diagnostics.probes import Probes, load_probes
from deepwell.errors import ConfigError
from deepwell.models import build_model
from deepwell.training import precision
from deepwell.training.callbacks import Callback, FitState
from deepwell.training.loop import CheckpointSaver, TensorData, evaluate, fit

pytestmark = pytest.mark.usefixtures("single_thread")


def blobs(n: int = 192, n_val: int = 64, features: int = 10, classes: int = 3) -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n + n_val, features, generator=generator)
    y = (x @ torch.randn(features, classes, generator=generator)).argmax(1)
    return TensorData(x[:n], y[:n], x[n:], y[n:])


def network(seed: int = 0) -> nn.Module:
    return build_model(ModelSpec(arch="mlp", depth=2, width=32), (10,), 3, generator=torch.Generator().manual_seed(seed))


def spec(**changes) -> TrainSpec:
    return TrainSpec(**{"epochs": 12, "batch_size": 32, "optimizer": "adam", "lr": 0.01, "schedule": "constant"} | changes)


class Dtypes(Callback):
    """Records the dtype of every nn.Linear output, by the model's mode (training steps vs evaluation)."""

    def __init__(self) -> None:
        self.seen: dict[str, set[torch.dtype]] = {"train": set(), "eval": set()}

    def on_fit_start(self, state: FitState) -> None:
        for module in state.model.modules():
            if isinstance(module, nn.Linear):
                module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output) -> None:
        self.seen["train" if module.training else "eval"].add(output.dtype)


def test_precision_is_a_validated_spec_key_with_fp32_default():
    assert TrainSpec().precision == "fp32"
    assert RunSpec.from_dict({"train": {"precision": "bf16"}}).train.precision == "bf16"
    with pytest.raises(ConfigError, match=r"train\.precision.*'fp32', 'bf16' or 'tf32'"):
        RunSpec.from_dict({"train": {"precision": "fp16"}})


@pytest.mark.parametrize(("name", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32), ("tf32", torch.float32)])
def test_the_forward_runs_in_the_precision_asked_for(name, dtype):
    dtypes = Dtypes()
    fit(network(), blobs(), spec(epochs=1, precision=name), callbacks=[dtypes])
    assert dtypes.seen == {"train": {dtype}, "eval": {dtype}}  # the steps, and evaluation (clean train, val)


def test_bf16_training_reaches_about_the_fp32_loss():
    fp32 = fit(network(), blobs(), spec()).history[-1]
    bf16 = fit(network(), blobs(), spec(precision="bf16")).history[-1]
    assert bf16["train/loss"] != fp32["train/loss"]  # really another computation
    # both learn the problem (chance: ln 3 = 1.10) ...
    assert fp32["train/loss_clean"] < 0.15 and bf16["train/loss_clean"] < 0.15
    # ... to the same loss within bf16 rounding over 72 steps: 0.03 absolute (measured: <= 0.002 over seeds 0-2)
    assert bf16["train/loss_clean"] == pytest.approx(fp32["train/loss_clean"], abs=0.03)
    assert bf16["val/acc"] == pytest.approx(fp32["val/acc"], abs=0.05)


def test_fp32_fit_equals_a_hand_written_loop_bitwise():
    """The factored step (step_loss + update) does exactly what the loop did before it: forward, loss, backward, step."""
    data, train = blobs(), spec(epochs=2, optimizer="sgd:momentum=0.9")
    trained = network()
    fit(trained, data, train, seed=3)
    reference = network()
    optimizer = torch.optim.SGD(reference.parameters(), lr=train.lr, momentum=0.9, fused=True)  # fit's choice on a CPU
    shuffle = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    for _ in range(train.epochs):
        order = torch.randperm(len(data.x_train), generator=shuffle)
        for start in range(0, len(order), train.batch_size):
            index = order[start:start + train.batch_size]
            loss = F.cross_entropy(reference(data.x_train[index]), data.y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    for (name, a), b in zip(trained.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


def test_tf32_is_fp32_bitwise_on_a_cpu_and_says_so_once(caplog, monkeypatch):
    monkeypatch.setattr(precision, "_said_no_tf32", False)
    fp32, tf32 = network(), network()
    fit(fp32, blobs(), spec(epochs=2))
    with caplog.at_level(logging.WARNING, logger="deepwell.training.precision"):
        fit(tf32, blobs(), spec(epochs=2, precision="tf32"))
        fit(network(), blobs(), spec(epochs=1, precision="tf32"))
    assert [r.getMessage() for r in caplog.records if "tf32" in r.getMessage()] == [
        "train.precision=tf32 changes only CUDA matmuls and convolutions; on cpu it has no effect (the run is plain fp32)."]
    for (name, a), b in zip(fp32.state_dict().items(), tf32.state_dict().values()):
        assert torch.equal(a, b), name


def test_tf32_context_switches_the_cuda_kernels_and_restores_them(monkeypatch):
    """The settings are process-wide: checked without a GPU (they are read only when a CUDA kernel runs)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # a user's choice, restored after
    before = torch.get_float32_matmul_precision()
    assert before != "high"
    with precision.tf32_context("tf32", torch.device("cuda")):
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
        # torch's old and new switches agree (inductor reads the old one; a mix of the two raises)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.get_float32_matmul_precision() == before and not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32
    with precision.tf32_context("bf16", torch.device("cuda")):
        assert torch.get_float32_matmul_precision() == before


def test_bf16_evaluate_is_close_to_fp32():
    data, model = blobs(), network()
    fp32 = evaluate(model, data.x_val, data.y_val, "classification")
    bf16 = evaluate(model, data.x_val, data.y_val, "classification", precision="bf16")
    assert bf16["loss"] != fp32["loss"]
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.02)  # bf16: ~3 significant digits per product


def test_bf16_probes_measure_in_bf16_and_resume_bitwise(tmp_path):
    class Kill(Callback):
        def on_batch_end(self, state: FitState) -> None:
            if state.step == 14:
                raise KeyboardInterrupt

    def run(name: str, callbacks=(), **kwargs):
        data, model = blobs(), network()
        probes = Probes(tmp_path / f"{name}.jsonl", data.x_train[:64], data.y_train[:64], F.cross_entropy, every=4)
        result = fit(model, data, spec(epochs=4, precision="bf16"), callbacks=[probes, *callbacks], **kwargs)
        return model, result, load_probes(tmp_path / f"{name}.jsonl")

    whole, whole_result, whole_probes = run("whole")
    checkpoint = tmp_path / "killed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        run("killed", [CheckpointSaver(checkpoint), Kill()])
    resumed, resumed_result, resumed_probes = run("killed", [CheckpointSaver(checkpoint)], resume_from=checkpoint)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["train/loss"] for r in whole_result.history] == [r["train/loss"] for r in resumed_result.history]
    assert [s["grad_norm"] for s in whole_probes.samples] == [s["grad_norm"] for s in resumed_probes.samples]
    # the probes' own passes ran under autocast too: the initial measurement differs from an fp32 one
    data, model = blobs(), network()
    probes = Probes(tmp_path / "fp32.jsonl", data.x_train[:64], data.y_train[:64], F.cross_entropy, every=4)
    fit(model, data, spec(epochs=1), callbacks=[probes])
    fp32_initial, bf16_initial = load_probes(tmp_path / "fp32.jsonl").initial(), whole_probes.initial()
    assert fp32_initial["act_std"] != bf16_initial["act_std"]
    assert bf16_initial["act_std"] == pytest.approx(fp32_initial["act_std"], rel=0.02)
