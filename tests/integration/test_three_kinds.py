"""A tiny multitask run of one task of each new kind (tag: CoNLL, span: SQuAD, choice: ARC-style JSON lines) beside a
sentence task (sst), in one config and one encoder, through everything a user does with it (issue 44's tests): it
trains with the round-robin sampler and writes each kind's prediction files; killed by SIGKILL mid-epoch after a
checkpoint, `train --resume` ends byte-identical to an uninterrupted run; `minbert predict` takes each kind's
natural form; `serve` answers each kind's body and refuses another kind's with a 422; the ONNX export gives
PyTorch's outputs within 1e-4 for every task; and the report renders each kind's views in Chromium with markup in a
token, a context and a choice shown as text. The run is trained once for the module."""

from __future__ import annotations

import csv
import json
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from minbert.cli import main
from minbert.predictor import MultitaskBERT
from minbert.reporting.report import write_report
from minbert.training.config import load_config
from tests.conftest import make_tiny_data_dir, write_tiny_config
from tests.faults import run_with_fault
from tests.serving.conftest import running_server
from tests.tagging import BOLD, SCRIPT, write_tag_data
from tests.tasks.test_choice_kind import ARC, questions, write_jsonl
from tests.tasks.test_span_kind import QA, squad_questions, write_squad
from tests.tasks.test_tag_kind import NER, conll_words

# one worker runs the module's tests (pytest-xdist), so that the run is trained once
pytestmark = pytest.mark.xdist_group("three_kinds_run")

TASKS = '[tasks.sst]\ndata = "sst"\n' + NER + QA + ARC
# dev rows with markup in them, each one the model gets wrong, so that the report lists it among its worst: a context
# whose gold answer is the markup itself, a question whose gold is not the choice the model learned to pick ("great")
HOSTILE_CONTEXT = f"the man plays guitar {SCRIPT} on the mat {BOLD} ."
HOSTILE_QUESTION = {"id": "d-hostile", "question": "what sat ?",
                    "answers": [{"text": BOLD, "answer_start": HOSTILE_CONTEXT.index(BOLD)}]}
HOSTILE_CHOICE = {"id": "dev-hostile", "question": {"stem": f"which is {BOLD} ?", "choices": [
    {"text": f"great {SCRIPT}", "label": "A"}, {"text": "bad plot", "label": "B"}, {"text": "dog", "label": "C"}]},
    "answerKey": "B"}
# 2 epochs of 21 round-robin steps: a checkpoint every 5 steps (and at each epoch's end) lands inside either epoch
TRAIN = 'epochs = 2\nlr = 3e-3\nsampler = "round_robin"\nprecision = "fp32"\ncheckpoint_every = 5\nkeep_checkpoints = 2'
PREDICTION_FILES = {"sst": "sst-{split}-output.csv", "ner": "ner-{split}-output.txt", "qa": "qa-{split}-output.json",
                    "arc": "arc-{split}-output.csv"}


def write_three_kind_data(directory: Path) -> Path:
    """The tiny CS224N files, ner/ (the hostile sentence among dev's), squad/ (a dev context with markup in it) and
    arc/ (a dev choice with markup in it, 3, 4 and 5 choices, labels A-E and 1-5)."""
    make_tiny_data_dir(directory, n_train=24, n_dev=8)
    write_tag_data(directory)
    rng = random.Random(0)
    write_squad(directory / "squad" / "train.json", rng, 20, (8, 20))
    write_squad(directory / "squad" / "dev.json", rng, 4, (40, 70), prefix="d")  # several windows of 32 tokens
    write_squad(directory / "squad" / "test.json", rng, 2, (40, 70), labelled=False, prefix="t")
    dev = json.loads((directory / "squad" / "dev.json").read_text(encoding="utf-8"))
    dev["data"].insert(1, {"title": "hostile", "paragraphs": [{"context": HOSTILE_CONTEXT, "qas": [HOSTILE_QUESTION]}]})
    (directory / "squad" / "dev.json").write_text(json.dumps(dev), encoding="utf-8")
    write_jsonl(directory / "arc" / "train.jsonl", questions(rng, "train-", 40))
    write_jsonl(directory / "arc" / "dev.jsonl", [*questions(rng, "dev-", 7), HOSTILE_CHOICE])
    write_jsonl(directory / "arc" / "test.jsonl", questions(rng, "test-", 4, labelled=False))
    return directory


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_three_kind_data(tmp_path_factory.mktemp("three-kind-data"))


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("three-kind-runs")
    return write_tiny_config(out / "three.toml", out, tiny_model_dir, tasks=TASKS, train=TRAIN)


@pytest.fixture(scope="module")
def run(config, data) -> Path:
    """The uninterrupted run, trained once for the module: read it, never change it."""
    assert main(["train", "--config", str(config), "--data-dir", str(data), "name=whole"]) == 0
    return config.parent / "whole"


def test_the_run_writes_each_kinds_prediction_files_in_its_convention(run, data):
    final = json.loads((run / "metrics.json").read_text())["final_dev"]
    assert {task: result["metric"] for task, result in final.items()} == {
        "sst": "accuracy", "ner": "entity_f1", "qa": "f1", "arc": "accuracy"}
    tags = set(load_config(run / "config.toml").tasks["ner"].data.format.options.labels)
    for split in ("dev", "test"):
        predictions = run / "predictions"
        # tag: CoNLL layout, `word tag` for every token of the input file in its order
        ner = predictions / f"ner-{split}-output.txt"
        assert conll_words(ner) == conll_words(data / "ner" / f"{split}.txt")
        assert {line.split(" ")[1] for line in ner.read_text(encoding="utf-8").splitlines() if line} <= tags
        # span: SQuAD's own prediction format, every question id once in file order, an answer from its context
        questions = squad_questions(data / "squad" / f"{split}.json")
        answers = json.loads((predictions / f"qa-{split}-output.json").read_text(encoding="utf-8"))
        assert list(answers) == [q["id"] for q in questions]
        assert all(answers[q["id"]] in q["context"] for q in questions)
        # choice: id,Predicted_answer with the choice's own label
        source = [json.loads(line) for line in (data / "arc" / f"{split}.jsonl").read_text().splitlines()]
        with (predictions / f"arc-{split}-output.csv").open(newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
        assert rows[0] == ["id", "Predicted_answer"] and [row[0] for row in rows[1:]] == [q["id"] for q in source]
        assert all(label in [c["label"] for c in q["question"]["choices"]] for (_, label), q in zip(
            rows[1:], source, strict=True))
        assert (predictions / f"sst-{split}-output.csv").is_file()


def test_a_kill_mid_epoch_then_resume_ends_byte_identical_to_the_uninterrupted_run(run, config, data):
    """A real SIGKILL in the middle of step 27, two steps after the second epoch's first checkpoint (step 25 of 42):
    `train --resume` restarts there and ends with the same best weights and the same prediction files, byte for
    byte."""
    killed = config.parent / "killed"
    result = run_with_fault("signal@step-27:SIGKILL", "train", "--config", str(config), "--data-dir", str(data),
                            "name=killed")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert "final_dev" not in (killed / "metrics.json").read_text()  # killed before the end
    assert main(["train", "--resume", str(killed), "--data-dir", str(data)]) == 0
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["resumed_from"]["step"] == 25  # mid-epoch: epoch 2's steps are 22..42
    whole = json.loads((run / "metrics.json").read_text())
    assert metrics["final_dev"] == whole["final_dev"] and metrics["best"] == whole["best"]
    assert (killed / "best" / "model.safetensors").read_bytes() == (run / "best" / "model.safetensors").read_bytes()
    files = sorted(p.name for p in (run / "predictions").iterdir())
    assert sorted(p.name for p in (killed / "predictions").iterdir()) == files
    assert {name.split("-")[0] for name in files} == set(PREDICTION_FILES)
    for name in files:
        assert (killed / "predictions" / name).read_bytes() == (run / "predictions" / name).read_bytes(), name


# each kind's natural form, as `minbert predict`'s flags and as rows of texts (TaskKind.predict_rows' answer)
TEXTS = ["The CAT sat with Dog and python .", "guitar cat dog"]
QUESTIONS = [("who plays ?", "the a film movie good man plays guitar and the dog sat on the mat"),
             ("what sat ?", "a dog sat on the mat")]
CHOICES = ("which is good ?", "great film", "bad plot", "the dog")
FLAGS = {"ner": (["--text", TEXTS[0], "--text", TEXTS[1]], [(text,) for text in TEXTS]),
         "qa": ([flag for q, c in QUESTIONS for flag in ("--question", q, "--context", c)], QUESTIONS),
         "arc": (["--question", CHOICES[0], *[flag for c in CHOICES[1:] for flag in ("--choice", c)]], [CHOICES])}


@pytest.fixture(scope="module")
def model(run) -> MultitaskBERT:
    return MultitaskBERT.load(run)


@pytest.mark.parametrize("task", ["ner", "qa", "arc"])
def test_predict_takes_each_kinds_natural_form(run, model, task, capsys):
    flags, rows = FLAGS[task]
    assert main(["predict", "--run", str(run), "--task", task, *flags]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == f"{len(rows)} example{'s' if len(rows) > 1 else ''} predicted"
    answers = model.answers(task, rows)  # as serve answers them
    kind = model.model.heads[task].kind
    assert captured.out.splitlines() == [line for n, answer in enumerate(answers, start=1)
                                         for line in kind.answer_lines(n, answer)]
    if task == "ner":  # entities with their characters in the text
        assert any(answer["entities"] for answer in answers)
        assert all(e["text"] == text[e["start"]:e["end"]] for (text,), answer in zip(rows, answers, strict=True)
                   for e in answer["entities"])
    elif task == "qa":  # an answer from its own context, at its characters
        assert all(a["answer"] and a["answer"] == context[a["start"]:a["end"]] and 0 < a["score"] <= 1
                   for (_, context), a in zip(rows, answers, strict=True))
    else:  # each choice's probability by its label (A, B, C where none are given), the likeliest one chosen
        (answer,) = answers
        probabilities = answer["probabilities"]
        assert list(probabilities) == ["A", "B", "C"] and sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert answer["choice"] == max(probabilities, key=probabilities.get) == "ABC"[answer["index"]]


# each kind's body for POST /predict/{task}, and its rows
BODIES = {"sst": ({"texts": TEXTS}, [(text,) for text in TEXTS]),
          "ner": ({"text": TEXTS[0]}, [(TEXTS[0],)]),
          "qa": ({"questions": [{"question": q, "context": c} for q, c in QUESTIONS]}, QUESTIONS),
          "arc": ({"question": CHOICES[0], "choices": list(CHOICES[1:])}, [CHOICES])}


@pytest.fixture(scope="module")
def server(model) -> Iterator[str]:
    with running_server(model) as url:
        yield url


def test_serve_answers_each_kinds_body(server, model):
    for task, (body, rows) in BODIES.items():
        response = httpx.post(f"{server}/predict/{task}", json=body, timeout=30)
        assert response.status_code == 200, (task, response.text)
        assert response.json()["results"] == model.answers(task, rows), task


# another kind's body, except sst's {"texts": [...]}, which a tag task takes too
@pytest.mark.parametrize(("task", "other"), [(task, other) for task in BODIES for other in BODIES
                                             if other != task and (task, other) != ("ner", "sst")])
def test_serve_refuses_another_kinds_body_with_a_422(server, task, other):
    response = httpx.post(f"{server}/predict/{task}", json=BODIES[other][0], timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]  # it names a key: the body's one the task does not take, or its own
    assert any(key in error for key in (*BODIES[other][0], *BODIES[task][0])), error


def arrays(soft: object) -> list[np.ndarray]:
    """A soft output's numbers as flat arrays: (examples, classes) arrays, per-example arrays (a sentence's words'
    tag probabilities), per-question window logits (their `logits`)."""
    if hasattr(soft, "logits"):
        return arrays(soft.logits)
    if isinstance(soft, np.ndarray) and soft.dtype != object:
        return [soft.astype(np.float64).ravel()]
    return [array for item in soft for array in arrays(item)]


def test_the_onnx_export_gives_every_tasks_outputs_within_1e_4(run, model, data, tmp_path):
    assert main(["export", str(run), "--format", "onnx", str(tmp_path / "onnx")]) == 0
    exported = MultitaskBERT.load(run, backend="onnx", onnx_dir=tmp_path / "onnx")
    for task, head in model.model.heads.items():
        spec = head.kind.spec
        examples = spec.read(data / spec.dev, tags=spec.train_tags(None)).examples
        want, got = arrays(model.outputs(task, examples)), arrays(exported.outputs(task, examples))
        assert len(got) == len(want) and want, task
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0, err_msg=task)
        written = [head.kind.written(p) for p in model.outputs(task, examples, soft=False)]
        assert [head.kind.written(p) for p in exported.outputs(task, examples, soft=False)] == written, task


def test_the_report_shows_markup_in_a_token_a_context_and_a_choice_as_text_in_chromium(run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.serving.test_browser import Watched, chromium_path

    report = write_report([run], tmp_path / "report.html")
    html = report.read_text(encoding="utf-8")
    assert SCRIPT not in html and BOLD not in html  # escaped wherever it is shown
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            watched = Watched(browser)
            page = watched.page
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            assert watched.errors == []
            assert page.evaluate("window.pwned") is None  # no script of the data ran
            for task in ("ner", "qa", "arc"):
                # a task's section: its heading up to the next one; its text as a person reads it, and the markup
                # that rendered as elements in it
                text, marked = page.evaluate("""task => {
                    let texts = [], marked = 0;
                    for (let e = document.getElementById("task-" + task).nextElementSibling;
                         e && e.tagName !== "H2"; e = e.nextElementSibling) {
                        texts.push(e.innerText);
                        marked += e.querySelectorAll("b, script").length;
                    }
                    return [texts.join("\\n"), marked];
                }""", task)
                assert SCRIPT in text and BOLD in text, task  # the token, the context, the choice: shown as text
                assert marked == 0, task
        finally:
            browser.close()
