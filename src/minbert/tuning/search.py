"""A search file: the base config, the budget of a trial, the objective and the search space, checked before any
trial runs.

    base = "../multitask-fast.toml"        # relative to this file
    budget = ["train.train_fraction=0.15", "train.epochs=2"]   # per trial only; the best config leaves it out
    overrides = []                         # fixed settings, kept in the best config
    tune_split = 0.1                       # share of each training file held out to score trials (dev untouched)
    trials = 40
    pruner = "median"                      # none | median | hyperband

    [space]
    "train.lr" = { type = "float", low = 1e-5, high = 2e-4, log = true }
    "tasks.sst.dropout" = { type = "float", low = 0.0, high = 0.5 }
    "train.epochs" = { type = "int", low = 1, high = 3 }
    "train.sampler" = { type = "choice", choices = ["round_robin", { name = "proportional", alpha = 0.5 }] }
    "train.sampler.alpha" = { type = "float", low = 0.0, high = 1.0, when = { "train.sampler" = "proportional" } }

Keys are any config key with dotted names; `choice` takes values or whole tables; `when` makes a key conditional
on earlier keys' values (a table matches on its `name`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minbert.errors import ConfigError
from minbert.options import build, option
from minbert.training.config import RunConfig, load_config, read_toml


@dataclass
class Parameter:
    type: str = option("float", choices=("float", "int", "choice"))
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int = option(1, low=1)  # int: the grid step
    choices: list[Any] = field(default_factory=list)
    when: dict[str, Any] = field(default_factory=dict)  # earlier key -> the value it must have


@dataclass
class Search:
    base: str = ""
    budget: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    tune_split: float = option(0.1, low=0, high=1, low_open=True, high_open=True)
    tune_split_seed: int = option(0, low=0)
    trials: int = option(40, low=1)
    sampler: str = option("tpe", choices=("tpe", "random"))
    sampler_seed: int = option(0, low=0)
    pruner: str = option("median", choices=("none", "median", "hyperband"))
    heartbeat_seconds: int = option(30, low=1)  # a worker killed this long ago has its running trial failed
    space: dict[str, Parameter] = field(default_factory=dict)
    path: Path = Path()  # where the file was read from (not a key)

    def base_path(self) -> Path:
        return self.path.parent / self.base

    def config(self, params: dict[str, Any], *, budget: bool, extra: list[str] = ()) -> RunConfig:
        """The base config with the fixed overrides, the parameters, and (for a trial) the budget and tune split."""
        trial = [*self.budget, f"train.tune_split={self.tune_split}",
                 f"train.tune_split_seed={self.tune_split_seed}"] if budget else []
        return load_config(self.base_path(), [*self.overrides, *trial, *overrides_of(params), *extra])


def toml_value(value: Any) -> str:
    """A value as an inline TOML literal (for a `key=value` override)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"{value!r} cannot be written as a config value")


def overrides_of(params: dict[str, Any]) -> list[str]:
    return [f"{key}={toml_value(value)}" for key, value in params.items()]


def choice_label(value: Any) -> Any:
    """What Optuna stores for a choice: the value itself when it is a plain one, else its JSON."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value, sort_keys=True)


def choice_of(parameter: Parameter, label: Any) -> Any:
    """The config value behind a choice's stored label."""
    return parameter.choices[[choice_label(c) for c in parameter.choices].index(label)]


def matches(value: Any, wanted: Any) -> bool:
    if isinstance(value, dict) and isinstance(wanted, str):
        return value.get("name") == wanted
    return value == wanted


def active(parameter: Parameter, chosen: dict[str, Any]) -> bool:
    return all(key in chosen and matches(chosen[key], wanted) for key, wanted in parameter.when.items())


def read_search(path: str | Path) -> Search:
    """Read and check a search file: every key of the space must be a key the config takes, with values it accepts
    at both ends of its range and for every choice; ranges must be non-empty; `when` may only name earlier keys."""
    path = Path(path)
    values = read_toml(path, "search file")
    search = build(Search, values, "")
    search.path = path
    if not search.base:
        raise ConfigError(f"{path}: `base` (the config file the trials start from) is required")
    if not search.base_path().is_file():
        raise ConfigError(f"{path}: base = {search.base!r}: {search.base_path()} does not exist")
    if not search.space:
        raise ConfigError(f"{path}: [space] is empty: nothing to search")
    search.config({}, budget=True)  # the base, the budget and the overrides load
    earlier: list[str] = []
    for key, parameter in search.space.items():
        where = f"{path}: space.{key!r}"
        for needed in parameter.when:
            if needed not in earlier:
                raise ConfigError(f"{where}: when = {{{needed!r} = ...}} must name a key listed before it")
        if parameter.type == "choice":
            if not parameter.choices:
                raise ConfigError(f"{where}: a choice needs a non-empty `choices` list")
            probes = parameter.choices
        else:
            if parameter.low is None or parameter.high is None:
                raise ConfigError(f"{where}: a {parameter.type} needs `low` and `high`")
            if not (math.isfinite(parameter.low) and math.isfinite(parameter.high)) or parameter.low >= parameter.high:
                raise ConfigError(f"{where}: empty range [{parameter.low}, {parameter.high}] (low must be < high)")
            if parameter.log and parameter.low <= 0:
                raise ConfigError(f"{where}: a log range needs low > 0, got {parameter.low}")
            if parameter.type == "int" and not (float(parameter.low).is_integer() and
                                                float(parameter.high).is_integer()):
                raise ConfigError(f"{where}: an int range needs whole numbers, got [{parameter.low}, {parameter.high}]")
            cast = int if parameter.type == "int" else float
            probes = [cast(parameter.low), cast(parameter.high)]
        context = {k: search.space[k].choices[0] if search.space[k].type == "choice" else search.space[k].low
                   for k in parameter.when}
        context.update(parameter.when)
        for probe in probes:
            try:
                search.config({**context, key: probe}, budget=True)
            except ConfigError as exc:
                raise ConfigError(f"{where} = {probe!r}: {exc}") from None
        earlier.append(key)
    return search
