"""Tag runs with a tune split (data/assembly.py carves it, strata: one group, a sentence has no single label), and
what reads such a run: evaluate scores the held-out sentences the run scored, `ensemble --weights fitted` fits two tag
runs' weights on the tune split both held out, `predict` takes the run's only task without --task, and the
sentence-transformers export refuses a tag task by name, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.runs.run import evaluate_run
from minbert.training.config import load_config
from minbert.training.experiment import tune_split_rows
from tests.tagging import train_tag_run, write_tag_data
from tests.tasks.test_tag_kind import conll_words

TUNE = "tune_split = 0.25\ntune_split_seed = 3"


@pytest.fixture(scope="module")
def tuned_tag_runs(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path, Path]:
    """Two tiny tag runs of one task from one start (seeds 1 and 2), each holding out the same quarter of its 60
    training sentences, and their data directory."""
    out = tmp_path_factory.mktemp("tag-tune")
    data = write_tag_data(out / "data")
    return (train_tag_run(out, tiny_model_dir, data, "a", seed=1, train=TUNE),
            train_tag_run(out, tiny_model_dir, data, "b", seed=2, train=TUNE), data)


def test_a_tag_run_holds_out_a_tune_split_and_evaluate_scores_it_again(tuned_tag_runs):
    a, _, data = tuned_tag_runs
    held = tune_split_rows(load_config(a / "config.toml"), "ner", data)
    assert len(held) == 15  # a quarter of 60 sentences, one stratum
    train = conll_words(data / "ner" / "train.txt")
    assert [list(e.words) for e in held] == [s for s in train if s in [list(e.words) for e in held]]  # file order
    assert conll_words(a / "predictions" / "ner-dev-output.txt") == [list(e.words) for e in held]  # dev = tune split
    recorded = json.loads((a / "metrics.json").read_text(encoding="utf-8"))["final_dev"]["ner"]
    again = evaluate_run(a, data_dir=str(data), quiet=True)["ner"]
    assert again["score"] == pytest.approx(recorded["score"], abs=1e-9)
    assert again["metrics"] == pytest.approx(recorded["metrics"], abs=1e-9)


def test_fitted_weights_of_tag_runs_fit_on_the_tune_split_they_held_out(tuned_tag_runs, tmp_path):
    a, b, data = tuned_tag_runs
    assert main(["ensemble", str(a), str(b), "--name", "fit", "--output-dir", str(tmp_path), "--data-dir",
                 str(data), "--weights", "fitted"]) == 0
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text(encoding="utf-8"))
    fitted = metrics["weights"]["fitted"]["ner"]
    assert fitted["rows"] == 15 and set(fitted["tune_score"]) == {"equal", "fitted"}
    weights = list(metrics["weights"]["by_data"]["ner"].values())
    assert sum(weights) == pytest.approx(1) and all(w >= 0 for w in weights)


def test_predict_takes_the_run_s_only_task_without_task(tuned_tag_runs, capsys):
    a, _, _ = tuned_tag_runs
    assert main(["predict", "--run", str(a), "--text", "the cat sat on the mat"]) == 0
    named = capsys.readouterr().out
    assert main(["predict", "--run", str(a), "--task", "ner", "--text", "the cat sat on the mat"]) == 0
    assert capsys.readouterr().out == named


def test_the_sentence_transformers_export_refuses_a_tag_run_and_writes_nothing(tuned_tag_runs, tmp_path, capsys):
    a, _, _ = tuned_tag_runs
    assert main(["export", str(a), "--format", "sentence-transformers", str(tmp_path / "st")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "minbert: error: task ner is a token tagging task (kind 'tag'): the sentence-transformers export cannot take "
        "it yet"]
    assert not (tmp_path / "st").exists() and not any(p.name.startswith(".st") for p in tmp_path.iterdir())


@pytest.mark.parametrize(("tasks", "sentiment", "chosen"), [
    ({"sst": "sst", "quora": "quora", "sts": "sts"}, True, "sst"),  # today's default: the one sentiment task
    ({"para": "quora"}, True, "para"),  # no sentiment task: the only task
    ({"ner": ""}, False, "ner"),
    ({"quora": "quora", "sts": "sts"}, True, None),
    ({"sst": "sst", "imdb": "cfimdb"}, True, None),  # two sentiment tasks: name one
])
def test_the_default_task_is_the_one_sentiment_task_else_the_only_task(tasks, sentiment, chosen):
    from types import SimpleNamespace

    from minbert.errors import ConfigError
    from minbert.predictor import MultitaskBERT

    run = SimpleNamespace(config=SimpleNamespace(tasks={t: SimpleNamespace(data=d) for t, d in tasks.items()}))
    if chosen is None:
        with pytest.raises(ConfigError, match=r"^name a task with --task \(this run has "):
            MultitaskBERT.resolve_task(run, None, sentiment)
    else:
        assert MultitaskBERT.resolve_task(run, None, sentiment) == chosen
