"""The data-format readers (conll, squad, jsonl/json): examples and bad rows exactly as expected, on small files
written here with the defects real files have; and the shared CoNLL-2003, SQuAD and ARC-Easy files read whole."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest

from minbert.data.files import FileFormat, SkippedRow
from minbert.data.formats import DATA_FORMATS, Answer, ReadContext, tag_labels
from minbert.errors import ConfigError, DataError

BOM = "\ufeff".encode()


def write(tmp_path, name, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def read(name, path, context=None, **options):
    unit = DATA_FORMATS[name]
    built = DATA_FORMATS.options_of(name)(**options)
    DATA_FORMATS.check(name, built, "data.format")
    return unit.read(path, built, context or ReadContext())


def skipped(loaded):
    return [(s.place, s.reason) for s in loaded.skipped]


def test_a_format_is_chosen_by_name_with_its_options_checked():
    chosen = DATA_FORMATS.choose({"name": "conll", "scheme": "iobes", "labels": ["O", "S-PER"]}, "data.format")
    assert (chosen.name, chosen.options.scheme, chosen.options.tag_column) == ("conll", "iobes", -1)
    assert DATA_FORMATS.choose("squad", "data.format").options.no_answer is False
    with pytest.raises(ConfigError, match=re.escape("data.format.scheme = 'bio' is not one of iob1, iob2, iobes")):
        DATA_FORMATS.choose({"name": "conll", "scheme": "bio"}, "data.format")
    with pytest.raises(ConfigError, match=re.escape("unknown key 'data.format.no_answers'; did you mean 'no_answer'?")):
        DATA_FORMATS.choose({"name": "squad", "no_answers": True}, "data.format")
    with pytest.raises(ConfigError, match=re.escape("data.format = 'xlsx' is not a data format: one of conll, "
                                                    "squad, jsonl, json, csv, tsv, parquet")):
        DATA_FORMATS.choose("xlsx", "data.format")


def test_skipped_row_place_is_its_line_or_its_place_in_a_json_file():
    assert SkippedRow(7, "x").place == "7"
    assert SkippedRow(0, "x", "data[0].paragraphs[1].qas[2] (id q)").place == "data[0].paragraphs[1].qas[2] (id q)"



def test_tsv_reads_todays_files_through_the_registry(tmp_path):
    path = write(tmp_path, "rte.tsv", "index\tsentence1\tsentence2\tlabel\r\n0\tA.\tB.\tentailment\r\n"
                                      "1\tC.\t\tentailment\r\n")
    fmt = FileFormat(("sentence1", "sentence2"), "label", num_classes=2, id_column="index",
                     classes=("not_entailment", "entailment"))
    loaded = read("tsv", path, ReadContext(file_format=fmt))
    assert [(e.id, e.texts, e.label, e.line) for e in loaded.examples] == [("0", ("A.", "B."), 1, 2)]
    assert skipped(loaded) == [("3", "empty sentence2")]


# --- conll ---------------------------------------------------------------------------------------------------

CONLL = ("-DOCSTART- -X- -X- O\r\n"
         "\r\n"
         "EU NNP I-NP I-ORG\r\n"
         "rejects VBZ I-VP O\r\n"
         "German JJ I-NP B-MISC\r\n"  # IOB1: a B- after O reads as a start (CoNLL-2003's train has two)
         "\r\n"
         "\r\n"  # several blank lines are one sentence end
         "Peter NNP I-NP I-PER\r\n"
         "Blackburn NNP I-NP I-PER\r\n"
         "Smith NNP I-NP B-PER\r\n"  # IOB1: two PER entities that touch
         "-DOCSTART- -X- -X- O\r\n"  # a document boundary ends a sentence even without a blank line
         "BRUSSELS NNP I-NP I-LOC")  # and the file may end without a line break


def test_conll_reads_iob1_with_bom_crlf_and_docstart(tmp_path):
    loaded = read("conll", write(tmp_path, "train.txt", BOM + CONLL.encode()))
    assert [(e.id, e.words, e.tags, e.line) for e in loaded.examples] == [
        ("train:3", ("EU", "rejects", "German"), ("I-ORG", "O", "B-MISC"), 3),
        ("train:8", ("Peter", "Blackburn", "Smith"), ("I-PER", "I-PER", "B-PER"), 8),
        ("train:12", ("BRUSSELS",), ("I-LOC",), 12)]
    assert loaded.skipped == []
    # the label set: O, then each type in order with every prefix of the scheme, used or not
    assert tag_labels(loaded.examples, "iob1") == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG",
                                                   "B-PER", "I-PER")
    assert tag_labels(loaded.examples[2:], "iobes") == ("O", "B-LOC", "I-LOC", "E-LOC", "S-LOC")


def test_conll_test_file_without_the_tag_column(tmp_path):
    path = write(tmp_path, "test.txt", "-DOCSTART- -X- -X-\n\nSOCCER NN I-NP\n- : O\n\nJAPAN NNP I-NP\n")
    loaded = read("conll", path, ReadContext(labelled=False))
    assert [(e.id, e.words, e.tags, e.line) for e in loaded.examples] == [("test:3", ("SOCCER", "-"), None, 3),
                                                                         ("test:6", ("JAPAN",), None, 6)]
    assert loaded.skipped == []
    # read as labelled, the last column is the chunk column: there is no NER column, so every line would be a tag
    # of the wrong kind; a file of one column has no tag column at all: one clear error
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'one.txt'}: its lines have 1 columns: no "
                                                  "tag_column -1 beside word_column 0 (an unlabelled file?")):
        read("conll", write(tmp_path, "one.txt", "SOCCER\n-\n"))


def test_conll_a_bad_line_skips_its_whole_sentence(tmp_path, caplog):
    path = write(tmp_path, "dev.txt", "EU NNP I-NP I-ORG\nrejects VBZ I-VP\ncall NN I-NP O\n\n"
                                      "Peter NNP I-NP I-PER\n\n"
                                      "lamb NN I-NP I-FOOD\n. . O X-PER\n")
    with caplog.at_level(logging.WARNING, logger="minbert"):
        loaded = read("conll", path, ReadContext(tags=("O", "B-ORG", "I-ORG", "B-PER", "I-PER")))
    assert [(e.words, e.tags, e.line) for e in loaded.examples] == [(("Peter",), ("I-PER",), 5)]
    missing = "3 columns (a missing column); the file's lines have 4; the sentence of lines 1-3 is skipped whole"
    outside = ("tag 'I-FOOD' is not in the label set read from the train file (O, B-ORG, I-ORG, B-PER, I-PER) "
               "(and 1 more bad lines); the sentence of lines 7-8 is skipped whole")
    assert skipped(loaded) == [("2", missing), ("7", outside)]
    assert f"{path}:2: skipped row: {missing}" in caplog.text
    with pytest.raises(DataError, match=re.escape(f"{path}:2: {missing}")):
        read("conll", path, ReadContext(strict=True))


@pytest.mark.parametrize(("scheme", "tags", "bad", "reason"), [
    ("iob1", ["X-PER", "O"], 0, "tag 'X-PER' is not an iob1 tag (O, or B-/I- and a type)"),
    ("iob1", ["PER", "O"], 0, "tag 'PER' is not an iob1 tag (O, or B-/I- and a type)"),
    ("iob1", ["E-PER", "O"], 0, "tag 'E-PER' is not an iob1 tag (O, or B-/I- and a type)"),
    ("iob2", ["O", "I-PER"], 1, "tag 'I-PER' after 'O' continues no PER entity: an iob2 entity starts with B-"),
    ("iob2", ["B-LOC", "I-PER"], 1, "tag 'I-PER' after 'B-LOC' continues no PER entity: an iob2 entity starts "
                                    "with B-"),
    ("iobes", ["B-PER", "O"], 1, "tag 'O' after 'B-PER': an iobes entity ends with E-PER"),
    ("iobes", ["S-PER", "E-PER"], 1, "tag 'E-PER' after 'S-PER' continues no PER entity: an iobes entity starts "
                                     "with B- (or is one S- token)"),
    ("iobes", ["O", "B-PER"], 1, "the sentence ends inside an entity ('B-PER'): an iobes entity ends with E-"),
])
def test_conll_tags_that_break_the_scheme(tmp_path, scheme, tags, bad, reason):
    good = ["B-PER", "E-PER"] if scheme == "iobes" else ["B-PER", "I-PER"]  # lines 1-2, then a blank line
    text = "".join(f"w {tag}\n" for tag in good) + "\n" + "".join(f"v {tag}\n" for tag in tags)  # lines 4-5
    loaded = read("conll", write(tmp_path, "train.txt", text), scheme=scheme)
    assert [e.tags for e in loaded.examples] == [tuple(good)]
    assert skipped(loaded) == [(str(4 + bad), f"{reason}; the sentence of lines 4-5 is skipped whole")]


def test_conll_declared_labels_bad_bytes_and_other_columns(tmp_path):
    raw = b"1\tEU\tB-ORG\n2\tcaf\xe9\tO\n\n1\tPeter\tB-PER\n2\tSmith\tI-PER\n\n1\tBonn\tB-LOC\n"
    path = write(tmp_path, "tabs.txt", raw)
    loaded = read("conll", path, word_column=1, tag_column=2, scheme="iob2", labels=["O", "B-PER", "I-PER", "B-ORG"])
    assert [(e.words, e.tags) for e in loaded.examples] == [(("Peter", "Smith"), ("B-PER", "I-PER"))]
    assert skipped(loaded) == [
        ("2", "non-UTF-8 bytes; the sentence of lines 1-2 is skipped whole"),
        ("7", "tag 'B-LOC' is not in the label set declared in labels (O, B-PER, I-PER, B-ORG); the sentence of "
              "lines 7-7 is skipped whole")]


@pytest.mark.parametrize(("options", "message"), [
    ({"word_column": 1, "tag_column": 1}, "data.format.tag_column = 1 is the word column too"),
    ({"labels": ["B-PER", "I-PER"]}, "data.format.labels = ['B-PER', 'I-PER']: the outside tag 'O' is missing"),
    ({"labels": ["O", "S-PER"]}, "data.format.labels: tag 'S-PER' is not an iob1 tag"),
    ({"labels": ["O", "O"]}, "data.format.labels = ['O', 'O']: a label is declared twice"),
    ({"docstart": "-DOC START-"}, "data.format.docstart = '-DOC START-': one word"),
])
def test_conll_options_are_checked(tmp_path, options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        read("conll", tmp_path / "never-read.txt", **options)


# --- squad ---------------------------------------------------------------------------------------------------

CONTEXT = "Warsaw is the capital of Poland. Chopin moved there."


def squad_file(tmp_path, qas, name="train.json", context=CONTEXT):
    document = {"version": "1.1", "data": [{"title": "Warsaw", "paragraphs": [{"context": context, "qas": qas}]}]}
    return write(tmp_path, name, BOM + json.dumps(document, indent=1).replace("\n", "\r\n").encode())


def qa(qid, question, *answers, **extra):
    return {"id": qid, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers], **extra}


def test_squad_answers_are_checked_against_the_context(tmp_path, caplog):
    path = squad_file(tmp_path, [
        qa("q1", " What is Warsaw? ", ("the capital of Poland", 10), ("capital", 14)),
        qa("q2", "Who moved?", ("Chopin", 30)),  # off by 3: never moved to where the text is
        qa("q1", "A second q1?", ("Poland", 25)),
        qa("q4", "Past the end?", ("there.", 50)),
        qa("q5", "No answer?"),
        {"id": "q6", "question": "Where did Chopin move?", "answers": [{"text": "there", "answer_start": "46"}]},
    ])
    with caplog.at_level(logging.WARNING, logger="minbert"):
        loaded = read("squad", path)
    assert [(e.id, e.question, e.answers, e.is_impossible, e.where) for e in loaded.examples] == [
        ("q1", "What is Warsaw?", (Answer("the capital of Poland", 10), Answer("capital", 14)), False,
         "data[0].paragraphs[0].qas[0]")]
    assert loaded.examples[0].context == CONTEXT
    where = "data[0].paragraphs[0].qas"
    assert skipped(loaded) == [
        (f"{where}[1] (id q2)", "answers[0]: 'Chopin' is not the context's text at answer_start 30 (which reads "
                                "'d. Cho')"),
        (f"{where}[2] (id q1)", f"duplicate id 'q1' (first at {where}[0])"),
        (f"{where}[3] (id q4)", "answers[0]: 'there.' at answer_start 50 runs outside the context (52 characters)"),
        (f"{where}[4] (id q5)", "no answers: a question without an answer needs no_answer = true (SQuAD 2.0)"),
        (f"{where}[5] (id q6)", "answers[0]: answer_start is a string \"46\", not a character offset")]
    assert all(s.line == 0 for s in loaded.skipped)
    assert f"{path}:{where}[1] (id q2): skipped row: answers[0]: 'Chopin'" in caplog.text
    with pytest.raises(DataError, match=re.escape(f"{path}:{where}[1] (id q2): answers[0]: 'Chopin' is not")):
        read("squad", path, ReadContext(strict=True))


def test_squad_v2_impossible_questions_need_no_answer(tmp_path):
    path = squad_file(tmp_path, [qa("a", "Capital?", ("Warsaw", 0), is_impossible=False),
                                 qa("b", "Who founded it?", is_impossible=True),
                                 qa("c", "Both?", ("Warsaw", 0), is_impossible=True)])
    without = read("squad", path)
    assert [e.id for e in without.examples] == ["a"]
    assert skipped(without) == [
        ("data[0].paragraphs[0].qas[1] (id b)", "is_impossible: a question without an answer needs no_answer = true "
                                                "(SQuAD 2.0)"),
        ("data[0].paragraphs[0].qas[2] (id c)", "is_impossible, yet it has 1 answers")]
    allowed = read("squad", path, no_answer=True)
    assert [(e.id, e.answers, e.is_impossible) for e in allowed.examples] == [("a", (Answer("Warsaw", 0),), False),
                                                                              ("b", (), True)]
    assert [s.where for s in allowed.skipped] == ["data[0].paragraphs[0].qas[2] (id c)"]


def test_squad_test_file_and_broken_files(tmp_path):
    path = squad_file(tmp_path, [qa("t1", "Capital?"), {"id": "t2", "question": "Moved?"}], name="test.json")
    loaded = read("squad", path, ReadContext(labelled=False))
    assert [(e.id, e.answers, e.is_impossible) for e in loaded.examples] == [("t1", (), False), ("t2", (), False)]
    not_json = write(tmp_path, "bad.json", '{"data": [\n  {"paragraphs": [}\n]}')
    with pytest.raises(DataError, match=re.escape(f"{not_json}:2:19: not JSON (Expecting value)")):
        read("squad", not_json)
    not_utf8 = write(tmp_path, "latin.json", b'{"data": [\n{"title": "caf\xe9"}]}')
    with pytest.raises(DataError, match=re.escape(f"{not_utf8}:2: not UTF-8 (byte 25 of the file, 0xe9)")):
        read("squad", not_utf8)
    with pytest.raises(DataError, match=re.escape(f"{not_json}: not a SQuAD file (expected an object with a `data` "
                                                  "list of articles, got a list [1]")):
        read("squad", write(tmp_path, "bad.json", "[1]"))
    broken = write(tmp_path, "broken.json", json.dumps({"data": [
        {"paragraphs": [{"context": "", "qas": [qa("x", "?")]}, {"context": "Ok.", "qas": [qa("y", "?", ("Ok", 0))]}]},
        {"title": "no paragraphs"}]}))
    loaded = read("squad", broken)
    assert [e.id for e in loaded.examples] == ["y"]
    assert skipped(loaded) == [("data[0].paragraphs[0]", 'no context text (got a string ""): its 1 questions are '
                                                         "skipped"),
                               ("data[1]", "an article without a `paragraphs` list (skipped whole)")]


def test_a_reader_takes_regular_files_only(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"tasks.qa.data.dev: {tmp_path}: a directory, not a regular file")):
        read("squad", tmp_path, ReadContext(what="tasks.qa.data.dev"))


# --- jsonl / json --------------------------------------------------------------------------------------------

ARC = {"id": "id", "stem": "question.stem", "choices": "question.choices[].text",
       "choice_labels": "question.choices[].label", "answer": "answerKey"}


def arc_row(qid, stem, labels, key=None):
    row = {"id": qid, "question": {"stem": stem, "choices": [{"text": f"choice {label}", "label": label}
                                                             for label in labels]}}
    return json.dumps(row if key is None else {**row, "answerKey": key})


def test_jsonl_choice_rows_like_arc(tmp_path, caplog):
    lines = [arc_row("q1", "Three?", "ABC", "C"),
             arc_row("q2", "Five?", "ABCDE", "A"),
             arc_row("q3", "Digits?", "1234", "2"),
             "",  # a blank line is not a row
             '{"id": "q4", "question": {"stem": "Cut off"',
             '["a", "list"]',
             arc_row("q6", "No key?", "ABCD"),
             arc_row("q7", "Key outside?", "ABCD", "E"),
             arc_row("q1", "Again?", "AB", "A"),
             json.dumps({"id": "q9", "question": {"stem": "Number key?", "choices": [{"text": "x", "label": 1},
                                                                                    {"text": "y", "label": 2}]},
                         "answerKey": 2}),
             json.dumps({"id": "q10", "question": {"stem": "Lost label?", "choices": [{"text": "x", "label": "A"},
                                                                                     {"text": "y"}]},
                         "answerKey": "A"}),
             json.dumps({"id": "q11", "question": {"stem": "", "choices": []}, "answerKey": "A"})]
    path = write(tmp_path, "train.jsonl", BOM + "\r\n".join(lines).encode() + b"\r\n")
    with caplog.at_level(logging.WARNING, logger="minbert"):
        loaded = read("jsonl", path, **ARC)
    assert [(e.id, e.stem, e.choices, e.choice_labels, e.answer, e.line) for e in loaded.examples] == [
        ("q1", "Three?", ("choice A", "choice B", "choice C"), ("A", "B", "C"), 2, 1),
        ("q2", "Five?", tuple(f"choice {c}" for c in "ABCDE"), tuple("ABCDE"), 0, 2),
        ("q3", "Digits?", tuple(f"choice {c}" for c in "1234"), tuple("1234"), 1, 3),
        ("q9", "Number key?", ("x", "y"), ("1", "2"), 1, 10)]
    assert skipped(loaded) == [
        ("5", "not JSON (Expecting ',' delimiter at column 44)"),
        ("6", 'a list ["a", "list"], not a JSON object'),
        ("7", "no field answerKey"),
        ("8", 'answerKey a string "E" is not one of the choice labels (A, B, C, D)'),
        ("9", "duplicate id 'q1' (first at line 1)"),
        ("11", "no field question.choices[1].label"),
        ("12", "empty question.stem")]
    assert f"{path}:5: skipped row: not JSON" in caplog.text
    with pytest.raises(DataError, match=re.escape(f"{path}:5: not JSON")):
        read("jsonl", path, ReadContext(strict=True), **ARC)
    # a test file: no answerKey needed, none read
    test = read("jsonl", path, ReadContext(labelled=False), **ARC)
    assert [(e.id, e.answer) for e in test.examples] == [("q1", None), ("q2", None), ("q3", None), ("q6", None),
                                                        ("q7", None), ("q9", None)]


def test_jsonl_sentence_rows_and_bad_bytes(tmp_path):
    rows = [{"pid": 1, "premise": "A man sleeps.", "hypothesis": "A man rests.", "gold": "entailment"},
            {"pid": 2, "premise": "A dog.", "gold": "neutral"},
            {"pid": 3, "premise": "A cat.", "hypothesis": "An animal.", "gold": "maybe"},
            {"pid": 4, "premise": "Rain.", "hypothesis": "  ", "gold": "neutral"},
            {"pid": 5, "premise": ["a", "list"], "hypothesis": "x", "gold": "neutral"},
            {"pid": 6, "premise": "Sun.", "hypothesis": "Light.", "gold": None}]
    raw = b"\n".join(json.dumps(r).encode() for r in rows) + b'\n{"pid": 7, "premise": "caf\xe9"}\n'
    path = write(tmp_path, "nli.jsonl", raw)
    file_format = FileFormat(("premise", "hypothesis"), "gold", num_classes=3,
                              classes=("entailment", "neutral", "contradiction"))
    options = {"id": "pid", "text": ["premise", "hypothesis"], "label": "gold"}
    loaded = read("jsonl", path, ReadContext(file_format=file_format), **options)
    assert [(e.id, e.texts, e.label, e.line) for e in loaded.examples] == [
        ("1", ("A man sleeps.", "A man rests."), 0, 1)]
    assert skipped(loaded) == [
        ("2", "no field hypothesis"),
        ("3", "gold 'maybe' is not a declared class (entailment, neutral, contradiction)"),
        ("4", "empty hypothesis"),
        ("5", 'premise is a list ["a", "list"], not a text'),
        ("6", "gold is null, not a label"),
        ("7", "non-UTF-8 bytes")]
    # regression rows, named by file and line, with numeric labels
    scores = write(tmp_path, "sts.jsonl", '{"s": "a", "y": 4.5}\n{"s": "b", "y": 7}\n{"s": "c", "y": true}\n')
    loaded = read("jsonl", scores, ReadContext(file_format=FileFormat(("s",), "y", score_range=(0, 5))),
                  text=["s"], label="y")
    assert [(e.id, e.texts, e.label) for e in loaded.examples] == [("sts:1", ("a",), 4.5)]
    assert skipped(loaded) == [("2", "y '7' is outside 0..5"), ("3", "y is a boolean true, not a label")]


def test_json_array_of_choice_rows(tmp_path):
    rows = [{"qid": "a", "ctx": "Pick one", "endings": ["x", "y", "z"], "label": 2},
            {"qid": "b", "ctx": "Pick", "endings": ["x"], "label": 0},
            "not an object",
            {"qid": "d", "ctx": "Pick", "endings": ["x", "y"], "label": 5},
            {"qid": "a", "ctx": "Again", "endings": ["x", "y"], "label": 0}]
    path = write(tmp_path, "swag.json", json.dumps(rows))
    loaded = read("json", path, id="qid", stem="ctx", choices="endings", answer="label")
    assert [(e.id, e.choices, e.choice_labels, e.answer, e.line) for e in loaded.examples] == [
        ("a", ("x", "y", "z"), ("0", "1", "2"), 2, 0)]
    assert skipped(loaded) == [("[1]", "endings: 1 choice(s), nothing to choose between"),
                               ("[2]", 'a string "not an object", not an object'),
                               ("[3]", "label a number 5 is not one of the choice labels (0, 1)"),
                               ("[4]", "duplicate id 'a' (first at [0])")]
    with pytest.raises(DataError, match=re.escape(f"{path}: expected a JSON array of objects (one a row), got an "
                                                  "object")):
        read("json", write(tmp_path, "swag.json", '{"rows": []}'), id="qid", stem="ctx", choices="endings",
             answer="label")


@pytest.mark.parametrize(("options", "message"), [
    ({}, "data.format: name the fields to read: text = [...] and label (sentence rows), or stem, choices and answer"),
    ({"stem": "q", "choices": "c[]"}, "data.format.answer: choice rows need its field path"),
    ({"stem": "q", "choices": "c[]", "answer": "a", "label": "y"}, "data.format: text and label name the fields"),
    ({"text": ["a", "b", "c"], "label": "y"}, "data.format.text = ['a', 'b', 'c']: one field, or two different"),
    ({"text": ["a"]}, "data.format.label: sentence rows need the label's field path"),
    ({"text": ["a"], "label": "a"}, "data.format: id, text and label name different fields"),
    ({"text": ["a..b"], "label": "y"}, "data.format.text[0] = 'a..b': a field path is keys joined by dots"),
    ({"stem": "q", "choices": "c[0].text", "answer": "a"}, "data.format.choices = 'c[0].text': a field path is"),
])
def test_jsonl_options_are_checked(tmp_path, options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        read("jsonl", tmp_path / "never-read.jsonl", **options)


# --- the shared files ------------------------------------------------------------------------------------------

def test_the_shared_files_read_whole(data_dir):
    if not (data_dir / "conll2003").is_dir():
        pytest.skip("the conll2003, squad and arc-easy data are not in the data directory")
    began = time.perf_counter()
    train = read("conll", data_dir / "conll2003/train.txt")
    seconds = time.perf_counter() - began
    labels = tag_labels(train.examples, "iob1")
    dev = read("conll", data_dir / "conll2003/dev.txt", ReadContext(tags=labels))
    test = read("conll", data_dir / "conll2003/test.txt", ReadContext(labelled=False))
    assert [len(f.examples) for f in (train, dev, test)] == [14041, 3250, 3453]
    assert [sum(len(e.words) for e in f.examples) for f in (train, dev, test)] == [203621, 51362, 46435]
    assert not train.skipped and not dev.skipped and not test.skipped
    assert len(labels) == 9 and seconds < 30  # about 1 s on one shared core
    for split, count in (("train", 7266), ("dev", 1340), ("test", 1964)):
        loaded = read("squad", data_dir / f"squad/{split}.json", ReadContext(labelled=split != "test"))
        assert (len(loaded.examples), loaded.skipped) == (count, [])
        assert all(e.answers for e in loaded.examples) == (split != "test")
    for split, count in (("train", 2251), ("dev", 570), ("test", 2376)):
        loaded = read("jsonl", data_dir / f"arc-easy/{split}.jsonl", ReadContext(labelled=split != "test"), **ARC)
        assert (len(loaded.examples), loaded.skipped) == (count, [])
        assert {len(e.choices) for e in loaded.examples} == {3, 4, 5}
        assert all((e.answer is None) == (split == "test") for e in loaded.examples)
