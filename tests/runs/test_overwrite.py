"""`--overwrite` builds the new run beside the old one and swaps them only when the new one has finished: a crash,
an interrupt or a kill leaves the old run as it was, and the unfinished new one either removed (before its first
checkpoint) or resumable, so that `--resume` finishes it and swaps it into place. Nothing in the finished run names
the directory it was built in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.runs.rundir import MARKER
from minbert.training.checkpoint import list_checkpoints
from minbert.training.loop import Trainer
from tests.conftest import write_tiny_config
from tests.faults import run_with_fault


@pytest.fixture()
def finished(tmp_path, tiny_model_dir, tiny_data_dir):
    """A finished run runs/st1, its config and a snapshot of every file in it (path: bytes)."""
    runs = tmp_path / "runs"
    config = write_tiny_config(tmp_path / "c.toml", runs, tiny_model_dir)
    assert main(["train", "--config", str(config), "name=st1", "--data-dir", str(tiny_data_dir)]) == 0
    return runs / "st1", config, snapshot(runs / "st1")


def staging_dir(run_dir: Path) -> Path:
    """Where --overwrite builds the new run: hidden, beside the old one (in the same runs root)."""
    return run_dir.parent / f".{run_dir.name}.overwrite"


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def naming(run_dir: Path, text: str) -> list[str]:
    """The files of the run whose bytes hold `text`."""
    return [name for name, data in snapshot(run_dir).items() if text.encode() in data]


def args(config: Path, data_dir: Path, *more: str) -> list[str]:
    return ["train", "--config", str(config), "name=st1", "--data-dir", str(data_dir), *more]


def test_a_crash_at_the_end_of_an_overwrite_keeps_the_old_run(finished, tiny_data_dir, monkeypatch):
    """The probe's case: the new run trains, then crashes writing its outputs; the finished old run is untouched,
    and `--resume` of the new one finishes it and only then replaces the old one."""
    run_dir, config, before = finished

    def crash(*args, **kwargs):
        raise RuntimeError("the outputs could not be written")

    monkeypatch.setattr("minbert.runs.run.write_outputs", crash)
    with pytest.raises(RuntimeError, match="outputs could not be written"):
        main(args(config, tiny_data_dir, "train.lr=5e-4", "train.checkpoint_every=2", "--overwrite"))
    assert snapshot(run_dir) == before
    staging = staging_dir(run_dir)
    assert list_checkpoints(staging), "the unfinished new run is kept to be resumed"
    monkeypatch.undo()
    assert main(["train", "--resume", str(staging), "--data-dir", str(tiny_data_dir)]) == 0
    assert [p.name for p in run_dir.parent.iterdir() if not p.name.endswith(".lock")] == ["st1"]  # no leftovers
    assert "lr = 0.0005" in (run_dir / "config.toml").read_text()
    assert "final_dev" in json.loads((run_dir / "metrics.json").read_text())
    assert "replaces" not in json.loads((run_dir / MARKER).read_text())
    assert naming(run_dir, staging.name) == []


def test_an_interrupted_overwrite_keeps_the_old_run_and_says_how_to_finish_the_new_one(finished, tiny_data_dir):
    run_dir, config, before = finished
    result = run_with_fault("signal@checkpoint-2:SIGINT", *args(config, tiny_data_dir, "train.report=true",
                                                                "train.checkpoint_every=2", "--overwrite"))
    assert result.returncode == 130, result.stderr[-2000:]
    staging = staging_dir(run_dir)
    assert f"continue with: minbert train --resume {staging}" in result.stderr and str(run_dir) in result.stderr
    assert snapshot(run_dir) == before
    assert main(["train", "--resume", str(staging), "--data-dir", str(tiny_data_dir)]) == 0
    assert not staging.exists() and (run_dir / "report.html").is_file()
    # the log, metrics, config, report, tensorboard and checkpoints name the run where it is, never where it was built
    assert naming(run_dir, staging.name) == []
    assert f"saved {run_dir / 'best'}" in (run_dir / "train.log").read_text()


def test_an_overwrite_that_fails_before_its_first_checkpoint_removes_only_what_it_made(finished, tiny_data_dir,
                                                                                       monkeypatch, capsys):
    run_dir, config, before = finished

    def fail(self):
        raise ConfigError("failed at the start")

    monkeypatch.setattr(Trainer, "fit", fail)
    assert main(args(config, tiny_data_dir, "--overwrite")) == 2
    assert "failed at the start" in capsys.readouterr().err
    assert snapshot(run_dir) == before and not staging_dir(run_dir).exists()


def test_a_killed_overwrite_leaves_nothing_that_blocks(finished, tiny_data_dir, capsys):
    """kill -9 of an --overwrite after its first checkpoint: the leftover is named where it matters, replaced by a
    later --overwrite, and never taken for the run itself."""
    run_dir, config, before = finished
    result = run_with_fault("checkpoint-before-rename@4", *args(config, tiny_data_dir, "train.checkpoint_every=2",
                                                                "--overwrite"))
    assert result.returncode == 137
    staging = staging_dir(run_dir)
    assert list_checkpoints(staging) and snapshot(run_dir) == before
    capsys.readouterr()
    assert main(args(config, tiny_data_dir)) == 2  # without --overwrite: the run exists, as before
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 2
    assert f"minbert train --resume {staging}" in capsys.readouterr().err
    assert snapshot(run_dir) == before and list_checkpoints(staging)
    assert main(args(config, tiny_data_dir, "train.lr=5e-4", "--overwrite")) == 0
    assert not staging.exists() and "lr = 0.0005" in (run_dir / "config.toml").read_text()


def test_a_directory_in_the_staging_place_that_minbert_did_not_make_is_never_removed(finished, tiny_data_dir,
                                                                                      capsys):
    run_dir, config, before = finished
    staging = staging_dir(run_dir)
    staging.mkdir()
    (staging / "notes.txt").write_text("mine")
    assert main(args(config, tiny_data_dir, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert str(staging) in err and "Traceback" not in err
    assert (staging / "notes.txt").read_text() == "mine" and snapshot(run_dir) == before


def test_a_finished_swap_refuses_to_replace_a_run_it_was_not_started_for(finished, tiny_data_dir, monkeypatch,
                                                                          capsys):
    """An unfinished --overwrite resumed after the run it was to replace was itself replaced: the finished new run
    stays where it was built, and the other run is kept."""
    run_dir, config, _ = finished
    monkeypatch.setattr("minbert.runs.run.write_outputs", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        main(args(config, tiny_data_dir, "train.checkpoint_every=2", "--overwrite"))
    monkeypatch.undo()
    shutil.rmtree(run_dir)
    assert main(args(config, tiny_data_dir, "train.lr=5e-4")) == 0  # a new st1, made without --overwrite
    other = snapshot(run_dir)
    staging = staging_dir(run_dir)
    capsys.readouterr()
    assert main(["train", "--resume", str(staging), "--data-dir", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err
    assert str(staging) in err and "Traceback" not in err
    assert snapshot(run_dir) == other and (staging / "metrics.json").is_file()


@pytest.mark.parametrize("command", ["ensemble", "soup"])
def test_an_ensemble_or_soup_overwrite_that_fails_keeps_the_old_one(command, three_task_run, tiny_data_dir,
                                                                    tmp_path, monkeypatch, capsys):
    """Made in one go, they are built beside the old one too: a failure leaves it as it was and nothing beside it;
    the report of the one that replaces it names where it is."""
    copy = tmp_path / "copy"
    shutil.copytree(three_task_run, copy)
    cli = [command, str(three_task_run), str(copy), "--name", "e", "--output-dir", str(tmp_path / "runs"),
           "--data-dir", str(tiny_data_dir)]
    assert main(cli) == 0
    run_dir = tmp_path / "runs" / "e"
    before = snapshot(run_dir)

    def crash(*args, **kwargs):
        raise ConfigError("the outputs could not be written")

    monkeypatch.setattr(f"minbert.runs.{command}.write_json", crash)
    assert main([*cli, "--overwrite"]) == 2
    assert "could not be written" in capsys.readouterr().err
    assert snapshot(run_dir) == before
    assert [p.name for p in run_dir.parent.iterdir() if not p.name.endswith(".lock")] == ["e"]
    monkeypatch.undo()
    assert main([*cli, "--overwrite"]) == 0
    assert (run_dir / "report.html").is_file() and naming(run_dir, staging_dir(run_dir).name) == []
    assert [p.name for p in run_dir.parent.iterdir() if not p.name.endswith(".lock")] == ["e"]
