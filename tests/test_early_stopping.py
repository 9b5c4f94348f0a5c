"""Tests of EarlyStopping: table-driven decisions, best-weight restoring, resumable state, loud errors.

Patience is the number of evaluations in a row without improvement at which training stops (as in
Keras and Lightning): patience 0 and 1 stop at the first one, patience 3 at the third in a row.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepwell.config import EarlyStoppingSpec, TrainSpec
from deepwell.errors import ConfigError
from deepwell.training.callbacks import Callback, EarlyStopping, FitState, StopReason
from deepwell.training.loop import TensorData, fit

NAN, INF = math.nan, math.inf


pytestmark = pytest.mark.usefixtures("single_thread")


def fake_state(model: nn.Module | None = None, names: tuple[str, ...] = ("train/loss", "val/loss", "val/acc")) -> FitState:
    return FitState(model or nn.Linear(2, 1), optimizer=None, epochs=100, steps_per_epoch=1, metric_names=list(names))


def drive(early: EarlyStopping, values: list[float], model: nn.Module | None = None) -> FitState:
    """Feed one monitored value per epoch, as the loop does, until a stop is requested."""
    state = fake_state(model)
    early.on_fit_start(state)
    for epoch, value in enumerate(values):
        state.epoch = epoch
        if model is not None:
            with torch.no_grad():
                model.weight.fill_(epoch)  # weights that tell the epochs apart
        state.metrics = {early.spec.monitor: value}
        early.on_epoch_end(state)
        if state.stop_reason is not None:
            break
    early.on_fit_end(state)
    return state


# (values, spec changes, expected stop epoch (1-based) or None, reason, best epoch (1-based))
CASES = {
    "patience 0 stops at first non-improvement": ([1.0, 0.9, 0.95, 0.5], dict(patience=0), 3, "early_stopping", 2),
    "patience 1 stops at the first miss too": ([1.0, 0.9, 0.95, 0.96, 0.5], dict(patience=1), 3, "early_stopping", 2),
    "patience 2 stops at the second": ([1.0, 0.9, 0.95, 0.96, 0.5], dict(patience=2), 4, "early_stopping", 2),
    "patience 2 counter resets on improvement": ([1.0, 1.1, 0.9, 1.1, 0.8, 0.9, 0.9], dict(patience=2), 7, "early_stopping", 5),
    "patience 3 stops at the third in a row": ([1.0, 0.9, 0.95, 0.85, 0.9, 0.9, 0.9, 0.1], dict(patience=3), 7, "early_stopping", 4),
    "equal is not better": ([1.0, 1.0], dict(patience=0), 2, "early_stopping", 1),
    "always improving never stops": ([1.0, 0.9, 0.8, 0.7], dict(patience=0), None, None, 4),
    "min_delta: small gains do not count": ([1.0, 0.95, 0.92], dict(patience=2, min_delta=0.1), 3, "early_stopping", 1),
    "min_delta: exactly min_delta does not count": ([1.0, 0.5], dict(patience=0, min_delta=0.5), 2, "early_stopping", 1),
    "min_delta: more than min_delta counts": ([1.0, 0.85, 0.7], dict(patience=0, min_delta=0.1), None, None, 3),
    "mode max for accuracy": ([0.5, 0.6, 0.55, 0.58, 0.9], dict(monitor="val/acc", mode="max", patience=2), 4,
                              "early_stopping", 2),
    "auto picks max for *acc*": ([0.5, 0.6, 0.55, 0.58, 0.9], dict(monitor="val/acc", patience=2), 4, "early_stopping", 2),
    "auto picks min for loss": ([0.5, 0.6], dict(monitor="val/loss", patience=0), 2, "early_stopping", 1),
    "explicit min overrides the name": ([0.5, 0.6, 0.4], dict(monitor="val/acc", mode="min", patience=0), 2, "early_stopping", 1),
    "NaN stops at once": ([1.0, NAN, 0.5], dict(patience=5), 2, "non_finite", 1),
    "inf stops at once": ([1.0, 0.9, INF], dict(patience=5), 3, "non_finite", 2),
    "NaN first": ([NAN], dict(patience=5), 1, "non_finite", 0),
}


@pytest.mark.parametrize(("values", "changes", "stop_epoch", "reason", "best_epoch"), CASES.values(), ids=CASES.keys())
def test_stop_epoch_and_reason(values, changes, stop_epoch, reason, best_epoch) -> None:
    early = EarlyStopping(EarlyStoppingSpec(**changes))
    state = drive(early, values)
    summary = early.summary()
    assert summary["stopped_epoch"] == stop_epoch
    assert (state.stop_reason.value if state.stop_reason else None) == reason
    assert summary["best_epoch"] == best_epoch
    if best_epoch:
        assert summary["best"] == values[best_epoch - 1]
    if reason == "early_stopping":
        assert f"best {values[best_epoch - 1]:.4g} at epoch {best_epoch}" in state.stop_message
    if reason == "non_finite":
        assert early.spec.monitor in state.stop_message and str(values[stop_epoch - 1]) in state.stop_message


@pytest.mark.parametrize(("monitor", "mode"), [("val/acc", "max"), ("train/acc_clean", "max"), ("val/loss", "min"),
                                               ("train/loss_clean", "min")])
def test_auto_mode_follows_the_metric_name(monitor, mode) -> None:
    assert EarlyStopping(EarlyStoppingSpec(monitor=monitor)).mode == mode


def test_decide_is_pure() -> None:
    early = EarlyStopping(EarlyStoppingSpec(patience=0, restore_best=False))
    drive(early, [1.0])
    before = early.state_dict()
    for _ in range(3):
        decision = early.decide(2.0)
        assert decision.stop and not decision.improved and decision.reason is StopReason.EARLY_STOPPING
    assert early.decide(0.5).improved and not early.decide(0.5).stop
    assert early.state_dict() == before


@pytest.mark.parametrize(("values", "best_epoch"), [
    ([3.0, 1.0, 2.0, 2.5, 2.2], 2),      # patience never ran out: the last epoch is not the best
    ([3.0, 1.0, 2.0, 2.5, 2.2, 2.1], 2),  # patience ran out
    ([3.0, 2.0, 1.0], 3),                 # the last epoch is the best: nothing to restore
])
def test_restore_best_puts_back_the_best_epochs_weights(values, best_epoch) -> None:
    model = nn.Linear(2, 1)
    early = EarlyStopping(EarlyStoppingSpec(patience=4, restore_best=True))
    drive(early, values, model)
    assert torch.equal(model.weight, torch.full_like(model.weight, best_epoch - 1))
    assert early.summary()["restored_best"] == (best_epoch != len(values))


def test_without_restore_best_the_last_weights_stay() -> None:
    model = nn.Linear(2, 1)
    drive(EarlyStopping(EarlyStoppingSpec(patience=3, restore_best=False)), [3.0, 1.0, 2.0], model)
    assert torch.equal(model.weight, torch.full_like(model.weight, 2))


def test_state_dict_continues_the_count() -> None:
    """Half the values, save, fresh callback, load, the other half: same as all at once."""
    values = [1.0, 0.9, 0.95, 0.97, 0.99]
    whole = EarlyStopping(EarlyStoppingSpec(patience=3))
    drive(whole, values)
    first = EarlyStopping(EarlyStoppingSpec(patience=3))
    drive(first, values[:3])
    second = EarlyStopping(EarlyStoppingSpec(patience=3))
    second.load_state_dict(first.state_dict())
    state = fake_state()
    for epoch, value in enumerate(values[3:], start=3):
        state.epoch, state.metrics = epoch, {"val/loss": value}
        second.on_epoch_end(state)
    second.on_fit_end(state)
    assert second.summary() == whole.summary() == {**whole.summary(), "stopped_epoch": 5, "best_epoch": 2}


# --- through fit ---------------------------------------------------------------------------------

def blobs(n: int = 48, n_val: int = 16) -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n + n_val, 6, generator=generator)
    y = (x @ torch.randn(6, 3, generator=generator)).argmax(1)
    return TensorData(x[:n], y[:n], x[n:], y[n:])


class ScriptedMetric(Callback):
    """Replaces the monitored metric by a scripted sequence and records the weights at each epoch end."""

    def __init__(self, monitor: str, values: list[float]) -> None:
        self.monitor, self.values, self.weights = monitor, values, []

    def on_epoch_end(self, state: FitState) -> None:
        state.metrics[self.monitor] = self.values[state.epoch]
        self.weights.append({k: v.clone() for k, v in state.model.state_dict().items()})


def test_fit_restores_the_best_epoch_even_when_patience_never_ran_out() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    script = ScriptedMetric("val/loss", [0.9, 0.5, 0.7, 0.6, 0.8])
    spec = TrainSpec(epochs=5, batch_size=16, optimizer="adam", lr=0.05, schedule="constant",
                     early_stopping=EarlyStoppingSpec(patience=10, restore_best=True))
    result = fit(model, blobs(), spec, callbacks=[script])
    assert result.stop_reason is StopReason.COMPLETED and result.epochs_run == 5
    assert result.early_stopping["best_epoch"] == 2 and result.early_stopping["restored_best"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, script.weights[1][name]), name
    assert not torch.equal(script.weights[1]["0.weight"], script.weights[4]["0.weight"])  # there was something to restore


def test_fit_stops_early_on_a_scripted_metric() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    script = ScriptedMetric("val/acc", [0.5, 0.7, 0.6, 0.65, 0.9, 0.9])
    spec = TrainSpec(epochs=6, batch_size=16, optimizer="adam", lr=0.01, schedule="constant",
                     early_stopping=EarlyStoppingSpec(monitor="val/acc", patience=2))
    result = fit(model, blobs(), spec, callbacks=[script])
    assert result.stop_reason is StopReason.EARLY_STOPPING and result.epochs_run == 4
    assert "val/acc did not improve for 2 evaluation(s)" in result.stop_message
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]


@pytest.mark.parametrize(("monitor", "data", "expected"), [
    ("val/lss", blobs(),
     r"'val/lss' is not a metric of this run\. Did you mean 'val/loss'\? Known: train/loss, .*val/loss, val/acc"),
    ("val/loss", TensorData(blobs().x_train, blobs().y_train), r"Known: train/loss, .*train/acc_clean\..*val_fraction"),
    ("val/acc", TensorData(torch.randn(8, 2), torch.randn(8, 1), torch.randn(4, 2), torch.randn(4, 1)),
     r"Known: train/loss, train/loss_clean, lr, time/epoch_s, train/r2_clean, train/mae_clean, val/loss, val/r2, val/mae\.$"),  # no val_fraction hint: there is val data
])
def test_unknown_monitor_raises_config_error_listing_known_metrics(monitor, data, expected) -> None:
    task = "regression" if data.y_train.is_floating_point() else "classification"
    spec = TrainSpec(epochs=1, batch_size=8, early_stopping=EarlyStoppingSpec(monitor=monitor))
    with pytest.raises(ConfigError, match=expected):
        fit(nn.Linear(data.x_train.shape[1], 3 if task == "classification" else 1), data, spec, task=task)
