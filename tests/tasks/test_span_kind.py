"""The `span` kind end to end on tiny SQuAD files the tests write (contexts long enough for several windows of the
tiny model): the spec needs no columns, its window options are checked against model.max_length in one line, train
-> best -> a SQuAD prediction file with every question's id once and an answer from its own context, evaluate gives
the recorded dev exact match and F1 again, predict --input takes a SQuAD file; decoding over real windows never
gives end < start; SQuAD 2.0's dev analysis records the best null threshold."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minbert.cli import main
from minbert.data.formats import Answer, SpanExample
from minbert.data.spec import DataSpec
from minbert.errors import ConfigError
from minbert.options import build
from minbert.runs.run import evaluate_run
from minbert.tasks.alignment import SpanAnswer
from minbert.tasks.kinds import kind_of
from minbert.tasks.kinds.span import Span, SpanData, SpanPrediction
from minbert.tasks.losses import TaskOutput
from minbert.tokenizer import Tokenizer
from minbert.training.config import load_config
from tests.conftest import REPO, make_tiny_data_dir, write_tiny_config

FILLER = "the a film movie good bad great awful boring fun plot is was not very and but it this on mat".split()
QA = """
[tasks.qa]
[tasks.qa.data]
format = { name = "squad", max_query_length = 8, doc_stride = 8 }
train = "squad/train.json"
dev = "squad/dev.json"
test = "squad/test.json"
"""


def paragraph(rng: random.Random, words: int) -> tuple[str, list[dict]]:
    """A context of filler words with `who` and `what` facts in it ("the man plays guitar", "the dog sat"), and the
    questions they answer; an answer is the word after its cue, found at its character offset."""
    tokens = [rng.choice(FILLER) for _ in range(words)]
    facts = [("man", "plays", "who plays ?"), ("dog", "sat", "what sat ?")]
    qas = []
    for answer_word, cue, question in facts:
        at = rng.randrange(0, words - 2)
        tokens[at:at + 2] = [answer_word, cue]
        qas.append((answer_word, at, question))
    context = " ".join(tokens)
    offsets = np.cumsum([0] + [len(t) + 1 for t in tokens])
    questions = []
    for answer_word, at, question in qas:
        start = int(offsets[at])
        if context[start:start + len(answer_word)] == answer_word:  # a later fact may overwrite an earlier one
            questions.append({"question": question, "answers": [{"text": answer_word, "answer_start": start}]})
    return context, questions


def write_squad(path: Path, rng: random.Random, paragraphs: int, words: tuple[int, int], labelled: bool = True,
                prefix: str = "q") -> None:
    articles, count = [], 0
    for _ in range(paragraphs):
        context, questions = paragraph(rng, rng.randint(*words))
        qas = []
        for qa in questions:
            qas.append({"id": f"{prefix}{count}", "question": qa["question"],
                        "answers": qa["answers"] if labelled else []})
            count += 1
        articles.append({"title": "t", "paragraphs": [{"context": context, "qas": qas}]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")


@pytest.fixture(scope="module")
def squad_data(tmp_path_factory) -> Path:
    rng = random.Random(0)
    directory = make_tiny_data_dir(tmp_path_factory.mktemp("squad-data"), n_train=24, n_dev=8)
    write_squad(directory / "squad" / "train.json", rng, 30, (8, 20))
    write_squad(directory / "squad" / "dev.json", rng, 5, (40, 70), prefix="d")  # several windows of 32 tokens
    write_squad(directory / "squad" / "test.json", rng, 3, (40, 70), labelled=False, prefix="t")
    return directory


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, tiny_model_dir, squad_data) -> Path:
    out = tmp_path_factory.mktemp("qa-run")
    config = write_tiny_config(out / "qa.toml", out, tiny_model_dir, tasks=QA, train="epochs = 3\nlr = 3e-3")
    assert main(["train", "--config", str(config), "--data-dir", str(squad_data)]) == 0
    return out / "qa"


def squad_questions(path: Path) -> list[dict]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return [dict(qa, context=p["context"]) for a in document["data"] for p in a["paragraphs"] for qa in p["qas"]]


def span_kind(**format_options: object) -> Span:
    spec = build(DataSpec, {"format": {"name": "squad", **format_options}, "train": "t.json", "dev": "d.json"},
                 "tasks.qa.data")
    kind = kind_of("qa", SimpleNamespace(data=spec, loss=""))
    assert isinstance(kind, Span)
    return kind


def test_a_squad_spec_is_a_span_task_and_its_window_options_are_one_line_errors():
    kind = span_kind()
    assert kind.num_outputs == 2 and kind.loss == "span_cross_entropy"
    assert kind.spec.metric_names == ["f1", "exact_match"]
    kind.check_inputs(384, "tasks.qa")  # run_qa's defaults fit run_qa's windows
    with pytest.raises(ConfigError) as caught:
        kind.check_inputs(128, "tasks.qa")  # 128 - 64 - 3 = 61 context sub-words: an overlap of 128 cannot be
    assert str(caught.value) == (
        "tasks.qa.data.format.doc_stride = 128: windows of model.max_length = 128 tokens with questions of up to "
        "max_query_length = 64 sub-words hold 61 context sub-words; the overlap of two windows must be below that: "
        "set doc_stride below 61 (or raise model.max_length)")
    with pytest.raises(ConfigError, match=r"^tasks\.qa\.data\.format\.max_query_length = 64: windows of "
                                          r"model\.max_length = 60 tokens leave no room"):
        kind.check_inputs(60, "tasks.qa")
    with pytest.raises(ConfigError, match=r"^tasks\.qa\.data\.format\.n_best = 0 must be >= 1$"):
        span_kind(n_best=0)
    with pytest.raises(ConfigError, match=r"^tasks\.qa\.data\.format\.null_threshold = 1\.5: a threshold for the "
                                          r"null answer needs no_answer = true"):
        span_kind(null_threshold=1.5)


def test_a_doc_stride_too_large_for_max_length_stops_train_with_one_line(tmp_path, tiny_model_dir, squad_data,
                                                                          capsys):
    tasks = QA.replace("doc_stride = 8", "doc_stride = 30")
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=tasks)
    assert main(["train", "--config", str(config), "--data-dir", str(squad_data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minbert: error: tasks.qa.data.format.doc_stride = 30: windows of "
                                               "model.max_length = 32 tokens")
    assert not (tmp_path / "c").exists()


def test_span_cross_entropy_is_the_mean_of_start_and_end_cross_entropy():
    kind = span_kind()
    loss = kind_of("qa", SimpleNamespace(data=kind.spec, loss="")).loss
    from minbert.tasks.losses import LOSSES

    logits = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[0, 0], [2, 4], [5, 5]])
    value = LOSSES[loss].build(None)(TaskOutput(logits, logits), labels)
    expected = (F.cross_entropy(logits[..., 0], labels[:, 0]) + F.cross_entropy(logits[..., 1], labels[:, 1])) / 2
    assert value.item() == pytest.approx(expected.item(), abs=1e-6)


def test_decoding_real_windows_never_ends_before_it_starts(tiny_model_dir, squad_data):
    """Random logits over the dev questions' windows (several per question): every answer is its own context's text
    between its offsets, start <= end, whatever the logits."""
    kind = span_kind(max_query_length=8, doc_stride=8, max_answer_length=5)
    tokenizer = Tokenizer.from_pretrained(tiny_model_dir)
    loaded = kind.spec.read(squad_data / "squad" / "dev.json")
    data = kind.task_data(loaded.examples, tokenizer, 32)
    assert isinstance(data, SpanData) and len(data) > 2 * len(loaded.examples)  # long contexts: several windows
    assert data.labels.shape == (len(data), 2) and (data.labels[:, 0] <= data.labels[:, 1]).all()
    batch = data.collate(list(range(len(data))))
    assert (batch.inputs["token_type_ids"].sum(dim=1) > 0).all()  # the context's tokens are type 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        hard, soft = kind.buffers(len(data))
        logits = torch.from_numpy(rng.normal(size=(*batch.inputs["input_ids"].shape, 2)).astype(np.float32))
        kind.store(hard, soft, batch, TaskOutput(logits, logits))
        predictions, per_question = kind.collect(data, hard, soft)
        for example, prediction, windows in zip(loaded.examples, predictions, per_question, strict=True):
            found = prediction.answer
            assert 0 <= found.start <= found.end <= len(example.context)
            assert str(prediction) == example.context[found.start:found.end] and str(prediction)
            assert windows.logits.shape[:2] == (len(windows.windows), 2) and windows.context == example.context


def test_squad2_answers_nothing_where_the_null_score_wins_by_more_than_the_threshold(tiny_model_dir, tmp_path):
    """[CLS]'s start and end logits 2 each (null score 4) against a best span of 1 + 1: margin 2, so threshold 0
    answers "" and threshold 3 the span; the prediction file writes "" for an unanswered question."""
    tokenizer = Tokenizer.from_pretrained(tiny_model_dir)
    examples = [SpanExample("a", "who sat ?", "the dog sat on the mat", (), True, "")]
    for threshold, expected in ((0.0, ""), (3.0, "dog")):
        kind = span_kind(no_answer=True, max_query_length=8, doc_stride=8, null_threshold=threshold)
        data = kind.task_data(examples, tokenizer, 32)
        assert data.labels.tolist() == [[0, 0]]  # no answer: [CLS] is the target
        batch = data.collate([0])
        logits = torch.zeros(*batch.inputs["input_ids"].shape, 2)
        logits[0, 0] = 2.0
        dog = data.windows[0].input_ids.tolist().index(tokenizer.backend.token_to_id("dog"))
        logits[0, dog] = 1.0
        hard, soft = kind.buffers(len(data))
        kind.store(hard, soft, batch, TaskOutput(logits, logits))
        predictions, _ = kind.collect(data, hard, soft)
        assert str(predictions[0]) == expected and predictions[0].answer.span_text == "dog"
        kind.write_predictions(tmp_path / "out.json", examples, predictions)
        assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == {"a": expected}


def test_serve_s_answer_is_the_span_s_probability_or_squad2_s_null_answer(tiny_model_dir):
    """One window, [CLS] start and end logits 2 (null score 4) against "dog" at 1 + 1: threshold 0 answers nothing
    (no_answer, no offsets, the null answer's probability), threshold 3 answers "dog" with its characters and its
    start x end probability (softmax over the window's tokens); predict prints '-' for a missing offset."""
    tokenizer = Tokenizer.from_pretrained(tiny_model_dir)
    context = "the dog sat on the mat"
    examples = [SpanExample("a", "who sat ?", context, (), False, "")]
    for threshold in (0.0, 3.0):
        kind = span_kind(no_answer=True, max_query_length=8, doc_stride=8, null_threshold=threshold)
        data = kind.task_data(examples, tokenizer, 32)
        batch = data.collate([0])
        logits = torch.zeros(*batch.inputs["input_ids"].shape, 2)
        logits[0, 0] = 2.0
        dog = data.windows[0].input_ids.tolist().index(tokenizer.backend.token_to_id("dog"))
        logits[0, dog] = 1.0
        hard, soft = kind.buffers(len(data))
        kind.store(hard, soft, batch, TaskOutput(logits, logits))
        decided, per_question = kind.collect(data, hard, soft)
        answer = kind.serve_answers(examples, decided, per_question)[0]
        probabilities = logits[0, :, 0].softmax(dim=0)  # start and end logits are alike here
        if threshold == 0.0:
            assert answer == {"answer": "", "no_answer": True, "start": None, "end": None,
                              "score": pytest.approx((probabilities[0] ** 2).item(), rel=1e-5)}
            assert kind.answer_lines(1, answer) == [f"1\t-\t-\t{answer['score']:.4f}\t"]
        else:
            assert answer == {"answer": "dog", "no_answer": False, "start": 4, "end": 7,
                              "score": pytest.approx((probabilities[dog] ** 2).item(), rel=1e-5)}
            assert kind.answer_lines(2, answer) == [f"2\t4\t7\t{answer['score']:.4f}\tdog"]


def test_a_span_task_trains_and_writes_squad_predictions(qa_run, squad_data):
    assert (qa_run / "best" / "model.safetensors").is_file()
    for split in ("dev", "test"):
        questions = squad_questions(squad_data / "squad" / f"{split}.json")
        written = json.loads((qa_run / "predictions" / f"qa-{split}-output.json").read_text(encoding="utf-8"))
        assert list(written) == [q["id"] for q in questions]  # every id once, in file order
        for question in questions:
            assert written[question["id"]] and written[question["id"]] in question["context"]
    final = json.loads((qa_run / "metrics.json").read_text())["final_dev"]["qa"]
    assert final["metric"] == "f1" and set(final["metrics"]) == {"f1", "exact_match"}
    assert 0 <= final["metrics"]["exact_match"] <= final["metrics"]["f1"] <= 1
    assert "null_answer" not in final  # SQuAD 1.1: every question has an answer
    details = [json.loads(line) for line in (qa_run / "predictions" / "qa-dev-details.jsonl").read_text().splitlines()]
    dev = squad_questions(squad_data / "squad" / "dev.json")
    assert [d["id"] for d in details] == [q["id"] for q in dev]
    assert set(details[0]) == {"id", "question", "context", "gold", "gold_spans", "predicted", "span", "score",
                               "confidence"}
    assert details[0]["gold"] == [a["text"] for a in dev[0]["answers"]]
    for row in details:
        assert [row["context"][a:b] for a, b in row["gold_spans"]] == row["gold"]
        assert row["context"][slice(*row["span"])] == row["predicted"] and 0 < row["confidence"] <= 1


def test_evaluate_reproduces_the_recorded_dev_figures(qa_run, squad_data):
    results = evaluate_run(qa_run, data_dir=str(squad_data), quiet=True)
    recorded = json.loads((qa_run / "metrics.json").read_text())["final_dev"]["qa"]
    assert results["qa"]["score"] == pytest.approx(recorded["score"], abs=1e-9)
    assert results["qa"]["metrics"] == pytest.approx(recorded["metrics"], abs=1e-9)


def test_predict_takes_a_squad_file(qa_run, squad_data, tmp_path):
    output = tmp_path / "answers.json"
    assert main(["predict", "--run", str(qa_run), "--task", "qa", "--input", str(squad_data / "squad" / "dev.json"),
                 "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == (qa_run / "predictions" / "qa-dev-output.json").read_text("utf-8")


def test_what_span_does_not_take_yet_is_refused_with_one_line():
    from minbert.tasks.kinds import refuse

    with pytest.raises(ConfigError, match=r"^task qa is a span extraction task \(kind 'span'\): "
                                          r"distillation cannot take it yet$"):
        refuse(span_kind(), "distillation")
    for taken in ("ensembles", "serve", "the ONNX export"):
        refuse(span_kind(), taken)  # built: no refusal


def test_squad2_dev_analysis_records_the_best_null_threshold():
    """Two questions: one without an answer (its null score beats its span by 3), one whose span is right (the null
    score is 1 below it). Threshold 0 gets both right; so does any threshold in [-1, 3), and the lowest margin that
    reaches the best F1 is chosen."""
    kind = span_kind(no_answer=True)
    answers = [SpanAnswer("", 0, 4, 1.0, 4.0, "film"), SpanAnswer("dog", 5, 8, 5.0, 4.0, "dog")]
    predictions = np.empty(2, dtype=object)
    predictions[:] = [SpanPrediction(a) for a in answers]
    labels = kind.labels([SpanExample("a", "q", "film dog", (), True, ""),
                          SpanExample("b", "q", "film dog", (Answer("dog", 5),), False, "")])
    analysis = kind.analysis(predictions, labels)["null_answer"]
    assert analysis == {"threshold": 0.0, "no_answer_share": 0.5, "best_threshold": -1.0, "best_f1": 1.0,
                        "best_exact_match": 1.0}
    assert span_kind().analysis(predictions, labels) == {}  # SQuAD 1.1


def test_the_shipped_squad_config_checks_the_real_files(data_dir, capsys):
    """configs/kinds/squad.toml: a span task whose windows fit its max_length; every question is read, none skipped."""
    if not (data_dir / "squad" / "train.json").is_file():
        pytest.skip("squad is not in the data directory")
    config = REPO / "configs" / "kinds" / "squad.toml"
    loaded = load_config(config)
    assert isinstance(kind_of("squad", loaded.tasks["squad"]), Span) and loaded.model.max_length == 384
    assert main(["data", "--config", str(config), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    for name, rows in (("train", "7,266"), ("dev", "1,340"), ("test", "1,964")):
        assert f"squad/{name}.json" in out and f"{rows} rows loaded, 0 skipped" in out
