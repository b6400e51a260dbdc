"""Ensembles and soups of tag runs: an ensemble averages each word's tag probabilities over its members
(Tag.average) and decides them (Tag.decide) into CoNLL-layout predictions and dev entity scores; its fitted
weights' objective is the gold tags' negative log-likelihood (Tag.ensemble_loss); a soup of tag runs is a run like
any other (the mean of their weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minbert.cli import main
from minbert.data.formats import TaggedExample
from minbert.predictor import MultitaskBERT
from minbert.runs.ensemble import fit_weights
from minbert.runs.soup import mean_state
from tests.tagging import tag_kind, train_tag_run, write_tag_data
from tests.tasks.test_tag_kind import conll_words

TAGS = ["O", "I-PER", "B-PER"]


@pytest.fixture(scope="module")
def tag_members(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path, Path]:
    """Two tiny tag runs of one task from one start (seeds 1 and 2), and their data directory."""
    out = tmp_path_factory.mktemp("tag-members")
    data = write_tag_data(out / "data")
    return train_tag_run(out, tiny_model_dir, data, "a", seed=1), train_tag_run(out, tiny_model_dir, data, "b",
                                                                                 seed=2), data


def sentences(*lengths: int, seed: int = 0) -> np.ndarray:
    """Per sentence, (words, 3 tags) probabilities."""
    rng = np.random.default_rng(seed)
    found = np.empty(len(lengths), dtype=object)
    for i, n in enumerate(lengths):
        found[i] = rng.dirichlet(np.ones(len(TAGS)), size=n)
    return found


def test_tag_outputs_average_per_sentence_and_the_weights_fit_the_gold_tags():
    kind = tag_kind(TAGS)
    a, b = sentences(3, 1, 5, seed=1), sentences(3, 1, 5, seed=2)
    equal, weighted = kind.average([a, b]), kind.average([a, b], [0.25, 0.75])
    assert [m.shape for m in equal] == [(3, 3), (1, 3), (5, 3)]
    for i in range(3):
        np.testing.assert_allclose(equal[i], (a[i] + b[i]) / 2)
        np.testing.assert_allclose(weighted[i], 0.25 * a[i] + 0.75 * b[i])
    gold = np.empty(3, dtype=object)
    gold[:] = [["O", "I-PER", "O"], ["B-PER"], ["O"] * 5]
    picked = np.concatenate([equal[0][[0, 1, 2], [0, 1, 0]], equal[1][[0], [2]], equal[2][:, 0]])
    assert kind.ensemble_loss(equal, gold) == pytest.approx(-np.log(picked).mean())
    # a member sure of the gold tags and one sure of others: the fit keeps the first alone
    sure, wrong = np.empty(3, dtype=object), np.empty(3, dtype=object)
    for i, tags in enumerate(gold):
        index = [TAGS.index(t) for t in tags]
        sure[i] = np.full((len(tags), 3), 0.05)
        sure[i][np.arange(len(tags)), index] = 0.9
        wrong[i] = np.full((len(tags), 3), 0.45)
        wrong[i][np.arange(len(tags)), index] = 0.1
    weights = fit_weights(kind, [wrong, sure], gold)
    assert weights.sum() == pytest.approx(1) and weights[1] > 0.99


def test_an_ensemble_of_tag_runs_averages_word_probabilities_into_conll_predictions(tag_members, tmp_path, capsys):
    a, b, data = tag_members
    assert main(["ensemble", str(a), str(b), "--name", "ens", "--output-dir", str(tmp_path),
                 "--data-dir", str(data)]) == 0
    ensemble = tmp_path / "ens"
    for split in ("dev", "test"):
        written = ensemble / "predictions" / f"ner-{split}-output.txt"
        assert conll_words(written) == conll_words(data / "ner" / f"{split}.txt")  # every token, in order
    # the predictions are the decided mean of the members' own per-word probabilities
    sentences_ = [TaggedExample(f"s{i}", tuple(words), None, i) for i, words in
                  enumerate(conll_words(data / "ner" / "dev.txt"))]
    members = [MultitaskBERT.load(run).outputs("ner", sentences_) for run in (a, b)]
    kind = MultitaskBERT.load(a).model.heads["ner"].kind
    expected = kind.decide(kind.average(members))
    lines = (ensemble / "predictions" / "ner-dev-output.txt").read_text(encoding="utf-8").split("\n\n")
    assert [[line.split(" ")[1] for line in block.splitlines()] for block in lines if block] == list(expected)
    metrics = json.loads((ensemble / "metrics.json").read_text())
    final = metrics["final_dev"]["ner"]
    assert final["metric"] == "entity_f1" and "entity_f1" in final["metrics"] and final["entity_scores"]
    assert set(metrics["member_dev"]) == {"a", "b"}
    report = (ensemble / "report.html").read_text(encoding="utf-8")
    assert "an ensemble of 2 runs" in report and "Entities per type (dev)" in report


def test_a_soup_of_tag_runs_is_the_mean_of_their_weights(tag_members, tmp_path):
    a, b, data = tag_members
    assert main(["soup", str(a), str(b), "--name", "soup", "--output-dir", str(tmp_path), "--data-dir",
                 str(data)]) == 0
    soup = tmp_path / "soup"
    mean = mean_state([load_file(run / "best" / "model.safetensors") for run in (a, b)])
    souped = load_file(soup / "best" / "model.safetensors")
    assert souped.keys() == mean.keys() and all(torch.equal(souped[k], mean[k]) for k in mean)
    assert conll_words(soup / "predictions" / "ner-dev-output.txt") == conll_words(data / "ner" / "dev.txt")
    final = json.loads((soup / "metrics.json").read_text())["final_dev"]["ner"]
    assert final["metric"] == "entity_f1" and final["entity_scores"]
