"""Weight initialisers by name: one general family, variance scaling, and named presets.

``variance_scaling(scale, mode, distribution)`` draws weights with variance
``gain^2 * scale / n`` where n is fan_in, fan_out or (fan_in + fan_out)/2. The presets:

- ``he`` (Kaiming; He et al. 2015): mode fan_in. With ReLU (gain sqrt 2) std = sqrt(2/fan_in).
  The lecture's "2/sqrt(N_in)" is a typo: it makes a 6-layer ReLU net's activation std grow.
- ``xavier`` (Glorot & Bengio 2010): mode fan_avg, Var = gain^2 * 2/(fan_in+fan_out); uniform bound
  gain * sqrt(6/(fan_in+fan_out)). The lecture's "1/sqrt(N_in)" is ``xavier:mode=fan_in`` (= lecun).
- ``lecun``: mode fan_in, gain 1 (for SELU).

The gain comes from the layer's activation (``activation_gain``) unless given explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field

from deepwell.registry import Registry

__all__ = ["INITIALIZERS", "Initializer", "fans"]

Mode = Literal["fan_in", "fan_out", "fan_avg"]
Distribution = Literal["normal", "uniform", "truncated_normal"]
Gain = Annotated[float, Field(gt=0)] | None


def fans(shape: torch.Size) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as torch computes them."""
    if len(shape) < 2:
        raise ValueError(f"fan_in/fan_out need a weight with at least 2 dimensions, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


@dataclass(frozen=True)
class Initializer:
    """Fills a tensor in place. ``needs_fans``: only defined for weights (2+ dims), not biases.
    ``uses_gain``: takes the gain passed in (the activation's); ``fixed_gain``: a gain it uses instead."""

    name: str
    fill: object  # (tensor, gain, generator) -> None
    needs_fans: bool = False
    uses_gain: bool = False
    fixed_gain: float | None = None

    @torch.no_grad()
    def __call__(self, tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> None:
        self.fill(tensor, gain, generator)


INITIALIZERS: Registry[Initializer] = Registry("initializer")


def _variance_scaling(name: str, scale: float, mode: Mode, distribution: Distribution, gain: float | None) -> Initializer:
    def fill(tensor: torch.Tensor, activation_gain: float, generator: torch.Generator | None) -> None:
        fan_in, fan_out = fans(tensor.shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        g = activation_gain if gain is None else gain
        std = g * math.sqrt(scale / n)
        if distribution == "normal":
            tensor.normal_(0.0, std, generator=generator)
        elif distribution == "uniform":
            bound = math.sqrt(3.0) * std  # Var of U(-b, b) is b^2/3
            tensor.uniform_(-bound, bound, generator=generator)
        else:  # truncated at 2 std; rescaled so the variance is still std^2 (Keras' constant)
            torch.nn.init.trunc_normal_(tensor, 0.0, std / 0.87962566103423978, -2 * std / 0.87962566103423978,
                                        2 * std / 0.87962566103423978, generator=generator)

    return Initializer(name, fill, needs_fans=True, uses_gain=gain is None, fixed_gain=gain)


@INITIALIZERS.register("variance_scaling")
def variance_scaling(
    scale: Annotated[float, Field(gt=0)] = 1.0, mode: Mode = "fan_in", distribution: Distribution = "normal", gain: Gain = None
) -> Initializer:
    """Var = gain^2 * scale / n, n = fan_in, fan_out or fan average (the family every preset belongs to)."""
    return _variance_scaling("variance_scaling", scale, mode, distribution, gain)


@INITIALIZERS.register("he", aliases=("kaiming",))
def he(distribution: Distribution = "normal", mode: Literal["fan_in", "fan_out"] = "fan_in", gain: Gain = None) -> Initializer:
    """He/Kaiming: std = gain / sqrt(fan); with relu, sqrt(2 / fan_in)."""
    return _variance_scaling("he", 1.0, mode, distribution, gain)


@INITIALIZERS.register("xavier", aliases=("glorot",))
def xavier(distribution: Distribution = "normal", mode: Literal["fan_avg", "fan_in"] = "fan_avg", gain: Gain = None) -> Initializer:
    """Xavier/Glorot: Var = gain^2 * 2 / (fan_in + fan_out); mode=fan_in gives gain^2 / fan_in."""
    return _variance_scaling("xavier", 1.0, mode, distribution, gain)


@INITIALIZERS.register("lecun")
def lecun(distribution: Distribution = "normal") -> Initializer:
    """LeCun: Var = 1 / fan_in (gain 1, whatever the activation)."""
    return _variance_scaling("lecun", 1.0, "fan_in", distribution, 1.0)


@INITIALIZERS.register("orthogonal")
def orthogonal(gain: Gain = None) -> Initializer:
    """A (semi-)orthogonal matrix times gain (Saxe et al. 2014)."""
    return Initializer(
        "orthogonal",
        lambda t, g, gen: torch.nn.init.orthogonal_(t, gain=g if gain is None else gain, generator=gen),
        needs_fans=True,
        uses_gain=gain is None,
        fixed_gain=gain,
    )


@INITIALIZERS.register("zeros")
def zeros() -> Initializer:
    """All zeros: every unit computes the same thing, and with zero weights nothing learns."""
    return Initializer("zeros", lambda t, g, gen: t.zero_())


@INITIALIZERS.register("constant")
def constant(value: float = 0.1) -> Initializer:
    """Every weight equal to ``value``: units of a layer stay identical (herding)."""
    return Initializer("constant", lambda t, g, gen: t.fill_(value))


@INITIALIZERS.register("normal")
def normal(std: Annotated[float, Field(ge=0)] = 0.01, mean: float = 0.0) -> Initializer:
    """N(mean, std^2), ignoring fan and gain (the lecture's 'small random numbers')."""
    return Initializer("normal", lambda t, g, gen: t.normal_(mean, std, generator=gen))


@INITIALIZERS.register("uniform")
def uniform(a: Annotated[float, Field(ge=0)] = 0.05) -> Initializer:
    """U(-a, a), ignoring fan and gain."""
    return Initializer("uniform", lambda t, g, gen: t.uniform_(-a, a, generator=gen))


@INITIALIZERS.register("torch_default")
def torch_default() -> Initializer:
    """torch's layer default: kaiming_uniform with a=sqrt(5) for weights, U(+-1/sqrt(fan_in)) for biases.

    ``build_model`` with a generator redraws it from that generator (``reset_parameters`` under a
    seeded RNG fork), so the same seed gives the same network in every process."""
    return Initializer("torch_default", lambda t, g, gen: None)
