"""CoNLL-style token tagging files: one token a line in columns split by spaces or tabs, a blank line after each
sentence, `-DOCSTART-` lines between documents.

    EU NNP I-NP I-ORG
    rejects VBZ I-VP O

A sentence is one row. A bad token line (a missing column, a tag outside the label set or against the declared
scheme, bytes that are not UTF-8) skips its whole sentence with a report naming the line and the sentence's
lines: a sentence is never shortened. The scheme's rules:

- `iob1` (CoNLL-2003): `I-T` inside an entity, `B-T` to start one right after another entity of type T. A `B-T`
  after `O` or after another type also reads as a start (as conlleval reads it; CoNLL-2003's own train file has
  two), so it is accepted.
- `iob2` (BIO): every entity starts with `B-T`; an `I-T` that continues no `B-T`/`I-T` of type T is a bad line
  (the file is IOB1, or broken).
- `iobes`: `B-T I-T* E-T`, or `S-T` alone; an `I-`/`E-` that continues nothing and a `B-`/`I-` that is not
  continued (an entity left open) are bad lines.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from minbert.data.files import LoadedFile, bad_bytes
from minbert.data.formats.base import (
    DATA_FORMATS,
    ReadContext,
    Rows,
    TaggedExample,
    TagOptions,
    decode_lines,
    read_file,
)
from minbert.errors import ConfigError, DataError
from minbert.options import option

OUTSIDE = "O"
PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "iobes": ("B", "I", "E", "S")}  # the label set's order too
NO_TAGS = " (an unlabelled file? a test file may lack the tag column)"
COLUMNS = re.compile(r"[ \t]+")  # not str.split(): a no-break space or \x1c inside a word is part of the word


def tag_syntax_error(tag: str, scheme: str) -> str | None:
    """Why `tag` cannot be a tag of `scheme` (`O`, or PREFIX-TYPE), or None."""
    prefix, dash, kind = tag.partition("-")
    if tag == OUTSIDE or (dash and kind and prefix in PREFIXES[scheme]):
        return None
    prefixes = "/".join(f"{p}-" for p in PREFIXES[scheme])
    return f"tag {tag!r} is not an {scheme} tag ({OUTSIDE}, or {prefixes} and a type)"


def grammar_error(tags: tuple[str, ...], scheme: str) -> tuple[int, str] | None:
    """The first tag (index, reason) that breaks the scheme's sequence rules (see the module's docstring)."""
    if scheme == "iob1":
        return None
    starts = "B-" if scheme == "iob2" else "B- (or is one S- token)"
    previous = OUTSIDE
    for index, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        open_prefix, _, open_kind = previous.partition("-")
        is_open = open_prefix in ("B", "I")
        if prefix in ("I", "E") and not (is_open and open_kind == kind):
            return index, f"tag {tag!r} after {previous!r} continues no {kind} entity: an {scheme} entity starts " \
                          f"with {starts}"
        if scheme == "iobes" and is_open and not (prefix in ("I", "E") and kind == open_kind):
            return index, f"tag {tag!r} after {previous!r}: an iobes entity ends with E-{open_kind}"
        previous = tag
    if scheme == "iobes" and previous.partition("-")[0] in ("B", "I"):
        return len(tags) - 1, f"the sentence ends inside an entity ({previous!r}): an iobes entity ends with E-"
    return None


def tag_labels(examples: Iterable[TaggedExample], scheme: str) -> tuple[str, ...]:
    """The label set of a (train) file's sentences: `O`, then for each entity type in sorted order every prefix of
    the scheme in the order B, I (, E, S) — whether or not the file uses it, so that a `B-` tag rare in IOB1 (or
    absent from train) still has its label, and the set depends on the types alone."""
    return label_set({tag for example in examples for tag in example.tags or ()}, scheme)


def label_set(tags: Iterable[str], scheme: str) -> tuple[str, ...]:
    """The label set of the tags a file uses (tag_labels' rule; a file counted, not kept, gives its tags alone)."""
    kinds = sorted({tag.partition("-")[2] for tag in tags if tag != OUTSIDE})
    return (OUTSIDE, *(f"{prefix}-{kind}" for kind in kinds for prefix in PREFIXES[scheme]))


def check_tag_labels(labels: list[str], scheme: str, where: str, outside: bool = True) -> None:
    """A declared list of tags: each a tag of the scheme, none twice, `O` among them (`outside`: a label set)."""
    for label in labels:
        if reason := tag_syntax_error(label, scheme):
            raise ConfigError(f"{where}: {reason}")
    if outside and labels and OUTSIDE not in labels:
        raise ConfigError(f"{where} = {labels}: the outside tag {OUTSIDE!r} is missing")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where} = {labels}: a label is declared twice")


@DATA_FORMATS.register("conll")
class ConllFormat:
    """Token tagging: one word and its tag a line, sentences between blank lines."""

    example = TaggedExample

    @dataclass
    class Options(TagOptions):  # and the tag kind's window options (every_subword, window_overlap)
        word_column: int = 0  # counted from 0; a negative column counts from the end (-1 = last)
        tag_column: int = -1
        scheme: str = option("iob1", choices=tuple(PREFIXES))
        labels: list[str] = field(default_factory=list)  # the label set; [] = read from the train file (tag_labels)
        docstart: str = "-DOCSTART-"  # a line whose first word is this separates documents; "" = no such lines

    @classmethod
    def check(cls, options: Options, where: str) -> None:
        if options.word_column == options.tag_column:
            raise ConfigError(f"{where}.tag_column = {options.tag_column} is the word column too")
        if COLUMNS.search(options.docstart):
            raise ConfigError(f"{where}.docstart = {options.docstart!r}: one word (no spaces or tabs)")
        check_tag_labels(options.labels, options.scheme, f"{where}.labels")

    @staticmethod
    def read(path: str | Path, options: Options, context: ReadContext) -> LoadedFile:
        path, raw = read_file(path, context.what)
        return parse_conll(decode_lines(raw), path, options, context)


def parse_conll(lines: list[str], path: Path, options: ConllFormat.Options, context: ReadContext) -> LoadedFile:
    rows = Rows(path, context.strict)
    cells = [COLUMNS.split(line.strip(" \t")) if line.strip(" \t") else None for line in lines]
    # The file's width is the column count of most of its token lines: a line with fewer has lost a column
    widths = Counter(len(c) for c in cells if c and c[0] != options.docstart)
    if not widths:
        return rows.done()
    width = widths.most_common(1)[0][0]
    word = column_index(options.word_column, width, "word_column", path)
    tag = column_index(options.tag_column, width, "tag_column", path) if context.labelled else None
    if tag == word:
        raise DataError(f"{path}: its lines have {width} columns: no tag_column {options.tag_column} beside "
                        f"word_column {options.word_column}{NO_TAGS}")
    labels = tuple(options.labels) or context.tags
    allowed = set(labels)
    source = "declared in labels" if options.labels else "read from the train file"

    start = 0  # the current sentence's first line (0: no sentence open)
    words: list[str] = []
    tags: list[str] = []
    token_lines: list[int] = []
    problems: list[tuple[int, str]] = []

    def end_sentence(last: int) -> None:
        nonlocal start
        if start and not problems and tag is not None and (found := grammar_error(tuple(tags), options.scheme)):
            problems.append((token_lines[found[0]], found[1]))
        if problems:
            line, reason = problems[0]
            more = f" (and {len(problems) - 1} more bad lines)" if len(problems) > 1 else ""
            rows.skip(f"{reason}{more}; the sentence of lines {start}-{last} is skipped whole", line=line)
        elif start:
            rows.add(TaggedExample(f"{path.stem}:{start}", tuple(words), tuple(tags) if tag is not None else None,
                                   start))
        start = 0
        for kept in (words, tags, token_lines, problems):
            kept.clear()

    last = 0
    for number, line_cells in enumerate(cells, start=1):
        if line_cells is None or line_cells[0] == options.docstart:  # a blank line or a document boundary
            end_sentence(last)
            continue
        start = start or number
        last = number
        if bad_bytes(lines[number - 1]):
            problems.append((number, "non-UTF-8 bytes"))
            continue
        if len(line_cells) != width:
            missing = " (a missing column)" if len(line_cells) < width else ""
            problems.append((number, f"{len(line_cells)} columns{missing}; the file's lines have {width}"))
            continue
        if tag is not None:
            value = line_cells[tag]
            if reason := tag_syntax_error(value, options.scheme):
                problems.append((number, reason))
                continue
            if allowed and value not in allowed:
                problems.append((number, f"tag {value!r} is not in the label set {source} ({', '.join(labels)})"))
                continue
            tags.append(value)
        words.append(line_cells[word])
        token_lines.append(number)
    end_sentence(last)  # a file may end without a blank line
    return rows.done()


def column_index(column: int, width: int, key: str, path: Path) -> int:
    index = column if column >= 0 else width + column
    if not 0 <= index < width:
        raise DataError(f"{path}: its lines have {width} columns: no {key} {column}"
                        f"{NO_TAGS if key == 'tag_column' else ''}")
    return index
