"""A multitask run (sentiment + cross-encoded paraphrase + siamese cosine similarity) on a tiny model and tiny
fixtures, then the Python API and `minbert predict` on it."""

from __future__ import annotations

import json
import logging

import pytest

from minbert.cli import main
from minbert.evaluation.predictions import read_predictions
from minbert.predictor import MultitaskBERT
from tests.conftest import SIAMESE_STS, write_tiny_config


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    out = tmp_path_factory.mktemp("runs")
    config = write_tiny_config(
        out / "tiny-multitask.toml", out, tiny_model_dir, model="common_layers = 1",
        train='epochs = 2\nsampler = "round_robin"\nupdate = "global"\nbalancing = "trimmed"\n'
              'select_best_by = "two_of_three"\nreport = true',
        tasks=f'[tasks.sst]\ndata = "sst"\npooling = "mean"\n[tasks.quora]\ndata = "quora"\npooling = "mean_max"\n'
              f'head = "mlp"\n{SIAMESE_STS}')
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "model.common_layers=0"]) == 0
    return out / "tiny-multitask", tiny_data_dir


def test_run_directory_has_every_artifact(multitask_run):
    run_dir, _ = multitask_run
    for name in ("predictions/sst-dev-output.csv", "predictions/para-dev-output.csv", "predictions/sts-dev-output.csv",
                 "predictions/sst-test-output.csv", "predictions/para-test-output.csv",
                 "predictions/sts-test-output.csv", "figures/sst-confusion.png", "figures/quora-confusion.png",
                 "figures/sts-scatter.png", "figures/learning-curves.png"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["final_dev"]) == {"sst", "quora", "sts"}
    assert len(metrics["final_dev"]["sts"]["bins"]) == 5
    assert set(metrics["epochs"][0]["train_loss"]) == {"sst", "quora", "sts"}
    header, rows = read_predictions(run_dir / "predictions" / "sts-dev-output.csv")
    assert header == "Predicted_Similiarity" and all(0.0 <= float(p) <= 5.0 for _, p in rows)
    _, rows = read_predictions(run_dir / "predictions" / "para-test-output.csv")
    assert {p for _, p in rows} <= {"0", "1"} and len(rows) == 16


def test_python_api_predicts_every_task(multitask_run):
    run_dir, _ = multitask_run
    model = MultitaskBERT.load(run_dir)
    assert model.config.train.sampler.name == "round_robin" and model.config.model.common_layers == 0
    assert len(model.predict_sentiment(["great film", "bad plot"])) == 2
    assert set(model.predict_paraphrase([("how do i learn python", "how do i learn python"),
                                         ("the dog sat", "why is it slow")])) <= {0, 1}
    same, different = model.predict_similarity([("a man plays guitar", "a man plays guitar"),
                                                ("a man plays guitar", "the cat sat on the mat")])
    assert same == pytest.approx(5.0, abs=1e-3)  # identical sentences: cosine 1
    assert 0.0 <= different < same


def test_predict_command_pairs_and_files(multitask_run, tmp_path, capsys, caplog):
    run_dir, data_dir = multitask_run
    assert main(["predict", "--run", str(run_dir), "--task", "sts", "a dog sat", "a dog sat"]) == 0
    score, a, b = capsys.readouterr().out.strip().split("\t")
    assert float(score) == pytest.approx(5.0, abs=1e-3) and a == b == "a dog sat"
    assert main(["predict", "--run", str(run_dir), "--task", "sts", "only one"]) == 2
    assert "takes 2 texts per example; got 1" in capsys.readouterr().err
    caplog.set_level(logging.WARNING, logger="minbert")
    plain = tmp_path / "pairs.txt"
    plain.write_text("a dog sat\ta cat sat\n\nhow do i learn\n")  # line 2 blank, line 3 half a pair
    out = tmp_path / "out.csv"
    args = ["predict", "--run", str(run_dir), "--task", "quora", "--input", str(plain), "--output", str(out)]
    assert main(args) == 2 and not out.exists()  # a malformed row stops the job unless told to skip it
    assert f"{plain}:2: blank line (each line is a text to predict); 2 malformed rows in all" in capsys.readouterr().err
    assert main([*args, "--skip-bad-rows"]) == 0
    header, rows = read_predictions(out)
    assert header == "Predicted_Is_Paraphrase" and [r[0] for r in rows] == ["1"]  # line 3 lacks a second question
    assert "pairs.txt:3: skipped row: empty sentence2" in caplog.text  # numbered as in the file: no header
    assert main(["predict", "--run", str(run_dir), "--task", "sts", "--input", str(data_dir / "sts-test-student.csv"),
                 "--output", str(out)]) == 0
    _, rows = read_predictions(out)
    assert [r[0] for r in rows][:2] == ["p0", "p1"] and len(rows) == 16
