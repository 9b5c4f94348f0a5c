"""Layers the lecture needs that torch lacks or names differently: dropout with both scaling
conventions, DropConnect, and normalisation chosen by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from deepwell.registry import Registry

__all__ = ["NORMALIZATIONS", "DROPOUTS", "Dropout", "DropConnectLinear", "DropSpec"]

Probability = Annotated[float, Field(ge=0.0, lt=1.0)]

NORMALIZATIONS: Registry[nn.Module | None] = Registry("normalization")


@NORMALIZATIONS.register("none")
def no_norm(*, num_features: int, dims: int) -> None:
    """No normalisation."""
    return None


@NORMALIZATIONS.register("batchnorm", aliases=("bn",))
def batchnorm(
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.1, eps: Annotated[float, Field(gt=0)] = 1e-5, affine: bool = True,
    *, num_features: int, dims: int,
) -> nn.Module:
    """Batch statistics in training, running statistics at test (momentum = weight of the new batch)."""
    cls = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    return cls(num_features, eps=eps, momentum=momentum, affine=affine)


@NORMALIZATIONS.register("layernorm", aliases=("ln",))
def layernorm(eps: Annotated[float, Field(gt=0)] = 1e-5, affine: bool = True, *, num_features: int, dims: int) -> nn.Module:
    """Per-example statistics over the features (over channels and positions for convolutions)."""
    if dims == 0:
        return nn.LayerNorm(num_features, eps=eps, elementwise_affine=affine)
    return nn.GroupNorm(1, num_features, eps=eps, affine=affine)  # one group = layer norm over (C, *spatial)


class Dropout(nn.Module):
    """Dropout (Srivastava et al. 2014) with either scaling convention.

    ``inverted`` (the frameworks' way): scale kept units by 1/(1-p) in training, identity at test.
    ``classic`` (the lecture's): no scaling in training, multiply by the keep probability (1-p) at test.
    Both give the same expected activation in training as at test, hence the same test predictions
    up to the overall scale absorbed by the next layer's weights.
    """

    def __init__(self, p: float = 0.5, mode: Literal["inverted", "classic"] = "inverted") -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if self.mode == "inverted":
            return F.dropout(x, self.p, self.training)
        if self.training:
            return F.dropout(x, self.p, True) * (1.0 - self.p)  # undo F.dropout's 1/(1-p): plain masking
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class DropConnectLinear(nn.Linear):
    """A dense layer whose *weights* are dropped (Wan et al. 2013, DropConnect).

    Training: y = (M * W) x + b with M ~ Bernoulli(1-p), a fresh mask per example
    (``sample="example"``, memory B*out*in) or one per batch (``sample="batch"``, faster).
    Inference by the mean rule: y = (1-p) W x + b. Biases are not dropped.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5,
                 sample: Literal["example", "batch"] = "example") -> None:
        super().__init__(in_features, out_features, bias)
        self.p, self.sample = p, sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return F.linear(x, self.weight * (1.0 - self.p), self.bias)
        keep = 1.0 - self.p
        if self.sample == "batch":
            mask = torch.empty_like(self.weight).bernoulli_(keep)
            return F.linear(x, self.weight * mask, self.bias)
        mask = torch.empty((x.shape[0], *self.weight.shape), device=x.device, dtype=x.dtype).bernoulli_(keep)  # (B, out, in)
        out = torch.einsum("bi,boi->bo", x, mask * self.weight)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}, sample={self.sample}"


@dataclass(frozen=True)
class DropSpec:
    """What the model builder needs from a dropout option: unit dropout after hidden layers and/or
    DropConnect on hidden dense layers."""

    unit_p: float = 0.0
    unit_mode: Literal["inverted", "classic"] = "inverted"
    dense_p: float = 0.0
    sample: Literal["example", "batch"] = "example"

    def dropout_module(self) -> nn.Module | None:
        """A fresh unit-dropout module, or None."""
        return Dropout(self.unit_p, self.unit_mode) if self.unit_p > 0 else None

    def linear(self, in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
        """A hidden dense layer: DropConnect when asked, else nn.Linear."""
        if self.dense_p > 0:
            return DropConnectLinear(in_features, out_features, bias, p=self.dense_p, sample=self.sample)
        return nn.Linear(in_features, out_features, bias)


DROPOUTS: Registry[DropSpec] = Registry("dropout")


@DROPOUTS.register("none")
def no_dropout() -> DropSpec:
    """No dropout."""
    return DropSpec()


@DROPOUTS.register("dropout")
def dropout(p: Probability = 0.5, mode: Literal["inverted", "classic"] = "inverted") -> DropSpec:
    """Drop hidden units with probability p (inverted: scale in training; classic: scale at test)."""
    return DropSpec(unit_p=p, unit_mode=mode)


@DROPOUTS.register("dropconnect")
def dropconnect(p: Probability = 0.5, sample: Literal["example", "batch"] = "example") -> DropSpec:
    """Drop weights of hidden dense layers with probability p (mean-rule inference)."""
    return DropSpec(dense_p=p, sample=sample)
