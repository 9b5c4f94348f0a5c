"""Augmentation: deterministic apply given params, references from torch, statistics, errors,
and that only training batches are augmented."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from deepwell.config import RunSpec, TrainSpec
from deepwell.data.augment import AUGMENTATIONS, Compose, build_augmentation
from deepwell.errors import ConfigError
from deepwell.training.loop import TensorData, fit

IMAGE, SIGNAL = (3, 8, 8), (2, 32)
IMAGE_ONLY = {"rotate", "crop", "scale", "translate", "hflip", "vflip", "brightness", "contrast", "saturation", "hue"}
SIGNAL_ONLY = {"shift", "stretch", "amplitude", "noise"}
TEXT_ONLY, AUDIO_ONLY = {"synonym", "delete", "swap"}, {"pitch", "speed"}  # tested in test_text.py / test_audio.py


def build(option: str, shape: tuple[int, ...]):
    return AUGMENTATIONS.build(option, input_shape=shape)


def test_every_entry_is_image_signal_text_or_audio():
    assert set(AUGMENTATIONS.names()) == IMAGE_ONLY | SIGNAL_ONLY | TEXT_ONLY | AUDIO_ONLY


@pytest.mark.parametrize("name", sorted(IMAGE_ONLY | SIGNAL_ONLY))
def test_apply_is_deterministic_given_params_and_keeps_shape(name):
    shape = IMAGE if name in IMAGE_ONLY else SIGNAL
    augmentation = build(name, shape)
    x = torch.rand(6, *shape)
    params = augmentation.make_params(6, torch.Generator().manual_seed(1))
    first, second = augmentation.apply(x, params), augmentation.apply(x.clone(), params)
    assert first.shape == x.shape and torch.equal(first, second)
    assert all(len(value) == 6 for value in params.values())  # one draw per example
    assert not torch.equal(first, augmentation.apply(x, augmentation.make_params(6, torch.Generator().manual_seed(2))))
    assert str(AUGMENTATIONS.parse(str(AUGMENTATIONS.parse(name)))) == str(AUGMENTATIONS.parse(name))  # str round-trips


def test_batch_augmenter_leaves_labels_alone_and_is_seeded():
    x, y = torch.rand(5, *IMAGE), torch.arange(5)
    first = build_augmentation(["rotate:20", "crop:0.5", "hflip"], IMAGE, seed=3)
    x1, y1 = first(x, y)
    x2, _ = build_augmentation(["rotate:20", "crop:0.5", "hflip"], IMAGE, seed=3)(x, y)
    assert y1 is y and torch.equal(x1, x2) and not torch.equal(x1, x)
    assert not torch.equal(first(x, y)[0], x1)  # a new draw per batch


def test_rotation_by_90_degrees_equals_rot90_and_torchvision():
    x = torch.rand(4, 3, 7, 7)
    params = {"angle": torch.full((4,), 90.0)}
    out = build("rotate:90", IMAGE).apply(x, params)
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-6, rtol=0)
    torch.testing.assert_close(out, TF.rotate(x, 90.0), atol=1e-6, rtol=0)


def test_per_example_angles_match_torchvision_one_by_one():
    x = torch.rand(3, 1, 9, 9)
    angles = torch.tensor([0.0, 90.0, -90.0])
    out = build("rotate:90", (1, 9, 9)).apply(x, {"angle": angles})
    for index, angle in enumerate(angles.tolist()):
        torch.testing.assert_close(out[index], TF.rotate(x[index : index + 1], angle)[0], atol=1e-6, rtol=0)


def test_translate_by_whole_pixels_shifts_content():
    x = torch.rand(2, 1, 8, 8)
    out = build("translate:0.25", (1, 8, 8)).apply(x, {"tx": torch.full((2,), 2 * 2 / 8), "ty": torch.zeros(2)})
    torch.testing.assert_close(out[..., 2:], x[..., :-2], atol=1e-6, rtol=0)  # two pixels to the right
    assert out[..., :2].abs().max() == 0  # zeros shifted in


def test_full_crop_is_identity_and_small_crop_zooms_in():
    x = torch.rand(2, 1, 8, 8)
    crop = build("crop:0.25", (1, 8, 8))
    identity = {"zoom": torch.ones(2), "tx": torch.zeros(2), "ty": torch.zeros(2)}
    torch.testing.assert_close(crop.apply(x, identity), x, atol=1e-6, rtol=0)
    params = crop.make_params(500, torch.Generator().manual_seed(0))
    assert params["zoom"].min() >= 1.0 and params["zoom"].max() <= 2.0 + 1e-6  # side in [sqrt(0.25), 1]


@pytest.mark.parametrize(("name", "dims"), [("hflip", (3,)), ("vflip", (2,))])
def test_flips_equal_torch_flip(name, dims):
    x = torch.rand(4, *IMAGE)
    flip = torch.tensor([True, False, True, False])
    out = build(name, IMAGE).apply(x, {"flip": flip})
    assert torch.equal(out[flip], torch.flip(x[flip], dims)) and torch.equal(out[~flip], x[~flip])
    share = build(name, IMAGE).make_params(2000, torch.Generator().manual_seed(0))["flip"].float().mean()
    assert abs(share - 0.5) < 0.05


def test_colour_blends_match_torchvision_inside_the_unit_range():
    x = torch.rand(2, 3, 8, 8) * 0.5 + 0.25  # factors near 1 keep values in [0, 1], where torchvision's clamp is idle
    factor = torch.tensor([0.9, 1.1])
    for name, reference in (("brightness", TF.adjust_brightness), ("contrast", TF.adjust_contrast),
                            ("saturation", TF.adjust_saturation)):
        out = build(name, IMAGE).apply(x, {"factor": factor})
        for index in range(2):
            torch.testing.assert_close(out[index], reference(x[index], factor[index].item()), atol=1e-5, rtol=0)


def test_hue_keeps_grey_and_luma_and_a_full_turn_is_identity():
    hue = build("hue:0.5", IMAGE)
    grey = torch.rand(2, 1, 8, 8).expand(2, 3, 8, 8)
    torch.testing.assert_close(hue.apply(grey, {"turn": torch.tensor([0.3, -0.2])}), grey, atol=1e-5, rtol=0)
    x = torch.rand(2, *IMAGE)
    half_turns = hue.apply(x, {"turn": torch.tensor([0.5, -0.5])}), hue.apply(x, {"turn": torch.tensor([-0.5, 0.5])})
    torch.testing.assert_close(*half_turns, atol=1e-5, rtol=0)
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    out = hue.apply(x, {"turn": torch.tensor([0.25, 0.1])})
    torch.testing.assert_close((out * luma).sum(1), (x * luma).sum(1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(2, 16), (16,)])
def test_circular_shift_equals_roll_and_zero_shift_pads(shape):
    x = torch.randn(3, *shape)
    shifts = torch.tensor([3, -2, 0])
    out = build("shift:4", shape).apply(x, {"shift": shifts})
    for index, k in enumerate(shifts.tolist()):
        assert torch.equal(out[index], torch.roll(x[index], k, dims=-1))
    zero = build("shift:4,mode=zero", shape).apply(x, {"shift": shifts})
    assert torch.equal(zero[0][..., 3:], x[0][..., :-3]) and zero[0][..., :3].abs().max() == 0
    assert torch.equal(zero[1][..., :-2], x[1][..., 2:]) and zero[1][..., -2:].abs().max() == 0


def test_stretch_by_one_is_identity_and_by_two_doubles_periods():
    x = torch.randn(2, 1, 33)
    stretch = build("stretch:0.5", (1, 33))
    torch.testing.assert_close(stretch.apply(x, {"factor": torch.ones(2)}), x, atol=1e-5, rtol=0)
    line = torch.linspace(-1, 1, 33).reshape(1, 1, 33)
    out = build("stretch:0.9", (1, 33)).apply(line, {"factor": torch.tensor([2.0])})
    torch.testing.assert_close(out, line / 2, atol=1e-5, rtol=0)  # a ramp stretched x2 about the centre halves its slope


def test_amplitude_and_noise_statistics():
    generator = torch.Generator().manual_seed(0)
    amplitude = build("amplitude:0.3", SIGNAL)
    factors = amplitude.make_params(4000, generator)["factor"]
    assert factors.min() >= 0.7 and factors.max() <= 1.3 and abs(factors.mean() - 1) < 0.01
    x = torch.randn(4, *SIGNAL)
    torch.testing.assert_close(amplitude.apply(x, {"factor": torch.full((4,), 1.3)}), 1.3 * x)
    noise = build("noise:0.2", SIGNAL)
    x = torch.zeros(2000, *SIGNAL)
    out = noise(x, generator)
    assert abs(out.mean()) < 0.005 and abs(out.std() - 0.2) < 0.005


def test_compose_applies_in_order_with_its_own_params():
    compose = Compose([build("shift:3", SIGNAL), build("amplitude:0.5", SIGNAL)])
    params = compose.make_params(4, torch.Generator().manual_seed(0))
    assert set(params) == {"0.shift", "1.factor"}
    x = torch.randn(4, *SIGNAL)
    shifted = torch.stack([torch.roll(x[i], int(k), -1) for i, k in enumerate(params["0.shift"])])
    torch.testing.assert_close(compose.apply(x, params), shifted * params["1.factor"].reshape(-1, 1, 1))


@pytest.mark.parametrize(("options", "shape", "text"), [
    (["rotat:10"], IMAGE, "Did you mean 'rotate'?"),
    (["rotate:-5"], IMAGE, "Invalid value"),
    (["crop:1.5"], IMAGE, "scale_min"),
    (["noise:0"], SIGNAL, "std"),
    (["shift:40"], SIGNAL, "only 32"),
    (["rotate:10"], SIGNAL, "for images"),
    (["shift:3"], IMAGE, "for 1-D signals"),
    (["saturation:0.2"], (1, 8, 8), "3-channel"),
    (["hue:0.1"], (1, 8, 8), "3-channel"),
])
def test_bad_options_raise_config_error(options, shape, text):
    with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace("?", r"\?")):
        build_augmentation(options, shape)


def test_spec_field_round_trips_and_rejects_unknown_names():
    spec = RunSpec.from_dict({"data": {"augment": ["rotate:20", "crop:scale_min=0.7"]}})
    assert spec.to_dict()["data"]["augment"] == ["rotate:20.0", "crop:0.7"]  # defaults (rotate:15) are omitted
    assert RunSpec.from_dict(spec.to_dict()) == spec and RunSpec().data.augment == []
    with pytest.raises(ConfigError, match="Did you mean 'hflip'"):
        RunSpec.from_dict({"data": {"augment": ["hflp"]}})


class _Recorder(nn.Module):
    """A linear classifier that records the first input value of every example it sees, by mode."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen[self.training].append(x[:, 0].detach().clone())
        return self.linear(x)


def test_fit_augments_training_batches_only():
    x_train = torch.arange(16.0).reshape(-1, 1).repeat(1, 4)  # example i holds the value i
    x_val = 100 + torch.arange(8.0).reshape(-1, 1).repeat(1, 4)
    data = TensorData(x_train, torch.arange(16) % 2, x_val, torch.arange(8) % 2)
    transformed: list[torch.Tensor] = []

    def mark(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        transformed.append(x[:, 0].clone())
        return x + 1000.0, y

    model = _Recorder()
    fit(model, data, TrainSpec(epochs=2, batch_size=4, schedule="constant"), seed=0, batch_transform=mark)
    assert torch.cat(transformed).max() < 16  # only training examples reach the transform
    assert sorted(torch.cat(transformed).tolist()) == sorted(2 * list(range(16)))
    assert torch.cat(model.seen[True]).min() >= 1000  # every training step saw augmented inputs
    evaluated = torch.cat(model.seen[False])
    assert len(evaluated) > 0 and evaluated.max() < 1000  # validation / clean-train evaluations saw none


def test_train_passes_the_spec_augmentation_to_fit(tmp_path, monkeypatch):
    import deepwell.run as run_module

    seen = {}
    real_fit = run_module.fit

    def spy(*args, **kwargs):
        seen["transform"] = kwargs.get("batch_transform")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(run_module, "fit", spy)
    base = ["output.report=false", "diagnostics.probes=false", "data.source=moons:n=200", "model.hidden=[8]",
            "train.epochs=1", f"output.dir={tmp_path}"]
    run_module.train(overrides=[*base, "output.name=plain"], progress="none")
    assert seen["transform"] is None
    run_module.train(overrides=[*base, "output.name=augmented", "data.augment=[noise:0.1]"], progress="none")
    assert repr(seen["transform"]) == "BatchAugmenter([noise:0.1])"


@pytest.mark.parametrize(("gains", "status"), [
    ({"digits": (0.00, 0.01), "mnist1d": (0.20, 0.01)}, "holds"),       # one task helped, none hurt
    ({"digits": (0.01, 0.01), "mnist1d": (0.015, 0.001)}, "does_not_hold"),  # below MIN_GAIN
    ({"digits": (0.05, 0.03), "mnist1d": (0.03, 0.02)}, "does_not_hold"),    # within noise
    ({"digits": (-0.05, 0.01), "mnist1d": (0.20, 0.01)}, "does_not_hold"),   # one task hurt beyond noise
])
def test_augmentation_verdict_thresholds(gains, status):
    from deepwell.studies.augmentation import augmentation_verdict

    per_task = {task: {"acc_without": 0.5, "acc_with": 0.5 + g, "acc_without_std": 0.0, "acc_with_std": 0.0,
                       "gain": g, "gain_se": se, "seeds": 3} for task, (g, se) in gains.items()}
    assert augmentation_verdict(per_task).status == status
