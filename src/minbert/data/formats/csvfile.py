"""CSV files with a header: each role reads a column (records.py: the same roles and row checks as `jsonl`).

A cell is text. Where a role takes a list (`words`, `tags`, `choices`, `choice_labels`, `answer_text`,
`answer_start`) or its path goes into the cell (`answers.text`), the cell is a JSON value, a list written as a JSON
array: `"[""EU"", ""rejects""]"` (what `csv.writer` makes of `json.dumps(list)`); a cell there that is not JSON is a
bad row. A row is one line, read one at a time and split with csv's quoting rules (files.split_line): a quoted cell
does not span lines, so an unclosed quote costs its line, never the rest of the file. Rows are named by their line
(the header is line 1). A column a role names that the header lacks is one error before any row is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from minbert.data.files import bad_bytes, split_line
from minbert.data.formats.base import DATA_FORMATS, text_lines
from minbert.data.formats.records import LIST_ROLES, Record, RecordFile, RecordFormat, RecordOptions, each_path
from minbert.errors import ConfigError, DataError


@DATA_FORMATS.register("csv")
class CsvFormat(RecordFormat):
    """A delimited file with a header: rows of any kind by column, list cells as JSON arrays."""

    @dataclass
    class Options(RecordOptions):
        delimiter: str = ","  # one character ("\t": a TSV file with list cells, read the same way)

    @classmethod
    def check(cls, options: Options, where: str) -> None:
        super().check(options, where)
        if len(options.delimiter) != 1 or options.delimiter in "\"\r\n":
            raise ConfigError(f"{where}.delimiter = {options.delimiter!r}: one character, not a quote or line end")

    @staticmethod
    def open(path: Path, options: Options, fields: dict) -> RecordFile:
        lines = text_lines(path)
        first = next(((number, line) for number, line in lines if line.strip()), None)
        if first is None:
            raise DataError(f"{path}: empty file (expected a header line)")
        header_line, text = first
        header, reason = split_line(text, options.delimiter)
        if reason:
            raise DataError(f"{path}:{header_line}: header: {reason}")
        header = [name.strip() for name in header]
        if repeated := next((name for i, name in enumerate(header) if name in header[:i]), None):
            raise DataError(f"{path}:{header_line}: header: column {repeated!r} is named twice")
        json_columns = set()
        for role, field_path in each_path(fields):
            column = field_path.steps[0][0]
            if column not in header:
                raise DataError(f"{path}:{header_line}: format.{role} = {field_path.text!r}: no column {column!r} "
                                f"(the header has {', '.join(map(repr, header))})")
            if role in LIST_ROLES or len(field_path.steps) > 1 or field_path.steps[0][1]:
                json_columns.add(column)
        return RecordFile(csv_rows(lines, header, json_columns, options.delimiter))


def csv_rows(lines: Iterator[tuple[int, str]], header: list[str], json_columns: set[str],
             delimiter: str) -> Iterator[Record]:
    """A record ({column: text, or the JSON value of a list column}) for each non-blank line after the header."""
    for number, line in lines:
        if not line.strip():
            continue  # a blank line is not a row
        if bad_bytes(line):
            yield Record(number, "", None, "non-UTF-8 bytes")
            continue
        cells, reason = split_line(line, delimiter)
        if not reason and len(cells) > len(header):
            reason = f"{len(cells)} cells, the header has {len(header)}"
        if reason:
            yield Record(number, "", None, reason)
            continue
        record = dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))
        for column in json_columns:
            try:
                record[column] = json.loads(record[column])
            except json.JSONDecodeError as exc:
                shown = record[column] if len(record[column]) <= 40 else record[column][:37] + "..."
                reason = f"column {column} {shown!r} is not JSON ({exc.msg}): a list is a JSON array"
                break
            except RecursionError:
                reason = f"column {column}: JSON nested too deep to read"
                break
        yield Record(number, "", None if reason else record, reason)
