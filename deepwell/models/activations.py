"""Activation functions by name, and the initialisation gain each one implies.

Gains follow ``torch.nn.init.calculate_gain`` (identity/linear 1, sigmoid 1, tanh 5/3, relu sqrt(2),
leaky_relu sqrt(2/(1+slope^2)), selu 3/4). torch defines no gain for elu, gelu, silu, softplus or
prelu; we use the relu gain for the first four (they are relu-like for positive inputs) and the
leaky_relu gain at PReLU's initial slope.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field
from torch import nn

from deepwell.registry import Option, Registry

__all__ = ["ACTIVATIONS", "activation_gain"]

ACTIVATIONS: Registry[nn.Module] = Registry("activation")

Positive = Annotated[float, Field(gt=0)]


@ACTIVATIONS.register("identity", aliases=("linear", "none"))
def identity() -> nn.Module:
    """f(x) = x: a linear network."""
    return nn.Identity()


@ACTIVATIONS.register("sigmoid")
def sigmoid() -> nn.Module:
    """Logistic sigmoid 1/(1+exp(-x)); its derivative is at most 0.25, so deep stacks vanish."""
    return nn.Sigmoid()


@ACTIVATIONS.register("tanh")
def tanh() -> nn.Module:
    """Hyperbolic tangent: zero-centred, derivative at most 1, saturates for large |x|."""
    return nn.Tanh()


@ACTIVATIONS.register("relu")
def relu() -> nn.Module:
    """max(0, x): no saturation for x > 0; units can die."""
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(negative_slope: Annotated[float, Field(ge=0)] = 0.01) -> nn.Module:
    """max(0, x) + slope * min(0, x): keeps a gradient for x < 0, so units cannot die."""
    return nn.LeakyReLU(negative_slope)


@ACTIVATIONS.register("prelu")
def prelu(init: Annotated[float, Field(ge=0)] = 0.25) -> nn.Module:
    """Leaky ReLU with a learned slope (He et al. 2015), one per layer."""
    return nn.PReLU(init=init)


@ACTIVATIONS.register("elu")
def elu(alpha: Positive = 1.0) -> nn.Module:
    """x for x > 0, alpha (exp(x) - 1) otherwise."""
    return nn.ELU(alpha)


@ACTIVATIONS.register("selu")
def selu() -> nn.Module:
    """Self-normalising ELU (Klambauer et al. 2017); pair with lecun init."""
    return nn.SELU()


@ACTIVATIONS.register("gelu")
def gelu(approximate: Literal["none", "tanh"] = "none") -> nn.Module:
    """x * Phi(x), the Gaussian error linear unit."""
    return nn.GELU(approximate)


@ACTIVATIONS.register("silu", aliases=("swish",))
def silu() -> nn.Module:
    """x * sigmoid(x)."""
    return nn.SiLU()


@ACTIVATIONS.register("softplus")
def softplus(beta: Positive = 1.0) -> nn.Module:
    """log(1 + exp(beta x)) / beta: a smooth relu."""
    return nn.Softplus(beta)


def activation_gain(activation: str | Option) -> float:
    """The recommended initialisation gain for ``activation`` (see module docstring)."""
    option = ACTIVATIONS.parse(activation)
    if option.name in ("identity", "sigmoid", "tanh", "relu", "selu"):
        return nn.init.calculate_gain("linear" if option.name == "identity" else option.name)
    if option.name in ("leaky_relu", "prelu"):
        slope = option.params.get("negative_slope", option.params.get("init", 0.01 if option.name == "leaky_relu" else 0.25))
        return math.sqrt(2.0 / (1.0 + slope**2))
    return math.sqrt(2.0)  # elu, gelu, silu, softplus: relu-like for x > 0
