"""Ensembles, soups and tune splits of choice runs: a choice task carves a tune split stratified by its right choice's
position (data/assembly.py reads labels through the kind); an ensemble averages each question's choice
probabilities (zero-padded to the split's most choices, one width for every member) and decides them into the
prediction CSV and dev accuracy; its fitted weights' objective is the gold choice's log loss (ChoiceKind.ensemble_loss)
on the tune split the members held out; a soup of choice runs is a run like any other (the mean of their weights)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.predictor import MultitaskBERT
from minbert.runs.ensemble import fit_weights
from minbert.runs.run import evaluate_run
from minbert.runs.soup import mean_state
from minbert.training.config import load_config
from minbert.training.experiment import tune_split_rows
from tests.choices import choice_kind, train_choice_run, write_choice_data

TUNE = "tune_split = 0.25\ntune_split_seed = 3"


@pytest.fixture(scope="module")
def choice_members(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path, Path]:
    """Two tiny choice runs of one task from one start (seeds 1 and 2), each holding out the same tune split of 80
    training questions, and their data directory."""
    out = tmp_path_factory.mktemp("choice-members")
    data = write_choice_data(out / "data", train=80)
    return (train_choice_run(out, tiny_model_dir, data, "a", seed=1, train=TUNE),
            train_choice_run(out, tiny_model_dir, data, "b", seed=2, train=TUNE), data)


def padded(*rows: list[float]) -> np.ndarray:
    out = np.zeros((len(rows), max(len(r) for r in rows)))
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def test_choice_probabilities_average_at_one_width_and_the_weights_fit_the_gold_choices():
    kind = choice_kind()
    a, b = padded([0.2, 0.8, 0.0], [0.1, 0.1, 0.1, 0.7]), padded([0.6, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(kind.average([a, b]), (a + b) / 2)
    np.testing.assert_allclose(kind.average([a, b], [0.25, 0.75]), 0.25 * a + 0.75 * b)
    assert kind.decide(kind.average([a, b])).tolist() == [1, 3]
    gold = np.array([1, 3])
    assert kind.ensemble_loss(a, gold) == pytest.approx(-np.log([0.8, 0.7]).mean())
    with pytest.raises(ConfigError, match=r"^task arc \(multiple choice\): the members' choice probabilities are of "
                                          r"shapes \(2, 4\), \(2, 3\), so they were not computed over the same "):
        kind.average([a, b[:, :3]])
    # a member sure of the gold choices and one sure of others: the fit keeps the first alone
    sure, wrong = padded([0.05, 0.9, 0.05], [0.1, 0.0, 0.0, 0.9]), padded([0.9, 0.05, 0.05], [0.9, 0.0, 0.1, 0.0])
    weights = fit_weights(kind, [wrong, sure], gold)
    assert weights.sum() == pytest.approx(1) and weights[1] > 0.99


def test_a_choice_task_holds_out_a_tune_split_stratified_by_its_right_choice(choice_members):
    a, _, data = choice_members
    config = load_config(a / "config.toml")
    held = tune_split_rows(config, "arc", data)
    source = [json.loads(line) for line in (data / "arc" / "train.jsonl").read_text().splitlines()]
    by_position = Counter(q["question"]["choices"].index(next(c for c in q["question"]["choices"]
                                                              if c["label"] == q["answerKey"])) for q in source)
    assert Counter(e.answer for e in held) == {p: round(0.25 * n) for p, n in by_position.items()}
    assert [e.id for e in held] == sorted((e.id for e in held), key=lambda i: int(i.split("-")[1]))  # file order
    final = json.loads((a / "metrics.json").read_text())["final_dev"]["arc"]
    assert np.sum(final["choice_confusion"]) == len(held)  # the tune split stood in for dev
    assert not (a / "predictions" / "arc-test-output.csv").exists()  # and test was not predicted
    # evaluate reads no train split, yet scores the same held-out rows
    assert evaluate_run(a, data_dir=str(data), quiet=True)["arc"]["score"] == pytest.approx(final["score"], abs=1e-9)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_an_ensemble_of_choice_runs_averages_choice_probabilities_into_its_predictions(choice_members, tmp_path):
    a, b, data = choice_members
    assert main(["ensemble", str(a), str(b), "--name", "ens", "--output-dir", str(tmp_path),
                 "--data-dir", str(data)]) == 0
    ensemble = tmp_path / "ens"
    dev = load_config(a / "config.toml").tasks["arc"]
    examples = MultitaskBERT.load(a).model.heads["arc"].kind.spec.read(data / "arc" / "dev.jsonl", labelled=True,
                                                                       strict=True, what=str(dev)).examples
    members = [MultitaskBERT.load(run).outputs("arc", examples) for run in (a, b)]
    assert members[0].shape == members[1].shape == (15, 5)
    kind = MultitaskBERT.load(a).model.heads["arc"].kind
    expected = kind.decide(kind.average(members))
    rows = read_csv(ensemble / "predictions" / "arc-dev-output.csv")
    assert rows[1:] == [[e.id, e.choice_labels[int(p)]] for e, p in zip(examples, expected, strict=True)]
    assert len(read_csv(ensemble / "predictions" / "arc-test-output.csv")) == 1 + 7  # every test question
    metrics = json.loads((ensemble / "metrics.json").read_text())
    final = metrics["final_dev"]["arc"]
    assert final["metric"] == "accuracy" and final["score"] == pytest.approx(
        np.mean(expected == np.array([e.answer for e in examples])))
    assert np.sum(final["choice_confusion"]) == 15 and set(metrics["member_dev"]) == {"a", "b"}
    report = (ensemble / "report.html").read_text(encoding="utf-8")
    assert "an ensemble of 2 runs" in report and "Gold against predicted choice position" in report


def test_fitted_weights_of_choice_runs_are_fitted_on_the_tune_split_they_held_out(choice_members, tmp_path):
    a, b, data = choice_members
    assert main(["ensemble", str(a), str(b), "--name", "fit", "--output-dir", str(tmp_path), "--data-dir",
                 str(data), "--weights", "fitted"]) == 0
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    fitted = metrics["weights"]["fitted"]["arc"]
    assert fitted["rows"] == len(tune_split_rows(load_config(a / "config.toml"), "arc", data))
    weights = list(metrics["weights"]["by_data"]["arc"].values())
    assert sum(weights) == pytest.approx(1) and all(w >= 0 for w in weights)
    assert set(fitted["tune_score"]) == {"equal", "fitted"}


def test_a_soup_of_choice_runs_is_the_mean_of_their_weights(choice_members, tmp_path):
    a, b, data = choice_members
    assert main(["soup", str(a), str(b), "--name", "soup", "--output-dir", str(tmp_path), "--data-dir",
                 str(data)]) == 0
    soup = tmp_path / "soup"
    mean = mean_state([load_file(run / "best" / "model.safetensors") for run in (a, b)])
    souped = load_file(soup / "best" / "model.safetensors")
    assert souped.keys() == mean.keys() and all(torch.equal(souped[k], mean[k]) for k in mean)
    # its members held out a tune split, which stands in for dev: the soup is scored on those rows too
    held = tune_split_rows(load_config(a / "config.toml"), "arc", data)
    rows = read_csv(soup / "predictions" / "arc-dev-output.csv")
    assert [row[0] for row in rows[1:]] == [e.id for e in held]
    final = json.loads((soup / "metrics.json").read_text())["final_dev"]["arc"]
    assert final["metric"] == "accuracy" and np.sum(final["choice_confusion"]) == len(held)
