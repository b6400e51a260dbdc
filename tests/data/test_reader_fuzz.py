"""Property-based fuzzing of the data readers (hypothesis): random bytes, quotes, tabs, CR/LF, huge fields, empty
files. Every input either loads or is reported row by row: no traceback, no row invented, none silently dropped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minbert.data.files import parse_examples
from minbert.data.spec import FORMATS
from minbert.errors import DataError

PATH = Path("fuzz.csv")
TRICKY = ['"', '""', '"a', 'a"', '"a"b', '"a\tb"', "\t", "\r", "\n", "\r\n", " ", "", "3", "-1", "2.5", "nan", "inf",
          "1e400", "\ufeff", "\x00", "\x0c", "\u2028", "é", "x" * 140_000]
FIELD = st.one_of(st.text(max_size=12), st.sampled_from(TRICKY))
LINE = st.lists(FIELD, max_size=6).map("\t".join)
TERMINATOR = st.sampled_from(["\n", "\r\n", "\r"])
HEADERS = {"sst": "\tid\tsentence\tsentiment", "sts": "\tid\tsentence1\tsentence2\tsimilarity"}


@st.composite
def files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(HEADERS)))
    header = draw(st.one_of(st.just(HEADERS[kind]), LINE))
    lines = draw(st.lists(st.tuples(LINE, TERMINATOR), max_size=12))
    text = header + draw(TERMINATOR) + "".join(line + end for line, end in lines)
    raw = text.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):  # splice in arbitrary bytes (invalid UTF-8 among them)
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at:]
    return kind, raw


def physical_lines(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    return re.split(r"\r\n|\r|\n", text)


def check_accounted_for(kind: str, raw: bytes, labelled: bool) -> None:
    try:
        loaded = parse_examples(raw, PATH, FORMATS[kind], labelled=labelled)
    except DataError as exc:  # only the file as a whole can be refused: empty, or a header without the columns
        assert str(exc).startswith(f"{PATH}:") or str(exc).startswith(f"{PATH}: empty")
        assert "empty file" in str(exc) or "missing column" in str(exc) or "header" in str(exc)
        return
    lines = physical_lines(raw)
    data_lines = {number for number, line in enumerate(lines[1:], start=2) if line.strip()}
    loaded_lines = [e.line for e in loaded.examples]
    skipped_lines = [s.line for s in loaded.skipped]
    assert len(set(loaded_lines)) == len(loaded_lines), "two examples from one line: a row was invented"
    assert not set(loaded_lines) & set(skipped_lines), "a line both loaded and skipped"
    assert set(loaded_lines) | set(skipped_lines) == data_lines, "a row was dropped without a report (or invented)"
    for skipped in loaded.skipped:
        assert skipped.reason
    fmt = FORMATS[kind]
    for example in loaded.examples:
        source = lines[example.line - 1].replace('"', "")
        for value in (example.id, *example.texts):  # every value comes from its own line
            assert value and value.replace('"', "") in source
        if labelled and fmt.num_classes:
            assert example.label in range(fmt.num_classes)
        elif labelled:
            assert fmt.score_range[0] <= example.label <= fmt.score_range[1]
        else:
            assert example.label is None


FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])


@FUZZ
@given(files(), st.booleans())
def test_structured_files_load_or_are_reported_row_by_row(case, labelled):
    kind, raw = case
    check_accounted_for(kind, raw, labelled)


@FUZZ
@given(st.sampled_from(sorted(HEADERS)), st.binary(max_size=300))
def test_random_bytes_after_a_valid_header(kind, tail):
    check_accounted_for(kind, (HEADERS[kind] + "\n").encode() + tail, labelled=True)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(raw):
    check_accounted_for("sst", raw, labelled=True)


def test_strict_mode_stops_at_the_first_bad_row_with_its_line():
    raw = (HEADERS["sst"] + "\n0\ta\tfine\t1\n1\tb\t\"open\t2\n2\tc\tgood\t3\n").encode()
    with pytest.raises(DataError, match=r"^fuzz\.csv:3: .*quote"):
        parse_examples(raw, PATH, FORMATS["sst"], strict=True)
