"""Parquet files (pyarrow): rows of named columns, nested structs and lists too, each role read from a field path
as in `jsonl` (records.py: the same roles and the same row checks for every kind of rows).

The file is read `batch_size` rows at a time (ParquetFile.iter_batches, only the columns the roles name), so a
file larger than memory is never held whole. Rows are counted from 1 and named so in messages: `train.parquet:row
7: ...`. A column or nested field a role names that the file lacks is one error before any row is read, naming the
ones it has. A null, a value of the wrong type, a tag outside the set is a bad row. HF `datasets` writes its
features into the file's metadata: a ClassLabel column's integers are read as its names (HF's `ner_tags`; a
label where the spec's classes are the names).

`ParquetFormat.read(path, options, context)` reads any local Parquet file (the Hub route reads its downloaded
files through it); `class_label_names(schema)` gives the names a file's metadata declares.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minbert.data.formats.base import DATA_FORMATS
from minbert.data.formats.records import FieldPath, Record, RecordFile, RecordFormat, RecordOptions, each_path
from minbert.errors import DataError
from minbert.options import option

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq


@DATA_FORMATS.register("parquet")
class ParquetFormat(RecordFormat):
    """A Parquet file: rows of any kind by field path, read in batches."""

    @dataclass
    class Options(RecordOptions):
        batch_size: int = option(4096, low=1)  # rows read and checked at a time (what a read holds in memory)

    @staticmethod
    def open(path: Path, options: Options, fields: dict) -> RecordFile:
        parquet = open_parquet(path)
        schema = parquet.schema_arrow
        columns = []
        for role, field_path in each_path(fields):
            if problem := schema_problem(schema, field_path):
                have = ", ".join(schema.names)
                raise DataError(f"{path}: format.{role} = {field_path.text!r}: {problem} (the file's columns: {have})")
            if field_path.steps[0][0] not in columns:
                columns.append(field_path.steps[0][0])
        return RecordFile(parquet_rows(parquet, path, columns, options.batch_size), class_label_names(schema))


def open_parquet(path: Path) -> pq.ParquetFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # pre_buffer keeps every row group it has read in pyarrow's pool for the reader's life: a 10 GB file read
        # in batches held 140 MiB more per million rows; without it, about one row group
        return pq.ParquetFile(path, pre_buffer=False)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except pa.ArrowException as exc:
        raise DataError(f"{path}: not a Parquet file ({exc})") from None


def parquet_rows(parquet: pq.ParquetFile, path: Path, columns: list[str], batch_size: int) -> Iterator[Record]:
    """Each row of the named columns as a record ({column: value}, nested values as dicts and lists, null as None)."""
    import pyarrow as pa

    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
            for value in batch.to_pylist():
                number += 1
                yield Record(number, f"row {number}", value)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: row {number + 1} onward cannot be read ({exc})") from None


def schema_problem(schema: pa.Schema, path: FieldPath) -> str:
    """Why the file's schema cannot hold `path` ("" where it can): a missing column or field, a key into what is
    not a struct, `[]` after what is not a list. Leaf types are left to each row's checks."""
    import pyarrow as pa

    members = {name: schema.field(name).type for name in schema.names}
    shown, kind = "", None
    for key, each in path.steps:
        if members is None:
            return f"{shown} is not a struct of fields (it is {kind!s})"
        shown = f"{shown}.{key}" if shown else key
        if key not in members:
            return f"no column {key!r}" if "." not in shown else f"no field {shown!r}"
        kind = members[key]
        if each:
            if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
                return f"{shown} is {kind}, not a list"
            kind = kind.value_type
        members = ({kind.field(i).name: kind.field(i).type for i in range(kind.num_fields)}
                   if pa.types.is_struct(kind) else None)
    return ""


def class_label_names(schema: pa.Schema) -> dict[str, tuple[str, ...]]:
    """Top-level column -> the names of its integers, where the file's HF `datasets` metadata declares the column a
    ClassLabel or a list of them (`ner_tags`: Sequence(ClassLabel(names=[...])))."""
    try:
        features = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return {}
    if not isinstance(features, dict):
        return {}
    found = {}
    for column, feature in features.items():
        if names := label_names(feature):
            found[column] = names
    return found


def label_names(feature: Any) -> tuple[str, ...]:
    """A ClassLabel's names, through any list wrappers (Sequence, List, or a one-element list: older layouts)."""
    while True:
        if isinstance(feature, list) and len(feature) == 1:
            feature = feature[0]
        elif isinstance(feature, dict) and feature.get("_type") in ("Sequence", "List", "LargeList"):
            feature = feature.get("feature")
        else:
            break
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
        names = feature.get("names")
        if isinstance(names, list) and all(isinstance(name, str) for name in names):
            return tuple(names)
    return ()
