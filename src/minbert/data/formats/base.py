"""What every data format shares: the registry, the example types of the new task kinds, what a read is told, and
the reading and reporting every reader does the same way (regular files only, BOM, CRLF, bad UTF-8, bad rows)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minbert.data.files import LINE_BREAK, FileFormat, LoadedFile, SkippedRow
from minbert.errors import DataError
from minbert.options import Registry, option
from minbert.outputs import check_input_file

log = logging.getLogger("minbert")

DATA_FORMATS = Registry("data format")


@dataclass(frozen=True, slots=True)
class TaggedExample:
    """One sentence of a token-tagging file: its words and their tags (None in unlabelled files)."""

    id: str
    words: tuple[str, ...]
    tags: tuple[str, ...] | None
    line: int  # the sentence's first line in its file


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    start: int  # the answer's first character in the context


@dataclass(frozen=True, slots=True)
class SpanExample:
    """One question over a context (extractive QA). Each answer is `context[start:start + len(text)]`, checked."""

    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]  # () in unlabelled files, and for a question without an answer
    is_impossible: bool  # a labelled question that has no answer (SQuAD 2.0, with no_answer = true)
    where: str  # its place in the file: data[0].paragraphs[3].qas[1]


@dataclass
class SpanOptions:
    """How a span format's questions become model rows and their answers are decoded (read by the span task kind;
    run_qa's defaults). Part of the format's table: `format = { name = "squad", doc_stride = 128, ... }`."""

    doc_stride: int = option(128, low=0)  # context sub-words two windows of a long context share
    max_query_length: int = option(64, low=1)  # a question's sub-words beyond this are cut
    n_best: int = option(20, low=1)  # starts and ends of each window an answer is chosen among
    max_answer_length: int = option(30, low=1)  # an answer's most sub-words


@dataclass
class TagOptions:
    """How a tagging format's sentences become model rows (read by the tag task kind; run_ner's defaults). Part of the
    format's table: `format = { name = "conll", every_subword = true, window_overlap = 0.5 }`."""

    # a word's tag is learned at each of its sub-words (a later one's B-X as I-X), not only its first; predictions
    # are read at the first either way
    every_subword: bool = False
    # the share of a window's sub-words that two windows of a sentence longer than model.max_length share
    window_overlap: float = option(0.5, low=0, high=1, high_open=True)


@dataclass(frozen=True, slots=True)
class ChoiceExample:
    """One multiple-choice question: a stem, its choices (two or more) and their labels as the file writes them."""

    id: str
    stem: str
    choices: tuple[str, ...]
    choice_labels: tuple[str, ...]  # the choices' own labels (A-E, 1-5); a prediction file writes the chosen one
    answer: int | None  # the right choice's index; None in unlabelled files
    line: int  # its line in a JSON-lines file; its index in a JSON array


@dataclass(frozen=True)
class ReadContext:
    """What a reader is told besides its options."""

    what: str = ""  # the config key or flag that named the file, for the message when it is not a regular file
    labelled: bool = True  # False for test files: no labels are read (and none are needed)
    strict: bool = False  # the first bad row is fatal
    # the task's FileFormat (DataSpec.file_format()): the delimited reader's columns; the classes or score range
    # that sentence rows' labels are checked on
    file_format: FileFormat | None = None
    tags: tuple[str, ...] = ()  # tagging: the label set read from the train file (tag_labels); () = not known yet
    # False: a file checked, not used (minbert data): its rows are counted, not kept (a CheckedFile), so that a file
    # larger than memory is checked in bounded memory
    keep: bool = True


def read_file(path: str | Path, what: str = "") -> tuple[Path, bytes]:
    """A regular file's bytes (a FIFO or a device is refused before it is opened)."""
    path = check_input_file(path, what)
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def decode_lines(raw: bytes) -> list[str]:
    """A file's lines, BOM dropped, any line end. Undecodable bytes become lone surrogates (surrogateescape), so a
    bad byte costs its own row (see `bad_bytes`), not the file."""
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    lines = LINE_BREAK.split(text)
    if lines and not lines[-1]:  # the empty "line" after the last line break
        lines.pop()
    return lines


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """A text file's lines one at a time (number from 1, text without its line end), as `decode_lines` splits
    them: BOM dropped, any line end, undecodable bytes as lone surrogates. A file larger than memory is never held
    whole."""
    try:
        # newline="": lines end at \r\n, \r or \n, and the line end is kept (then cut) rather than translated
        with path.open(encoding="utf-8", errors="surrogateescape", newline="") as file:
            for number, line in enumerate(file, start=1):
                yield number, (line.removeprefix("\ufeff") if number == 1 else line).rstrip("\r\n")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def load_json(raw: bytes, path: Path) -> Any:
    """A whole-file JSON document; a file that is not UTF-8 or not JSON is one DataError naming where."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte {exc.start:,} of the file, {raw[exc.start]:#04x})") from None
    if not text.strip():
        raise DataError(f"{path}: empty file (expected a JSON document)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deep to read") from None


def describe(value: Any) -> str:
    """A JSON value in a message: its JSON type and a short view of it (`a list [1, 2]`, `null`)."""
    if value is None:
        return "null"
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return f"{kinds.get(type(value), 'a value')} {shown if len(shown) <= 40 else shown[:37] + '...'}"


@dataclass
class CheckedFile(LoadedFile):
    """A file read to be checked, not used (`minbert data`): its rows are counted, not kept (`examples` stays
    empty), the bad ones counted and the first LISTED_BAD_ROWS of them listed, and the tags its sentences use kept
    (a tagging train file's label set: label_set)."""

    rows: int = 0
    bad_rows: int = 0
    tags: set[str] = field(default_factory=set)

    def summary(self) -> str:
        return f"{self.path.name}: {self.rows} rows checked, {self.bad_rows} skipped"


LISTED_BAD_ROWS = 1000  # a checked file's bad rows beyond these are counted, not listed (nor logged one by one)


class Rows:
    """The examples and bad rows of one file being read: a bad row is logged and kept as a SkippedRow, or with
    strict, fatal. With `keep=False` examples are counted, not kept (a CheckedFile)."""

    def __init__(self, path: Path, strict: bool, keep: bool = True):
        self.loaded = LoadedFile(path) if keep else CheckedFile(path)
        self.strict = strict

    def add(self, example: Any) -> None:
        if not isinstance(self.loaded, CheckedFile):
            self.loaded.examples.append(example)
            return
        self.loaded.rows += 1
        if isinstance(example, TaggedExample) and example.tags:
            self.loaded.tags.update(example.tags)

    def skip(self, reason: str, line: int = 0, where: str = "") -> None:
        row = SkippedRow(line, reason, where)
        if self.strict:
            raise DataError(f"{self.loaded.path}:{row.place}: {reason}")
        if isinstance(self.loaded, CheckedFile):
            self.loaded.bad_rows += 1
            if self.loaded.bad_rows > LISTED_BAD_ROWS:
                if self.loaded.bad_rows == LISTED_BAD_ROWS + 1:
                    log.warning("%s: more than %d bad rows: the rest are counted, not listed", self.loaded.path,
                                LISTED_BAD_ROWS)
                return
        log.warning("%s:%s: skipped row: %s", self.loaded.path, row.place, reason)
        self.loaded.skipped.append(row)

    def done(self) -> LoadedFile:
        if self.loaded.skipped:
            log.warning("%s", self.loaded.summary())
        return self.loaded
