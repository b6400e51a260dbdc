"""Ensemble weights fitted on the tune split the members held out (`minbert ensemble --weights fitted`)."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from minbert.cli import main
from minbert.data.files import read_examples
from minbert.data.spec import FORMATS
from minbert.errors import ConfigError
from minbert.evaluation.predictions import read_predictions
from minbert.runs.ensemble import Ensemble, ensemble_run, fit_weights
from minbert.tasks.kinds import kind_of
from minbert.tokenizer import Tokenizer
from minbert.training.config import load_config
from minbert.training.experiment import load_task_data, tune_split_rows
from tests.conftest import THREE_TASKS, write_tiny_config
from tests.runs.test_ensemble import raw_outputs


def kind(task: str, tasks: str = THREE_TASKS, tmp_path=None):
    config = load_config(write_tiny_config(tmp_path / "k.toml", tmp_path, tmp_path, tasks=tasks))
    return kind_of(task, config.tasks[task])


def test_fitted_weights_follow_the_better_member_and_never_lose_to_equal(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    good = np.full((200, 5), 0.05)
    good[np.arange(200), labels] = 0.8  # right on every row
    noise = rng.dirichlet(np.ones(5), 200)  # knows nothing
    weights = fit_weights(kind("sst", tmp_path=tmp_path), [noise, good], labels)
    assert weights.sum() == pytest.approx(1) and (weights >= 0).all()
    assert weights[1] > 0.95

    scores = rng.uniform(0, 5, 300)
    near, far = scores + rng.normal(0, 0.3, 300), scores + rng.normal(0, 3, 300)
    weights = fit_weights(kind("sts", tmp_path=tmp_path), [far, near], scores)
    assert weights[1] > 0.8
    twins = fit_weights(kind("sts", tmp_path=tmp_path), [scores + rng.normal(0, 1, 300),
                                                         scores + rng.normal(0, 1, 300)], scores)
    assert 0.3 < twins[0] < 0.7  # two equally good, independent members share the weight

    binary = rng.integers(0, 2, 100)
    sure, unsure = np.where(binary == 1, 0.9, 0.1), np.full(100, 0.5)
    weights = fit_weights(kind("quora", tmp_path=tmp_path), [unsure, sure], binary)
    assert weights[1] > 0.95
    assert (fit_weights(kind("quora", tmp_path=tmp_path), [sure], binary) == [1.0]).all()


@pytest.fixture(scope="module")
def tuned_members(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    """Two tiny three-task runs that held out the same quarter of every training file, and one that did not."""
    out = tmp_path_factory.mktemp("tuned")
    config = write_tiny_config(out / "t.toml", out, tiny_model_dir, tasks=THREE_TASKS)
    for name, overrides in (("a", ["seed=1", "train.tune_split=0.25"]),
                            ("b", ["seed=2", "train.tune_split=0.25", "train.lr=3e-3"]),
                            ("plain", ["seed=3"]), ("other", ["seed=4", "train.tune_split=0.25",
                                                              "train.tune_split_seed=7"])):
        assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), f"name={name}",
                     *overrides]) == 0
    return out, tiny_data_dir


def test_the_tune_rows_are_the_rows_the_run_held_out(tuned_members):
    out, data_dir = tuned_members
    config = load_config(out / "a" / "config.toml")
    data = load_task_data(config, Tokenizer.from_pretrained(config.model.path), str(data_dir))
    for task in ("sst", "quora", "sts"):
        held = tune_split_rows(config, task, data_dir)
        assert [e.id for e in held] == [e.id for e in data[task]["dev"].examples]  # what the run scored on
        trained = {e.id for e in data[task]["train"].examples}
        assert held and not trained & {e.id for e in held}


def test_a_fitted_ensemble_is_the_weighted_mean_of_its_members(tuned_members, tmp_path, capsys):
    out, data_dir = tuned_members
    a, b = out / "a", out / "b"
    assert main(["ensemble", str(a), str(b), "--name", "fit", "--output-dir", str(tmp_path),
                 "--data-dir", str(data_dir), "--weights", "fitted"]) == 0
    run_dir = tmp_path / "fit"
    written = tomllib.loads((run_dir / "ensemble.toml").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["weights"]["method"] == "fitted"
    for task in ("sst", "quora", "sts"):
        weights = written["weights"][task]
        assert len(weights) == 2 and sum(weights) == pytest.approx(1)
        fit = metrics["weights"]["fitted"][task]
        assert fit["rows"] == len(tune_split_rows(load_config(a / "config.toml"), task, data_dir))
        assert set(fit["tune_score"]) == {"equal", "fitted"}
    examples = read_examples(data_dir / "sts-dev.csv", FORMATS["sts"]).examples
    w = written["weights"]["sts"]
    mean = w[0] * raw_outputs(a, "sts", examples) + w[1] * raw_outputs(b, "sts", examples)
    _, rows = read_predictions(run_dir / "predictions" / "sts-dev-output.csv")
    np.testing.assert_allclose([float(r[1]) for r in rows], mean, atol=6e-5)
    examples = read_examples(data_dir / "ids-sst-dev.csv", FORMATS["sst"]).examples
    w = written["weights"]["sst"]
    mean = w[0] * raw_outputs(a, "sst", examples) + w[1] * raw_outputs(b, "sst", examples)
    _, rows = read_predictions(run_dir / "predictions" / "sst-dev-output.csv")
    assert [int(r[1]) for r in rows] == list(mean.argmax(-1))
    assert "fitted on the tune split" in (run_dir / "members.md").read_text()

    # loaded alone (as a teacher is) the ensemble keeps its weights; inside a larger one it is refused
    alone = Ensemble([run_dir])
    assert list(alone.weights_of("sts").values()) == pytest.approx(written["weights"]["sts"])
    with pytest.raises(ConfigError, match="fitted weights, which do not carry"):
        Ensemble([run_dir, out / "plain"])
    # the same members with equal weights: no weights written
    ensemble_run([a, b], "eq", tmp_path, str(data_dir))
    assert "weights" not in tomllib.loads((tmp_path / "eq" / "ensemble.toml").read_text())
    assert json.loads((tmp_path / "eq" / "metrics.json").read_text())["weights"]["by_data"]["sst"] == {
        "a": 0.5, "b": 0.5}


def test_members_that_trained_on_the_rows_are_refused(tuned_members, tmp_path, capsys):
    out, data_dir = tuned_members
    assert main(["ensemble", str(out / "a"), str(out / "plain"), "--name", "e", "--output-dir", str(tmp_path),
                 "--data-dir", str(data_dir), "--weights", "fitted"]) == 2
    err = capsys.readouterr().err
    assert "plain" in err and "train.tune_split = 0" in err
    assert main(["ensemble", str(out / "a"), str(out / "other"), "--name", "e", "--output-dir", str(tmp_path),
                 "--data-dir", str(data_dir), "--weights", "fitted"]) == 2
    assert "different tune splits" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()  # refused before anything was written
