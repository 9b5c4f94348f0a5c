"""The network family: MLPs and 1-D/2-D CNNs built from one kind of block (and a bag of embeddings for text).

A block is ``transform -> norm -> activation -> dropout`` (or ``activation -> norm`` with
``norm_position="after"``), optionally wrapped in a skip connection ``x + block(x)`` when its
input and output shapes agree. An MLP is blocks of dense transforms; a CNN is blocks of
same-padding convolutions with 2x max-pooling between groups, then global average pooling
(or flattening), optional dense blocks, and a linear head.

Example::

    model = build_model(ModelSpec(arch="mlp", depth=3, width=64), input_shape=(40,), num_outputs=10)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepwell.config import ModelSpec
from deepwell.errors import ConfigError
from deepwell.models.activations import ACTIVATIONS, activation_gain
from deepwell.models.frontends import build_frontend, frontend_arch
from deepwell.models.init import INITIALIZERS
from deepwell.models.layers import DROPOUTS, NORMALIZATIONS, DropSpec

__all__ = ["Block", "Network", "build_model", "init_weights_", "resolve_arch"]

# Architectures whose hidden layers are dense blocks (depth x width) on a flat vector.
_DENSE_ARCHS = ("mlp", "embedding_bag")


class Block(nn.Module):
    """One hidden layer: transform, normalisation, activation, dropout; optional skip connection."""

    def __init__(self, transform: nn.Module, norm: nn.Module | None, activation: nn.Module,
                 dropout: nn.Module | None, norm_position: str = "before", residual: bool = False) -> None:
        super().__init__()
        self.transform = transform
        self.norm = norm if norm is not None else nn.Identity()
        self.activation = activation
        self.dropout = dropout if dropout is not None else nn.Identity()
        self.norm_first = norm_position == "before"
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.transform(x)
        h = self.activation(_call(self.norm, h)) if self.norm_first else _call(self.norm, self.activation(h))
        h = _call(self.dropout, h)
        return x + h if self.residual else h


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, skipping the call when the module passes its input through (``nn.Identity``, an empty
    ``nn.Sequential``): a module call costs a few microseconds, ~3% of a small MLP's training step."""
    if type(module) is nn.Identity or (type(module) is nn.Sequential and not len(module)):
        return x
    return module(x)


class Network(nn.Module):
    """input reshape (after a front-end for token ids / audio) -> blocks (and pools) -> global pool / flatten -> dense blocks -> head."""

    def __init__(self, reshape: nn.Module, features: nn.Sequential, pool: nn.Module,
                 dense: nn.Sequential, head: nn.Linear, input_shape: Sequence[int]) -> None:
        super().__init__()
        self.reshape = reshape
        self.features = features
        self.pool = pool
        self.dense = dense
        self.head = head
        self.input_shape = tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reshape(x)       # (B, *input_shape) -> [front-end] -> (B, C, L) / (B, C, H, W) / (B, F)
        x = _call(self.features, x)  # conv blocks: (B, C', L') ; MLP: empty
        x = self.pool(x)          # (B, F)
        x = self.dense(x)         # (B, hidden)
        return self.head(x)       # (B, num_outputs)

    def hidden_blocks(self) -> list[tuple[str, Block]]:
        """Every hidden Block with its qualified name, input to output."""
        return [(name, module) for name, module in self.named_modules() if isinstance(module, Block)]


def resolve_arch(arch: str, input_shape: Sequence[int], inputs: Mapping[str, Any] | None = None) -> str:
    """``auto`` -> cnn1d for (C, L) signals, cnn2d for (C, H, W) images, mlp for flat features;
    embedding_bag for token ids and cnn1d for audio (``inputs``: the data encoding's ``describe()``).

    Raises:
        ConfigError: an architecture that cannot read encoded inputs (see :func:`frontend_arch`).
    """
    arch = frontend_arch(arch, inputs)
    if arch != "auto":
        return arch
    return {2: "cnn1d", 3: "cnn2d"}.get(len(input_shape), "mlp")


@dataclass(frozen=True)
class _Parts:
    """What every block of one network shares, resolved once from the spec."""

    spec: ModelSpec
    drop: DropSpec

    def block(self, transform: nn.Module, features: int, dims: int, residual: bool) -> Block:
        norm = NORMALIZATIONS.build(self.spec.norm, num_features=features, dims=dims)
        return Block(transform, norm, ACTIVATIONS.build(self.spec.activation), self.drop.dropout_module(),
                     self.spec.norm_position, residual)

    def bias(self) -> bool:
        # A bias right before batchnorm is cancelled by its mean subtraction.
        return not (self.spec.norm.name == "batchnorm" and self.spec.norm_position == "before")


def build_model(spec: ModelSpec, input_shape: Sequence[int], num_outputs: int,
                generator: torch.Generator | None = None, inputs: Mapping[str, Any] | None = None) -> Network:
    """Build and initialise the network that ``spec`` describes for inputs of ``input_shape``.

    Args:
        spec: the model section of a RunSpec.
        input_shape: one example's shape, e.g. (1, 40) or (1, 8, 8) or (30,).
        num_outputs: classes (classification) or targets (regression).
        generator: RNG for the initial weights (default: torch's global RNG).
        inputs: the data encoding's ``describe()`` for token ids or audio: the network then starts with
            a front-end (embeddings, log-mel features; :mod:`deepwell.models.frontends`).

    Raises:
        ConfigError: the architecture cannot take this input shape.
    """
    input_shape = tuple(int(s) for s in input_shape)
    spec = spec.model_copy(update={"arch": resolve_arch(spec.arch, input_shape, inputs)})
    parts = _Parts(spec, DROPOUTS.build(spec.dropout))
    frontend, feature_shape = build_frontend(inputs, spec.arch, spec.embedding_dim, generator)
    shape = feature_shape or input_shape  # what the layers after the front-end see
    if spec.arch in _DENSE_ARCHS:
        reshape, features, shape = nn.Flatten(), nn.Sequential(), (math.prod(shape),)
    else:
        reshape, features, shape = _conv_features(spec, parts, shape)
    if frontend is not None:
        reshape = nn.Sequential(frontend, reshape)
    if spec.arch not in _DENSE_ARCHS and spec.global_pool:
        spatial_dims = len(shape) - 1
        pool = nn.Sequential(nn.AdaptiveAvgPool1d(1) if spatial_dims == 1 else nn.AdaptiveAvgPool2d(1), nn.Flatten())
        width = shape[0]
    else:
        pool, width = nn.Flatten(), math.prod(shape)
    hidden = spec.hidden if spec.hidden is not None else ([spec.width] * spec.depth if spec.arch in _DENSE_ARCHS else [])
    dense = nn.Sequential()
    for units in hidden:
        dense.append(parts.block(parts.drop.linear(width, units, parts.bias()), units, 0, spec.residual and units == width))
        width = units
    if parts.drop.dense_p > 0 and not hidden:  # DropConnect acts on hidden dense layers only: never silently drop nothing
        raise ConfigError(
            f"model.dropout='{spec.dropout}' drops weights of hidden dense layers, and this {spec.arch} has none. "
            f"Add some with model.hidden=[128] (or model.depth for an MLP), or use dropout:P to drop units instead."
        )
    head_input = parts.drop.dropout_module() if spec.arch not in _DENSE_ARCHS and not hidden else None
    head = nn.Linear(width, num_outputs)
    model = Network(reshape, features, pool, dense, head, input_shape)
    if head_input is not None:  # CNN without dense blocks: dropout on the pooled features
        model.pool.append(head_input)
    model.init_gains = init_weights_(model, spec, generator)  # recorded in the run's meta.json
    return model


def _conv_features(spec: ModelSpec, parts: _Parts, input_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Sequential, tuple[int, ...]]:
    dims = 1 if spec.arch == "cnn1d" else 2
    data_shape = input_shape
    if len(input_shape) == dims:  # no channel axis: add one
        reshape: nn.Module = nn.Unflatten(1, (1, *input_shape))
        input_shape = (1, *input_shape)
    elif len(input_shape) == dims + 1:
        reshape = nn.Identity()
    else:
        expected = "(C, L) or (L,)" if dims == 1 else "(C, H, W) or (H, W)"
        raise ConfigError(
            f"model.arch={spec.arch} needs inputs shaped {expected}; the data has examples of shape {input_shape}. "
            f"Use arch=mlp for this data{', or cnn1d' if dims == 2 else ', or cnn2d for images'}."
        )
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
    if spec.kernel_size % 2 == 0:
        raise ConfigError(f"model.kernel_size must be odd so convolutions keep the length; got {spec.kernel_size}.")
    channels, spatial = input_shape[0], list(input_shape[1:])
    features = nn.Sequential()
    for entry in spec.channels:
        if entry == "pool":
            if min(spatial) < 2:
                raise ConfigError(_pool_error(spec, data_shape, input_shape))
            features.append(pool(2))
            spatial = [s // 2 for s in spatial]
            continue
        transform = conv(channels, entry, spec.kernel_size, padding=spec.kernel_size // 2, bias=parts.bias())
        features.append(parts.block(transform, entry, dims, spec.residual and entry == channels))
        channels = entry
    return reshape, features, (channels, *spatial)


@torch.no_grad()
def init_weights_(model: Network, spec: ModelSpec, generator: torch.Generator | None = None) -> dict[str, float]:
    """Initialise every dense/conv weight and bias of ``model`` in place; return the gains used.

    Hidden layers take the gain of ``spec.activation``; the head is linear (gain 1).
    """
    weight_init = INITIALIZERS.build(spec.init)
    bias_init = INITIALIZERS.build(spec.bias_init)
    if bias_init.needs_fans:
        raise ConfigError(f"model.bias_init='{spec.bias_init}' needs a weight matrix; use zeros, constant, normal or uniform.")
    hidden_gain = activation_gain(spec.activation)
    gains = {}
    layers = [(name, block.transform, hidden_gain) for name, block in model.hidden_blocks()]
    layers.append(("head", model.head, 1.0))
    torch_default = "torch_default" in (weight_init.name, bias_init.name)
    for name, layer, gain in layers:
        if torch_default and generator is not None:
            # torch's own default (kaiming_uniform a=sqrt(5), bias U(+-1/sqrt(fan_in))), drawn from the run's generator
            # rather than the global RNG, so a seed gives the same network in any process.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
                layer.reset_parameters()
        weight_init(layer.weight, gain, generator)
        if layer.bias is not None:
            bias_init(layer.bias, gain, generator)
        # Record the gain the weights were drawn with: an explicit one (he:gain=0.5, lecun's 1) wins.
        gains[name] = gain if weight_init.uses_gain else (weight_init.fixed_gain or 1.0)
    return gains


def _pool_error(spec: ModelSpec, data_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> str:
    """Why a 'pool' entry cannot halve the input any more, and what would work (cnn1d for signals read as images)."""
    pools = spec.channels.count("pool")
    message = (f"model.channels has {pools} 'pool' entries, each halving every spatial size, but model.arch={spec.arch} "
               f"reads the examples of shape {data_shape} as {input_shape}, which leaves a size below 2.")
    if spec.arch == "cnn2d" and len(data_shape) == 2:
        return message + (f" Examples of shape {data_shape} look like 1-D signals (channels, length): use model.arch=cnn1d "
                          "(or auto), or give images shaped (C, H, W).")
    return message + " Remove 'pool' entries from model.channels, or give longer inputs."
