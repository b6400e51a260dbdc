"""The mlflow tracker against a real MLflow tracking server (`mlflow server` on loopback, a SQLite store, started
once for the module): params, every epoch's dev metrics at their steps, artifacts; a run killed with SIGKILL and
resumed is one MLflow run holding each step once; an ablation is a parent run with its variants as children; a
server that does not answer is one warning, and the run finishes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bench.mlflow_screenshots import free_port
from bench.mlflow_screenshots import mlflow_server as server_on_loopback
from minbert.cli import main
from minbert.training.checkpoint import list_checkpoints
from tests.runs.tracking_helpers import STEPS_PER_EPOCH, tracked_config, train_killed_at

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    with server_on_loopback(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


def client_of(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(url)


def steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_a_killed_and_resumed_run_is_one_mlflow_run_with_each_step_once(mlflow_server, tiny_model_dir,
                                                                       tiny_data_dir, tmp_path):
    config = tracked_config(tmp_path, tiny_model_dir,
                            f'[{{ name = "mlflow", tracking_uri = "{mlflow_server}", experiment = "resume" }}]')
    run_dir = tmp_path / "run"
    train_killed_at(18, config, tiny_data_dir)  # epoch 2; checkpoints at steps 5, 10, 12 (epoch 1's end), 15
    client = client_of(mlflow_server)
    run_id = json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"]
    newest = max(int(p.name.split("-")[1]) for p in list_checkpoints(run_dir))
    assert max(steps(client, run_id, "lr")) > newest  # the resumed run replays steps the server already holds

    assert main(["train", "--resume", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 0
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"] == run_id
    experiment = client.get_experiment_by_name("resume")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    total = 2 * STEPS_PER_EPOCH
    for key in ("lr", "train_loss/sst"):
        assert steps(client, run_id, key) == list(range(1, total + 1))  # each step once
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    dev = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "dev/sst_accuracy"))
    assert dev == [(STEPS_PER_EPOCH * e["epoch"], e["dev"]["sst"]["score"]) for e in epochs]
    assert steps(client, run_id, "epoch") == [STEPS_PER_EPOCH, total]
    assert run.data.params["train.epochs"] == "2" and run.data.params["train.batch_size"] == "4"
    assert json.loads(run.data.params["train.tracking"])[0]["tracking_uri"] == mlflow_server
    assert {"report.html", "metrics.json", "config.toml", "best/config.json"} <= artifacts(client, run_id)
    copy = Path(client.download_artifacts(run_id, "best/config.json", str(tmp_path / "downloaded")))
    assert copy.read_text() == (run_dir / "best" / "config.json").read_text()


def test_an_ablation_is_a_parent_run_with_its_variants_as_children(mlflow_server, tiny_model_dir, tiny_data_dir,
                                                                   tmp_path):
    from minbert.runs.ablation import run_ablation

    tracked_config(tmp_path, tiny_model_dir, f'[{{ name = "mlflow", tracking_uri = "{mlflow_server}", '
                   'experiment = "sweeps" }]', epochs=1)
    sweep = tmp_path / "lr.toml"
    sweep.write_text(f'base = "run.toml"\noutput_dir = "{tmp_path / "out"}"\n'
                     '[variants]\nbase = []\nfaster = ["train.lr=2e-3"]\n')
    out = run_ablation(sweep, str(tiny_data_dir))
    client = client_of(mlflow_server)
    parent = json.loads((out / "tracking.json").read_text())["mlflow"]["parent_run_id"]
    experiment = client.get_experiment_by_name("sweeps").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([experiment])}
    assert set(runs) == {"lr", "base", "faster"} and runs["lr"].info.run_id == parent
    assert all(runs[v].data.tags["mlflow.parentRunId"] == parent for v in ("base", "faster"))
    assert runs["faster"].data.params["train.lr"] == "0.002"
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert {"ablation.md", "ablation.png"} <= artifacts(client, parent)


def test_a_server_that_does_not_answer_is_one_warning_and_the_run_finishes(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                           caplog):
    port = free_port()  # closed again: nothing listens there
    config = tracked_config(tmp_path, tiny_model_dir,
                            f'["tensorboard", {{ name = "mlflow", tracking_uri = "http://127.0.0.1:{port}" }}]')
    with caplog.at_level(logging.WARNING, logger="minbert"):
        assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    warnings = [r.getMessage() for r in caplog.records if "train.tracking" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"mlflow (http://127.0.0.1:{port}) cannot be reached" in warnings[0]
    run_dir = tmp_path / "run"
    assert "final_dev" in json.loads((run_dir / "metrics.json").read_text())
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))  # the other trackers go on
    assert not (run_dir / "tracking.json").exists()
