"""1-D signal augmentations, inputs (B, C, L) or (B, L): shift, stretch, amplitude, noise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from deepwell.data.augment.base import AUGMENTATIONS, Augmentation, Fraction, Params, Positive, _check_signal, _per_example, _uniform
from deepwell.errors import ConfigError


# --- 1-D signals -----------------------------------------------------------------------------------
def _as_channels(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(B, L) -> (B, 1, L); (B, C, L) unchanged; and whether a channel axis was added."""
    return (x.unsqueeze(1), True) if x.ndim == 2 else (x, False)


class Shift(Augmentation):
    """Shift each signal by an integer uniform in [-max, max] samples: circularly or with zeros shifted in."""

    def __init__(self, max_shift: int, mode: Literal["circular", "zero"]) -> None:
        self.max_shift, self.mode = max_shift, mode

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"shift": torch.randint(-self.max_shift, self.max_shift + 1, (batch_size,), generator=generator).to(device)}

    def apply(self, x, params):
        signal, added = _as_channels(x)  # (B, C, L)
        length = signal.shape[-1]
        source = torch.arange(length, device=x.device) - params["shift"].to(x.device).reshape(-1, 1)  # (B, L)
        out = signal.gather(-1, (source % length).unsqueeze(1).expand_as(signal))
        if self.mode == "zero":
            out = out * ((source >= 0) & (source < length)).unsqueeze(1).to(x.dtype)
        return out.squeeze(1) if added else out


class Stretch(Augmentation):
    """Resample each signal about its centre by a factor uniform in [1 - amount, 1 + amount]
    (linear interpolation), then crop / zero-pad back to the original length."""

    def __init__(self, amount: float) -> None:
        self.amount = amount

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"factor": _uniform(1 - self.amount, 1 + self.amount, batch_size, generator, device)}

    def apply(self, x, params):
        signal, added = _as_channels(x)  # (B, C, L)
        length = signal.shape[-1]
        positions = torch.linspace(-1, 1, length, device=x.device, dtype=x.dtype)  # output sample -> input position
        grid_x = positions.reshape(1, -1) / params["factor"].to(x.device, x.dtype).reshape(-1, 1)  # (B, L)
        grid = torch.stack([grid_x, torch.zeros_like(grid_x)], -1).unsqueeze(1)  # (B, 1, L, 2)
        out = F.grid_sample(signal.unsqueeze(2), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        out = out.squeeze(2)  # (B, C, L)
        return out.squeeze(1) if added else out


class Amplitude(Augmentation):
    """Multiply each signal by a factor uniform in [1 - amount, 1 + amount]."""

    def __init__(self, amount: float) -> None:
        self.amount = amount

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"factor": _uniform(1 - self.amount, 1 + self.amount, batch_size, generator, device)}

    def apply(self, x, params):
        return x * _per_example(params["factor"], x)


class Noise(Augmentation):
    """Add Gaussian noise with standard deviation ``std`` to every value."""

    def __init__(self, std: float, input_shape: Sequence[int]) -> None:
        self.std, self.input_shape = std, tuple(input_shape)

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"noise": (self.std * torch.randn(batch_size, *self.input_shape, generator=generator)).to(device)}

    def apply(self, x, params):
        return x + params["noise"].to(x.device, x.dtype).reshape(x.shape)


# --- registry entries: the signature is the schema; input_shape is context ------------------------


@AUGMENTATIONS.register("shift")
def _shift(max: Annotated[int, Field(ge=1)] = 5, mode: Literal["circular", "zero"] = "circular",  # noqa: A002
           *, input_shape: Sequence[int]) -> Augmentation:
    """Shift signals by up to max samples (circularly, or with zeros shifted in)."""
    _check_signal("shift", input_shape)
    if max >= input_shape[-1]:
        raise ConfigError(f"Augmentation 'shift:{max}' shifts by up to {max} samples, but the signals have only "
                          f"{input_shape[-1]}; give a max below {input_shape[-1]}.")
    return Shift(max, mode)


@AUGMENTATIONS.register("stretch")
def _stretch(amount: Fraction = 0.2, *, input_shape: Sequence[int]) -> Augmentation:
    """Resample signals by a factor uniform in [1 - amount, 1 + amount], cropped / padded back."""
    _check_signal("stretch", input_shape)
    return Stretch(amount)


@AUGMENTATIONS.register("amplitude")
def _amplitude(amount: Fraction = 0.2, *, input_shape: Sequence[int]) -> Augmentation:
    """Scale signals by a factor uniform in [1 - amount, 1 + amount]."""
    _check_signal("amplitude", input_shape)
    return Amplitude(amount)


@AUGMENTATIONS.register("noise")
def _noise(std: Positive = 0.05, *, input_shape: Sequence[int]) -> Augmentation:
    """Add Gaussian noise with this standard deviation (signals)."""
    _check_signal("noise", input_shape)
    return Noise(std, input_shape)
