"""`minbert predict` in each kind's natural form (issue 44): `--text` for a tagging task prints its entities with
their characters in the text; the flags of the other kinds' forms (--question, --context, --choice) are refused in
one line by a kind that does not take them."""

from __future__ import annotations

from pathlib import Path

import pytest

from minbert.cli import main
from minbert.predictor import MultitaskBERT
from tests.serving.conftest import train_tag_run

TEXTS = ["The CAT sat, with  Dog and python .", "guitar cat dog"]


@pytest.fixture(scope="module")
def tag_run(tmp_path_factory, tiny_model_dir) -> Path:
    return train_tag_run(tmp_path_factory.mktemp("tag-run"), tiny_model_dir)


def entity_lines(out: str) -> list[tuple[int, str, int, int, float, str]]:
    rows = [line.split("\t") for line in out.splitlines()]
    return [(int(n), kind, int(start), int(end), float(score), text) for n, kind, start, end, score, text in rows]


def test_predict_text_prints_each_entity_with_its_characters_in_the_text(tag_run, tmp_path, capsys):
    assert main(["predict", "--run", str(tag_run), "--task", "ner", "--text", TEXTS[0], TEXTS[1]]) == 0
    captured = capsys.readouterr()
    printed = entity_lines(captured.out)
    assert captured.err.strip() == "2 examples predicted"
    answers = MultitaskBERT.load(tag_run).answers("ner", [(t,) for t in TEXTS])  # as serve answers them
    assert printed == [(n, e["type"], e["start"], e["end"], pytest.approx(e["score"], abs=1e-4), e["text"])
                       for n, answer in enumerate(answers, start=1) for e in answer["entities"]]
    assert printed, "the tiny model tags the words that say their entity"
    for n, _, start, end, _, text in printed:
        assert TEXTS[n - 1][start:end] == text
    output = tmp_path / "entities.tsv"
    assert main(["predict", "--run", str(tag_run), "--task", "ner", "--text", TEXTS[0], "--text", TEXTS[1],
                 "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == captured.out


@pytest.mark.parametrize(("task", "flags", "line"), [
    ("sst", ["--question", "why?"], "task sst (classification) does not take --question: give --text, or --input FILE"),
    ("ner", ["--text", "a cat", "--context", "x", "--choice", "a", "--choice", "b"],
     "task ner (token tagging) does not take --context, --choice: give --text, or --input FILE"),
    ("ner", [], "give the text(s) to tag, or --input FILE in the task's data format"),
    ("ner", ["--text", "a cat", "--text", " "], "--text 2 is empty"),
    ("sst", [], "give the text(s) to predict, or --input FILE"),
])
def test_a_form_the_kind_does_not_take_is_refused_in_one_line(tag_run, capsys, task, flags, line):
    assert main(["predict", "--run", str(tag_run), "--task", task, *flags]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"minbert: error: {line}"] and captured.out == ""


def test_a_sentence_task_still_prints_its_prediction_beside_its_text(tag_run, capsys):
    assert main(["predict", "--run", str(tag_run), "--task", "sst", "--text", "great film", "bad plot"]) == 0
    labels = MultitaskBERT.load(tag_run).predict("sst", ["great film", "bad plot"])
    assert capsys.readouterr().out.splitlines() == [f"{labels[0]}\tgreat film", f"{labels[1]}\tbad plot"]
