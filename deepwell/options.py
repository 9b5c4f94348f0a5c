"""The kinds of option a spec holds: which registry each kind lives in, and the names users call them by.

A spec field made by :func:`_option` holds an :class:`~deepwell.registry.Option` of one registry
kind (``"activation"``, ``"optimizer"``, ...), parsed from a string and written back canonically.
:func:`option_kinds` reads those fields off :class:`~deepwell.config.RunSpec`, so the spec keys
are names of their kinds too (``deepwell options source`` as well as ``deepwell options dataset``).
Kept apart from :mod:`deepwell.config` (the spec's sections and how a spec is loaded), which
re-exports :func:`registry`, :func:`option_kinds` and :func:`resolve_kind`. :func:`rejoin_options` puts
an option's parameters back together in a list typed on the command line.

Example::

    registry(resolve_kind("model.init")).names()  # ['he', 'xavier', ...]
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, InstanceOf, PlainSerializer, WithJsonSchema

from deepwell.registry import Option, Registry

__all__ = ["registry", "option_kinds", "resolve_kind", "rejoin_options"]

# Where each registry lives; imported lazily so config stays at the bottom of the import graph.
_REGISTRIES = {
    "activation": "deepwell.models.activations:ACTIVATIONS",
    "initializer": "deepwell.models.init:INITIALIZERS",
    "normalization": "deepwell.models.layers:NORMALIZATIONS",
    "dropout": "deepwell.models.layers:DROPOUTS",
    "dataset": "deepwell.data.sources:DATASETS",
    "preprocessing": "deepwell.data.preprocess:PREPROCESSORS",
    "optimizer": "deepwell.training.optim:OPTIMIZERS",
    "schedule": "deepwell.training.optim:SCHEDULES",
    "penalty": "deepwell.training.penalties:PENALTIES",
    "augmentation": "deepwell.data.augment:AUGMENTATIONS",
    "tracker": "deepwell.tracking:TRACKERS",
}


def registry(kind: str) -> Registry[Any]:
    """The registry of one kind of option (``"activation"``, ``"optimizer"``, ...)."""
    module, _, attr = _REGISTRIES[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


class _Kind(str):
    """Marks a spec field as holding options of one registry kind (read by :func:`option_kinds`)."""


def option_kinds() -> dict[str, str]:
    """Every name a user may call a kind of option by, mapped to its registry kind.

    The spec keys that hold options are aliases of their registry's kind, in both their short and
    dotted forms (``source`` and ``data.source`` -> ``dataset``, ``init`` -> ``initializer``), so
    ``deepwell options source`` works as well as ``deepwell options dataset``.

    Example::

        option_kinds()["model.init"]  # 'initializer'
    """
    from deepwell.config import RunSpec  # config builds its fields with _option: imported late, no cycle

    names = {kind: kind for kind in _REGISTRIES}
    for section, field in RunSpec.model_fields.items():
        section_model = field.annotation
        if not (isinstance(section_model, type) and issubclass(section_model, BaseModel)):
            continue
        for key, info in section_model.model_fields.items():
            kind = _field_kind(info.annotation, info.metadata)
            if kind is not None:
                names.setdefault(key, kind)  # a short name shared by two kinds would be ambiguous: the first wins
                names[f"{section}.{key}"] = kind
    return names


def _field_kind(annotation: Any, metadata: Sequence[Any]) -> str | None:
    """The registry kind of a spec field made by :func:`_option` (also inside list[...]), else None."""
    for item in [*metadata, *getattr(annotation, "__metadata__", ())]:
        if isinstance(item, _Kind):
            return str(item)
    for argument in getattr(annotation, "__args__", ()):
        kind = _field_kind(argument, ())
        if kind is not None:
            return kind
    return None


def resolve_kind(name: str) -> str:
    """The registry kind a user's name means (a kind, or a spec key that holds options of one).

    Raises:
        ConfigError: an unknown name, with did-you-mean and the known names.
    """
    names = option_kinds()
    if name not in names:
        from deepwell.errors import unknown_name

        raise unknown_name("option kind", name, names)
    return names[name]


def _option(kind: str) -> Any:
    """A spec field holding an Option of ``kind``: accepts a string or mapping, serialises to the canonical string."""
    return Annotated[
        InstanceOf[Option],
        _Kind(kind),
        BeforeValidator(lambda value: registry(kind).parse(value)),
        PlainSerializer(str, return_type=str),
        WithJsonSchema({"type": "string", "description": f"a {kind} option string, e.g. 'name:arg,key=value'"}),
    ]


_PARAMETER = re.compile(r"^[A-Za-z_]\w*=")  # 'experiment=mnist1d': a parameter, never an option of its own


def rejoin_options(value: Any) -> Any:
    """A YAML flow list read from the command line, with option parameters split off by their commas put back.

    YAML splits ``[mlflow:uri=http://h:5000,experiment=x, tensorboard]`` at every comma; an item
    ``key=value`` cannot be an option (option names hold no ``=``), so it is the previous option's
    parameter and rejoins it. Lists of numbers or of whole options are left as they are.

    Example::

        rejoin_options(["mlflow:uri=http://h:5000", "experiment=x", "tensorboard"])
        # ['mlflow:uri=http://h:5000,experiment=x', 'tensorboard']
    """
    if not isinstance(value, list):
        return value
    joined: list[Any] = []
    for item in value:
        if joined and isinstance(item, str) and isinstance(joined[-1], str) and _PARAMETER.match(item):
            joined[-1] = f"{joined[-1]},{item}"
        else:
            joined.append(item)
    return joined
