"""`minbert tune` on the tiny model: a study end to end with the SQLite default, two workers sharing one storage,
a killed worker's trial failed and the study resumed, pruning, and search files refused before any trial."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from minbert.errors import ConfigError
from minbert.training.config import load_config
from minbert.tuning.search import read_search
from minbert.tuning.study import Pruning, tune
from tests.conftest import SIAMESE_STS, write_tiny_config

SPACE = """
[space]
"train.lr" = { type = "float", low = 1e-4, high = 1e-2, log = true }
"tasks.sst.dropout" = { type = "float", low = 0.0, high = 0.5 }
"train.sampler" = { type = "choice", choices = ["round_robin", { name = "proportional", alpha = 0.5 }] }
"train.sampler.alpha" = { type = "float", low = 0.2, high = 1.0, when = { "train.sampler" = "proportional" } }
"""


def write_search(directory: Path, model_dir: Path, budget: str = '"train.epochs=2"', space: str = SPACE,
                 extra: str = "") -> Path:
    write_tiny_config(directory / "base.toml", directory / "unused", model_dir,
                      tasks=f'[tasks.sst]\ndata = "sst"\npooling = "mean"\n{SIAMESE_STS}', train="epochs = 1")
    path = directory / "search.toml"
    path.write_text(f'base = "base.toml"\nbudget = [{budget}]\ntune_split = 0.25\ntrials = 4\nsampler_seed = 1\n'
                    f'pruner = "none"\n{extra}{space}', encoding="utf-8")
    return path


def trial_rows(study_dir: Path) -> list[dict]:
    with open(study_dir / "trials.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_four_trial_study_end_to_end(tmp_path, tiny_model_dir, tiny_data_dir):
    search = write_search(tmp_path, tiny_model_dir)
    study_dir = tune(search, output_dir=str(tmp_path / "runs"), data_dir=str(tiny_data_dir))
    assert (study_dir / "study.db").is_file()  # the SQLite default, nothing to start
    rows = trial_rows(study_dir)
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"] and {r["state"] for r in rows} == {"complete"}
    for row in rows:  # each trial a normal run directory, scored on the tune split, dev never read
        run = Path(row["run"])
        trial_config = load_config(run / "config.toml")
        assert trial_config.train.tune_split == 0.25 and trial_config.train.epochs == 2
        assert float(row["tune score"]) > 0 and (run / "metrics.json").is_file()
        assert not (run / "predictions" / "sst-test-output.csv").exists()
        assert (row["train.sampler.alpha"] != "") == ("proportional" in row["train.sampler"])  # conditional key
    best = load_config(study_dir / "best.toml")
    assert best.train.tune_split == 0 and best.train.epochs == 1  # the base's, without the trial budget
    winner = max(rows, key=lambda r: float(r["tune score"]))
    assert best.train.lr == pytest.approx(float(winner["train.lr"]))
    assert "| trial | state | tune score |" in (study_dir / "trials.md").read_text()
    assert (study_dir / "figures" / "history.png").is_file() and (study_dir / "figures" / "parallel.png").is_file()
    again = tune(search, trials=5, output_dir=str(tmp_path / "runs"), data_dir=str(tiny_data_dir))
    assert [r["trial"] for r in trial_rows(again)] == ["0", "1", "2", "3", "4"]  # a rerun continues the study


def test_two_workers_share_one_storage_without_duplicates(tmp_path, tiny_model_dir, tiny_data_dir):
    search = write_search(tmp_path, tiny_model_dir)
    study_dir = tune(search, trials=6, jobs=2, output_dir=str(tmp_path / "runs"), data_dir=str(tiny_data_dir))
    rows = trial_rows(study_dir)
    assert sorted(int(r["trial"]) for r in rows) == list(range(6))
    assert len({r["run"] for r in rows}) == 6 and {r["state"] for r in rows} == {"complete"}
    assert len({r["train.lr"] for r in rows}) == 6  # the workers' samplers are seeded apart: no trial twice
    trial_dirs = sorted(p.name for p in (study_dir / "trials").iterdir() if p.is_dir())
    assert trial_dirs == [f"trial-{i:04d}" for i in range(6)]


LONG_TRIALS = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-3 }\n'


def start_worker(search: Path, runs: Path, data_dir: Path) -> subprocess.Popen:
    """`minbert tune` in its own process, once its first trial has finished an epoch (its trials are long)."""
    worker = subprocess.Popen([sys.executable, "-m", "minbert", "tune", str(search), "--trials", "2", "--output-dir",
                               str(runs), "--data-dir", str(data_dir)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = runs / "tune" / "search" / "trials" / "trial-0000" / "metrics.json"
    deadline = time.time() + 120
    while not first.exists():
        assert worker.poll() is None, worker.stderr.read()[-2000:]
        assert time.time() < deadline, "the first trial never finished an epoch"
        time.sleep(0.05)
    return worker


def finish_study(tmp_path: Path, model_dir: Path, runs: Path, data_dir: Path) -> list[dict]:
    """Rerun the same study with short trials: it ends with two trials that count."""
    study_dir = tune(write_search(tmp_path, model_dir, space=LONG_TRIALS), trials=2, output_dir=str(runs),
                     data_dir=str(data_dir))
    rows = trial_rows(study_dir)
    assert len({r["train.lr"] for r in rows}) == len(rows)  # the rerun's sampler does not redraw trial 0
    return rows


def test_a_killed_workers_trial_is_failed_at_once_and_not_counted(tmp_path, tiny_model_dir, tiny_data_dir):
    """kill -9, then the same command at once (the default heartbeat would wait a minute): the killed trial is
    marked failed, and the rerun still runs the study's two trials."""
    search = write_search(tmp_path, tiny_model_dir, budget='"train.epochs=400"', space=LONG_TRIALS)
    runs = tmp_path / "runs"
    worker = start_worker(search, runs, tiny_data_dir)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    worker.stderr.close()
    rows = finish_study(tmp_path, tiny_model_dir, runs, tiny_data_dir)
    states = {r["trial"]: r["state"] for r in rows}
    assert states == {"0": f"fail (its worker (pid {worker.pid}) was killed)", "1": "complete", "2": "complete"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_worker_marks_its_trial_failed_and_says_how_to_continue(tmp_path, tiny_model_dir, tiny_data_dir,
                                                                          signum):
    search = write_search(tmp_path, tiny_model_dir, budget='"train.epochs=400"', space=LONG_TRIALS)
    runs = tmp_path / "runs"
    worker = start_worker(search, runs, tiny_data_dir)
    worker.send_signal(signum)
    _, stderr = worker.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert worker.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"minbert: stopped by {name}: 0 of 2 trials done") and "Rerun the same command" in last
    assert trial_rows(runs / "tune" / "search")[0]["state"] == f"fail (stopped by {name})"
    states = {r["trial"]: r["state"] for r in finish_study(tmp_path, tiny_model_dir, runs, tiny_data_dir)}
    assert states == {"0": f"fail (stopped by {name})", "1": "complete", "2": "complete"}


@pytest.mark.parametrize(("storage", "message"), [
    ("notaurl", "--storage 'notaurl' is not a database URL"),
    ("postgresql://me:secret@localhost/studies", "--storage postgresql://me:***@localhost/studies: its database "
                                                 "driver is not installed"),
    ("sqlite:////no/such/directory/study.db", "--storage sqlite:////no/such/directory/study.db: cannot connect"),
])
def test_a_bad_storage_is_one_line_before_the_study_is_made(tmp_path, tiny_model_dir, storage, message, capsys):
    from minbert.cli import main

    search = write_search(tmp_path, tiny_model_dir)
    assert main(["tune", str(search), "--storage", storage, "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_pruning_ends_the_trial_with_the_worst_intermediate_score():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for value in (0.8, 0.9):
        trial = study.ask()
        trial.report(value, 0)
        study.tell(trial, value)


    def record(score):
        return {"selection_score": score}

    trainer = SimpleNamespace(history=[{}], stop_reason=None)  # what the hook reads and sets
    (hook := Pruning(study.ask())).epoch_ended(trainer, record(0.95))  # above the median: goes on
    assert hook.pruned is None and trainer.stop_reason is None
    (hook := Pruning(study.ask())).epoch_ended(trainer, record(0.1))  # the worst: training ends after this epoch
    assert hook.pruned == trainer.stop_reason == "pruned after epoch 1 at 0.1000"


@pytest.mark.parametrize(("space", "message"), [
    ('"train.lrr" = { type = "float", low = 1e-5, high = 1e-4 }',
     "space.'train.lrr' = 1e-05: unknown key 'train.lrr'; did you mean 'lr'"),
    ('"train.lr" = { type = "float", low = 1e-4, high = 1e-4 }', r"empty range \[0.0001, 0.0001\]"),
    ('"train.lr" = { type = "normal", low = 0.0, high = 1.0 }', "type = 'normal' is not one of float, int, choice"),
    ('"train.lr" = { type = "float", low = 0.0, high = 1e-3, log = true }', "a log range needs low > 0"),
    ('"train.epochs" = { type = "int", low = 1, high = 2.5 }', "an int range needs whole numbers"),
    ('"tasks.sst.dropout" = { type = "float", low = 0.1, high = 1.5 }', "tasks.sst.dropout = 1.5 must be in"),
    ('"train.sampler" = { type = "choice", choices = [] }', "a choice needs a non-empty `choices` list"),
    ('"train.sampler" = { type = "choice", choices = ["round_robin", "randm"] }', "'randm' is not a sampler"),
    ('"train.sampler.alpha" = { type = "float", low = 0.1, high = 1.0, when = { "train.sampler" = "proportional" } }',
     "must name a key listed before it"),
])
def test_bad_search_files_fail_before_any_trial(space, message, tmp_path, tiny_model_dir):
    search = write_search(tmp_path, tiny_model_dir, space=f"[space]\n{space}\n")
    with pytest.raises(ConfigError, match=message):
        read_search(search)
    with pytest.raises(ConfigError, match=message):
        tune(search, output_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()  # refused before any study or trial directory


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs" / "tune").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_search_spaces_are_valid(path):
    search = read_search(path)
    assert search.space and search.budget


def test_a_stopped_run_ends_after_that_epoch_and_keeps_its_directory(tmp_path, tiny_model_dir, tiny_data_dir):
    """What pruning does to a trial's run: training ends after the epoch, the run is written like a finished one."""
    import json

    from minbert.runs.run import train_run
    from minbert.training.hooks import Hook

    class StopAfterFirstEpoch(Hook):
        def epoch_ended(self, trainer, record):
            trainer.stop_reason = "enough"

    write_tiny_config(tmp_path / "run.toml", tmp_path / "runs", tiny_model_dir, train="epochs = 3",
                      tasks='[tasks.sst]\ndata = "sst"\n[[stages]]\nepochs = 3\n[[stages]]\nepochs = 1\n')
    run = train_run(load_config(tmp_path / "run.toml"), str(tiny_data_dir), hooks=[StopAfterFirstEpoch()])
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 1 and metrics["stopped_early"] == "enough"  # no second epoch, no stage 2
    assert (run / "best" / "model.safetensors").is_file() and metrics["final_dev"]
