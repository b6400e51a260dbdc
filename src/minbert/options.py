"""Typed option tables: the one reader behind the run config and every technique's own options.

A table is a dataclass whose fields carry their checks (`option(0.1, low=0, high=1, high_open=True)`); `build`
turns a TOML table into an instance, refusing unknown keys (naming the nearest valid one), wrong types and values
out of range, each with the dotted path of the key. A unit chosen by name (a sampler, a regularizer, a training
technique) lives in a `Registry`; its options are its own `Options` dataclass and its combination checks its own
`check(options, context)` classmethod, so this module and the config schema name no technique.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minbert.errors import ConfigError


def option(default: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, choices: tuple | None = None, registry: Registry | None = None,
           many: bool = False) -> Any:
    """A dataclass field with its checks: `low`/`high` bounds (closed unless `*_open`), a set of `choices`, or a
    unit of `registry` chosen by name (`many`: a table of units by name, each with its options table)."""
    metadata = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "choices": choices,
                "registry": registry, "many": many}
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: _copy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _copy(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value)
    return type(value)(value)


@dataclass
class NoOptions:
    """A unit without options."""


def _range_text(meta: dict) -> str:
    low = "(" if meta["low_open"] else "["
    high = ")" if meta["high_open"] else "]"
    if meta["high"] is None:
        return f"> {meta['low']}" if meta["low_open"] else f">= {meta['low']}"
    if meta["low"] is None:
        return f"< {meta['high']}" if meta["high_open"] else f"<= {meta['high']}"
    return f"in {low}{meta['low']}, {meta['high']}{high}"


def check_field(value: Any, meta: typing.Mapping, where: str) -> None:
    """A value against its field's declared range or choices."""
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{where} = {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    low, high = meta.get("low"), meta.get("high")
    if isinstance(value, int | float) and not isinstance(value, bool) and (low is not None or high is not None):
        too_low = low is not None and (value <= low if meta["low_open"] else value < low)
        too_high = high is not None and (value >= high if meta["high_open"] else value > high)
        if too_low or too_high:
            raise ConfigError(f"{where} = {value!r} must be {_range_text(dict(meta))}")


def nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"


def check_type(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)
        return [check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(kind)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table of named entries, got {value!r}")
        return {name: check_type(v, item, f"{where}.{name}") for name, v in value.items()}
    if dataclasses.is_dataclass(kind):
        return build(kind, value, where)
    if kind is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        tables = [choice for choice in typing.get_args(kind) if dataclasses.is_dataclass(choice)]
        if isinstance(value, dict) and len(tables) == 1:  # a table: its own errors name the key at fault
            return build(tables[0], value, where)
        for choice in typing.get_args(kind):
            try:
                return check_type(value, choice, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} has the wrong type")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is type(None) and value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} = {value} is not a finite number")
    return value


def build(cls: type, values: Any, where: str = "") -> Any:
    """An instance of the dataclass `cls` from a TOML table: unknown keys, wrong types and values outside a field's
    declared range are errors naming `where.key`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown key {path!r}{nearest(key, list(fields))}")
        registry = fields[key].metadata.get("registry")
        if registry is not None:
            many = fields[key].metadata["many"]
            if typing.get_origin(hints[key]) is list:  # a list of units, each a name or a table with `name`
                kwargs[key] = registry.choose_each(value, path)
            else:
                kwargs[key] = registry.build_named(value, path) if many else registry.choose(value, path)
            continue
        kwargs[key] = check_type(value, hints[key], path)
        check_field(kwargs[key], fields[key].metadata, path)
    return cls(**kwargs)


def to_table(value: Any) -> Any:
    """The TOML value of a built instance (what `build` reads back): a chosen unit becomes `{name, options...}`."""
    if isinstance(value, Chosen):  # a unit without options is its bare name, as written
        if isinstance(value.options, NoOptions):
            return value.name
        return {"name": value.name, **to_table(value.options)}
    if dataclasses.is_dataclass(value):
        return {f.name: to_table(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_table(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_table(v) for v in value]
    return value


def registry_fields(instance: Any) -> list[tuple[str, Registry, Any]]:
    """(field name, registry, chosen value) of an instance's fields that pick units by name."""
    return [(f.name, f.metadata["registry"], getattr(instance, f.name)) for f in dataclasses.fields(instance)
            if f.metadata.get("registry") is not None]


@dataclass
class Chosen:
    """A unit picked by name from a registry, with its built options."""

    name: str
    options: Any = field(default_factory=NoOptions)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):  # a unit without options is its name (`task.pooling == "mean"`)
            return self.name == other and isinstance(self.options, NoOptions)
        if isinstance(other, Chosen):
            return (self.name, self.options) == (other.name, other.options)
        return NotImplemented

    __hash__ = None


def chosen_name(value: Chosen | str) -> str:
    """The unit's name of a Chosen, or a bare name as given."""
    return value.name if isinstance(value, Chosen) else value


class Registry(dict):
    """Named units of one kind: name -> class. A class may declare `Options` (a dataclass of `option` fields) and a
    classmethod `check(options, context)` that raises ConfigError for a combination it cannot serve."""

    def __init__(self, kind: str, units: dict[str, type] | None = None, empty_is_default: bool = False):
        super().__init__(units or {})
        self.kind = kind
        self.empty_is_default = empty_is_default  # `""` chooses no unit: the user of the field picks its default

    def register(self, name: str) -> Callable[[type], type]:
        def add(unit: type) -> type:
            self[name] = unit
            return unit
        return add

    def options_of(self, name: str) -> type:
        return getattr(self[name], "Options", NoOptions)

    def lookup(self, name: Any, where: str) -> type:
        if not isinstance(name, str) or name not in self:
            raise ConfigError(f"{where} = {name!r} is not a {self.kind}: one of {', '.join(self)}")
        return self[name]

    def choose(self, value: Any, where: str) -> Chosen:
        """`"name"` or `{name = "...", option = ...}` -> Chosen."""
        if isinstance(value, Chosen):
            return value
        if value == "" and self.empty_is_default:
            return Chosen("")
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or "name" not in value:
            raise ConfigError(f"{where}: expected a {self.kind} name or a table with `name`, got {value!r}")
        options = dict(value)
        name = options.pop("name")
        self.lookup(name, f"{where}.name" if len(options) else where)
        return Chosen(name, build(self.options_of(name), options, where))

    def choose_each(self, values: Any, where: str) -> list[Chosen]:
        """`["a", {name = "b", option = ...}]` -> [Chosen, ...], each unit at most once."""
        if isinstance(values, str | dict):  # one unit
            values = [values]
        if not isinstance(values, list):
            raise ConfigError(f"{where}: expected a list of {self.kind} names or tables with `name`, got {values!r}")
        chosen = [self.choose(value, f"{where}[{i}]") for i, value in enumerate(values)]
        names = [c.name for c in chosen]
        if twice := next((name for i, name in enumerate(names) if name in names[:i]), None):
            raise ConfigError(f"{where}: {twice!r} is listed twice; give each {self.kind} once")
        return chosen

    def resolve(self, value: Chosen | str) -> Chosen:
        """A Chosen as it is, or a bare name (set in code, not read from a config) with its default options."""
        if isinstance(value, Chosen):
            return value
        return Chosen(value, self.options_of(value)()) if value else Chosen("")

    def build_named(self, tables: Any, where: str) -> dict[str, Any]:
        """A table of tables keyed by unit name (`[tasks.sst.regularizers.fgsm] epsilon = ...`): each one's options,
        in the order given."""
        if not isinstance(tables, dict):
            raise ConfigError(f"{where}: expected a table of {self.kind}s by name, got {tables!r}")
        built = {}
        for name, options in tables.items():
            if name not in self:
                raise ConfigError(f"{where}: {name!r} is not a {self.kind}: one of {', '.join(self)}")
            built[name] = build(self.options_of(name), options, f"{where}.{name}")
        return built

    def check(self, name: str, options: Any, context: Any) -> None:
        check = getattr(self[name], "check", None)
        if check is not None:
            check(options, context)
