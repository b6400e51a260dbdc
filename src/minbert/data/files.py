"""Readers for delimited data files (the CS224N files, GLUE's, a task spec's), with row-level validation.

Columns are found by header name (the SST and CFIMDB test files carry an extra leading column). A row is one
line, its fields split with csv's quoting rules. A bad row is reported with file:line and reason and skipped (or,
with strict=True, aborts the load); a label is never invented and no row is dropped without a report.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from minbert.errors import DataError
from minbert.outputs import check_input_file

log = logging.getLogger("minbert")


@dataclass(frozen=True)
class FileFormat:
    """Which columns hold the texts and the label, and what a valid label is."""

    text_columns: tuple[str, ...]
    label_column: str
    num_classes: int | None = None  # classification: labels are the integers 0..num_classes-1
    score_range: tuple[float, float] | None = None  # regression: labels are numbers in [low, high]
    id_column: str = "id"  # "" = no id column: rows are named by their line number
    delimiter: str = "\t"
    label_offset: float = 0.0  # extra data: the file's label becomes (label + offset) * scale
    label_scale: float = 1.0
    quoting: bool = True  # csv's quoting rules; False: every character is text (plain lines to predict)
    classes: tuple[str | int | float, ...] | None = None  # declared labels (index = position); None: 0..K-1

    def class_index(self, raw: str) -> tuple[int | None, str | None]:
        """A declared class's index: a string class matches exactly, a number class numerically (after the
        offset and scale)."""
        for index, declared in enumerate(self.classes):
            if isinstance(declared, str):
                if raw == declared:
                    return index, None
                continue
            try:
                if (float(raw) + self.label_offset) * self.label_scale == declared:
                    return index, None
            except ValueError:
                pass
        shown = ", ".join(map(str, self.classes))
        return None, f"{self.label_column} {raw!r} is not a declared class ({shown})"

    def check_label(self, raw: str) -> tuple[float | int | None, str | None]:
        """(label, None) for a valid label (after the offset and scale), (None, reason) otherwise."""
        raw = raw.strip()
        if not raw:
            return None, f"empty {self.label_column} (no label)"
        if self.classes is not None:
            return self.class_index(raw)
        try:
            value = (float(raw) + self.label_offset) * self.label_scale
        except ValueError:
            return None, f"{self.label_column} {raw!r} is not a number"
        if not math.isfinite(value):
            return None, f"{self.label_column} {raw!r} is not a finite number"
        if value != float(raw):
            raw = f"{raw} (mapped to {value:g})"
        if self.num_classes is not None:
            if value != int(value) or not 0 <= value < self.num_classes:
                return None, f"{self.label_column} {raw!r} is not a class in 0..{self.num_classes - 1}"
            return int(value), None
        low, high = self.score_range
        if not low <= value <= high:
            return None, f"{self.label_column} {raw!r} is outside {low:g}..{high:g}"
        return value, None


@dataclass(frozen=True, slots=True)  # slots: no per-instance __dict__ on 140k SST phrases and sentences
class Example:
    id: str
    texts: tuple[str, ...]  # one sentence, or a pair
    label: float | int | None  # a class index or a score; None in unlabelled (test) files
    line: int  # where the row starts in its file, for error messages


@dataclass
class SkippedRow:
    line: int  # 0 where a line means nothing (a row of a whole-file JSON): `where` says where the row is
    reason: str
    where: str = ""  # a row's place inside a JSON file: data[3].paragraphs[2].qas[5] (id ...)

    @property
    def place(self) -> str:
        """What follows `file:` in a message: the line number, or the place in a JSON file."""
        return self.where or str(self.line)


@dataclass
class LoadedFile:
    path: Path
    examples: list[Example] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.path.name}: {len(self.examples)} rows loaded, {len(self.skipped)} skipped"


def read_examples(path: str | Path, fmt: FileFormat, labelled: bool = True, strict: bool = False,
                  what: str = "") -> LoadedFile:
    """Read one file. `labelled=False` for test files (no label column needed; labels are None). `what`: the config
    key or flag that named the file, for the message when it is not a regular file."""
    path = check_input_file(path, what)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_examples(raw, path, fmt, labelled, strict)


# csv's own line ends; str.splitlines would also split on \x0c, \x1c, \u2028, ... which may sit inside a sentence
LINE_BREAK = re.compile(r"\r\n|\r|\n")
SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, as surrogateescape decoded them


def bad_bytes(text: str) -> bool:
    return SURROGATE.search(text) is not None


def split_line(line: str, delimiter: str, quoting: bool = True) -> tuple[list[str], str | None]:
    """One physical line's fields with csv's quoting rules, or ([], reason). A row is one line: a quote left open
    costs that line only, never the rest of the file."""
    try:
        mode = csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
        return next(csv.reader([line], delimiter=delimiter, strict=True, quoting=mode), []), None
    except csv.Error as exc:
        message = str(exc)
        if "field larger than field limit" in message:
            return [], f"a field of more than {csv.field_size_limit():,} characters"
        if "unexpected end of data" in message:
            return [], "unbalanced quote (a quoted field must close on its own line)"
        if "expected after" in message:
            return [], "text after a closing quote (quote the whole field and double the quotes inside)"
        return [], f"unreadable row ({message})"


def parse_examples(raw: bytes, path: Path, fmt: FileFormat, labelled: bool = True, strict: bool = False,
                   header_line: int = 1, blank_lines_are_rows: bool = False) -> LoadedFile:
    """Parse a file's bytes; `path` names it in messages. `header_line=0` for a header that is not in the file
    (so reported line numbers stay those of the file). Every non-blank line after the header becomes an example
    or a reported skipped row; with `blank_lines_are_rows` (plain lines, one example each) so does every blank or
    whitespace-only line but the empty one after the file's last line break."""
    # surrogateescape keeps undecodable bytes visible per row, so one bad row does not sink the whole file
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    if not text.strip():
        raise DataError(f"{path}: empty file (expected a header line)")
    lines = LINE_BREAK.split(text)
    header, reason = split_line(lines[0], fmt.delimiter, fmt.quoting)
    if reason:
        raise DataError(f"{path}:{header_line}: header: {reason}")
    header = [h.strip() for h in header]
    needed = [c for c in (fmt.id_column, *fmt.text_columns) if c] + ([fmt.label_column] if labelled else [])
    for column in needed:
        if column not in header:
            found = ", ".join(map(repr, header))
            raise DataError(f"{path}:{header_line}: missing column {column!r} (header has {found})")

    loaded = LoadedFile(path)

    def skip(line: int, reason: str) -> None:
        if strict:
            raise DataError(f"{path}:{line}: {reason}")
        log.warning("%s:%d: skipped row: %s", path, line, reason)
        loaded.skipped.append(SkippedRow(line, reason))

    for offset, text_line in enumerate(lines[1:], start=1):
        line = header_line + offset
        if not text_line.strip():
            if blank_lines_are_rows and not (offset == len(lines) - 1 and not text_line):
                skip(line, "blank line (each line is a text to predict)")
            continue  # in a data file a blank line is not a row
        cells, reason = split_line(text_line, fmt.delimiter, fmt.quoting)
        if reason:
            skip(line, reason)
            continue
        if len(cells) > len(header):
            skip(line, f"{len(cells)} fields, the header has {len(header)}")
            continue
        values = dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))
        bad = [c for c in needed if bad_bytes(values[c])]
        if bad:
            skip(line, f"non-UTF-8 bytes in {bad[0]}")
            continue
        example_id = values[fmt.id_column].strip() if fmt.id_column else f"{path.stem}:{line}"
        texts = tuple(values[c].strip() for c in fmt.text_columns)
        empty = [c for c, t in zip(fmt.text_columns, texts, strict=True) if not t]
        if not example_id:
            skip(line, f"empty {fmt.id_column}")
            continue
        if empty:
            skip(line, f"empty {empty[0]}")
            continue
        label = None
        if labelled:
            label, reason = fmt.check_label(values[fmt.label_column])
            if reason:
                skip(line, reason)
                continue
        loaded.examples.append(Example(example_id, texts, label, line))
    if loaded.skipped:
        log.warning("%s", loaded.summary())
    return loaded
