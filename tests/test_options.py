"""The generic option reader: declared ranges and choices, unknown keys, units chosen by name with their own options
tables and checks, and the TOML table a built value writes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from minbert.errors import ConfigError
from minbert.options import Chosen, NoOptions, Registry, build, option, to_table


class Plain:
    Options = NoOptions


class Tunable:
    @dataclass
    class Options:
        rate: float = option(0.5, low=0, high=1, high_open=True)
        mode: str = option("a", choices=("a", "b"))

    @classmethod
    def check(cls, options: Options, context: Any) -> None:
        if options.mode == "b" and context == "strict":
            raise ConfigError("tunable: mode b is not allowed here")


UNITS = Registry("unit", {"plain": Plain, "tunable": Tunable})


@dataclass
class Table:
    count: int = option(1, low=0, low_open=True)
    ratio: float = option(0.0, low=0, high=1)
    names: list[str] = field(default_factory=list)
    unit: Chosen = option(Chosen("plain"), registry=UNITS)
    units: dict[str, Any] = option({}, registry=UNITS, many=True)


@pytest.mark.parametrize(("values", "message"), [
    ({"count": 0}, r"t.count = 0 must be > 0"),
    ({"ratio": 1.5}, r"t.ratio = 1.5 must be in \[0, 1\]"),
    ({"ratio": float("nan")}, r"t.ratio = nan is not a finite number"),
    ({"count": 1.5}, r"t.count: expected int, got float 1.5"),
    ({"count": True}, r"t.count: expected int, got bool True"),
    ({"cuont": 2}, r"unknown key 't.cuont'; did you mean 'count'\?"),
    ({"names": "x"}, r"t.names: expected a list"),
    ({"unit": "tunabel"}, r"t.unit = 'tunabel' is not a unit: one of plain, tunable"),
    ({"unit": {"rate": 0.1}}, r"t.unit: expected a unit name or a table with `name`"),
    ({"unit": {"name": "tunable", "rate": 1.0}}, r"t.unit.rate = 1.0 must be in \[0, 1\)"),
    ({"unit": {"name": "tunable", "mode": "c"}}, r"t.unit.mode = 'c' is not one of a, b"),
    ({"unit": {"name": "plain", "rate": 0.1}}, r"unknown key 't.unit.rate'"),
    ({"units": {"nope": {}}}, r"t.units: 'nope' is not a unit: one of plain, tunable"),
    ({"units": {"tunable": {"rate": -1}}}, r"t.units.tunable.rate = -1.0 must be in \[0, 1\)"),
])
def test_bad_values_name_their_key(values, message):
    with pytest.raises(ConfigError, match=message):
        build(Table, values, "t")


def test_units_by_name_or_table_keep_their_order_and_write_back():
    table = build(Table, {"count": 3, "ratio": 1, "unit": {"name": "tunable", "rate": 0.25},
                          "units": {"tunable": {"mode": "b"}, "plain": {}}}, "t")
    assert table.ratio == 1.0 and isinstance(table.ratio, float)  # an int where a float is expected
    assert table.unit == Chosen("tunable", Tunable.Options(rate=0.25, mode="a"))
    assert list(table.units) == ["tunable", "plain"]  # the order given (regularizers add up in this order)
    assert build(Table, {"unit": "tunable"}, "t").unit.options == Tunable.Options()
    written = to_table(table)
    assert written["unit"] == {"name": "tunable", "rate": 0.25, "mode": "a"}
    assert written["units"] == {"tunable": {"rate": 0.5, "mode": "b"}, "plain": {}}
    assert build(Table, written, "t") == table  # what a run directory's config.toml reads back


def test_a_units_own_check_runs_with_its_context():
    options = Tunable.Options(mode="b")
    UNITS.check("tunable", options, "lenient")
    UNITS.check("plain", NoOptions(), "strict")  # no check declared: nothing to refuse
    with pytest.raises(ConfigError, match="mode b is not allowed here"):
        UNITS.check("tunable", options, "strict")


def test_defaults_are_independent_copies():
    a, b = Table(), Table()
    a.names.append("x")
    a.units["plain"] = NoOptions()
    assert b.names == [] and b.units == {}
