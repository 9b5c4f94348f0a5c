"""The parts every augmentation shares: the base class, shape checks, composition, the batch augmenter."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from pydantic import Field

from deepwell.errors import ConfigError
from deepwell.training.callbacks import Callback
from deepwell.registry import Option, Registry

__all__ = ["AUGMENTATIONS", "Augmentation", "BatchAugmenter", "Compose", "Fraction", "Params", "Positive", "build_augmentation",
           "register_for"]

Params = dict[str, torch.Tensor]
AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")
# Entries that need encoded inputs, by the input kind they read ("tokens", "audio"); their factories take
# the data's encoding as the keyword ``inputs``. Entries not listed act on plain tensors (images, signals).
_KIND_OF: dict[str, str] = {}
# Which plain-tensor entries suit each input kind: none for token ids (numbers that name words), the
# 1-D signal ones for audio waveforms (shift, amplitude, noise, stretch act on the waveform).
_TENSOR_ENTRIES_FOR = {None: True, "tokens": False, "audio": True}


def register_for(kind: str, name: str):
    """Register an augmentation that reads encoded inputs of ``kind`` (``tokens`` or ``audio``)."""
    def decorator(factory):
        AUGMENTATIONS.register(name)(factory)
        _KIND_OF[name] = kind
        return factory
    return decorator


def _entries_for(kind: str | None) -> list[str]:
    return [name for name in AUGMENTATIONS.names()
            if _KIND_OF.get(name) == kind or (name not in _KIND_OF and _TENSOR_ENTRIES_FOR[kind])]


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


Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class BatchAugmenter(Callback):
    """``fit``'s ``batch_transform``: ``(x, y) -> (augmented x, y)`` with draws from its own seeded generator.

    Also a ``fit`` callback whose state is that generator's: passed in ``callbacks`` too (as
    ``deepwell.train`` does), it is saved in every checkpoint, so a resumed run draws the same
    augmentations the uninterrupted run would have.
    """

    def __init__(self, augmentation: Augmentation, options: Sequence[Option], seed: int = 0) -> None:
        self.augmentation, self.options = augmentation, list(options)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.augmentation(x, self.generator), y

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"BatchAugmenter([{', '.join(str(o) for o in self.options)}])"


def build_augmentation(options: Sequence[str | Option], input_shape: Sequence[int], seed: int = 0,
                       inputs: Any = None) -> BatchAugmenter:
    """Build a ``batch_transform`` for ``fit`` from option strings, applied in the order given.

    Args:
        options: e.g. ``["rotate:15", "crop:0.7"]`` (see ``AUGMENTATIONS.names()``).
        input_shape: one example's shape after preprocessing, (C, H, W) or (C, L) / (L,).
        seed: seeds the augmenter's own generator (independent of the training loop's).
        inputs: the data's encoding for token ids (a ``TextEncoding``: text augmentations need its
            vocabulary) or waveforms (an ``AudioEncoding``: its sample rate); None for plain tensors.

    Raises:
        ConfigError: unknown name (with did-you-mean), bad parameter, or an augmentation that
            does not fit the data (image ops on signals, saturation on grey images, text ops on numbers, ...).
    """
    kind = getattr(inputs, "kind", None)
    parsed = [AUGMENTATIONS.parse(option) for option in options]
    built = []
    for option in parsed:
        wanted = _KIND_OF.get(option.name)
        if wanted != kind and (wanted is not None or not _TENSOR_ENTRIES_FOR[kind]):
            data = {None: "plain numbers", "tokens": "token ids (text)", "audio": "audio waveforms"}[kind]
            needs = {None: "images and signals", "tokens": "text (source csv_text)", "audio": "audio (source wav)"}[wanted]
            raise ConfigError(f"Augmentation '{option}' is for {needs}; this data is {data}. "
                              f"Augmentations for it: {', '.join(_entries_for(kind))}.")
        context: dict[str, Any] = {"input_shape": tuple(input_shape)}
        if wanted is not None:
            context["inputs"] = inputs
        built.append(AUGMENTATIONS.build(option, **context))
    return BatchAugmenter(built[0] if len(built) == 1 else Compose(built), parsed, seed)
