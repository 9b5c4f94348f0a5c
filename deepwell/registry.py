"""Registries of named, parameterised options, and the option strings that name them.

An option string such as ``leaky_relu:0.1``, ``he:mode=fan_out`` or
``elasticnet:1e-4,l1_ratio=0.5`` is parsed once, at the config/CLI boundary, into an
:class:`Option`: the entry's name plus typed, validated parameters. A registry entry is a
typed factory; its signature is the schema (annotations, defaults and ``Annotated`` pydantic
constraints such as ``Field(ge=0, lt=1)``). ``str(option)`` is canonical and round-trips::

    >>> from deepwell.models.activations import ACTIVATIONS
    >>> opt = ACTIVATIONS.parse("leaky_relu:0.2")
    >>> str(opt), opt.params
    ('leaky_relu:0.2', {'negative_slope': 0.2})
    >>> ACTIVATIONS.build(opt)
    LeakyReLU(negative_slope=0.2)
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pydantic

from deepwell.errors import ConfigError, DeepwellError, did_you_mean, unknown_name

__all__ = ["Option", "Registry"]

T = TypeVar("T")

_FINITE = pydantic.ConfigDict(allow_inf_nan=False)


def _article(noun: str) -> str:
    """'an activation', 'a dropout': the noun with its indefinite article, for messages."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest exact repr: round-trips through float()
    if isinstance(value, (list, tuple)):
        return "[" + ";".join(_format_value(v) for v in value) + "]"
    return str(value)


def _split_args(text: str) -> list[str]:
    """Split 'a,b=[1;2],c' on commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _parse_raw(raw: str) -> Any:
    """Turn '[1;2]' into ['1', '2']; other text is left for pydantic to coerce."""
    if raw.startswith("[") and raw.endswith("]"):
        inner = raw[1:-1].strip()
        return [v.strip() for v in inner.split(";")] if inner else []
    return raw


@dataclass(frozen=True)
class Option:
    """A registry entry chosen by name, with its validated non-default parameters.

    Args:
        kind: what the registry holds (``"activation"``), used in messages.
        name: the entry's canonical name.
        params: parameters that differ from the entry's defaults, in signature order.
        first: name of the entry's first parameter (written positionally in ``str()``).
    """

    kind: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    first: str | None = None

    def __str__(self) -> str:
        if not self.params:
            return self.name
        parts = []
        for key, value in self.params.items():
            text = _format_value(value)
            parts.append(text if key == self.first and not parts else f"{key}={text}")
        return f"{self.name}:{','.join(parts)}"

    def __hash__(self) -> int:
        return hash(str(self))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Option) and (self.kind, str(self)) == (other.kind, str(other))


@dataclass(frozen=True)
class _Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    signature: inspect.Signature
    adapters: dict[str, pydantic.TypeAdapter]
    doc: str


class Registry(Generic[T]):
    """Named factories of one kind (activations, initialisers, optimisers, ...).

    Args:
        kind: singular noun used in error messages, e.g. ``"activation"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, _Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register ``factory`` under ``name``; its keyword parameters are the schema."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            # Keyword-only parameters are context supplied by the caller of build(), not schema.
            full = inspect.signature(factory)
            signature = full.replace(
                parameters=[p for p in full.parameters.values() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
            )
            hints = _resolved_hints(factory)
            # Option values must be finite: 'normal:std=inf' would fill a weight with inf.
            adapters = {p: pydantic.TypeAdapter(hints.get(p, Any), config=_FINITE) for p in signature.parameters}
            doc = " ".join((inspect.getdoc(factory) or "").split("\n\n")[0].split())  # the summary paragraph, one line
            self._entries[name] = _Entry(name, factory, signature, adapters, doc)
            for alias in aliases:
                self._aliases[alias] = name
            return factory

        return decorator

    def names(self) -> list[str]:
        """Canonical names of every entry, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def describe(self, name: str) -> str:
        """One line: the entry's name, its parameters with defaults, and its summary."""
        entry = self._entry(name)
        params = ", ".join(
            f"{p.name}={p.default!r}" if p.default is not p.empty else p.name for p in entry.signature.parameters.values()
        )
        return f"{name}({params}): {entry.doc}"

    def spelled_out(self, option: Option | str) -> str:
        """The option with every parameter written out, defaults included (None-valued ones left out).

        The canonical ``str(option)`` omits defaults (``l2`` for ``l2:strength=0.0001``); a report reader
        should not need to know them. The result parses back to the same option.

        Example::

            PENALTIES.spelled_out("l2")            # 'l2:strength=0.0001,include_bias=false'
            DROPOUTS.spelled_out("dropout:0.3")    # 'dropout:p=0.3,mode=inverted'
        """
        option = self.parse(option)
        entry = self._entry(option.name)
        values = {p.name: option.params.get(p.name, p.default) for p in entry.signature.parameters.values()}
        shown = {k: v for k, v in values.items() if v is not inspect.Parameter.empty and v is not None}
        return str(Option(option.kind, option.name, shown, None))  # every parameter named: 'adamw:beta1=0.9,...' 

    def _entry(self, name: str) -> _Entry[T]:
        canonical = self._aliases.get(name, name)
        if canonical not in self._entries:
            raise unknown_name(self.kind, name, self.names())
        return self._entries[canonical]

    def parse(self, value: str | Option | Mapping[str, Any]) -> Option:
        """Parse ``"name:arg,key=value"`` (or a mapping ``{name: ..., key: value}``) into an Option.

        Raises:
            ConfigError: unknown name (with did-you-mean), unknown or invalid parameter.
        """
        if isinstance(value, Option):
            if value.kind != self.kind:
                raise ConfigError(f"Expected {_article(self.kind)} option, got {_article(value.kind)} option '{value}'.")
            return value
        if isinstance(value, Mapping):
            raw = dict(value)
            if "name" not in raw:
                raise ConfigError(
                    f"{_article(self.kind).capitalize()} given as a mapping needs a 'name' key; got keys {sorted(raw)}."
                )
            name, positional, keywords = str(raw.pop("name")), [], raw
        elif isinstance(value, str):
            name, _, rest = value.strip().partition(":")
            positional, keywords = [], {}
            for part in _split_args(rest) if rest.strip() else []:
                key, eq, raw_value = part.partition("=")
                if eq:
                    keywords[key.strip()] = _parse_raw(raw_value.strip())
                elif keywords:
                    raise ConfigError(f"In {self.kind} '{value}': positional value '{part}' after a key=value one.")
                else:
                    positional.append(_parse_raw(part))
        else:
            raise ConfigError(
                f"{_article(self.kind).capitalize()} must be a string like 'name:arg,key=value'; "
                f"got {type(value).__name__} {value!r}."
            )
        entry = self._entry(name.strip())
        return self._bind(entry, positional, keywords, str(value))

    def _bind(self, entry: _Entry[T], positional: list[Any], keywords: dict[str, Any], text: str) -> Option:
        names = list(entry.signature.parameters)
        if len(positional) > len(names):
            raise ConfigError(
                f"{self.kind.capitalize()} '{entry.name}' takes at most {len(names)} parameter(s) "
                f"({', '.join(names) or 'none'}); got {len(positional)} in '{text}'."
            )
        given = dict(zip(names, positional))
        for key, raw in keywords.items():
            if key not in entry.signature.parameters:
                raise ConfigError(
                    f"Unknown parameter '{key}' for {self.kind} '{entry.name}'.{did_you_mean(key, names)} "
                    f"Known: {', '.join(names) or 'none'}."
                )
            if key in given:
                raise ConfigError(f"Parameter '{key}' of {self.kind} '{entry.name}' given twice in '{text}'.")
            given[key] = raw
        params = {}
        for key in names:
            parameter = entry.signature.parameters[key]
            if key not in given:
                if parameter.default is parameter.empty:
                    raise ConfigError(
                        f"{self.kind.capitalize()} '{entry.name}' needs parameter '{key}', e.g. '{entry.name}:{key}=...'."
                    )
                continue
            try:
                validated = entry.adapters[key].validate_python(given[key])
            except pydantic.ValidationError as error:
                reason = "; ".join(e["msg"] for e in error.errors())
                raise ConfigError(
                    f"Invalid value {given[key]!r} for parameter '{key}' of {self.kind} '{entry.name}': {reason}. "
                    f"Expected: {self.describe(entry.name)}"
                ) from None
            if validated != parameter.default:
                params[key] = validated
        return Option(self.kind, entry.name, params, names[0] if names else None)

    def build(self, value: str | Option | Mapping[str, Any], **context: Any) -> T:
        """Parse ``value`` if needed and call the entry's factory with its parameters (plus ``context``)."""
        option = self.parse(value)
        entry = self._entry(option.name)
        try:
            return entry.factory(**option.params, **context)
        except (ValueError, TypeError) as error:
            if isinstance(error, DeepwellError):  # already says what happened (ConfigError, DataError, ...)
                raise
            raise ConfigError(f"Cannot build {self.kind} '{option}': {error}") from error


def _resolved_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(factory, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations fall back to Any
        return {}
