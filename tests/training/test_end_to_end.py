"""A whole single-task run on a tiny random model and tiny fixture data, then evaluate and predict from it."""

from __future__ import annotations

import json

import pytest

from minbert import BertModel
from minbert.cli import main
from minbert.errors import ConfigError
from minbert.evaluation.predictions import read_predictions
from minbert.predictor import MultitaskBERT
from tests.conftest import write_tiny_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    out = tmp_path_factory.mktemp("runs")
    config = write_tiny_config(out / "tiny-sst.toml", out, tiny_model_dir, train="epochs = 2\nreport = true")
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "train.seed_is_not_a_key=1"]
                ) == 2  # an unknown override stops before any work
    assert not (out / "tiny-sst").exists()
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    return out / "tiny-sst", config, tiny_data_dir


def test_run_directory_contents(finished_run):
    run_dir, _, _ = finished_run
    for name in ("config.toml", "train.log", "metrics.json", "best/model.safetensors", "best/config.json",
                 "best/vocab.txt", "predictions/sst-dev-output.csv", "predictions/sst-test-output.csv",
                 "figures/sst-confusion.png", "figures/learning-curves.png"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for epoch in metrics["epochs"]:
        assert set(epoch["train_loss"]) == {"sst"} and epoch["train_seconds"] > 0
        assert 0 <= epoch["dev"]["sst"]["score"] <= 1
    best = max(metrics["epochs"], key=lambda e: e["selection_score"])
    assert metrics["best"]["epoch"] == best["epoch"]
    assert metrics["final_dev"]["sst"]["score"] == pytest.approx(best["dev"]["sst"]["score"])
    assert sum(map(sum, metrics["final_dev"]["sst"]["confusion"])) == 16
    header, rows = read_predictions(run_dir / "predictions" / "sst-dev-output.csv")
    assert header == "Predicted_Sentiment" and len(rows) == 16 and {p for _, p in rows} <= set("01234")
    assert "epoch 2:" in (run_dir / "train.log").read_text()


def test_without_a_report_the_numbers_are_written_and_the_pictures_can_be_drawn_later(tmp_path, tiny_model_dir,
                                                                                      tiny_data_dir):
    config = write_tiny_config(tmp_path / "quiet.toml", tmp_path, tiny_model_dir, train="epochs = 2")  # report = false
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    run_dir = tmp_path / "quiet"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and sum(map(sum, metrics["final_dev"]["sst"]["confusion"])) == 16
    assert (run_dir / "predictions" / "sst-dev-output.csv").is_file()
    assert not (run_dir / "figures").exists() and not (run_dir / "report.html").exists()
    assert main(["evaluate", "--run", str(run_dir), "--data-dir", str(tiny_data_dir), "--write-outputs"]) == 0
    assert {p.name for p in (run_dir / "figures").iterdir()} == {"sst-confusion.png", "learning-curves.png"}
    assert (run_dir / "report.html").is_file()  # evaluate --write-outputs redraws the page with the new figures


def test_best_checkpoint_loads_as_an_encoder(finished_run):
    run_dir, _, _ = finished_run
    encoder = BertModel.from_pretrained(run_dir / "best")
    assert encoder.config.hidden_size == 64


def test_existing_run_is_not_overwritten(finished_run):
    run_dir, config, data_dir = finished_run
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir)]) == 2
    assert (run_dir / "metrics.json").exists()


def test_evaluate_reproduces_the_recorded_dev_score(finished_run, capsys):
    run_dir, _, data_dir = finished_run
    assert main(["evaluate", "--run", str(run_dir), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    recorded = json.loads((run_dir / "metrics.json").read_text())["final_dev"]["sst"]["score"]
    assert f"sst        dev accuracy  {recorded:.4f} (recorded {recorded:.4f})" in out


def test_predict_sentiment(finished_run, capsys):
    run_dir, _, _ = finished_run
    assert main(["predict", "--run", str(run_dir), "--text", "great great film", "--text", "bad plot"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["great great film", "bad plot"]
    assert all(line.split("\t")[0] in "01234" for line in lines)
    loaded = MultitaskBERT.load(run_dir)
    assert loaded.predict_sentiment(["great great film", "bad plot"]) == [int(line[0]) for line in lines]
    with pytest.raises(ConfigError, match="task 'sts' is not in this run"):
        loaded.predict_sentiment(["x"], task="sts")


def test_prediction_input_defects(finished_run, caplog):
    from minbert.errors import DataError

    run_dir, _, _ = finished_run
    loaded = MultitaskBERT.load(run_dir)
    with pytest.raises(DataError, match="example 2: empty text"):
        loaded.predict_sentiment(["good film", "   "])
    with caplog.at_level("WARNING", logger="minbert"):
        assert len(loaded.predict_sentiment(["good " * 100])) == 1
    assert "example 1: 102 tokens, truncated to the model's 32" in caplog.text


def test_unwritable_output_and_full_disk_are_reported_before_training(finished_run, tmp_path, monkeypatch, capsys):
    import shutil

    _, config, data_dir = finished_run
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir), f"output_dir={blocker}/runs"]) == 2
    assert "cannot write the run directory" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir), f"output_dir={tmp_path}"]) == 2
    assert "1 MB free, the run's checkpoints need about" in capsys.readouterr().err
    assert not (tmp_path / "tiny-sst").exists()


def test_evaluate_can_rewrite_outputs_of_a_stopped_run(finished_run, tmp_path):
    import shutil

    run_dir, _, data_dir = finished_run
    copy = tmp_path / "stopped"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "predictions")
    metrics = json.loads((copy / "metrics.json").read_text())
    del metrics["final_dev"]
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert main(["evaluate", "--run", str(copy), "--data-dir", str(data_dir), "--write-outputs"]) == 0
    assert (copy / "predictions" / "sst-dev-output.csv").read_text() == \
        (run_dir / "predictions" / "sst-dev-output.csv").read_text()
    rewritten = json.loads((copy / "metrics.json").read_text())
    assert rewritten["final_dev"]["sst"]["score"] == json.loads((run_dir / "metrics.json").read_text())[
        "final_dev"]["sst"]["score"]
