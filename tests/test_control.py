"""The Controller callback: hold a fit between epochs, step exactly one epoch, stop, resume with changed settings."""

from __future__ import annotations

import threading

import pytest
import torch

from deepwell.config import ModelSpec, TrainSpec
from deepwell.models import build_model
from deepwell.training.callbacks import Callback, StopReason
from deepwell.training.control import Controller
from deepwell.training.loop import CheckpointSaver, TensorData, fit

pytestmark = pytest.mark.usefixtures("single_thread")
TIMEOUT = 60  # generous: the machine may be loaded; never a synchronisation by sleeping


class Steps(Callback):
    """Records the optimisation step count at every batch (proves nothing ran while held)."""

    def __init__(self) -> None:
        self.batches = 0

    def on_batch_end(self, state) -> None:
        self.batches += 1


def _setup(epochs: int = 50):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    data = TensorData(x, (x[:, 0] > 0).long())
    model = build_model(ModelSpec(hidden=[8], norm="none"), (4,), 2, generator=torch.Generator().manual_seed(0))
    return model, data, TrainSpec(epochs=epochs, batch_size=16, optimizer="adam", lr=0.01, schedule="constant")


def _start(model, data, spec, callbacks, **kwargs):
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", fit(model, data, spec, callbacks=callbacks, **kwargs)))
    thread.start()
    return thread, out


def test_held_at_start_step_runs_exactly_one_epoch_then_holds() -> None:
    model, data, spec = _setup()
    controller, steps = Controller(), Steps()
    thread, out = _start(model, data, spec, [steps, controller])
    assert controller.wait_held(TIMEOUT)
    assert steps.batches == 0  # held before the first step: nothing computed
    controller.step()
    assert controller.wait_held(TIMEOUT) and steps.batches == 4  # 64 examples / 16 = 4 steps = one epoch
    controller.step()
    assert controller.wait_held(TIMEOUT) and steps.batches == 8
    controller.stop("done")
    thread.join(TIMEOUT)
    result = out["result"]
    assert (result.stop_reason, result.stop_message, result.epochs_run, result.steps) == (StopReason.REQUESTED, "done", 2, 8)


def test_on_hold_sees_the_state_each_time_before_the_worker_holds() -> None:
    model, data, spec = _setup()
    seen: list[tuple[int, int]] = []
    controller = Controller(on_hold=[lambda state: seen.append((len(state.history), state.step))])
    thread, _ = _start(model, data, spec, [controller])
    assert controller.wait_held(TIMEOUT)
    controller.step()
    assert controller.wait_held(TIMEOUT)
    controller.stop()
    thread.join(TIMEOUT)
    assert seen == [(0, 0), (1, 4)]  # at fit start, then after the one epoch (4 steps), each before holding


def test_stop_while_held_at_start_runs_no_epoch() -> None:
    model, data, spec = _setup()
    before = [p.clone() for p in model.parameters()]
    controller = Controller()
    thread, out = _start(model, data, spec, [controller])
    assert controller.wait_held(TIMEOUT)
    controller.stop()
    thread.join(TIMEOUT)
    assert out["result"].epochs_run == 0 and out["result"].steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_play_pause_and_resume_with_changed_lr_continues_the_same_run(tmp_path) -> None:
    """A stop at an epoch end saves a checkpoint; a new fit resumes it under a changed spec with the same weights."""
    model, data, spec = _setup(epochs=6)
    controller = Controller(playing=True)
    controller_pause_after = 3

    class PauseAt(Callback):
        def on_epoch_end(self, state) -> None:
            if state.epoch + 1 == controller_pause_after:
                controller.pause()

    saver = CheckpointSaver(tmp_path / "last.safetensors", every=10**9)  # saves only when the fit ends
    thread, out = _start(model, data, spec, [PauseAt(), controller, saver])
    assert controller.wait_held(TIMEOUT)
    controller.stop("lr changed")
    thread.join(TIMEOUT)
    assert out["result"].epochs_run == 3
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    resumed = build_model(ModelSpec(hidden=[8], norm="none"), (4,), 2)
    seen = {}

    class Look(Callback):
        def on_fit_start(self, state) -> None:
            seen["weights"] = {k: v.clone() for k, v in state.model.state_dict().items()}
            seen["lr"] = state.optimizer.param_groups[0]["lr"]

    result = fit(resumed, data, spec.model_copy(update={"lr": 0.001}), callbacks=[Look()], resume_from=tmp_path / "last.safetensors")
    assert all(torch.equal(seen["weights"][k], weights[k]) for k in weights)  # the weights carried over
    assert seen["lr"] == 0.001  # the new setting applies from the next step
    assert result.epochs_run == 6 and [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_resume_applies_the_specs_momentum_with_or_without_a_schedule(tmp_path, schedule) -> None:
    """The snapshot's optimiser state comes back, but a changed optimiser setting that no schedule sets applies."""
    model, data, spec = _setup(epochs=2)
    spec = spec.model_copy(update={"schedule": TrainSpec(schedule=schedule).schedule,
                                   "optimizer": TrainSpec(optimizer="sgd:momentum=0.9").optimizer})
    fit(model, data, spec, callbacks=[CheckpointSaver(tmp_path / "last.safetensors", every=1)])
    seen = {}

    class Look(Callback):
        def on_fit_start(self, state) -> None:
            seen["momentum"] = state.optimizer.param_groups[0]["momentum"]

    resumed = build_model(ModelSpec(hidden=[8], norm="none"), (4,), 2)
    fit(resumed, data, spec.model_copy(update={"epochs": 4, "optimizer": TrainSpec(optimizer="sgd:momentum=0.5").optimizer}),
        callbacks=[Look()], resume_from=tmp_path / "last.safetensors")
    assert seen["momentum"] == 0.5
