"""Tests of the one training loop (deepwell.training.loop.fit), optimisers and schedules.

Early stopping, penalties and checkpoint files have their own files (test_early_stopping.py,
test_penalties.py, test_checkpoint.py).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepwell.config import EarlyStoppingSpec, ModelSpec, TrainSpec
from deepwell.errors import ConfigError
from deepwell.models import build_model
from deepwell.training.callbacks import Callback, FitState, StopReason
from deepwell.training.checkpoint import load_state
from deepwell.training.loop import CheckpointSaver, TensorData, evaluate, fit
from deepwell.training.optim import OPTIMIZERS, build_schedule


pytestmark = pytest.mark.usefixtures("single_thread")


def train_spec(**changes) -> TrainSpec:
    """A small, fast spec that states what the tests rely on instead of inheriting the library's defaults."""
    return TrainSpec(**{"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "schedule": "constant"} | changes)


def blobs(n: int = 48, n_val: int = 16, features: int = 6, classes: int = 3) -> TensorData:
    """Linearly separable-ish classes from a random projection."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n + n_val, features, generator=generator)
    y = (x @ torch.randn(features, classes, generator=generator)).argmax(1)
    return TensorData(x[:n], y[:n], x[n:], y[n:])


def linear_targets(n: int = 48, n_val: int = 16) -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n + n_val, 6, generator=generator)
    y = x @ torch.randn(6, 2, generator=generator) + 0.1 * torch.randn(n + n_val, 2, generator=generator)
    return TensorData(x[:n], y[:n], x[n:], y[n:])


def mlp(dropout: float = 0.0, outputs: int = 3, seed: int = 0, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, outputs))


def without_times(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in history]


def assert_same_weights(a: nn.Module | dict, b: nn.Module | dict) -> None:
    a = a.state_dict() if isinstance(a, nn.Module) else a
    b = b.state_dict() if isinstance(b, nn.Module) else b
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_same_tree(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tree(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_tree(x, y)
    else:
        assert a == b


class Kill(Callback):
    """Simulates a killed process: raises in the middle of an epoch, after earlier checkpoints were written."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_batch_end(self, state: FitState) -> None:
        if state.step == self.at_step:
            raise KeyboardInterrupt(f"killed at step {state.step}")


class Record(Callback):
    """Records the learning rate after every step and the weights after every epoch."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_batch_end(self, state: FitState) -> None:
        self.lrs.append(state.optimizer.param_groups[0]["lr"])

    def on_epoch_end(self, state: FitState) -> None:
        self.weights.append({k: v.clone() for k, v in state.model.state_dict().items()})


# --- resume after a kill ---------------------------------------------------------------------------

def dropconnect_bn_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec(hidden=[12, 12], dropout="dropconnect:0.3", norm="batchnorm"), (6,), 3)


# name -> (model factory, train spec, step to kill at); 3 steps per epoch
RESUME_CASES = {
    "dropout, nesterov momentum, cosine": (
        lambda: mlp(dropout=0.5),
        train_spec(epochs=5, batch_size=16, optimizer="sgd:0.9,nesterov=true", lr=0.05, schedule="cosine:min_factor=0.1"),
        11,
    ),
    "adam, onecycle, early stopping mid-count": (
        lambda: mlp(dropout=0.2),
        # min_delta so large that only the first epoch improves: stops at epoch 4, restores epoch 1
        train_spec(epochs=8, batch_size=16, optimizer="adam", lr=0.01, schedule="onecycle",
                  early_stopping=EarlyStoppingSpec(monitor="val/loss", patience=3, min_delta=100.0)),
        8,
    ),
    "adamw, warmup + step, l2, checkpoint every 2": (
        lambda: mlp(dropout=0.3),
        train_spec(epochs=5, batch_size=16, optimizer="adamw", lr=0.01, schedule="step:every=2,gamma=0.5", warmup_epochs=1,
                  penalty="l2:1e-3", checkpoint_every=2),
        11,  # in epoch 4: resumes from the checkpoint of epoch 2 and redoes epoch 3
    ),
    "dropconnect, batchnorm, rmsprop, early stopping on val/acc": (
        dropconnect_bn_model,
        train_spec(epochs=4, batch_size=16, optimizer="rmsprop:momentum=0.5", lr=0.005,
                  early_stopping=EarlyStoppingSpec(monitor="val/acc", patience=10)),
        5,
    ),
}


@pytest.mark.parametrize(("make_model", "spec", "kill_step"), RESUME_CASES.values(), ids=RESUME_CASES.keys())
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, make_model, spec, kill_step) -> None:
    data = blobs()
    whole_model = make_model()
    whole_saver = CheckpointSaver(tmp_path / "whole.safetensors", spec.checkpoint_every)
    whole = fit(whole_model, data, spec, seed=3, callbacks=[whole_saver])

    checkpoint = tmp_path / "killed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        fit(make_model(), data, spec, seed=3, callbacks=[CheckpointSaver(checkpoint, spec.checkpoint_every), Kill(kill_step)])
    killed_at = load_state(checkpoint)
    assert 0 <= killed_at["epoch"] < (kill_step - 1) // 3  # the checkpoint is from an epoch before the kill

    torch.manual_seed(1234)  # a fresh process: other global RNG state, other initial weights
    resumed_model = make_model()
    resumed = fit(resumed_model, data, spec, seed=3, callbacks=[CheckpointSaver(checkpoint, spec.checkpoint_every)],
                  resume_from=checkpoint)

    assert_same_weights(resumed_model, whole_model)
    assert without_times(resumed.history) == without_times(whole.history)
    assert (resumed.stop_reason, resumed.epochs_run, resumed.steps, resumed.early_stopping) == (
        whole.stop_reason, whole.epochs_run, whole.steps, whole.early_stopping)
    final_whole, final_resumed = load_state(tmp_path / "whole.safetensors"), load_state(checkpoint)
    for part in ("epoch", "step", "model", "optimizer", "scheduler", "rng", "callbacks"):
        assert_same_tree(final_resumed[part], final_whole[part])


def test_early_stopping_case_really_stops_and_restores() -> None:
    """Guards the resume case above: it must exercise a stop and a restore, not just run out of epochs."""
    _, spec, _ = RESUME_CASES["adam, onecycle, early stopping mid-count"]
    record = Record()
    result = fit(mlp(dropout=0.2), blobs(), spec, seed=3, callbacks=[record])
    assert result.stop_reason is StopReason.EARLY_STOPPING and result.epochs_run == 4
    assert result.early_stopping["restored_best"] and result.early_stopping["best_epoch"] == 1


def test_checkpoint_is_written_at_an_early_stop_with_the_final_decision(tmp_path) -> None:
    """Savers run after early stopping: the stop epoch counts as the last one and its decision is saved."""
    spec = train_spec(epochs=8, early_stopping=EarlyStoppingSpec(patience=2, min_delta=100.0, restore_best=False))
    result = fit(mlp(), blobs(), spec, callbacks=[CheckpointSaver(tmp_path / "c.safetensors", every=10)])
    assert result.stop_reason is StopReason.EARLY_STOPPING and result.epochs_run == 3
    saved = load_state(tmp_path / "c.safetensors")
    assert saved["epoch"] == 2
    assert saved["callbacks"]["EarlyStopping:0"] | {"best": None} == {
        "best": None, "best_epoch": 0, "wait": 2, "best_weights": None, "stopped_epoch": 2}


def test_a_kept_checkpoint_is_the_epoch_it_was_taken_at(tmp_path) -> None:
    """Between saves the saver keeps the last epoch's state in memory: later training must not change it
    (tensors copied), and its history is that epoch's (the list copied; rows are complete when appended)."""

    class Capture(Callback):
        def __init__(self, saver: CheckpointSaver) -> None:
            self.saver, self.kept = saver, {}

        def on_epoch_end(self, state: FitState) -> None:   # fit runs savers last: this sees the previous epoch's
            if self.saver.pending is not None:
                self.kept[self.saver.pending["epoch"]] = (self.saver.pending, copy.deepcopy(self.saver.pending))

    saver = CheckpointSaver(tmp_path / "c.safetensors", every=10)
    capture = Capture(saver)
    result = fit(mlp(), blobs(), train_spec(epochs=4, batch_size=16, optimizer="sgd:0.9", lr=0.05), callbacks=[saver, capture])
    assert sorted(capture.kept) == [0, 1, 2]   # the last epoch is saved, not kept
    for epoch, (kept, at_the_time) in capture.kept.items():   # compared epochs after they were kept
        assert len(kept["history"]) == epoch + 1
        assert kept["history"] == at_the_time["history"] == result.history[:epoch + 1]
        for name, value in at_the_time["model"].items():
            assert torch.equal(kept["model"][name], value), name


def test_resume_of_a_finished_run_changes_nothing(tmp_path) -> None:
    spec = train_spec(epochs=2, batch_size=16, optimizer="sgd:0.9", lr=0.05)
    model = mlp()
    first = fit(model, blobs(), spec, callbacks=[CheckpointSaver(tmp_path / "c.safetensors")])
    again_model = mlp(seed=5)
    again = fit(again_model, blobs(), spec, resume_from=tmp_path / "c.safetensors")
    assert_same_weights(again_model, model)
    assert again.history == first.history and again.steps == first.steps


# --- reproducibility -------------------------------------------------------------------------------

def test_same_seed_same_run_other_seed_other_run() -> None:
    spec = train_spec(epochs=2, batch_size=16, optimizer="sgd:0.9", lr=0.05)
    initial = mlp(dropout=0.5)
    runs = {}
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        model = copy.deepcopy(initial)
        torch.manual_seed(100 + len(runs))  # global RNG state before fit must not matter
        runs[name] = (model, fit(model, blobs(), spec, seed=seed))
    assert_same_weights(runs["a"][0], runs["b"][0])
    assert without_times(runs["a"][1].history) == without_times(runs["b"][1].history)
    assert not torch.equal(runs["a"][0][0].weight, runs["c"][0][0].weight)


def test_dropout_masks_follow_the_seed() -> None:
    """Full-batch, so batch order cannot differ: a different seed changes only the dropout masks."""
    spec = train_spec(epochs=1, batch_size=48, optimizer="sgd", lr=0.1)
    initial = mlp(dropout=0.5)
    a, b, c = copy.deepcopy(initial), copy.deepcopy(initial), copy.deepcopy(initial)
    fit(a, blobs(), spec, seed=1), fit(b, blobs(), spec, seed=1), fit(c, blobs(), spec, seed=2)
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)


# --- non-finite loss -------------------------------------------------------------------------------

class PoisonTargets(Callback):
    """Puts an infinite target into the training data at the start of one epoch."""

    def __init__(self, data: TensorData, epoch: int) -> None:
        self.data, self.epoch = data, epoch

    def on_epoch_start(self, state: FitState) -> None:
        if state.epoch == self.epoch:
            self.data.y_train[0, 0] = math.inf


def test_non_finite_loss_stops_keeps_last_good_weights_and_checkpoint(tmp_path) -> None:
    data = linear_targets()
    record = Record()
    model = mlp(outputs=2)
    spec = train_spec(epochs=6, batch_size=16, optimizer="sgd", lr=0.01)
    result = fit(model, data, spec, task="regression",
                 callbacks=[PoisonTargets(data, epoch=2), record, CheckpointSaver(tmp_path / "last.safetensors")])

    assert result.stop_reason is StopReason.NON_FINITE
    assert result.epochs_run == 3 and not math.isfinite(result.history[-1]["train/loss"])
    assert "epoch 3, step " in result.stop_message and " of 3 " in result.stop_message
    assert "train.lr" in result.stop_message and "clip_grad_norm" in result.stop_message  # remedies
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert_same_weights(model, record.weights[1])  # the weights at the end of epoch 2, the last good one
    saved = load_state(tmp_path / "last.safetensors")
    assert saved["epoch"] == 1 and len(saved["history"]) == 2  # the checkpoint of the last good epoch
    assert_same_weights(saved["model"], record.weights[1])


def test_huge_learning_rate_diverges_to_non_finite_and_keeps_finite_weights() -> None:
    model = mlp(outputs=2)
    initial = copy.deepcopy(model.state_dict())
    result = fit(model, linear_targets(), train_spec(epochs=3, batch_size=16, optimizer="sgd", lr=1e6), task="regression")
    assert result.stop_reason is StopReason.NON_FINITE and result.epochs_run == 1
    assert "epoch 1, step" in result.stop_message
    assert_same_weights(model, initial)  # diverged in the first epoch: the initial weights are the last good ones


# --- schedules -------------------------------------------------------------------------------------

PEAK, TOTAL, PER_EPOCH = 0.1, 40, 4

# option, warm-up steps -> lr used at step s (0-based)
SCHEDULE_CASES = {
    "constant": ("constant", 0, lambda s: PEAK),
    "step": ("step:every=3,gamma=0.5", 0, lambda s: PEAK * 0.5 ** (s // (3 * PER_EPOCH))),
    "cosine": ("cosine", 0, lambda s: PEAK * 0.5 * (1 + math.cos(math.pi * s / TOTAL))),
    "cosine to a floor": ("cosine:min_factor=0.1", 0, lambda s: PEAK * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / TOTAL)))),
    "warm-up then constant": ("constant", 8, lambda s: PEAK * min(1.0, (s + 1) / 8)),
    "warm-up then step": ("step:every=5,gamma=0.1", 4, lambda s: PEAK * min(1.0, (s + 1) / 4) * 0.1 ** (s // 20)),
}


def lrs_of(option: str, warmup_steps: int, steps: int = TOTAL) -> list[float]:
    """The learning rate each step uses, read from the optimiser as the loop would."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=PEAK, momentum=0.9)
    scheduler = build_schedule(option, optimizer, total_steps=TOTAL, steps_per_epoch=PER_EPOCH, warmup_steps=warmup_steps)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs + [optimizer.param_groups[0]["lr"]]  # and the one after the last step


@pytest.mark.parametrize(("option", "warmup", "expected"), SCHEDULE_CASES.values(), ids=SCHEDULE_CASES.keys())
def test_schedule_matches_closed_form(option, warmup, expected) -> None:
    lrs = lrs_of(option, warmup)
    assert lrs[:TOTAL] == pytest.approx([expected(s) for s in range(TOTAL)], rel=1e-9, abs=1e-15)


def test_cosine_landmarks() -> None:
    lrs = lrs_of("cosine", 0)
    assert lrs[0] == PEAK and lrs[TOTAL // 2] == pytest.approx(PEAK / 2) and lrs[TOTAL] == pytest.approx(0, abs=1e-15)
    floor = lrs_of("cosine:min_factor=0.2", 0)
    assert floor[TOTAL] == pytest.approx(0.2 * PEAK) and floor[TOTAL // 2] == pytest.approx(0.6 * PEAK)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_warmup_ramps_linearly_to_peak() -> None:
    lrs = lrs_of("constant", 10)
    assert lrs[:10] == pytest.approx([PEAK * (s + 1) / 10 for s in range(10)])
    assert lrs[9:] == [PEAK] * (TOTAL + 1 - 9)


def test_onecycle_peaks_at_lr_after_pct_start() -> None:
    lrs = lrs_of("onecycle:pct_start=0.25,div_factor=10,final_div_factor=100", 0, steps=TOTAL - 1)
    peak_step = max(range(len(lrs)), key=lrs.__getitem__)
    assert max(lrs) == pytest.approx(PEAK) and peak_step == round(0.25 * TOTAL) - 1
    assert lrs[0] == pytest.approx(PEAK / 10) and lrs[-1] == pytest.approx(PEAK / 10 / 100)
    # torch's reference with the same numbers
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=PEAK, momentum=0.9)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=PEAK, total_steps=TOTAL, pct_start=0.25,
                                                    div_factor=10, final_div_factor=100)
    expected = []
    for _ in range(TOTAL):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if len(expected) < TOTAL:
            reference.step()
    assert lrs == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("optimizer", "key", "first", "peak"), [
    ("sgd", "momentum", 0.0, 0.0),               # no momentum asked for: none switched on
    ("rmsprop", "momentum", 0.0, 0.0),
    ("sgd:0.9", "momentum", 0.95, 0.85),         # Smith & Topin: momentum falls while the lr rises
    ("adam", "betas", (0.95, 0.999), (0.85, 0.999)),
])
def test_onecycle_cycles_momentum_only_where_there_is_some(optimizer, key, first, peak) -> None:
    built = OPTIMIZERS.build(optimizer, params=[nn.Parameter(torch.zeros(1))], lr=PEAK)
    scheduler = build_schedule("onecycle", built, total_steps=TOTAL, steps_per_epoch=PER_EPOCH, warmup_steps=0)
    values = []
    for _ in range(TOTAL):
        values.append(built.param_groups[0][key])
        built.step()
        scheduler.step()
    assert values[0] == pytest.approx(first) and values[round(0.25 * TOTAL) - 1] == pytest.approx(peak)


def test_onecycle_refuses_an_extra_warmup() -> None:
    with pytest.raises(ConfigError, match="warmup_epochs=0"):
        fit(mlp(), blobs(), train_spec(epochs=2, batch_size=16, schedule="onecycle", warmup_epochs=1))


def test_fit_uses_the_schedule_per_step_with_warmup_in_epochs() -> None:
    """3 steps per epoch, 6 epochs, 1 warm-up epoch: the loop's learning rates follow the closed form."""
    record = Record()
    spec = train_spec(epochs=6, batch_size=16, optimizer="sgd:0.9", lr=0.05, schedule="cosine", warmup_epochs=1)
    result = fit(mlp(), blobs(), spec, callbacks=[record])
    total = 18
    # on_batch_end sees the lr after the scheduler stepped: the one step s + 1 will use
    expected = [0.05 * min(1.0, (s + 1) / 3) * 0.5 * (1 + math.cos(math.pi * s / total)) for s in range(1, total + 1)]
    assert record.lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert [row["lr"] for row in result.history] == record.lrs[2::3]


# --- optimisers ------------------------------------------------------------------------------------

# option -> (torch class, expected entries of param_groups[0])
OPTIMIZER_CASES = {
    "sgd": (torch.optim.SGD, dict(momentum=0.0, nesterov=False, weight_decay=0.0)),
    "sgd:0.9": (torch.optim.SGD, dict(momentum=0.9, nesterov=False)),
    "sgd:0.8,nesterov=true,weight_decay=0.01": (torch.optim.SGD, dict(momentum=0.8, nesterov=True, weight_decay=0.01)),
    "adam": (torch.optim.Adam, dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    "adam:beta1=0.5,beta2=0.9,eps=1e-6,weight_decay=0.001": (torch.optim.Adam,
                                                              dict(betas=(0.5, 0.9), eps=1e-6, weight_decay=0.001)),
    "adamw": (torch.optim.AdamW, dict(betas=(0.9, 0.999), weight_decay=0.01)),
    "adamw:0.8,weight_decay=0.1": (torch.optim.AdamW, dict(betas=(0.8, 0.999), weight_decay=0.1)),
    "rmsprop": (torch.optim.RMSprop, dict(alpha=0.99, momentum=0.0, eps=1e-8)),
    "rmsprop:alpha=0.9,momentum=0.5,weight_decay=0.2": (torch.optim.RMSprop, dict(alpha=0.9, momentum=0.5, weight_decay=0.2)),
}


@pytest.mark.parametrize(("option", "cls", "expected"), [(o, *v) for o, v in OPTIMIZER_CASES.items()], ids=OPTIMIZER_CASES.keys())
def test_optimizer_builds_the_torch_class_with_its_parameters(option, cls, expected) -> None:
    model = mlp()
    optimizer = OPTIMIZERS.build(option, params=model.parameters(), lr=0.123)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.123 and group["params"] == list(model.parameters())
    assert {key: group[key] for key in expected} == expected


@pytest.mark.parametrize("option", ["sgd:0.9,nesterov=true,weight_decay=0.01", "adam:weight_decay=0.001", "adamw"])
def test_optimizers_take_torch_fused_kernel_with_the_default_update(option) -> None:
    """SGD/Adam/AdamW run torch's fused kernel on a CPU; 50 steps agree with torch's default per-tensor loop."""
    models = [mlp(), mlp()]
    models[1].load_state_dict(models[0].state_dict())
    initial = {k: v.clone() for k, v in models[0].named_parameters()}
    ours = OPTIMIZERS.build(option, params=models[0].parameters(), lr=0.01)
    reference = OPTIMIZERS.build(option, params=models[1].parameters(), lr=0.01)
    assert ours.param_groups[0]["fused"] is True
    for group in reference.param_groups:  # torch's own default on a CPU
        group["fused"], group["foreach"] = None, False
    data = blobs()
    for step in range(50):
        for model, optimizer in zip(models, (ours, reference)):
            optimizer.zero_grad()
            F.cross_entropy(model(data.x_train), data.y_train).backward()
            optimizer.step()
    for a, b, start in zip(models[0].parameters(), models[1].parameters(), initial.values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert (a - start).abs().max() > 1e-3  # trained: the comparison is not of two untouched copies


@pytest.mark.parametrize(("option", "message"), [
    ("sgd:nesterov=true", "needs momentum > 0"),
    ("sgd:1.5", "momentum"),
    ("adam:beta2=1", "beta2"),
    ("adamw:weight_decay=-1", "weight_decay"),
    ("sdg", "Did you mean 'sgd'"),
    ("lbfgs", "Known: adam, adamw, rmsprop, sgd"),
])
def test_bad_optimizer_options_raise_config_error(option, message) -> None:
    with pytest.raises(ConfigError, match=message):
        OPTIMIZERS.build(option, params=mlp().parameters(), lr=0.1)


# --- losses and evaluation -------------------------------------------------------------------------

def test_train_loss_with_dropout_exceeds_clean_train_loss() -> None:
    """The lecture's puzzle: the loss as trained (dropout on) is higher than the same weights' loss in eval mode.

    A tiny learning rate keeps the weights almost still within an epoch, so the gap is dropout's alone;
    the same net without dropout is the control.
    """
    spec = train_spec(epochs=6, batch_size=16, lr=1e-4)
    gaps = {}
    for p in (0.7, 0.0):
        result = fit(mlp(dropout=p, width=64), blobs(), spec)
        gaps[p] = [row["train/loss"] - row["train/loss_clean"] for row in result.history]
    assert all(gap > 0.02 for gap in gaps[0.7]), gaps
    assert sum(gaps[0.7]) > 20 * sum(abs(gap) for gap in gaps[0.0]), gaps


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_matches_torch_and_restores_the_mode(training) -> None:
    model, data = mlp(dropout=0.5), blobs()
    model.train(training)
    result = evaluate(model, data.x_val, data.y_val, "classification")
    assert model.training is training
    with torch.no_grad():
        logits = copy.deepcopy(model).eval()(data.x_val)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, data.y_val).item(), rel=1e-6)
    assert result["acc"] == pytest.approx((logits.argmax(1) == data.y_val).float().mean().item())


def test_evaluate_sizes_its_forwards_to_the_cache_and_matches_one_forward() -> None:
    # On a CPU the first forward's activations set the others' size: a CNN's wide activations take
    # forwards of a few hundred examples, an MLP's small ones forwards of thousands; same numbers either way.
    from deepwell.training import evaluation

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(1500, 1, 40, generator=generator), torch.randint(0, 10, (1500,), generator=generator)
    for spec, wide in ((ModelSpec(arch="cnn1d", channels=[32, 64], kernel_size=5), True),
                       (ModelSpec(arch="mlp", hidden=[100, 100], norm="none"), False)):
        model = build_model(spec, (1, 40), 10, generator=torch.Generator().manual_seed(1)).eval()
        batches: list[int] = []
        handle = model.register_forward_pre_hook(lambda m, args: batches.append(len(args[0])))
        result = evaluate(model, x, y, "classification")
        handle.remove()
        with torch.no_grad():
            logits = model(x)
        largest = 40 * 64 if wide else 100   # values per example in the largest layer output (conv: channels x length)
        expected = max(evaluation.FIRST_BATCH, min(evaluation.EVAL_BATCH, evaluation.CACHE_ELEMENTS // largest))
        rest = len(x) - evaluation.FIRST_BATCH
        assert batches == [evaluation.FIRST_BATCH] + [expected] * (rest // expected) + ([rest % expected] if rest % expected else [])
        assert (expected < 500) is wide, (spec.arch, expected)
        assert result["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
        assert result["acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_evaluate_regression_is_the_mean_squared_error() -> None:
    model, data = mlp(outputs=2), linear_targets()
    with torch.no_grad():
        expected = F.mse_loss(model(data.x_val), data.y_val).item()
    result = evaluate(model, data.x_val, data.y_val, "regression")
    assert result["loss"] == pytest.approx(expected, rel=1e-6) and set(result) == {"loss", "r2", "mae"}


def test_fit_regression_with_mse() -> None:
    model, data = mlp(outputs=2), linear_targets()
    result = fit(model, data, train_spec(epochs=10, batch_size=16, lr=0.05), task="regression")
    first, last = result.history[0], result.history[-1]
    assert set(last) == {"epoch", "step", "train/loss", "train/loss_clean", "train/r2_clean", "train/mae_clean", "lr", "val/loss",
                         "val/r2", "val/mae", "time/epoch_s"}
    assert last["val/loss"] < 0.5 * first["val/loss"]
    assert last["train/loss_clean"] == pytest.approx(evaluate(model, data.x_train, data.y_train, "regression")["loss"])
    assert result.stop_reason is StopReason.COMPLETED and result.steps == 10 * 3 and result.epochs_run == 10


def test_classification_history_has_accuracies() -> None:
    result = fit(mlp(), blobs(), train_spec(epochs=2, batch_size=16))
    assert set(result.history[-1]) == {"epoch", "step", "train/loss", "train/loss_clean", "train/acc_clean", "lr",
                                       "val/loss", "val/acc", "time/epoch_s"}


def test_cross_entropy_on_regression_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cross_entropy needs a classification task.*Use mse"):
        fit(mlp(outputs=2), linear_targets(), train_spec(epochs=1, loss="cross_entropy"), task="regression")


@pytest.mark.parametrize(("n", "batch_size", "steps"), [(48, 16, 3), (49, 16, 3), (50, 16, 4), (5, 64, 1)])
def test_steps_per_epoch_never_leave_a_lone_example(n, batch_size, steps) -> None:
    """A last batch of one example would break BatchNorm: it is dropped, any larger remainder is kept."""
    seen = []

    class Sizes(Callback):
        def on_batch_end(self, state: FitState) -> None:
            seen.append(state.step)

    data = blobs(n=n)
    result = fit(mlp(), data, train_spec(epochs=2, batch_size=batch_size), callbacks=[Sizes()])
    assert result.steps == 2 * steps == len(seen)


def test_batch_size_larger_than_a_single_example_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="leaves no batch for 1 training example"):
        fit(mlp(), blobs(n=1), train_spec(epochs=1, batch_size=4))


@pytest.mark.parametrize("total_steps", range(1, 9))
def test_onecycle_survives_tiny_runs(total_steps) -> None:
    """torch's OneCycleLR divides by zero when its warm-up has under 2 steps; tiny runs must still train."""
    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=0.01)
    scheduler = build_schedule("onecycle", optimizer, total_steps=total_steps, steps_per_epoch=total_steps, warmup_steps=0)
    lrs = []
    for _ in range(total_steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert all(math.isfinite(lr) and 0 < lr <= 0.01 + 1e-12 for lr in lrs)
