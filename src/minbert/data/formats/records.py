"""Records: rows of named fields, each role read from a field path. One set of roles and one set of row checks
serves every record format: `jsonl` (one JSON object a line) and `json` (a file that is one array of objects) here,
`parquet` (parquet.py) and `csv` (csvfile.py); a format only says how it produces records and where a row is
(`line 7`, `[6]`, `row 7`).

A field path is keys joined by dots, with `[]` after a key whose value is a list to take each of its elements:
`question.stem`, `question.choices[].text`. The roles name one kind of rows:

- sentence rows (`text` = one or two paths, `label`): today's `Example`, the label checked against the task's
  classes or score range like a delimited file's.
- choice rows (`stem`, `choices`, `choice_labels`, `answer`): ARC's `answerKey` is looked up among the choices'
  own labels (`A`-`E`, or `1`-`5`); a key that is not one of them is a bad row. Without `choice_labels` the
  choices are labelled by their positions `0`, `1`, ... (an integer answer index).
- tag rows (`words`, `tags`): a sentence's list of words and its list of tags, each a tag string or an integer
  that indexes `tag_names` (or the file's ClassLabel names: HF's `tokens` and `ner_tags`), checked as a CoNLL
  file's are (the scheme, the label set).
- span rows (`question`, `context`, `answer_text`, `answer_start`): SQuAD's flat layout (HF's `answers.text` and
  `answers.answer_start` lists); every answer must be the context's own text at its start, as in squad.py.

A record that is not an object, lacks a field or holds a value of the wrong type or outside the set is a bad row
named by its place with the reason; a repeated id is a bad row (predictions are keyed by id).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from minbert.data.files import Example, LoadedFile, bad_bytes
from minbert.data.formats.base import (
    DATA_FORMATS,
    ChoiceExample,
    ReadContext,
    Rows,
    SpanExample,
    SpanOptions,
    TaggedExample,
    TagOptions,
    describe,
    load_json,
    read_file,
    text_lines,
)
from minbert.data.formats.conll import PREFIXES, check_tag_labels, grammar_error, tag_syntax_error
from minbert.data.formats.squad import SquadFormat, check_answer
from minbert.errors import ConfigError, DataError
from minbert.options import option
from minbert.outputs import check_input_file

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


# Each kind of rows: its field roles (choice_labels is the one a kind may leave out), and the example it reads
ROLES = {"sentence": ("text", "label"), "choice": ("stem", "choices", "choice_labels", "answer"),
         "tag": ("words", "tags"), "span": ("question", "context", "answer_text", "answer_start")}
OPTIONAL_ROLES = frozenset({"choice_labels"})
LABEL_ROLES = frozenset({"label", "answer", "tags", "answer_text", "answer_start"})  # not read in test files
LIST_ROLES = frozenset({"choices", "choice_labels", "words", "tags", "answer_text", "answer_start"})
EXAMPLES = {"sentence": Example, "choice": ChoiceExample, "tag": TaggedExample, "span": SpanExample}
# options that only one kind of rows reads (a table that sets one for another kind is refused)
SETTINGS = {"tag": ("tag_names", "scheme", "labels", "every_subword", "window_overlap"),
            "span": ("doc_stride", "max_query_length", "n_best", "max_answer_length", "no_answer", "null_threshold")}


@dataclass
class RecordOptions(TagOptions, SpanOptions):
    """The field roles every record format shares (and the tag and span kinds' options of their rows)."""

    id: str = ""  # the id's field path; "" = rows are named by file and place
    text: list[str] = field(default_factory=list)  # sentence rows: one path, or two for a pair
    label: str = ""  # sentence rows: the label's path
    stem: str = ""  # choice rows: the question's path (question.stem)
    choices: str = ""  # choice rows: the choices' texts (question.choices[].text)
    choice_labels: str = ""  # choice rows: their labels (question.choices[].label); "" = positions 0, 1, ...
    answer: str = ""  # choice rows: the right choice's label (answerKey)
    words: str = ""  # tag rows: the list of a sentence's words (tokens)
    tags: str = ""  # tag rows: the list of their tags (ner_tags): strings, or integers that index tag_names
    # tag rows: the names of integer tags, index = the integer; [] = the file's ClassLabel names (HF's Parquet)
    tag_names: list[str] = field(default_factory=list)
    scheme: str = option("iob1", choices=tuple(PREFIXES))  # tag rows: as conll's
    labels: list[str] = field(default_factory=list)  # tag rows: the label set; [] = read from the train file
    question: str = ""  # span rows: the question's path
    context: str = ""  # span rows: the context's path
    answer_text: str = ""  # span rows: the answers' texts (answers.text)
    answer_start: str = ""  # span rows: their first characters in the context (answers.answer_start)
    no_answer: bool = False  # span rows: as squad's (an empty answer list is a row)
    null_threshold: float = 0.0  # span rows: as squad's


def row_kinds(options: RecordOptions) -> list[str]:
    """The kinds of rows whose roles the options name (one, in a valid table)."""
    return [kind for kind, roles in ROLES.items() if any(getattr(options, role) for role in roles)]


def roles_text(kind: str) -> str:
    roles = ROLES[kind]
    return f"{', '.join(roles[:-1])} and {roles[-1]}"


class Record(NamedTuple):
    """One row as a format produced it, before any role is read."""

    line: int  # its line in a text file, its row in a Parquet file (from 1), its index in a JSON array
    where: str  # "" for a row named by its line; else its place: `[6]`, `row 7`
    value: Any  # the object read (None where there is none)
    reason: str = ""  # why it is not a row ("" = it may be one)


@dataclass
class RecordFile:
    """A file's records as one format produces them, and what the file itself says of their fields."""

    records: Iterable[Record]
    # a top-level column -> the names its integers stand for (a ClassLabel feature in a Parquet file's metadata)
    class_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class RecordFormat:
    """What every record format shares: the roles' options and checks, and reading records into examples. A format
    gives `open(path, options, fields)`: its RecordFile, after any check of the file as a whole (a missing column)."""

    Options = RecordOptions

    @staticmethod
    def row_fields(options: RecordOptions | None) -> dict[str, object]:
        """What sentence rows' paths give the spec (DataSpec's own `text` and `label`, which need not repeat them)."""
        return {} if options is None else {"text": list(options.text), "label": options.label}

    @staticmethod
    def example_of(options: RecordOptions | None) -> type:
        """What these options read: the example of the kind of rows they name (sentence rows by default)."""
        kinds = row_kinds(options) if options is not None else []
        return EXAMPLES[kinds[0]] if kinds else Example

    @classmethod
    def check(cls, options: RecordOptions, where: str) -> None:
        paths(options, where)
        kinds = row_kinds(options)
        if len(kinds) > 1:
            first, second = kinds[:2]
            raise ConfigError(f"{where}: {roles_text(first)} name the fields of {first} rows, {roles_text(second)} "
                              f"those of {second} rows: name one kind's")
        if not kinds:
            raise ConfigError(f"{where}: name the fields to read: text = [...] and label (sentence rows), or stem, "
                              "choices and answer (choice rows), words and tags (tag rows), question, context, "
                              "answer_text and answer_start (span rows)")
        kind = kinds[0]
        defaults = type(options)()
        for other, keys in SETTINGS.items():
            for key in keys if other != kind else ():
                if getattr(options, key) != getattr(defaults, key):
                    raise ConfigError(f"{where}.{key}: an option of {other} rows; these are {kind} rows")
        if kind == "sentence":
            check_sentence_options(options, where)
            return
        for role in ROLES[kind]:
            if role not in OPTIONAL_ROLES and not getattr(options, role):
                raise ConfigError(f"{where}.{role}: {kind} rows need its field path")
        named = [(key, getattr(options, key)) for key in ("id", *ROLES[kind]) if getattr(options, key)]
        for index, (key, path) in enumerate(named):
            if other := next((k for k, p in named[:index] if p == path), None):
                raise ConfigError(f"{where}: {other} and {key} name the same field {path!r}: each role its own")
        if kind == "tag":
            check_tag_labels(options.labels, options.scheme, f"{where}.labels")
            check_tag_labels(options.tag_names, options.scheme, f"{where}.tag_names", outside=False)
        if kind == "span":
            SquadFormat.check(options, where)

    @classmethod
    def read(cls, path: str | Path, options: RecordOptions, context: ReadContext) -> LoadedFile:
        cls.check(options, "format")  # checked with the config too; a reader called alone is not
        path = check_input_file(path, context.what)
        fields = {role: found for role, found in paths(options, "format").items()
                  if context.labelled or role not in LABEL_ROLES}
        return parse_records(cls.open(path, options, fields), path, options, context)

    @staticmethod
    def open(path: Path, options: RecordOptions, fields: dict[str, FieldPath | list[FieldPath]]) -> RecordFile:
        raise NotImplementedError


def check_sentence_options(options: RecordOptions, where: str) -> None:
    if len(options.text) > 2 or len(set(options.text)) != len(options.text):
        raise ConfigError(f"{where}.text = {options.text}: one field, or two different ones for a pair")
    if not options.text:
        raise ConfigError(f"{where}.text: sentence rows need one field path, or two for a pair")
    if not options.label:
        raise ConfigError(f"{where}.label: sentence rows need the label's field path")
    if options.label in options.text or options.id in (*options.text, options.label):
        raise ConfigError(f"{where}: id, text and label name different fields (the model must not read its "
                          "label, nor rows be named by their content)")


@DATA_FORMATS.register("jsonl")
class JsonLinesFormat(RecordFormat):
    """One JSON object a line, read a line at a time: rows of any kind by field path."""

    @staticmethod
    def open(path: Path, options: RecordOptions, fields: dict) -> RecordFile:
        return RecordFile(json_lines(path))


def json_lines(path: Path) -> Iterator[Record]:
    """A record for each non-blank line (a blank line is not a row)."""
    for number, line in text_lines(path):
        if not line.strip():
            continue
        if bad_bytes(line):
            yield Record(number, "", None, "non-UTF-8 bytes")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Record(number, "", None, f"not JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield Record(number, "", None, "JSON nested too deep to read")
            continue
        yield Record(number, "", record, "" if isinstance(record, dict) else f"{describe(record)}, not a JSON object")


@DATA_FORMATS.register("json")
class JsonArrayFormat(RecordFormat):
    """A JSON file that is one array of objects (read whole), read like `jsonl`'s lines; rows are named by index."""

    @staticmethod
    def open(path: Path, options: RecordOptions, fields: dict) -> RecordFile:
        path, raw = read_file(path)
        document = load_json(raw, path)
        if not isinstance(document, list):
            raise DataError(f"{path}: expected a JSON array of objects (one a row), got {describe(document)}")
        return RecordFile(Record(index, f"[{index}]", record, "" if isinstance(record, dict) else
                                 f"{describe(record)}, not an object") for index, record in enumerate(document))


def paths(options: RecordOptions, where: str) -> dict[str, FieldPath | list[FieldPath]]:
    """Each role's parsed path (roles without one left out)."""
    parsed: dict[str, FieldPath | list[FieldPath]] = {}
    for key in ("id", "label", "stem", "choices", "choice_labels", "answer", *ROLES["tag"], *ROLES["span"]):
        if text := getattr(options, key):
            parsed[key] = FieldPath.parse(text, f"{where}.{key}")
    if options.text:
        parsed["text"] = [FieldPath.parse(text, f"{where}.text[{i}]") for i, text in enumerate(options.text)]
    return parsed


def each_path(fields: dict[str, FieldPath | list[FieldPath]]) -> Iterator[tuple[str, FieldPath]]:
    """(role, path) of every path the fields name (`text`'s one or two too)."""
    for role, found in fields.items():
        for path in found if isinstance(found, list) else [found]:
            yield role, path


def parse_records(source: RecordFile, path: Path, options: RecordOptions, context: ReadContext) -> LoadedFile:
    """A file's examples and bad rows from its records: the one place every record format's rows are checked."""
    reader = RowReader(path, options, context, source.class_names)
    rows = Rows(path, context.strict, context.keep)
    seen: dict[str, str] = {}  # id -> where it was first: line 3, [2], row 4
    for record in source.records:
        example, reason = None, record.reason
        place = record.where or f"line {record.line}"
        if not reason:
            example_id, reason = reader.row_id(record)
            if not reason and "id" in reader.fields and example_id in seen:
                reason = f"duplicate id {example_id!r} (first at {seen[example_id]})"
            if not reason:
                if "id" in reader.fields:
                    seen[example_id] = place
                example, reason = reader.read(record.value, example_id, record.line, place)
        if reason:
            rows.skip(reason, line=0 if record.where else record.line, where=record.where)
        else:
            rows.add(example)
    return rows.done()


class RowReader:
    """A record's example of the kind the options name, or why the record is a bad row."""

    def __init__(self, path: Path, options: RecordOptions, context: ReadContext,
                 class_names: Mapping[str, tuple[str, ...]]):
        self.path, self.options, self.labelled = path, options, context.labelled
        self.fields = {role: found for role, found in paths(options, "format").items()
                       if context.labelled or role not in LABEL_ROLES}
        self.kind = row_kinds(options)[0]
        self.label_format = None
        if self.kind == "sentence" and context.labelled:
            if context.file_format is None:
                raise ConfigError(f"{context.what or path}: sentence rows need the task's classes or score_range to "
                                  "check labels on")
            self.label_format = dataclasses.replace(context.file_format, label_column=options.label)
        column = {role: path.steps[0][0] for role, path in each_path(self.fields)}
        # integers of a ClassLabel column are read as its names: tags always, labels where the classes are names
        self.label_names = class_names.get(column.get("label", ""), ())
        self.tag_names = tuple(options.tag_names) or class_names.get(column.get("tags", ""), ())
        self.tag_set = tuple(options.labels) or context.tags
        self.tag_source = "declared in labels" if options.labels else "read from the train file"

    def read(self, record: dict, example_id: str, line: int, place: str) -> tuple[Any, str]:
        return getattr(self, self.kind)(record, example_id, line, place)

    def row_id(self, record: Record) -> tuple[str, str]:
        if "id" not in self.fields:
            if record.where.startswith("["):
                return f"{self.path.stem}{record.where}", ""
            return f"{self.path.stem}:{record.line}", ""
        value, reason = self.fields["id"].get(record.value)
        if reason:
            return "", reason
        text = scalar(value)
        if not text:
            return "", f"{self.fields['id'].text} is {describe(value)}, not an id"
        return text, ""

    def sentence(self, record: dict, example_id: str, line: int, place: str) -> tuple[Example | None, str]:
        texts = []
        for path in self.fields["text"]:
            text, reason = text_of(path, record)
            if reason:
                return None, reason
            texts.append(text)
        label = None
        if self.labelled:
            value, reason = self.fields["label"].get(record)
            if reason:
                return None, reason
            if self.label_names and self.label_format.classes is not None and is_integer(value) \
                    and 0 <= value < len(self.label_names):
                value = self.label_names[value]  # a ClassLabel's index, where the spec's classes are its names
            raw = scalar(value)
            if raw is None:
                return None, f"{self.fields['label'].text} is {describe(value)}, not a label"
            label, reason = self.label_format.check_label(raw)
            if reason:
                return None, reason
        return Example(example_id, tuple(texts), label, line), ""

    def choice(self, record: dict, example_id: str, line: int, place: str) -> tuple[ChoiceExample | None, str]:
        fields = self.fields
        stem, reason = text_of(fields["stem"], record)
        if reason:
            return None, reason
        given, reason = list_of(fields["choices"], record, "choices")
        if reason:
            return None, reason
        where = fields["choices"].text
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
        if self.labelled:
            value, reason = fields["answer"].get(record)
            if reason:
                return None, reason
            key = scalar(value)
            if key not in labels:
                shown = f"{fields['answer'].text} {describe(value)}"
                return None, f"{shown} is not one of the choice labels ({', '.join(labels)})"
            answer = labels.index(key)
        return ChoiceExample(example_id, stem, tuple(choices), tuple(labels), answer, line), ""

    def tag(self, record: dict, example_id: str, line: int, place: str) -> tuple[TaggedExample | None, str]:
        words, reason = list_of(self.fields["words"], record, "words")
        if reason:
            return None, reason
        where = self.fields["words"].text
        if not words:
            return None, f"{where} is an empty list: a sentence has words"
        for index, word in enumerate(words):
            if not isinstance(word, str) or not word.strip():
                return None, f"{where}: word {index} is {describe(word)}, not a word"
        tags = None
        if self.labelled:
            given, reason = list_of(self.fields["tags"], record, "tags")
            if reason:
                return None, reason
            tags, reason = self.tags_of(given, len(words))
            if reason:
                return None, reason
        return TaggedExample(example_id, tuple(words), tags, line), ""

    def tags_of(self, given: list, count: int) -> tuple[tuple[str, ...] | None, str]:
        where, scheme = self.fields["tags"].text, self.options.scheme
        if len(given) != count:
            return None, f"{where}: {len(given)} tags for {count} words"
        tags = []
        for index, tag in enumerate(given):
            if is_integer(tag):
                if not self.tag_names:
                    raise DataError(f"{self.path}: {where} holds integers ({tag}): name them with format.tag_names "
                                    "(index = the integer), or read a file whose schema has their ClassLabel names")
                if not 0 <= tag < len(self.tag_names):
                    return None, f"{where}: tag {index} is {tag}, not an index of the {len(self.tag_names)} tag names"
                tag = self.tag_names[tag]
            elif not isinstance(tag, str):
                return None, f"{where}: tag {index} is {describe(tag)}, not a tag"
            if reason := tag_syntax_error(tag, scheme):
                return None, f"{where}: tag {index}: {reason}"
            if self.tag_set and tag not in self.tag_set:
                return None, (f"{where}: tag {index} {tag!r} is not in the label set {self.tag_source} "
                              f"({', '.join(self.tag_set)})")
            tags.append(tag)
        if found := grammar_error(tuple(tags), scheme):
            return None, f"{where}: tag {found[0]}: {found[1]}"
        return tuple(tags), ""

    def span(self, record: dict, example_id: str, line: int, place: str) -> tuple[SpanExample | None, str]:
        question, reason = text_of(self.fields["question"], record)
        if reason:
            return None, reason
        context, reason = self.fields["context"].get(record)  # kept as written: the answers' offsets are into it
        if reason:
            return None, reason
        if not isinstance(context, str) or not context.strip():
            return None, f"{self.fields['context'].text} is {describe(context)}, not a text"
        if not self.labelled:
            return SpanExample(example_id, question, context, (), False, place), ""
        texts, reason = list_of(self.fields["answer_text"], record, "answer texts")
        if not reason:
            starts, reason = list_of(self.fields["answer_start"], record, "answer starts")
        if reason:
            return None, reason
        if len(texts) != len(starts):
            return None, (f"{len(texts)} {self.fields['answer_text'].text} for {len(starts)} "
                          f"{self.fields['answer_start'].text}")
        answers = []
        for index, (text, start) in enumerate(zip(texts, starts, strict=True)):
            answer, reason = check_answer({"text": text, "answer_start": start}, context)
            if reason:
                return None, f"answer {index}: {reason}"
            answers.append(answer)
        if not answers and not self.options.no_answer:
            return None, "no answers: a question without an answer needs no_answer = true (SQuAD 2.0)"
        return SpanExample(example_id, question, context, tuple(answers), not answers, place), ""


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def list_of(path: FieldPath, record: dict, what: str) -> tuple[list, str]:
    value, reason = path.get(record)
    if reason:
        return [], reason
    if not isinstance(value, list):
        return [], f"{path.text} is {describe(value)}, not a list of {what}"
    return value, ""


def text_of(path: FieldPath, record: dict) -> tuple[str, str]:
    value, reason = path.get(record)
    if reason:
        return "", reason
    if not isinstance(value, str):
        return "", f"{path.text} is {describe(value)}, not a text"
    if not value.strip():
        return "", f"empty {path.text}"
    return value.strip(), ""
