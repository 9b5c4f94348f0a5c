"""Weight penalties added to the loss: L1, L2 and ElasticNet.

By default only weights of dense and convolution layers are penalised (tensors with 2+
dimensions); biases and normalisation parameters are not, as in most texts. The penalty is
logged as its own loss term (``train/penalty``).

- l1: strength * sum |w|               (gradient strength * sign(w); drives weights to exactly 0)
- l2: strength * sum w^2               (gradient 2 * strength * w; shrinks without sparsity)
- elasticnet: strength * (l1_ratio * sum |w| + (1 - l1_ratio) * sum w^2)   (Zou & Hastie 2005)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from deepwell.registry import Registry

__all__ = ["PENALTIES", "Penalty"]

Strength = Annotated[float, Field(ge=0)]


@dataclass(frozen=True)
class Penalty:
    """``penalty(model) -> Tensor``: a weighted sum of L1 and squared-L2 norms of the chosen tensors."""

    l1: float = 0.0
    l2: float = 0.0
    include_bias: bool = False

    @property
    def active(self) -> bool:
        return self.l1 > 0 or self.l2 > 0

    def parameters(self, model: nn.Module) -> list[torch.Tensor]:
        """The tensors this penalty acts on."""
        chosen = []
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                chosen.append(module.weight)
                if self.include_bias and module.bias is not None:
                    chosen.append(module.bias)
        return chosen

    def __call__(self, model: nn.Module, parameters: list[torch.Tensor] | None = None) -> torch.Tensor:
        tensors = self.parameters(model) if parameters is None else parameters
        total = torch.zeros((), device=tensors[0].device if tensors else None)
        if self.l1 > 0:
            total = total + self.l1 * torch.stack([t.abs().sum() for t in tensors]).sum()
        if self.l2 > 0:
            total = total + self.l2 * torch.stack([t.square().sum() for t in tensors]).sum()
        return total


PENALTIES: Registry[Penalty] = Registry("penalty")


@PENALTIES.register("none")
def none() -> Penalty:
    """No penalty."""
    return Penalty()


@PENALTIES.register("l1", aliases=("lasso",))
def l1(strength: Strength = 1e-4, include_bias: bool = False) -> Penalty:
    """strength * sum |w|: many weights become (near) zero."""
    return Penalty(l1=strength, include_bias=include_bias)


@PENALTIES.register("l2", aliases=("ridge",))
def l2(strength: Strength = 1e-4, include_bias: bool = False) -> Penalty:
    """strength * sum w^2: shrinks every weight, none to exactly zero."""
    return Penalty(l2=strength, include_bias=include_bias)


@PENALTIES.register("elasticnet")
def elasticnet(strength: Strength = 1e-4, l1_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5, include_bias: bool = False) -> Penalty:
    """strength * (l1_ratio * L1 + (1 - l1_ratio) * L2)."""
    return Penalty(l1=strength * l1_ratio, l2=strength * (1 - l1_ratio), include_bias=include_bias)
