"""Probes measure what they claim: compared with direct torch computations and closed forms."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import deepwell
from deepwell.config import ModelSpec, TrainSpec
from deepwell.diagnostics.probes import SATURATION, Probes, load_probes, measure_activations
from deepwell.models import build_model
from deepwell.training.callbacks import Callback
from deepwell.training.loop import TensorData, fit


def data(n: int = 128, features: int = 8) -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorData(x, y, x[:32], y[:32])


def mlp(activation: str = "relu", depth: int = 3, width: int = 16, init: str = "he", norm: str = "none") -> torch.nn.Module:
    return build_model(ModelSpec(arch="mlp", depth=depth, width=width, activation=activation, init=init, norm=norm),
                       (8,), 2, generator=torch.Generator().manual_seed(0))


def probed_fit(tmp_path, model, spec: TrainSpec, every: int = 1, callbacks=()):
    d = data()
    probes = Probes(tmp_path / "probes.jsonl", d.x_train[:64], d.y_train[:64], F.cross_entropy, every=every)
    fit(model, d, spec, callbacks=[probes, *callbacks])
    return load_probes(tmp_path / "probes.jsonl"), d


def test_dead_units_counted_exactly():
    model = mlp()
    with torch.no_grad():
        model.dense[0].transform.bias[:4] = -1e3  # 4 of 16 units of layer 1 can never fire
    stats = measure_activations(model, data().x_train)
    assert stats["dead"][0] == pytest.approx(4 / 16)


def test_activation_statistics_match_a_direct_forward():
    model = mlp("tanh", init="normal:2.0")
    x = data().x_train
    stats = measure_activations(model, x, histograms=True)
    with torch.no_grad():
        first = model.dense[0].activation(model.dense[0].transform(x))
    assert stats["act_std"][0] == pytest.approx(first.std().item(), rel=1e-5)
    assert stats["act_mean"][0] == pytest.approx(first.mean().item(), abs=1e-6)
    assert stats["saturated"][0] == pytest.approx((first.abs() > 1 - SATURATION).float().mean().item())
    assert stats["saturated"][0] > 0.3  # sigma 2: heavily saturated
    linear = ((1 - first.square()) >= 0.8).float().mean().item()
    assert stats["linear"][0] == pytest.approx(linear)
    counts = stats["hist"]["counts"][0]
    assert sum(counts) == pytest.approx(first.numel())
    assert stats["hist"]["edges"][0][0] == -1.0 and stats["hist"]["edges"][0][-1] == 1.0


class GradientRecorder(Callback):
    """Records each step's weight gradients and weights before/after the update (the reference)."""

    def __init__(self):
        self.grads, self.before, self.after = [], [], []

    def after_backward(self, state):
        blocks = [b for _, b in state.model.hidden_blocks()]
        self.grads.append([b.transform.weight.grad.norm().item() for b in blocks])
        self.before.append([b.transform.weight.detach().clone() for b in blocks])

    def on_batch_end(self, state):
        self.after.append([b.transform.weight.detach().clone() for _, b in state.model.hidden_blocks()])


def test_gradient_weight_and_update_quantities(tmp_path):
    recorder = GradientRecorder()
    spec = TrainSpec(epochs=1, batch_size=32, optimizer="sgd", lr=0.1, schedule="constant")
    log, _ = probed_fit(tmp_path, mlp(), spec, every=1, callbacks=[recorder])
    samples = [s for s in log.samples if s["epoch"] >= 0]
    assert [s["step"] for s in samples] == [1, 2, 3, 4]
    for k, sample in enumerate(samples):
        assert sample["grad_norm"] == pytest.approx(recorder.grads[k], rel=1e-5)
        before, after = recorder.before[k], recorder.after[k]
        assert sample["weight_norm"] == pytest.approx([w.norm().item() for w in after], rel=1e-5)  # after the step
        # Plain SGD: the update is lr * grad, so ||dW|| / ||W|| = lr * ||g|| / ||W||.
        expected = [0.1 * g / w.norm().item() for g, w in zip(recorder.grads[k], before)]
        assert sample["update_ratio"] == pytest.approx(expected, rel=1e-4)
        assert sample["update_ratio"] == pytest.approx([(a - b).norm().item() / b.norm().item() for a, b in zip(after, before)],
                                                       rel=1e-4)


def test_initial_sample_measures_gradients_without_changing_the_model(tmp_path):
    model = mlp("sigmoid", depth=8, init="xavier")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    d = data()
    probes = Probes(tmp_path / "p.jsonl", d.x_train[:64], d.y_train[:64], F.cross_entropy)
    from deepwell.training.callbacks import FitState

    probes.on_fit_start(FitState(model, torch.optim.SGD(model.parameters(), lr=0.1), 1, 1, []))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    initial = load_probes(tmp_path / "p.jsonl").initial()
    # Reference: the same gradients straight from autograd, in eval mode.
    model.eval()
    F.cross_entropy(model(d.x_train[:64]), d.y_train[:64]).backward()
    reference = [b.transform.weight.grad.norm().item() for _, b in model.hidden_blocks()]
    assert initial["grad_norm"] == pytest.approx(reference, rel=1e-5)
    assert initial["update_ratio"] == [None] * 8
    assert initial["grad_norm"][0] < initial["grad_norm"][-1] / 50  # sigmoid: gradients vanish going back
    assert "hist" in initial


def test_signal_gradient_is_the_per_example_norm_of_dloss_doutput(tmp_path):
    model = mlp(depth=2)
    d = data()
    probes = Probes(tmp_path / "p.jsonl", d.x_train[:64], d.y_train[:64], F.cross_entropy)
    from deepwell.training.callbacks import FitState

    probes.on_fit_start(FitState(model, torch.optim.SGD(model.parameters(), lr=0.1), 1, 1, []))
    initial = load_probes(tmp_path / "p.jsonl").initial()
    model.eval()
    outputs = []

    def keep(module, inputs, output):
        output.retain_grad()
        outputs.append(output)

    handle = model.dense[0].register_forward_hook(keep)
    F.cross_entropy(model(d.x_train[:64]), d.y_train[:64]).backward()
    handle.remove()
    assert initial["signal_grad_norm"][0] == pytest.approx(outputs[0].grad.flatten(1).norm(dim=1).mean().item(), rel=1e-5)


def test_dead_over_the_epoch_counts_units_that_never_fired(tmp_path):
    model = mlp()
    with torch.no_grad():
        model.dense[1].transform.bias[:8] = -1e4  # half of layer 2 cannot fire, whatever SGD does in one epoch
    spec = TrainSpec(epochs=1, batch_size=32, optimizer="sgd", lr=1e-4, schedule="constant")
    log, _ = probed_fit(tmp_path, model, spec)
    assert log.epochs[0]["dead_epoch"][1] == pytest.approx(0.5)
    assert log.epochs[0]["dead_epoch"][0] < 0.5


def test_probes_in_a_run_folder_survive_resume(tmp_path):
    small = ["output.report=false", "data.source=moons:n=300", "model.hidden=[16,16]", "train.epochs=4", "diagnostics.every=3",
             f"output.dir={tmp_path}"]
    whole = deepwell.train(overrides=[*small, "output.name=whole"], progress="none")

    class Kill(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deepwell.train(overrides=[*small, "output.name=killed"], progress="none", callbacks=[Kill()])
    resumed = deepwell.train(resume=tmp_path / "killed", progress="none")
    rows = lambda run: [json.loads(line) for line in (run.path / "probes.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(whole) == rows(resumed)
    assert len(load_probes(whole.path / "probes.jsonl").epochs) == 4
