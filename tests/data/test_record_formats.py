"""The record formats (jsonl, parquet, csv): one set of field roles and one set of row checks, so the same rows
written in each format read back as the same examples and the same bad rows, named by each format's place (a line,
a Parquet row); a missing column is one error before any row; Parquet is read in batches with the same result as
in one; `minbert data` counts rows rather than keeping them."""

from __future__ import annotations

import csv
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minbert.data.files import FileFormat
from minbert.data.formats import DATA_FORMATS, Answer, CheckedFile, ReadContext
from minbert.errors import ConfigError, DataError

FORMATS = ("jsonl", "parquet", "csv")
SUFFIX = {"jsonl": "jsonl", "parquet": "parquet", "csv": "csv"}
NLI = FileFormat(("premise", "hypothesis"), "gold", num_classes=2, classes=("no", "yes"))
CONLL_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # HF's conll2003


def write_rows(tmp_path, fmt: str, rows: list[dict], schema: pa.Schema | None = None, name: str = "train"):
    """The rows in `fmt`: JSON lines, a Parquet file (row groups of 3), or a CSV file whose list and object cells
    are JSON."""
    path = tmp_path / f"{name}.{SUFFIX[fmt]}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=3)
    else:
        with path.open("w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            columns = list(rows[0])
            writer.writerow(columns)
            for row in rows:
                writer.writerow([json.dumps(row[c]) if isinstance(row[c], list | dict) else row[c] for c in columns])
    return path


def place(fmt: str, index: int) -> str:
    """Where row `index` (from 0) is named: its line (a CSV file's header is line 1), or its Parquet row."""
    return {"jsonl": str(index + 1), "csv": str(index + 2), "parquet": f"row {index + 1}"}[fmt]


def read(fmt, path, how=None, **options):
    """`how`: the ReadContext (not `context`, which is a span row's option)."""
    built = DATA_FORMATS.options_of(fmt)(**options)
    DATA_FORMATS.check(fmt, built, "data.format")
    return DATA_FORMATS[fmt].read(path, built, how or ReadContext())


def skipped(loaded):
    return [(s.place, s.reason) for s in loaded.skipped]


@pytest.mark.parametrize("fmt", FORMATS)
def test_sentence_rows(tmp_path, fmt):
    rows = [{"pid": "a", "premise": "A man sleeps.", "hypothesis": "A man rests.", "gold": "yes"},
            {"pid": "b", "premise": "A dog.", "hypothesis": "A cat.", "gold": "maybe"},
            {"pid": "c", "premise": "Rain.", "hypothesis": " ", "gold": "no"},
            {"pid": "a", "premise": "Sun.", "hypothesis": "Light.", "gold": "no"},
            {"pid": "e", "premise": "Snow.", "hypothesis": "Cold.", "gold": "no"}]
    path = write_rows(tmp_path, fmt, rows)
    loaded = read(fmt, path, ReadContext(file_format=NLI), id="pid", text=["premise", "hypothesis"], label="gold")
    assert [(e.id, e.texts, e.label) for e in loaded.examples] == [("a", ("A man sleeps.", "A man rests."), 1),
                                                                   ("e", ("Snow.", "Cold."), 0)]
    first = "line 1" if fmt == "jsonl" else "line 2" if fmt == "csv" else "row 1"
    assert skipped(loaded) == [(place(fmt, 1), "gold 'maybe' is not a declared class (no, yes)"),
                               (place(fmt, 2), "empty hypothesis"),
                               (place(fmt, 3), f"duplicate id 'a' (first at {first})")]
    with pytest.raises(DataError, match=re.escape(f"{path}:{place(fmt, 1)}: gold 'maybe' is not a declared class")):
        read(fmt, path, ReadContext(file_format=NLI, strict=True), id="pid", text=["premise", "hypothesis"],
             label="gold")
    # a test file: no label read, none needed; rows named by file and place without an id
    test = read(fmt, path, ReadContext(labelled=False), text=["premise", "hypothesis"], label="gold")
    assert [e.id for e in test.examples] == [f"train:{place(fmt, i).removeprefix('row ')}" for i in (0, 1, 3, 4)]


def test_parquet_nulls_and_wrong_types_are_bad_rows(tmp_path):
    schema = pa.schema([("premise", pa.string()), ("hypothesis", pa.string()), ("gold", pa.int64()),
                        ("extra", pa.list_(pa.string()))])
    rows = [{"premise": "A.", "hypothesis": "B.", "gold": 1, "extra": []},
            {"premise": None, "hypothesis": "B.", "gold": 1, "extra": []},
            {"premise": "A.", "hypothesis": "B.", "gold": None, "extra": []},
            {"premise": "A.", "hypothesis": "B.", "gold": 7, "extra": []}]
    path = write_rows(tmp_path, "parquet", rows, schema)
    numbered = FileFormat(("premise", "hypothesis"), "gold", num_classes=2)
    loaded = read("parquet", path, ReadContext(file_format=numbered), text=["premise", "hypothesis"], label="gold")
    assert [(e.id, e.label, e.line) for e in loaded.examples] == [("train:1", 1, 1)]
    assert skipped(loaded) == [("row 2", "premise is null, not a text"), ("row 3", "gold is null, not a label"),
                               ("row 4", "gold '7' is not a class in 0..1")]
    # a column of lists where a text is expected: every row says so
    lists = read("parquet", path, ReadContext(file_format=numbered), text=["extra"], label="gold")
    assert skipped(lists)[0] == ("row 1", "extra is a list [], not a text")


@pytest.mark.parametrize("fmt", FORMATS)
def test_tag_rows(tmp_path, fmt):
    rows = [{"tokens": ["EU", "rejects", "German", "call"], "ner_tags": ["I-ORG", "O", "I-MISC", "O"]},
            {"tokens": ["Peter", "Blackburn"], "ner_tags": ["I-PER", "I-PER"]},
            {"tokens": ["BRUSSELS"], "ner_tags": ["I-CITY"]},  # outside the declared set
            {"tokens": ["a", "b"], "ner_tags": ["O"]},  # a tag short
            {"tokens": ["a", None], "ner_tags": ["O", "O"]},  # a null word
            {"tokens": [], "ner_tags": []},
            {"tokens": ["x"], "ner_tags": ["X-PER"]}]
    path = write_rows(tmp_path, fmt, rows)
    options = {"words": "tokens", "tags": "ner_tags", "labels": ["O", "I-ORG", "I-MISC", "I-PER"]}
    loaded = read(fmt, path, **options)
    assert [(e.words, e.tags, e.line) for e in loaded.examples] == [
        (("EU", "rejects", "German", "call"), ("I-ORG", "O", "I-MISC", "O"), int(place(fmt, 0).removeprefix("row "))),
        (("Peter", "Blackburn"), ("I-PER", "I-PER"), int(place(fmt, 1).removeprefix("row ")))]
    assert skipped(loaded) == [
        (place(fmt, 2), "ner_tags: tag 0 'I-CITY' is not in the label set declared in labels (O, I-ORG, I-MISC, "
                        "I-PER)"),
        (place(fmt, 3), "ner_tags: 1 tags for 2 words"),
        (place(fmt, 4), "tokens: word 1 is null, not a word"),
        (place(fmt, 5), "tokens is an empty list: a sentence has words"),
        (place(fmt, 6), "ner_tags: tag 0: tag 'X-PER' is not an iob1 tag (O, or B-/I- and a type)")]
    # iob2 refuses an I- that continues nothing, as the conll reader does
    strict_scheme = read(fmt, path, words="tokens", tags="ner_tags", scheme="iob2")
    assert skipped(strict_scheme)[0] == (place(fmt, 0), "ner_tags: tag 0: tag 'I-ORG' after 'O' continues no ORG "
                                                        "entity: an iob2 entity starts with B-")
    # a test file: words only (the rows bad for their tags alone are read)
    test = read(fmt, path, ReadContext(labelled=False), **options)
    assert [(e.words[0], e.tags) for e in test.examples] == [(w, None) for w in ("EU", "Peter", "BRUSSELS", "a", "x")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_integer_tags_index_tag_names(tmp_path, fmt):
    rows = [{"tokens": ["EU", "rejects", "Peter"], "ner_tags": [3, 0, 1]},
            {"tokens": ["x"], "ner_tags": [9]}]
    path = write_rows(tmp_path, fmt, rows)
    loaded = read(fmt, path, words="tokens", tags="ner_tags", tag_names=CONLL_NAMES, scheme="iob2")
    assert [e.tags for e in loaded.examples] == [("B-ORG", "O", "B-PER")]
    assert skipped(loaded) == [(place(fmt, 1), "ner_tags: tag 0 is 9, not an index of the 9 tag names")]
    with pytest.raises(DataError, match=re.escape(f"{path}: ner_tags holds integers (3): name them with "
                                                  "format.tag_names")):
        read(fmt, path, words="tokens", tags="ner_tags")


def test_parquet_class_label_names_from_hf_metadata(tmp_path):
    """HF datasets writes its features into the file: ner_tags' integers read as the ClassLabel's names, and an
    integer label as its class name where the spec's classes are names."""
    features = {"tokens": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
                "ner_tags": {"feature": {"names": CONLL_NAMES, "_type": "ClassLabel"}, "_type": "Sequence"},
                "label": {"names": ["no", "yes"], "_type": "ClassLabel"},
                "sentence": {"dtype": "string", "_type": "Value"}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    schema = pa.schema([("tokens", pa.list_(pa.string())), ("ner_tags", pa.list_(pa.int64())),
                        ("label", pa.int64()), ("sentence", pa.string())], metadata=metadata)
    rows = [{"tokens": ["Peter", "Blackburn"], "ner_tags": [1, 2], "label": 1, "sentence": "Yes."},
            {"tokens": ["EU"], "ner_tags": [3], "label": 0, "sentence": "No."}]
    path = write_rows(tmp_path, "parquet", rows, schema)
    tagged = read("parquet", path, words="tokens", tags="ner_tags")
    assert [e.tags for e in tagged.examples] == [("B-PER", "I-PER"), ("B-ORG",)]
    named = FileFormat(("sentence",), "label", num_classes=2, classes=("no", "yes"))
    sentences = read("parquet", path, ReadContext(file_format=named), text=["sentence"], label="label")
    assert [e.label for e in sentences.examples] == [1, 0]


SQUAD_CONTEXT = "Normandy is a region in France. Its capital is Rouen."


@pytest.mark.parametrize("fmt", FORMATS)
def test_span_rows_in_squads_flat_layout(tmp_path, fmt):
    def row(qid, question, texts, starts):
        return {"id": qid, "title": "Normandy", "context": SQUAD_CONTEXT, "question": question,
                "answers": {"text": texts, "answer_start": starts}}

    rows = [row("q1", "Where is Normandy?", ["France", "in France"], [24, 21]),
            row("q2", "What is the capital?", ["Paris"], [47]),  # not the context's text there
            row("q3", "Which region?", ["Normandy"], [0]),
            row("q4", "Nothing?", [], []),
            row("q5", "Two texts?", ["Rouen", "Rouen"], [47]),
            row("q1", "Again?", ["Rouen"], [47])]
    path = write_rows(tmp_path, fmt, rows)
    options = {"id": "id", "question": "question", "context": "context", "answer_text": "answers.text",
               "answer_start": "answers.answer_start"}
    loaded = read(fmt, path, **options)
    assert [(e.id, e.question, e.context, e.answers, e.is_impossible) for e in loaded.examples] == [
        ("q1", "Where is Normandy?", SQUAD_CONTEXT, (Answer("France", 24), Answer("in France", 21)), False),
        ("q3", "Which region?", SQUAD_CONTEXT, (Answer("Normandy", 0),), False)]
    first = {"jsonl": "line 1", "csv": "line 2", "parquet": "row 1"}[fmt]
    assert skipped(loaded) == [
        (place(fmt, 1), "answer 0: 'Paris' is not the context's text at answer_start 47 (which reads 'Rouen')"),
        (place(fmt, 3), "no answers: a question without an answer needs no_answer = true (SQuAD 2.0)"),
        (place(fmt, 4), "2 answers.text for 1 answers.answer_start"),
        (place(fmt, 5), f"duplicate id 'q1' (first at {first})")]
    squad2 = read(fmt, path, no_answer=True, **options)
    assert [(e.id, e.is_impossible) for e in squad2.examples] == [("q1", False), ("q3", False), ("q4", True)]
    test = read(fmt, path, ReadContext(labelled=False), **options)
    assert [(e.id, e.answers) for e in test.examples] == [(q, ()) for q in ("q1", "q2", "q3", "q4", "q5")]


@pytest.mark.parametrize("fmt", ("parquet", "csv"))
def test_choice_rows(tmp_path, fmt):
    rows = [{"id": "a", "stem": "Three?", "choices": ["x", "y", "z"], "keys": ["A", "B", "C"], "answerKey": "C"},
            {"id": "b", "stem": "One?", "choices": ["x"], "keys": ["A"], "answerKey": "A"},
            {"id": "c", "stem": "Key?", "choices": ["x", "y"], "keys": ["A", "B"], "answerKey": "E"}]
    path = write_rows(tmp_path, fmt, rows)
    loaded = read(fmt, path, id="id", stem="stem", choices="choices", choice_labels="keys", answer="answerKey")
    assert [(e.id, e.choices, e.choice_labels, e.answer) for e in loaded.examples] == [
        ("a", ("x", "y", "z"), ("A", "B", "C"), 2)]
    assert skipped(loaded) == [(place(fmt, 1), "choices: 1 choice(s), nothing to choose between"),
                               (place(fmt, 2), 'answerKey a string "E" is not one of the choice labels (A, B)')]


def test_csv_list_cells_are_json_arrays(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('tokens,ner_tags\n"[""EU"", ""rejects""]","[""I-ORG"", ""O""]"\n'
                    'EU rejects,"[""I-ORG"", ""O""]"\n'
                    '"[""a""]","{""tag"": ""O""}"\n'
                    '"[""a""]","[""O""]",extra\n'
                    '\n'
                    '"[""a"", ""b""]","[""O"", ""O""]"\n', encoding="utf-8")
    loaded = read("csv", path, words="tokens", tags="ner_tags")
    assert [(e.words, e.tags, e.line) for e in loaded.examples] == [(("EU", "rejects"), ("I-ORG", "O"), 2),
                                                                     (("a", "b"), ("O", "O"), 7)]
    assert skipped(loaded) == [
        ("3", "column tokens 'EU rejects' is not JSON (Expecting value): a list is a JSON array"),
        ("4", 'ner_tags is an object {"tag": "O"}, not a list of tags'),
        ("5", "3 cells, the header has 2")]


@pytest.mark.parametrize("fmt", ("parquet", "csv"))
def test_a_missing_column_is_one_error_before_any_row(tmp_path, fmt):
    rows = [{"tokens": ["EU"], "tags": ["O"]}]
    path = write_rows(tmp_path, fmt, rows)
    have = "the file's columns: tokens, tags" if fmt == "parquet" else "the header has 'tokens', 'tags'"
    line = "" if fmt == "parquet" else ":1"
    with pytest.raises(DataError, match=re.escape(f"{path}{line}: format.tags = 'ner_tags': no column 'ner_tags' "
                                                  f"({have})")):
        read(fmt, path, words="tokens", tags="ner_tags")
    # a test file needs no tag column
    assert len(read(fmt, path, ReadContext(labelled=False), words="tokens", tags="ner_tags").examples) == 1


def test_parquet_nested_fields_are_checked_against_the_schema(tmp_path):
    rows = [{"id": "q", "question": "Q?", "context": "C.", "answers": {"text": ["C"], "answer_start": [0]}}]
    path = write_rows(tmp_path, "parquet", rows)
    options = {"question": "question", "context": "context", "answer_start": "answers.answer_start"}
    with pytest.raises(DataError, match=re.escape("format.answer_text = 'answers.texts': no field 'answers.texts' "
                                                  "(the file's columns: id, question, context, answers)")):
        read("parquet", path, answer_text="answers.texts", **options)
    with pytest.raises(DataError, match=re.escape("format.answer_text = 'question.text': question is not a struct")):
        read("parquet", path, answer_text="question.text", **options)
    assert len(read("parquet", path, answer_text="answers.text", **options).examples) == 1


def test_parquet_in_tiny_batches_reads_the_same_as_in_one(tmp_path):
    rows = [{"tokens": [f"w{i}", "x"], "ner_tags": ["O", "I-PER" if i % 4 else "X-PER"]} for i in range(23)]
    path = write_rows(tmp_path, "parquet", rows)  # row groups of 3
    assert pq.ParquetFile(path).num_row_groups == 8
    whole = read("parquet", path, words="tokens", tags="ner_tags", batch_size=1000)
    for size in (1, 2, 5):
        batched = read("parquet", path, words="tokens", tags="ner_tags", batch_size=size)
        assert batched.examples == whole.examples and skipped(batched) == skipped(whole)
    assert len(whole.examples) == 17 and [p for p, _ in skipped(whole)] == [f"row {i}" for i in (1, 5, 9, 13, 17, 21)]


def test_a_checked_file_counts_rows_and_keeps_none(tmp_path):
    rows = [{"tokens": ["EU"], "ner_tags": ["I-ORG"]}, {"tokens": ["a"], "ner_tags": [5]},
            {"tokens": ["Peter"], "ner_tags": ["I-PER"]}]
    path = write_rows(tmp_path, "jsonl", rows)
    checked = read("jsonl", path, ReadContext(keep=False), words="tokens", tags="ner_tags", tag_names=["O"])
    assert isinstance(checked, CheckedFile)
    assert (checked.rows, checked.examples, checked.bad_rows, checked.tags) == (2, [], 1, {"I-ORG", "I-PER"})
    assert skipped(checked) == [("2", "ner_tags: tag 0 is 5, not an index of the 1 tag names")]


@pytest.mark.parametrize(("options", "message"), [
    ({"words": "tokens", "text": ["s"], "label": "y"},
     "data.format: text and label name the fields of sentence rows, words and tags those of tag rows"),
    ({"words": "tokens"}, "data.format.tags: tag rows need its field path"),
    ({"question": "q", "context": "c", "answer_text": "a.text"}, "data.format.answer_start: span rows need its"),
    ({"words": "t", "tags": "t"}, "data.format: words and tags name the same field 't'"),
    ({"words": "t", "tags": "g", "doc_stride": 64}, "data.format.doc_stride: an option of span rows; these are tag"),
    ({"text": ["s"], "label": "y", "scheme": "iob2"}, "data.format.scheme: an option of tag rows; these are sentence"),
    ({"words": "t", "tags": "g", "tag_names": ["O", "PER"]}, "data.format.tag_names: tag 'PER' is not an iob1 tag"),
    ({"question": "q", "context": "c", "answer_text": "a.text", "answer_start": "a.s", "null_threshold": 1.0},
     "data.format.null_threshold = 1.0: a threshold for the null answer needs no_answer = true"),
])
def test_record_options_are_checked(options, message):
    for fmt in FORMATS:
        with pytest.raises(ConfigError, match=re.escape(message)):
            DATA_FORMATS.check(fmt, DATA_FORMATS.options_of(fmt)(**options), "data.format")


def test_csv_and_parquet_options(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("data.format.delimiter = ';;': one character")):
        read("csv", tmp_path / "never-read.csv", text=["s"], label="y", delimiter=";;")
    with pytest.raises(ConfigError, match=re.escape("data.format.batch_size = 0 must be >= 1")):
        DATA_FORMATS.choose({"name": "parquet", "batch_size": 0}, "data.format")
    semi = tmp_path / "semi.csv"
    semi.write_text("s;y\nA text, with a comma;1\n", encoding="utf-8")
    loaded = read("csv", semi, ReadContext(file_format=FileFormat(("s",), "y", num_classes=2)), text=["s"],
                  label="y", delimiter=";")
    assert [(e.texts, e.label) for e in loaded.examples] == [(("A text, with a comma",), 1)]
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{not_parquet}: not a Parquet file")):
        read("parquet", not_parquet, words="t", tags="g")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'none.parquet'}: cannot read")):
        read("parquet", tmp_path / "none.parquet", words="t", tags="g")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{empty}: empty file (expected a header line)")):
        read("csv", empty, words="t", tags="g")
