"""`minbert predict` of a multiple-choice task in its natural form (issue 44): `--question` with `--choice` (repeated)
prints the chosen choice's label and index and every choice's probability, as serve answers it; `--input FILE.jsonl`
still predicts a file in the task's format; a form the kind does not take is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from minbert.cli import main
from minbert.predictor import MultitaskBERT
from tests.choices import train_choice_run, write_choice_data
from tests.tasks.test_choice_kind import RIGHT

STEM, CHOICES = "cat dog film plot", ["dog sat", "python", f"{RIGHT} mat", "guitar"]


@pytest.fixture(scope="module")
def choice_run(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("choice-predict")
    return train_choice_run(out, tiny_model_dir, write_choice_data(out / "data"))


def test_predict_question_and_choices_prints_the_chosen_label_and_every_probability(choice_run, tmp_path, capsys):
    flags = ["--question", STEM, *(flag for choice in CHOICES for flag in ("--choice", choice))]
    assert main(["predict", "--run", str(choice_run), "--task", "arc", *flags]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "1 example predicted"
    [printed] = [line.split("\t") for line in captured.out.splitlines()]
    answer = MultitaskBERT.load(choice_run).answers("arc", [(STEM, *CHOICES)])[0]
    number, chosen, index, *shown = printed
    assert (int(number), chosen, int(index)) == (1, answer["choice"], answer["index"]) == (1, "C", 2)
    assert [item.split("=")[0] for item in shown] == ["A", "B", "C", "D"]
    assert [float(item.split("=")[1]) for item in shown] == pytest.approx(list(answer["probabilities"].values()),
                                                                          abs=1e-4)
    output = tmp_path / "answers.tsv"
    assert main(["predict", "--run", str(choice_run), "--task", "arc", *flags, "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == captured.out


def test_predict_input_still_takes_a_jsonl_file(choice_run, tmp_path):
    output = tmp_path / "choices.csv"
    dev = choice_run.parent / "data" / "arc" / "dev.jsonl"
    assert main(["predict", "--run", str(choice_run), "--task", "arc", "--input", str(dev), "--output",
                 str(output)]) == 0
    assert output.read_text(encoding="utf-8") == (choice_run / "predictions" / "arc-dev-output.csv").read_text(
        encoding="utf-8")


@pytest.mark.parametrize(("flags", "line"), [
    (["--text", "a cat"], "task arc (multiple choice) does not take --text: give --question with --choice, or "
                          "--input FILE"),
    (["--question", "which?", "--context", "a cat"], "task arc (multiple choice) does not take --context: give "
                                                     "--question with --choice, or --input FILE"),
    ([], "give one --question with its --choice flags, two or more (got 0 --question and 0 --choice); several "
         "questions: --input FILE in the task's data format"),
    (["--question", "which?", "--choice", "a"], "give one --question with its --choice flags, two or more (got 1 "
                                                "--question and 1 --choice); several questions: --input FILE in "
                                                "the task's data format"),
    (["--question", "a?", "--question", "b?", "--choice", "a", "--choice", "b"],
     "give one --question with its --choice flags, two or more (got 2 --question and 2 --choice); several "
     "questions: --input FILE in the task's data format"),
    (["--question", "which?", "--choice", "a", "--choice", " "], "--choice 2 is empty"),
    (["--question", "", "--choice", "a", "--choice", "b"], "--question 1 is empty"),
])
def test_a_form_the_choice_kind_does_not_take_is_refused_in_one_line(choice_run, capsys, flags, line):
    assert main(["predict", "--run", str(choice_run), "--task", "arc", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"minbert: error: {line}"] and captured.out == ""
