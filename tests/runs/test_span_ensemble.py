"""Ensembles and soups of span runs: an ensemble averages each question's per-window start and end logits over its
members (Span.average) and decodes the mean (Span.decide) into a SQuAD prediction file and dev exact match / F1;
members whose windows differ are refused in one line, before any work where their configs say so; fitted weights
minimise the gold starts' and ends' negative log-likelihood (Span.ensemble_loss) on the questions every member held
out (train.tune_split); a soup of span runs is a run like any other (the mean of their weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minbert.cli import main
from minbert.data.formats import Answer, SpanExample
from minbert.errors import ConfigError
from minbert.predictor import MultitaskBERT
from minbert.runs.ensemble import Ensemble, fit_weights
from minbert.runs.soup import mean_state
from minbert.tasks.losses import TaskOutput
from minbert.tokenizer import Tokenizer
from tests.spans import CONTEXTS, span_kind, train_span_run, write_span_data
from tests.tasks.test_span_kind import squad_questions

EXAMPLES = [SpanExample("a", "who plays ?", CONTEXTS[0], (Answer("man", CONTEXTS[0].index("man")),), False, ""),
            SpanExample("b", "what sat ?", CONTEXTS[1], (Answer("dog", CONTEXTS[1].index("dog")),), False, "")]


@pytest.fixture(scope="module")
def span_data(tmp_path_factory) -> Path:
    return write_span_data(tmp_path_factory.mktemp("span-data"))


@pytest.fixture(scope="module")
def span_members(tmp_path_factory, tiny_model_dir, span_data) -> tuple[Path, Path, Path]:
    """Two tiny span runs of one task from one start (seeds 1 and 2), and their data directory."""
    out = tmp_path_factory.mktemp("span-members")
    return (*(train_span_run(out, tiny_model_dir, span_data, name, seed=seed) for name, seed in (("a", 1), ("b", 2))),
            span_data)


def question_logits(tokenizer: Tokenizer, seed: int, max_length: int = 20, kind=None) -> np.ndarray:
    """Random start/end logits over the windows of EXAMPLES (several windows each), as a model's soft outputs."""
    kind = kind or span_kind(max_query_length=4, doc_stride=4)
    data = kind.task_data(EXAMPLES, tokenizer, max_length)
    batch = data.collate(list(range(len(data))))
    logits = torch.from_numpy(np.random.default_rng(seed).normal(size=(*batch.inputs["input_ids"].shape, 2))
                              .astype(np.float32))
    hard, soft = kind.buffers(len(data))
    kind.store(hard, soft, batch, TaskOutput(logits, logits))
    return kind.collect(data, hard, soft)[1]


def test_span_outputs_average_window_by_window_and_the_weights_fit_the_gold_spans(tiny_model_dir):
    kind, tokenizer = span_kind(max_query_length=4, doc_stride=4), Tokenizer.from_pretrained(tiny_model_dir)
    a, b = question_logits(tokenizer, 1), question_logits(tokenizer, 2)
    assert all(len(q.windows) > 1 for q in a)  # several windows a question
    equal, weighted = kind.average([a, b]), kind.average([a, b], [0.25, 0.75])
    for i in range(len(EXAMPLES)):
        np.testing.assert_allclose(equal[i].logits, (a[i].logits + b[i].logits) / 2, rtol=1e-6)
        np.testing.assert_allclose(weighted[i].logits, 0.25 * a[i].logits + 0.75 * b[i].logits, rtol=1e-6)
        assert equal[i].windows == a[i].windows and equal[i].context == EXAMPLES[i].context
    decided = kind.decide(equal)
    for example, answer in zip(EXAMPLES, decided, strict=True):
        assert example.context[answer.answer.start:answer.answer.end] == str(answer)
    # the loss: per window, the mean of the gold start's and end's NLL (softmax over the window's own tokens)
    by_hand = []
    for question in equal:
        for window, logits in zip(question.windows, question.logits, strict=True):
            own = torch.from_numpy(logits[:, : len(window.input_ids)]).double().log_softmax(dim=1)
            by_hand.append(-(own[0, window.start] + own[1, window.end]).item() / 2)
    labels = kind.labels(EXAMPLES)
    assert kind.ensemble_loss(equal, labels) == pytest.approx(np.mean(by_hand), rel=1e-5)
    # a member sure of the gold spans and one sure of others: the fit keeps the first alone
    sure, wrong = question_logits(tokenizer, 3), question_logits(tokenizer, 4)
    for good, bad in zip(sure, wrong, strict=True):
        good.logits[:] = bad.logits[:] = 0
        for i, window in enumerate(good.windows):
            good.logits[i, 0, window.start] = good.logits[i, 1, window.end] = 8
            bad.logits[i, 0, window.end + 1] = bad.logits[i, 1, window.end + 1] = 8
    weights = fit_weights(kind, [wrong, sure], labels)
    assert weights.sum() == pytest.approx(1) and weights[1] > 0.99


def test_members_whose_windows_differ_are_refused_in_one_line(tiny_model_dir, span_members, tmp_path):
    tokenizer = Tokenizer.from_pretrained(tiny_model_dir)
    kind = span_kind(max_query_length=4, doc_stride=4)
    with pytest.raises(ConfigError, match=r"^task qa \(span extraction\): the members cut question 1's context into "
                                          r"different windows, so their logits cannot be averaged; ensemble members "
                                          r"of one model.max_length, doc_stride, max_query_length and tokenizer$"):
        kind.average([question_logits(tokenizer, 1), question_logits(tokenizer, 2, max_length=24)])
    # before any work: a member whose config cuts other windows (model.max_length) is refused when the ensemble is made
    a, b, _ = span_members
    other = tmp_path / "c"
    shutil.copytree(b, other)
    config = (other / "config.toml").read_text(encoding="utf-8")
    assert "max_length = 32" in config
    (other / "config.toml").write_text(config.replace("max_length = 32", "max_length = 40"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        Ensemble([a, other])
    assert str(caught.value) == (f"{other.resolve()}: task qa (qa) cuts its rows differently from {a.resolve()} "
                                 "(model.max_length differ), so their outputs cannot be averaged row by row; "
                                 "ensemble members that agree on it")


def test_an_ensemble_of_span_runs_decodes_the_mean_of_their_logits(span_members, tmp_path):
    a, b, data = span_members
    assert main(["ensemble", str(a), str(b), "--name", "ens", "--output-dir", str(tmp_path),
                 "--data-dir", str(data)]) == 0
    ensemble = tmp_path / "ens"
    for split in ("dev", "test"):
        written = json.loads((ensemble / "predictions" / f"qa-{split}-output.json").read_text(encoding="utf-8"))
        assert list(written) == [q["id"] for q in squad_questions(data / "squad" / f"{split}.json")]
    # the dev predictions are the decoded mean of the members' own per-window logits
    dev = [SpanExample(q["id"], q["question"], q["context"], (), False, "")
           for q in squad_questions(data / "squad" / "dev.json")]
    members = [MultitaskBERT.load(run).outputs("qa", dev) for run in (a, b)]
    kind = MultitaskBERT.load(a).model.heads["qa"].kind
    expected = [str(p) for p in kind.decide(kind.average(members))]
    assert list(json.loads((ensemble / "predictions" / "qa-dev-output.json").read_text("utf-8")).values()) == expected
    metrics = json.loads((ensemble / "metrics.json").read_text())
    assert set(metrics["final_dev"]["qa"]["metrics"]) == {"exact_match", "f1"}
    assert set(metrics["member_dev"]) == {"a", "b"}
    report = (ensemble / "report.html").read_text(encoding="utf-8")
    assert "an ensemble of 2 runs" in report and "worst answered dev questions" in report


def test_fitted_weights_fit_on_the_questions_every_member_held_out(tiny_model_dir, span_data, tmp_path):
    data = span_data
    a, b = (train_span_run(tmp_path, tiny_model_dir, data, name, seed=seed, train="epochs = 1\ntune_split = 0.2")
            for name, seed in (("a", 1), ("b", 2)))
    assert main(["ensemble", str(a), str(b), "--name", "fit", "--output-dir", str(tmp_path), "--data-dir",
                 str(data), "--weights", "fitted"]) == 0
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    fit = metrics["weights"]["fitted"]["qa"]
    train_questions = len(squad_questions(data / "squad" / "train.json"))
    assert fit["rows"] == round(0.2 * train_questions) and fit["tune_split"] == 0.2
    assert sum(metrics["weights"]["by_data"]["qa"].values()) == pytest.approx(1)


def test_a_soup_of_span_runs_is_the_mean_of_their_weights(span_members, tmp_path):
    a, b, data = span_members
    assert main(["soup", str(a), str(b), "--name", "soup", "--output-dir", str(tmp_path), "--data-dir",
                 str(data)]) == 0
    soup = tmp_path / "soup"
    mean = mean_state([load_file(run / "best" / "model.safetensors") for run in (a, b)])
    souped = load_file(soup / "best" / "model.safetensors")
    assert souped.keys() == mean.keys() and all(torch.equal(souped[k], mean[k]) for k in mean)
    written = json.loads((soup / "predictions" / "qa-dev-output.json").read_text(encoding="utf-8"))
    assert list(written) == [q["id"] for q in squad_questions(data / "squad" / "dev.json")]
    final = json.loads((soup / "metrics.json").read_text())["final_dev"]["qa"]
    assert final["metric"] == "f1" and set(final["metrics"]) == {"exact_match", "f1"}
