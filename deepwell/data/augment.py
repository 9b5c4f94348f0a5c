"""Data augmentation for training batches: images (B, C, H, W) and 1-D signals (B, C, L) or (B, L).

Each augmentation follows torchvision v2's split: ``make_params(batch_size, generator, device)``
draws the random numbers (one set per example), and ``apply(x, params)`` is deterministic given
them, so a test can force a parameter (a 90 degree rotation) and compare against torch. Labels are
never touched. Augmentation runs on training batches only, after preprocessing (the model sees
``augment(preprocess(x))``); validation and test data are never augmented.

Option strings (``AUGMENTATIONS`` registry)::

    images:  rotate:15  crop:0.6  scale:0.2  translate:0.1  hflip  vflip
             brightness:0.3  contrast:0.3  saturation:0.3  hue:0.1   (saturation/hue need 3 channels)
    signals: shift:5[,mode=zero]  stretch:0.2  amplitude:0.3  noise:0.05

Example::

    augment = build_augmentation(["rotate:15", "translate:0.1"], input_shape=(1, 8, 8), seed=0)
    x, y = augment(x, y)          # x: (B, 1, 8, 8), a new random draw per call

Geometry is one affine warp (``affine_grid`` + ``grid_sample``) with a per-example matrix rather
than ``torchvision.transforms.v2.functional.affine``: that takes one angle per call, so per-example
angles would need a Python loop over the batch. The colour operations are written as the same
blends torchvision uses (``adjust_brightness``/``contrast``/``saturation``), per example and without
the clamp to [0, 1], because preprocessing may have moved the data out of that range. ``hue`` rotates
the chroma plane in YIQ space (linear, any value range) instead of torchvision's HSV round trip,
which needs data in [0, 1].

Not yet: text and audio augmentation; a resumable augmentation RNG (the generator is seeded, but a
resumed run restarts its stream).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from deepwell.errors import ConfigError
from deepwell.registry import Option, Registry

__all__ = ["AUGMENTATIONS", "Augmentation", "Compose", "BatchAugmenter", "build_augmentation"]

Params = dict[str, torch.Tensor]
AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


class Augmentation(ABC):
    """A random transformation of a batch: random draws in ``make_params``, the deterministic rest in ``apply``."""

    @abstractmethod
    def make_params(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Params:
        """Draw this batch's random parameters (one per example) from ``generator`` (a CPU generator)."""

    @abstractmethod
    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Transform ``x`` with ``params``; deterministic."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.make_params(len(x), generator, x.device))


def _uniform(low: float, high: float, size: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    return (low + (high - low) * torch.rand(size, generator=generator)).to(device)


def _check_image(name: str, input_shape: Sequence[int], channels: int | None = None) -> None:
    if len(input_shape) != 3:
        raise ConfigError(f"Augmentation '{name}' is for images of shape (C, H, W); the data's examples have shape "
                          f"{tuple(input_shape)}. For 1-D signals use shift, stretch, amplitude or noise.")
    if channels is not None and input_shape[0] != channels:
        raise ConfigError(f"Augmentation '{name}' needs {channels}-channel (RGB) images; the data has {input_shape[0]} "
                          f"channel(s). Use brightness or contrast instead.")


def _check_signal(name: str, input_shape: Sequence[int]) -> None:
    if len(input_shape) not in (1, 2):
        raise ConfigError(f"Augmentation '{name}' is for 1-D signals of shape (C, L) or (L,); the data's examples have "
                          f"shape {tuple(input_shape)}. For images use rotate, crop, scale, translate or the flips.")


def _per_example(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) to broadcast over one example's dimensions."""
    return values.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


# --- image geometry ------------------------------------------------------------------------------
class _AffineAugmentation(Augmentation):
    """Per-example rotation (degrees, counter-clockwise), zoom and translation (fractions of the half-size).

    ``params``: any of ``angle`` (degrees), ``zoom`` (>1 enlarges the content), ``tx``, ``ty`` (in
    normalised coordinates, 2 = the full image), each (B,); missing ones are the identity.
    """

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:  # x: (B, C, H, W)
        batch = len(x)
        ones, zeros = torch.ones(batch, device=x.device), torch.zeros(batch, device=x.device)
        angle = torch.deg2rad(params.get("angle", zeros).to(x.device, torch.float32))
        zoom = params.get("zoom", ones).to(x.device, torch.float32)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # theta maps output coordinates to input coordinates (x right, y down): the inverse rotation,
        # so content turns counter-clockwise on screen for a positive angle, as torchvision's rotate.
        theta = torch.stack([torch.stack([cos, -sin, -params.get("tx", zeros).to(x.device, torch.float32)], 1),
                             torch.stack([sin, cos, -params.get("ty", zeros).to(x.device, torch.float32)], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Rotate(_AffineAugmentation):
    """Rotate each image by an angle uniform in [-degrees, degrees]."""

    def __init__(self, degrees: float) -> None:
        self.degrees = degrees

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"angle": _uniform(-self.degrees, self.degrees, batch_size, generator, device)}


class ResizedCrop(_AffineAugmentation):
    """Crop a square of area fraction uniform in [scale_min, 1] at a random place and resize it back."""

    def __init__(self, scale_min: float) -> None:
        self.scale_min = scale_min

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        side = _uniform(self.scale_min, 1.0, batch_size, generator, "cpu").sqrt()  # side fraction of the crop
        room = 1.0 - side  # the crop's centre may move this far (normalised) and stay inside the image
        tx = (2 * torch.rand(batch_size, generator=generator) - 1) * room
        ty = (2 * torch.rand(batch_size, generator=generator) - 1) * room
        return {"zoom": (1 / side).to(device), "tx": (-tx / side).to(device), "ty": (-ty / side).to(device)}


class Scale(_AffineAugmentation):
    """Zoom each image about its centre by a factor uniform in [1 - range, 1 + range]."""

    def __init__(self, amount: float) -> None:
        self.amount = amount

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"zoom": _uniform(1 - self.amount, 1 + self.amount, batch_size, generator, device)}


class Translate(_AffineAugmentation):
    """Shift each image by up to ``fraction`` of its width / height in each direction."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"tx": _uniform(-2 * self.fraction, 2 * self.fraction, batch_size, generator, device),
                "ty": _uniform(-2 * self.fraction, 2 * self.fraction, batch_size, generator, device)}


class Flip(Augmentation):
    """Flip each image left-right (``dim=-1``) or up-down (``dim=-2``) with probability ``p``."""

    def __init__(self, dim: int, p: float) -> None:
        self.dim, self.p = dim, p

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"flip": (torch.rand(batch_size, generator=generator) < self.p).to(device)}

    def apply(self, x, params):
        return torch.where(params["flip"].reshape(-1, 1, 1, 1).to(x.device), x.flip(self.dim), x)


# --- image colour ----------------------------------------------------------------------------------
def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W) luma (the channel itself for one channel)."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    weights = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


class ColorJitter(Augmentation):
    """Blend each image with a reference by a factor uniform in [1 - amount, 1 + amount]: black
    (brightness), its mean grey level (contrast) or its grey version (saturation), as torchvision."""

    def __init__(self, kind: Literal["brightness", "contrast", "saturation"], amount: float) -> None:
        self.kind, self.amount = kind, amount

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"factor": _uniform(max(0.0, 1 - self.amount), 1 + self.amount, batch_size, generator, device)}

    def apply(self, x, params):
        factor = _per_example(params["factor"], x)
        if self.kind == "brightness":
            return x * factor
        reference = _gray(x).mean((1, 2, 3), keepdim=True) if self.kind == "contrast" else _gray(x)
        return factor * x + (1 - factor) * reference


class Hue(Augmentation):
    """Turn each RGB image's hue by a fraction uniform in [-amount, amount] of a full turn (a
    rotation of the I-Q chroma plane in YIQ space; linear, so it works on preprocessed values)."""

    _RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)

    def __init__(self, amount: float) -> None:
        self.amount = amount

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"turn": _uniform(-self.amount, self.amount, batch_size, generator, device)}

    def apply(self, x, params):
        angle = 2 * math.pi * params["turn"].to("cpu", torch.float64)  # a (B, 3, 3) product: CPU, float64 (MPS has none)
        cos, sin, one, zero = torch.cos(angle), torch.sin(angle), torch.ones_like(angle), torch.zeros_like(angle)
        rotation = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                                torch.stack([zero, sin, cos], 1)], 1)  # (B, 3, 3)
        matrix = torch.linalg.inv(self._RGB_TO_YIQ) @ rotation @ self._RGB_TO_YIQ  # (B, 3, 3), RGB -> RGB
        return torch.einsum("bij,bjhw->bihw", matrix.to(x.device, x.dtype), x)


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


class Compose(Augmentation):
    """Apply several augmentations in order; their params are kept under ``"<index>.<key>"``."""

    def __init__(self, augmentations: Sequence[Augmentation]) -> None:
        self.augmentations = list(augmentations)

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {f"{index}.{key}": value for index, augmentation in enumerate(self.augmentations)
                for key, value in augmentation.make_params(batch_size, generator, device).items()}

    def apply(self, x, params):
        for index, augmentation in enumerate(self.augmentations):
            prefix = f"{index}."
            x = augmentation.apply(x, {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)})
        return x


# --- registry entries: the signature is the schema; input_shape is context ------------------------
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


@AUGMENTATIONS.register("rotate")
def _rotate(degrees: Annotated[float, Field(gt=0, le=180)] = 15.0, *, input_shape: Sequence[int]) -> Augmentation:
    """Rotate images by an angle uniform in [-degrees, degrees]."""
    _check_image("rotate", input_shape)
    return Rotate(degrees)


@AUGMENTATIONS.register("crop")
def _crop(scale_min: Annotated[float, Field(gt=0, le=1)] = 0.6, *, input_shape: Sequence[int]) -> Augmentation:
    """Random resized crop: area fraction uniform in [scale_min, 1], resized back to the full size."""
    _check_image("crop", input_shape)
    return ResizedCrop(scale_min)


@AUGMENTATIONS.register("scale")
def _scale(range: Fraction = 0.2, *, input_shape: Sequence[int]) -> Augmentation:  # noqa: A002 - the option's name
    """Zoom images by a factor uniform in [1 - range, 1 + range]."""
    _check_image("scale", input_shape)
    return Scale(range)


@AUGMENTATIONS.register("translate")
def _translate(fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.1, *, input_shape: Sequence[int]) -> Augmentation:
    """Shift images by up to this fraction of their width and height."""
    _check_image("translate", input_shape)
    return Translate(fraction)


@AUGMENTATIONS.register("hflip")
def _hflip(p: Annotated[float, Field(ge=0, le=1)] = 0.5, *, input_shape: Sequence[int]) -> Augmentation:
    """Flip images left-right with probability p."""
    _check_image("hflip", input_shape)
    return Flip(-1, p)


@AUGMENTATIONS.register("vflip")
def _vflip(p: Annotated[float, Field(ge=0, le=1)] = 0.5, *, input_shape: Sequence[int]) -> Augmentation:
    """Flip images up-down with probability p."""
    _check_image("vflip", input_shape)
    return Flip(-2, p)


def _color(kind: str, channels: int | None):
    def factory(amount: Annotated[float, Field(gt=0, le=1)] = 0.2, *, input_shape: Sequence[int]) -> Augmentation:
        _check_image(kind, input_shape, channels)
        return ColorJitter(kind, amount)  # type: ignore[arg-type]

    factory.__doc__ = f"Adjust {kind} by a factor uniform in [1 - amount, 1 + amount]."
    return factory


AUGMENTATIONS.register("brightness")(_color("brightness", None))
AUGMENTATIONS.register("contrast")(_color("contrast", None))
AUGMENTATIONS.register("saturation")(_color("saturation", 3))


@AUGMENTATIONS.register("hue")
def _hue(amount: Annotated[float, Field(gt=0, le=0.5)] = 0.1, *, input_shape: Sequence[int]) -> Augmentation:
    """Turn the hue of RGB images by up to this fraction of a full turn."""
    _check_image("hue", input_shape, 3)
    return Hue(amount)


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


class BatchAugmenter:
    """``fit``'s ``batch_transform``: ``(x, y) -> (augmented x, y)`` with draws from its own seeded generator.

    The generator is not saved in checkpoints: a resumed run draws a fresh stream from the seed.
    """

    def __init__(self, augmentation: Augmentation, options: Sequence[Option], seed: int = 0) -> None:
        self.augmentation, self.options = augmentation, list(options)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.augmentation(x, self.generator), y

    def __repr__(self) -> str:
        return f"BatchAugmenter([{', '.join(str(o) for o in self.options)}])"


def build_augmentation(options: Sequence[str | Option], input_shape: Sequence[int], seed: int = 0) -> BatchAugmenter:
    """Build a ``batch_transform`` for ``fit`` from option strings, applied in the order given.

    Args:
        options: e.g. ``["rotate:15", "crop:0.7"]`` (see ``AUGMENTATIONS.names()``).
        input_shape: one example's shape after preprocessing, (C, H, W) or (C, L) / (L,).
        seed: seeds the augmenter's own generator (independent of the training loop's).

    Raises:
        ConfigError: unknown name (with did-you-mean), bad parameter, or an augmentation that
            does not fit the data (image ops on signals, saturation on grey images, ...).
    """
    parsed = [AUGMENTATIONS.parse(option) for option in options]
    built = [AUGMENTATIONS.build(option, input_shape=tuple(input_shape)) for option in parsed]
    return BatchAugmenter(built[0] if len(built) == 1 else Compose(built), parsed, seed)
