"""Image augmentations, inputs (B, C, H, W): geometry as one per-example affine warp, and colour."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from deepwell.data.augment.base import AUGMENTATIONS, Augmentation, Fraction, Params, _check_image, _per_example, _uniform

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


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


# --- registry entries: the signature is the schema; input_shape is context ------------------------


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
