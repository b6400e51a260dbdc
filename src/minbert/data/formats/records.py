"""JSON records: `jsonl` (one JSON object a line) and `json` (a file that is one array of objects), each role read
from a field path.

A field path is keys joined by dots, with `[]` after a key whose value is a list to take each of its elements:
`question.stem`, `question.choices[].text`. The same reader serves

- choice rows (`stem`, `choices`, `choice_labels`, `answer`): ARC's `answerKey` is looked up among the choices'
  own labels (`A`-`E`, or `1`-`5`); a key that is not one of them is a bad row. Without `choice_labels` the
  choices are labelled by their positions `0`, `1`, ... (an integer answer index).
- sentence rows (`text` = one or two paths, `label`): today's `Example`, the label checked against the task's
  classes or score range like a delimited file's.

A line that is not UTF-8, not JSON, not an object, or lacks a field is a bad row named by its line (by its index
`[i]` in a JSON array) with the reason; a repeated id is a bad row (predictions are keyed by id).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minbert.data.files import Example, FileFormat, LoadedFile
from minbert.data.formats.base import (
    DATA_FORMATS,
    ChoiceExample,
    ReadContext,
    Rows,
    bad_bytes,
    decode_lines,
    describe,
    load_json,
    read_file,
)
from minbert.errors import ConfigError, DataError

KEY = r"[^.\[\]\s]+(?:\[\])?"
PATH = re.compile(rf"{KEY}(?:\.{KEY})*")


@dataclass(frozen=True)
class FieldPath:
    """A parsed field path: (key, each element of its list?) steps."""

    text: str
    steps: tuple[tuple[str, bool], ...]

    @classmethod
    def parse(cls, text: str, where: str) -> FieldPath:
        if not PATH.fullmatch(text):
            raise ConfigError(f"{where} = {text!r}: a field path is keys joined by dots, with [] after a list's key "
                              "(question.stem, question.choices[].text)")
        return cls(text, tuple((key.removesuffix("[]"), key.endswith("[]")) for key in text.split(".")))

    def get(self, record: Any) -> tuple[Any, str]:
        """(the value, "") or (None, why there is none)."""
        return walk(record, self.steps, "")


def walk(value: Any, steps: tuple[tuple[str, bool], ...], shown: str) -> tuple[Any, str]:
    for index, (key, each) in enumerate(steps):
        if not isinstance(value, dict):
            return None, f"{shown or 'the row'} is {describe(value)}, not an object"
        shown = f"{shown}.{key}" if shown else key
        if key not in value:
            return None, f"no field {shown}"
        value = value[key]
        if each:
            if not isinstance(value, list):
                return None, f"{shown} is {describe(value)}, not a list"
            found = []
            for position, item in enumerate(value):
                got, reason = walk(item, steps[index + 1:], f"{shown}[{position}]")
                if reason:
                    return None, reason
                found.append(got)
            return found, ""
    return value, ""


def scalar(value: Any) -> str | None:
    """A label, key or id as text: a string or a number (never a boolean, list, object or null)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


@DATA_FORMATS.register("jsonl")
class JsonLinesFormat:
    """One JSON object a line: choice rows or sentence rows by field path."""

    @dataclass
    class Options:
        id: str = ""  # the id's field path; "" = rows are named by file and line
        text: list[str] = field(default_factory=list)  # sentence rows: one path, or two for a pair
        label: str = ""  # sentence rows: the label's path
        stem: str = ""  # choice rows: the question's path (question.stem)
        choices: str = ""  # choice rows: the choices' texts (question.choices[].text)
        choice_labels: str = ""  # choice rows: their labels (question.choices[].label); "" = positions 0, 1, ...
        answer: str = ""  # choice rows: the right choice's label (answerKey)

    @staticmethod
    def row_fields(options: Options | None) -> dict[str, object]:
        """What sentence rows' paths give the spec (DataSpec's own `text` and `label`, which need not repeat them)."""
        return {} if options is None else {"text": list(options.text), "label": options.label}

    @staticmethod
    def example_of(options: Options | None) -> type:
        """What these options read: ChoiceExample where they name a choice role, else sentence rows (Example)."""
        choice = options is not None and any((options.stem, options.choices, options.choice_labels, options.answer))
        return ChoiceExample if choice else Example

    @classmethod
    def check(cls, options: Options, where: str) -> None:
        paths(options, where)
        choice = any((options.stem, options.choices, options.choice_labels, options.answer))
        if choice and (options.text or options.label):
            raise ConfigError(f"{where}: text and label name the fields of sentence rows; stem, choices, "
                              "choice_labels and answer those of choice rows: not both")
        if choice:
            for key in ("stem", "choices", "answer"):
                if not getattr(options, key):
                    raise ConfigError(f"{where}.{key}: choice rows need its field path")
            return
        if not options.text:
            raise ConfigError(f"{where}: name the fields to read: text = [...] and label (sentence rows), or stem, "
                              "choices and answer (choice rows)")
        if len(options.text) > 2 or len(set(options.text)) != len(options.text):
            raise ConfigError(f"{where}.text = {options.text}: one field, or two different ones for a pair")
        if not options.label:
            raise ConfigError(f"{where}.label: sentence rows need the label's field path")
        if options.label in options.text or options.id in (*options.text, options.label):
            raise ConfigError(f"{where}: id, text and label name different fields (the model must not read its "
                              "label, nor rows be named by their content)")

    @classmethod
    def read(cls, path: str | Path, options: Options, context: ReadContext) -> LoadedFile:
        path, raw = read_file(path, context.what)
        return parse_records(cls.records(raw, path), path, options, context)

    @staticmethod
    def records(raw: bytes, path: Path) -> Iterator[tuple[int, str, Any, str]]:
        """(line, where, the object, why it is not one) of each non-blank line."""
        for number, line in enumerate(decode_lines(raw), start=1):
            if not line.strip():
                continue  # a blank line is not a row
            if bad_bytes(line):
                yield number, "", None, "non-UTF-8 bytes"
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, "", None, f"not JSON ({exc.msg} at column {exc.colno})"
                continue
            except RecursionError:
                yield number, "", None, "JSON nested too deep to read"
                continue
            yield number, "", record, "" if isinstance(record, dict) else f"{describe(record)}, not a JSON object"


@DATA_FORMATS.register("json")
class JsonArrayFormat(JsonLinesFormat):
    """A JSON file that is one array of objects, read like `jsonl`'s lines; rows are named by index: [3]."""

    @staticmethod
    def records(raw: bytes, path: Path) -> Iterator[tuple[int, str, Any, str]]:
        document = load_json(raw, path)
        if not isinstance(document, list):
            raise DataError(f"{path}: expected a JSON array of objects (one a row), got {describe(document)}")
        for index, record in enumerate(document):
            yield index, f"[{index}]", record, "" if isinstance(record, dict) else f"{describe(record)}, not an object"


def paths(options: JsonLinesFormat.Options, where: str) -> dict[str, FieldPath | list[FieldPath]]:
    """Each role's parsed path (roles without one left out)."""
    parsed: dict[str, FieldPath | list[FieldPath]] = {}
    for key in ("id", "label", "stem", "choices", "choice_labels", "answer"):
        if text := getattr(options, key):
            parsed[key] = FieldPath.parse(text, f"{where}.{key}")
    if options.text:
        parsed["text"] = [FieldPath.parse(text, f"{where}.text[{i}]") for i, text in enumerate(options.text)]
    return parsed


def parse_records(records: Iterator[tuple[int, str, Any, str]], path: Path, options: JsonLinesFormat.Options,
                  context: ReadContext) -> LoadedFile:
    JsonLinesFormat.check(options, "format")  # checked with the config too; a reader called alone is not
    fields = paths(options, "format")
    where = context.what or str(path)
    label_format = None
    if "text" in fields and context.labelled:
        if context.file_format is None:
            raise ConfigError(f"{where}: sentence rows need the task's classes or score_range to check labels on")
        label_format = dataclasses.replace(context.file_format, label_column=options.label)
    rows = Rows(path, context.strict)
    seen: dict[str, str] = {}  # id -> where it was first: line 3, [2]
    for line, place, record, reason in records:
        example = None
        if not reason:
            example_id, reason = row_id(record, fields, path, line, place)
            if not reason and "id" in fields and example_id in seen:
                reason = f"duplicate id {example_id!r} (first at {seen[example_id]})"
            if not reason:
                if "id" in fields:
                    seen[example_id] = place or f"line {line}"
                make = sentence_row if "text" in fields else choice_row
                example, reason = make(record, fields, example_id, line, label_format, context.labelled)
        if reason:
            rows.skip(reason, line=0 if place else line, where=place)
        else:
            rows.add(example)
    return rows.done()


def row_id(record: dict, fields: dict, path: Path, line: int, place: str) -> tuple[str, str]:
    if "id" not in fields:
        return f"{path.stem}{place}" if place else f"{path.stem}:{line}", ""
    value, reason = fields["id"].get(record)
    if reason:
        return "", reason
    text = scalar(value)
    if not text:
        return "", f"{fields['id'].text} is {describe(value)}, not an id"
    return text, ""


def text_of(path: FieldPath, record: dict) -> tuple[str, str]:
    value, reason = path.get(record)
    if reason:
        return "", reason
    if not isinstance(value, str):
        return "", f"{path.text} is {describe(value)}, not a text"
    if not value.strip():
        return "", f"empty {path.text}"
    return value.strip(), ""


def sentence_row(record: dict, fields: dict, example_id: str, line: int, label_format: FileFormat | None,
                 labelled: bool) -> tuple[Example | None, str]:
    texts = []
    for path in fields["text"]:
        text, reason = text_of(path, record)
        if reason:
            return None, reason
        texts.append(text)
    label = None
    if labelled:
        value, reason = fields["label"].get(record)
        if reason:
            return None, reason
        raw = scalar(value)
        if raw is None:
            return None, f"{fields['label'].text} is {describe(value)}, not a label"
        label, reason = label_format.check_label(raw)
        if reason:
            return None, reason
    return Example(example_id, tuple(texts), label, line), ""


def choice_row(record: dict, fields: dict, example_id: str, line: int, label_format: FileFormat | None,
               labelled: bool) -> tuple[ChoiceExample | None, str]:
    stem, reason = text_of(fields["stem"], record)
    if reason:
        return None, reason
    given, reason = fields["choices"].get(record)
    if reason:
        return None, reason
    where = fields["choices"].text
    if not isinstance(given, list):
        return None, f"{where} is {describe(given)}, not a list of choices"
    choices = []
    for index, value in enumerate(given):
        if not isinstance(value, str) or not value.strip():
            return None, f"{where}: choice {index} is {describe(value)}, not a text"
        choices.append(value.strip())
    if len(choices) < 2:
        return None, f"{where}: {len(choices)} choice(s), nothing to choose between"
    labels = [str(i) for i in range(len(choices))]
    if "choice_labels" in fields:
        given, reason = fields["choice_labels"].get(record)
        if reason:
            return None, reason
        where = fields["choice_labels"].text
        if not isinstance(given, list) or len(given) != len(choices):
            return None, f"{where} is {describe(given)}, not a list of {len(choices)} labels (one per choice)"
        labels = [scalar(value) for value in given]
        if bad := [index for index, label in enumerate(labels) if not label]:
            return None, f"{where}: label {bad[0]} is {describe(given[bad[0]])}, not a label"
        if len(set(labels)) != len(labels):
            return None, f"{where} = {labels}: a label is given twice"
    answer = None
    if labelled:
        value, reason = fields["answer"].get(record)
        if reason:
            return None, reason
        key = scalar(value)
        if key not in labels:
            shown = f"{fields['answer'].text} {describe(value)}"
            return None, f"{shown} is not one of the choice labels ({', '.join(labels)})"
        answer = labels.index(key)
    return ChoiceExample(example_id, stem, tuple(choices), tuple(labels), answer, line), ""
