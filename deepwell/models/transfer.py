"""Transfer learning: a pretrained backbone, a new linear head, a freeze policy, and BatchNorm kept honest.

A backbone comes from one of (never from the network: nothing here downloads):

- ``run:PATH``: a deepwell run folder; its trained Network without the head.
- ``PATH.safetensors`` / ``PATH.pt``: weights of a deepwell Network, with the run's config.yaml and
  meta.json beside the file (the architecture is read from them).
- ``torchvision:NAME[,weights=FILE]`` (or just ``NAME``): a torchvision zoo model
  (``resnet18``, ``mobilenet_v3_small``, ...) with its classifier removed. Its weights are read from
  FILE, else from torch's hub cache (``torch.hub.get_dir()/checkpoints/<file of the DEFAULT weights>``).

Freeze policies (``ModelSpec.freeze``): ``none``; ``head_only`` (everything but the new head is
frozen); ``first:N`` (the first N blocks of the backbone: hidden blocks of a deepwell Network, the
top-level children of a zoo model); ``pattern:REGEX`` (parameters whose name matches, e.g.
``pattern:^backbone\\.layer[12]\\.``).

Gradual unfreezing (``ModelSpec.unfreeze="every:E"``, ULMFiT's schedule): every E epochs the
frozen block nearest the head is unfrozen (``deepwell.training.callbacks.GradualUnfreezing``). Frozen
parameters are in the optimiser from the start (without gradients, torch's optimisers skip them),
so unfreezing changes no optimiser state, and the schedule follows from the epoch alone: a
resumed run unfreezes exactly what the uninterrupted one had.

BatchNorm in a frozen part (``bn_policy="frozen"``, the default) stays in eval mode even under
``model.train()``: it normalises with the pretrained running statistics and never updates them,
so a frozen part computes exactly the function it was trained to compute. ``bn_policy="train"``
lets those layers use batch statistics and update their running averages (affine weights stay frozen).

Example::

    spec = ModelSpec(backbone="run:runs/mnist1d-digits-0-4", freeze="head_only")
    model = build_network(spec, input_shape=(1, 40), num_outputs=5)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepwell.config import ModelSpec
from deepwell.errors import CheckpointError, ConfigError
from deepwell.models.init import INITIALIZERS
from deepwell.models.network import build_model

__all__ = ["TransferModel", "build_network", "build_transfer_model", "load_backbone", "parse_freeze",
           "parse_unfreeze"]

_NORMS = (nn.modules.batchnorm._BatchNorm,)


class _RepeatChannels(nn.Module):
    """Grey images (B, 1, H, W) -> (B, 3, H, W) for zoo models trained on RGB."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, *x.shape[2:])


def _keep_eval(module: nn.Module, args: Any) -> None:
    # Forward pre-hook on a frozen BatchNorm: whatever model.train() set, use the running statistics.
    module.training = False


class TransferModel(nn.Module):
    """reshape -> backbone -> head, with some backbone parameters frozen (in place: pass a copy to keep the original).

    Args:
        backbone: maps (B, *input) to (B, F) features.
        head: the new layer, F -> outputs; always trained.
        units: the backbone's blocks in order, as (name within backbone, module), for ``first:N``.
        reshape: applied before the backbone (e.g. repeating a grey channel); default identity.
        freeze: ``none``, ``head_only``, ``first:N`` or ``pattern:REGEX`` (see the module docstring).
        bn_policy: ``frozen`` (frozen BatchNorm stays in eval mode) or ``train``.
        lr_mult_backbone: the backbone's learning rate is ``lr * lr_mult_backbone`` (the head's is ``lr``).

    Raises:
        ConfigError: an unknown freeze policy or bn_policy, N beyond the number of blocks, a bad regex.
    """

    def __init__(self, backbone: nn.Module, head: nn.Linear, units: Sequence[tuple[str, nn.Module]],
                 reshape: nn.Module | None = None, freeze: str = "none", bn_policy: str = "frozen",
                 lr_mult_backbone: float = 1.0) -> None:
        super().__init__()
        if bn_policy not in ("frozen", "train"):
            raise ConfigError(f"model.bn_policy must be 'frozen' or 'train'; got {bn_policy!r}.")
        if not lr_mult_backbone >= 0:
            raise ConfigError(f"model.lr_mult_backbone must be >= 0; got {lr_mult_backbone}.")
        self.reshape = reshape if reshape is not None else nn.Identity()
        self.backbone = backbone
        self.head = head
        self.lr_mult_backbone = float(lr_mult_backbone)
        self.init_gains = {"head": 1.0}
        frozen_modules = _frozen_modules(backbone, list(units), freeze)
        for module in frozen_modules:
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
        self.frozen_norms = [name for name, m in backbone.named_modules() if m in frozen_modules and isinstance(m, _NORMS)]
        self._eval_hooks = {}
        if bn_policy == "frozen":
            for module in backbone.modules():
                if module in frozen_modules and isinstance(module, _NORMS):
                    self._eval_hooks[module] = module.register_forward_pre_hook(_keep_eval)
        # For gradual unfreezing: the blocks holding frozen parameters, input side first (unfrozen from the end).
        self.frozen_units = [(name, unit) for name, unit in units if any(m in frozen_modules for m in unit.modules())]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.reshape(x)))  # (B, *input) -> (B, F) -> (B, outputs)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: the backbone at ``lr * lr_mult_backbone``, the head at ``lr``.

        Frozen backbone parameters are in the group too: they never get a gradient, and torch's
        optimisers skip a parameter without one (no update, no weight decay, no state), so they
        stay bit-identical -- and gradual unfreezing needs no new optimiser.
        """
        backbone = list(self.backbone.parameters())
        groups = [{"params": backbone, "lr": lr * self.lr_mult_backbone, "name": "backbone"}] if backbone else []
        return groups + [{"params": list(self.head.parameters()), "lr": lr, "name": "head"}]

    def unfreeze_next(self) -> str | None:
        """Unfreeze the frozen block nearest the head (its parameters, and its BatchNorm back to batch statistics).

        Returns:
            the block's name, or None when nothing is frozen any more.
        """
        if not self.frozen_units:
            return None
        name, unit = self.frozen_units.pop()
        for module in unit.modules():
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(True)
            hook = self._eval_hooks.pop(module, None)
            if hook is not None:
                hook.remove()
        unit_norms = {m for m in unit.modules() if isinstance(m, _NORMS)}
        self.frozen_norms = [n for n, m in self.backbone.named_modules() if n in self.frozen_norms and m not in unit_norms]
        return name

    def parameter_summary(self) -> dict[str, dict[str, int]]:
        """Trainable and frozen parameter counts per top-level layer (``backbone.<child>``, ``head``)."""
        summary: dict[str, dict[str, int]] = {}
        for name, parameter in self.named_parameters():
            parts = name.split(".")
            layer = ".".join(parts[:2]) if parts[0] == "backbone" and len(parts) > 2 else parts[0]
            counts = summary.setdefault(layer, {"trainable": 0, "frozen": 0})
            counts["trainable" if parameter.requires_grad else "frozen"] += parameter.numel()
        return summary


def parse_unfreeze(unfreeze: str) -> int | None:
    """``"every:3"`` -> 3, ``"none"`` -> None; raises ConfigError naming the valid schedules."""
    kind, _, arg = unfreeze.partition(":")
    if kind == "none" and not arg:
        return None
    if kind == "every" and arg.isdigit() and int(arg) > 0:
        return int(arg)
    raise ConfigError(f"Unknown model.unfreeze {unfreeze!r}. Known: none, every:E (one more frozen block every E epochs, "
                      "e.g. every:2).")


def parse_freeze(freeze: str) -> tuple[str, str | int | None]:
    """``"first:3"`` -> ``("first", 3)``; raises ConfigError naming the valid policies."""
    kind, _, arg = freeze.partition(":")
    if kind in ("none", "head_only") and not arg:
        return kind, None
    if kind == "first" and arg.isdigit():
        return kind, int(arg)
    if kind == "pattern" and arg:
        try:
            re.compile(arg)
        except re.error as error:
            raise ConfigError(f"model.freeze={freeze!r}: the regex does not compile ({error}).") from None
        return kind, arg
    raise ConfigError(f"Unknown model.freeze {freeze!r}. Known: none, head_only, first:N (e.g. first:2), pattern:REGEX.")


def _frozen_modules(backbone: nn.Module, units: list[tuple[str, nn.Module]], freeze: str) -> set[nn.Module]:
    """The backbone modules whose own parameters (and, for BatchNorm, statistics) are frozen."""
    kind, arg = parse_freeze(freeze)
    if kind == "none":
        return set()
    if kind == "head_only":
        return set(backbone.modules())
    if kind == "first":
        if arg > len(units):
            names = ", ".join(name for name, _ in units)
            raise ConfigError(f"model.freeze=first:{arg}, but the backbone has {len(units)} blocks ({names}). "
                              f"Use at most first:{len(units)}.")
        return {m for _, unit in units[:arg] for m in unit.modules()}
    pattern = re.compile(arg)
    frozen = set()
    for name, module in backbone.named_modules():
        own = [f"backbone.{name}.{p}" if name else f"backbone.{p}" for p, _ in module.named_parameters(recurse=False)]
        if own and all(pattern.search(p) for p in own):
            frozen.add(module)
    if not frozen:
        raise ConfigError(f"model.freeze={freeze!r} matches no backbone parameter. Names look like "
                          f"'{next((n for n, _ in backbone.named_parameters()), '')}' (prefixed 'backbone.').")
    return frozen


def load_backbone(source: str, input_shape: Sequence[int], pretrained: bool = True
                  ) -> tuple[nn.Module, list[tuple[str, nn.Module]], nn.Module | None]:
    """Load a backbone (no head) from ``source``; see the module docstring for the forms.

    Args:
        source: ``run:PATH``, a ``.safetensors``/``.pt`` file of a run, or ``torchvision:NAME[,weights=FILE]``.
        input_shape: one example's shape (after preprocessing).
        pretrained: False builds the architecture only (weights come later, e.g. from a run's model.safetensors).

    Returns:
        (backbone, its blocks in order, a reshape module to apply first or None).

    Raises:
        ConfigError: unknown zoo name, missing weights file (naming where to put it), mismatched shapes.
    """
    if source.startswith("run:"):
        return _deepwell_backbone(Path(source[4:]), None, input_shape, pretrained)
    path = Path(source)
    if path.suffix in (".safetensors", ".pt", ".pth") and not source.startswith("torchvision:"):
        return _deepwell_backbone(path.parent, path, input_shape, pretrained)
    return _torchvision_backbone(source.removeprefix("torchvision:"), input_shape, pretrained)


def _deepwell_backbone(folder: Path, weights: Path | None, input_shape: Sequence[int], pretrained: bool):
    from deepwell.run import Run  # run imports this module

    if not (folder / "config.yaml").is_file() or not (folder / "meta.json").is_file():
        raise ConfigError(f"Backbone folder '{folder}' has no config.yaml and meta.json, so its architecture is unknown. "
                          "Give a run folder as run:PATH, or keep the weights file inside its run folder.")
    run = Run(folder)
    if tuple(run.meta["input_shape"]) != tuple(input_shape):
        raise ConfigError(f"Backbone '{folder}' was trained on inputs of shape {tuple(run.meta['input_shape'])}; "
                          f"this data has {tuple(input_shape)}. Use data of the same shape (same preprocessing).")
    if not pretrained:
        network = build_model(run.spec.model, run.meta["input_shape"], run.meta["output_size"])
    elif weights is None or weights.name == "model.safetensors":
        network = run.model
    else:
        network = build_model(run.spec.model, run.meta["input_shape"], run.meta["output_size"])
        network.load_state_dict(_read_state(weights))
    network.head = nn.Identity()  # the backbone ends with the last dense block (or the pooled features)
    return network, network.hidden_blocks(), None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from deepwell.training.checkpoint import load_tensors

        tensors, _ = load_tensors(path)
    else:
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ConfigError(f"Backbone weights '{path}' not found.") from None
        except Exception as error:  # torch raises several types for a bad or unsafe file
            raise CheckpointError(f"'{path}' is not a weights-only torch state dict ({error}).") from None
    if not isinstance(tensors, dict):
        raise CheckpointError(f"'{path}' holds a {type(tensors).__name__}, not a state dict of tensors.")
    prefixed = any(k.startswith("model.") for k in tensors)
    return {k.removeprefix("model."): v for k, v in tensors.items() if not prefixed or k.startswith("model.")}


def _torchvision_backbone(option: str, input_shape: Sequence[int], pretrained: bool):
    import torchvision

    name, _, rest = option.partition(",")
    params = dict(item.split("=", 1) for item in rest.split(",") if "=" in item)
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        from deepwell.errors import did_you_mean

        raise ConfigError(f"Unknown backbone {option!r}.{did_you_mean(name, known)} Give run:PATH, a run's .safetensors "
                          f"file, or a torchvision classification model: {', '.join(sorted(known)[:12])}, ...")
    model = torchvision.models.get_model(name, weights=None)  # weights=None: never download
    if pretrained:
        model.load_state_dict(_read_state(_zoo_weights_file(name, params.get("weights"))))
    for attribute in ("fc", "classifier", "heads", "head"):  # the classifier's name differs per family
        if isinstance(getattr(model, attribute, None), nn.Module):
            setattr(model, attribute, nn.Identity())
            break
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ConfigError(f"Backbone {name} takes images (C, H, W); the data has examples of shape {input_shape}.")
    reshape = _RepeatChannels() if input_shape[0] == 1 else None
    if input_shape[0] not in (1, 3):
        raise ConfigError(f"Backbone {name} takes 3-channel (or grey) images; the data has {input_shape[0]} channels.")
    units = [(child, module) for child, module in model.named_children() if any(True for _ in module.parameters())]
    return model, units, reshape


def _zoo_weights_file(name: str, weights: str | None) -> Path:
    import torchvision

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"Backbone weights file '{path}' not found. Give weights=PATH of a local torchvision .pth file.")
        return path
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise ConfigError(f"Pretrained weights for {name} are not on this machine, and deepwell never downloads. "
                          f"Put {path.name} in {folder}/ or give weights=PATH (torchvision:{name},weights=PATH).")
    return path


def build_transfer_model(spec: ModelSpec, input_shape: Sequence[int], num_outputs: int,
                         generator: torch.Generator | None = None, pretrained: bool = True) -> TransferModel:
    """The backbone ``spec.backbone`` names plus a new linear head for ``num_outputs``, frozen as the spec says."""
    backbone, units, reshape = load_backbone(spec.backbone, input_shape, pretrained)
    backbone.eval()
    with torch.no_grad():  # the feature width, measured rather than guessed per architecture
        probe = torch.zeros(2, *input_shape)
        features = backbone(reshape(probe) if reshape is not None else probe)
    head = nn.Linear(math.prod(features.shape[1:]), num_outputs)
    with torch.no_grad():
        INITIALIZERS.build(spec.init)(head.weight, 1.0, generator)  # a linear head: gain 1
        INITIALIZERS.build(spec.bias_init)(head.bias, 1.0, generator)
    backbone.train()
    parse_unfreeze(spec.unfreeze)  # a bad schedule fails when the model is built, not epochs later
    return TransferModel(backbone, head, units, reshape, spec.freeze, spec.bn_policy, spec.lr_mult_backbone)


def build_network(spec: ModelSpec, input_shape: Sequence[int], num_outputs: int,
                  generator: torch.Generator | None = None, pretrained: bool = True,
                  inputs: Mapping[str, Any] | None = None) -> nn.Module:
    """:func:`build_model`, or :func:`build_transfer_model` when ``spec.backbone`` is set.

    Args:
        inputs: the data encoding's ``describe()`` for token ids or audio (see :func:`build_model`).

    Raises:
        ConfigError: a backbone for token or audio inputs (not supported yet).
    """
    if spec.backbone is None:
        return build_model(spec, input_shape, num_outputs, generator, inputs)
    if inputs:
        raise ConfigError(f"model.backbone is not supported yet for {inputs.get('kind')} inputs (the front-end and vocabulary "
                          "would have to match the backbone's run); remove model.backbone.")
    return build_transfer_model(spec, input_shape, num_outputs, generator, pretrained)
