"""Typed TOML tables into frozen dataclasses: each field checked against its type hint, bounds and literals.

engine/config.py declares the engine's settings with these; the bots build their own sections with `build`."""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from engine.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """A numeric setting's inclusive bounds, as an `Annotated` marker."""

    low: float
    high: float = float("inf")
    exclusive_low: bool = False


POSITIVE = Range(0, exclusive_low=True)


def merge(base: dict[str, Any], overlay: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`overlay` laid over `base`, table by table; a key `base` lacks is an error that names it."""
    merged = dict(base)
    for key, value in overlay.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key '{name}'")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{name}' must be a table")
            merged[key] = merge(base[key], value, prefix=f"{name}.")
        else:
            merged[key] = value
    return merged


def build(cls: type, raw: dict[str, Any], prefix: str, *, partial: bool = False) -> Any:
    """The dataclass `cls` from its table, each field checked against its type; `partial` ignores other tables."""
    hints = get_type_hints(cls, include_extras=True)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if f.name not in raw:
            raise ConfigError(f"config key '{name}' is missing")
        values[f.name] = coerce(hints[f.name], raw[f.name], name)
    extra = set(raw) - set(values)
    if extra and not partial:
        raise ConfigError(f"unknown config key '{prefix}{sorted(extra)[0]}'")
    return cls(**values)


def coerce(hint: Any, value: Any, name: str) -> Any:
    """`value` checked against the type `hint` (and converted: lists to tuples, ints to floats, "" to None)."""
    bounds: Range | None = None
    if get_origin(hint) is Annotated:
        hint, *extras = get_args(hint)
        bounds = next((e for e in extras if isinstance(e, Range)), None)
    if get_origin(hint) in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value == "" or value is None:
            return None
        (hint,) = options
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{name}' must be a table")
        return build(hint, value, prefix=f"{name}.")
    if get_origin(hint) is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"config key '{name}' must be one of {', '.join(map(repr, allowed))}, not {value!r}")
        return value
    value = _typed(hint, value, name)
    if bounds is not None:
        _check_bounds(bounds, value, name)
    return value


def _typed(hint: Any, value: Any, name: str) -> Any:
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif get_origin(hint) is tuple:  # tuple[str, ...] or tuple[int, ...]
        item = get_args(hint)[0]
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:
        raise TypeError(f"config key '{name}' has a type the loader can't check: {hint!r}")
    if not ok:
        raise ConfigError(f"config key '{name}' has the wrong type: {value!r}")
    return value


def _check_bounds(bounds: Range, value: float, name: str) -> None:
    if bounds is POSITIVE:
        if value <= 0:
            raise ConfigError(f"config key '{name}' must be positive, not {value!r}")
        return
    low_ok = value > bounds.low if bounds.exclusive_low else value >= bounds.low
    if not low_ok or value > bounds.high:
        if bounds.high == float("inf"):
            raise ConfigError(f"config key '{name}' must be at least {bounds.low:g}, not {value!r}")
        raise ConfigError(f"config key '{name}' must be between {bounds.low:g} and {bounds.high:g}, not {value!r}")
