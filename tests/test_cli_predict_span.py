"""`minbert predict` of a span task in its natural form (issue 44): `--question` with `--context` prints each answer
with its characters in the context and its score, as serve answers it; `--input FILE.json` still predicts a SQuAD
file; a form the kind does not take is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.predictor import MultitaskBERT
from tests.spans import CONTEXTS, train_span_run, write_span_data

QUESTIONS = ["who plays ?", "what sat ?"]


@pytest.fixture(scope="module")
def span_run(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("span-predict")
    return train_span_run(out, tiny_model_dir, write_span_data(out / "data"))


def test_predict_question_and_context_prints_the_answer_with_its_characters(span_run, tmp_path, capsys):
    flags = [flag for question, context in zip(QUESTIONS, CONTEXTS, strict=True)
             for flag in ("--question", question, "--context", context)]
    assert main(["predict", "--run", str(span_run), "--task", "qa", *flags]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "2 examples predicted"
    printed = [line.split("\t") for line in captured.out.splitlines()]
    answers = MultitaskBERT.load(span_run).answers("qa", list(zip(QUESTIONS, CONTEXTS, strict=True)))
    assert [(int(n), int(start), int(end), float(score), text) for n, start, end, score, text in printed] == [
        (n, a["start"], a["end"], pytest.approx(a["score"], abs=1e-4), a["answer"])
        for n, a in enumerate(answers, start=1)]
    for (_, start, end, _, text), context in zip(printed, CONTEXTS, strict=True):
        assert context[int(start):int(end)] == text and text
    assert [text for *_, text in printed] == ["man", "dog"]  # what the tiny model learned
    output = tmp_path / "answers.tsv"
    assert main(["predict", "--run", str(span_run), "--task", "qa", *flags, "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == captured.out


def test_predict_input_still_takes_a_squad_file(span_run, tmp_path):
    output = tmp_path / "answers.json"
    dev = span_run.parent / "data" / "squad" / "dev.json"
    assert main(["predict", "--run", str(span_run), "--task", "qa", "--input", str(dev), "--output",
                 str(output)]) == 0
    assert json.loads(output.read_text(encoding="utf-8")) == json.loads(
        (span_run / "predictions" / "qa-dev-output.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("flags", "line"), [
    (["--text", "a cat"], "task qa (span extraction) does not take --text: give --question with --context, or "
                          "--input FILE"),
    (["--question", "who?", "--choice", "a"], "task qa (span extraction) does not take --choice: give --question "
                                              "with --context, or --input FILE"),
    ([], "give each --question with its --context (got 0 --question and 0 --context), or --input FILE in the task's "
         "data format"),
    (["--question", "who?", "--question", "what?", "--context", "a cat"],
     "give each --question with its --context (got 2 --question and 1 --context), or --input FILE in the task's "
     "data format"),
    (["--question", "who?", "--context", " "], "--context 1 is empty"),
])
def test_a_form_the_span_kind_does_not_take_is_refused_in_one_line(span_run, capsys, flags, line):
    assert main(["predict", "--run", str(span_run), "--task", "qa", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"minbert: error: {line}"] and captured.out == ""
