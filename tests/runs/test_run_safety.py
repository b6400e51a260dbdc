"""Run directories are safe: a bad name or --overwrite never deletes what minbert did not create, one process at a
time writes a run (an OS lock the kernel drops when the holder dies), and a start that fails leaves nothing behind.
Every test builds a scratch project with sentinel files outside the run and checks they survive."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.runs.rundir import MARKER, RunLock
from minbert.training.checkpoint import list_checkpoints
from tests.conftest import write_tiny_config
from tests.faults import run_with_fault


@pytest.fixture()
def project(tmp_path, tiny_model_dir):
    """project/{sentinel.txt, my.toml, runs/{old-run/, notes/}} with sentinels everywhere."""
    root = tmp_path / "project"
    runs = root / "runs"
    (runs / "notes").mkdir(parents=True)
    (root / "sentinel.txt").write_text("keep me")
    (runs / "notes" / "sentinel.txt").write_text("keep me too")
    config = write_tiny_config(root / "my.toml", runs, tiny_model_dir)
    return root, config


def sentinels_intact(root: Path) -> bool:
    return (root / "sentinel.txt").read_text() == "keep me" and \
        (root / "runs" / "notes" / "sentinel.txt").read_text() == "keep me too"


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "a/b", "/tmp/abs", "runs/..", " "])
def test_unsafe_run_names_are_refused_before_anything_is_touched(project, name, capsys):
    root, config = project
    assert main(["train", "--config", str(config), f"name={name}", "--overwrite", "--data-dir", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "name" in err and "Traceback" not in err
    assert sentinels_intact(root)


def test_quick_with_an_empty_name_is_refused(project, capsys):
    root, config = project
    assert main(["train", "--config", str(config), "--quick", "name=", "--overwrite", "--data-dir", "/nonexistent"]
                ) == 2
    assert sentinels_intact(root)


def test_overwrite_refuses_a_directory_that_is_not_a_minbert_run(project, tiny_data_dir, capsys):
    root, config = project
    assert main(["train", "--config", str(config), "name=notes", "--overwrite", "--data-dir", str(tiny_data_dir)]) == 2
    assert "not a minbert run" in capsys.readouterr().err
    assert sentinels_intact(root)


def test_overwrite_refuses_a_run_reached_through_a_symlink(project, tiny_data_dir, tmp_path, capsys):
    root, config = project
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / MARKER).write_text("{}")  # even a marked run is not removed through a link out of the runs root
    (outside / "sentinel.txt").write_text("keep")
    (root / "runs" / "linked").symlink_to(outside)
    assert main(["train", "--config", str(config), "name=linked", "--overwrite", "--data-dir", str(tiny_data_dir)]
                ) == 2
    assert "symlink" in capsys.readouterr().err
    assert (outside / "sentinel.txt").read_text() == "keep" and sentinels_intact(root)


def test_overwrite_replaces_a_real_run_and_only_it(project, tiny_data_dir):
    root, config = project
    args = ["train", "--config", str(config), "name=r", "--data-dir", str(tiny_data_dir)]
    assert main(args) == 0
    assert (root / "runs" / "r" / MARKER).is_file()
    assert main(args) == 2  # exists: needs --overwrite
    assert main([*args, "--overwrite"]) == 0
    assert sentinels_intact(root)


def test_a_failed_start_leaves_no_run_directory(project, tiny_data_dir, capsys):
    root, config = project
    assert main(["train", "--config", str(config), "name=r", "--data-dir", str(root / "no-data")]) == 2
    assert main(["train", "--config", str(config), "name=r", "train.lr=nan", "--data-dir", str(tiny_data_dir)]) == 2
    assert main(["train", "--config", str(config), "name=r", "tasks.sst.dev=missing.csv",
                 "--data-dir", str(tiny_data_dir)]) == 2
    assert not (root / "runs" / "r").exists()
    capsys.readouterr()
    assert main(["train", "--config", str(config), "name=r", "--data-dir", str(tiny_data_dir)]) == 0  # no --overwrite


def test_a_run_that_fails_before_its_first_checkpoint_removes_its_own_directory(project, tiny_data_dir):
    root, config = project
    result = run_with_fault("nan-loss@0", "train", "--config", str(config), "name=r", "--data-dir",
                            str(tiny_data_dir))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "non-finite loss" in result.stderr and "Traceback" not in result.stderr
    assert not (root / "runs" / "r").exists() and sentinels_intact(root)


def test_a_run_that_fails_after_a_checkpoint_keeps_it(project, tiny_data_dir):
    root, config = project
    result = run_with_fault("nan-loss@4", "train", "--config", str(config), "name=r", "train.checkpoint_every=2",
                            "--data-dir", str(tiny_data_dir))
    assert result.returncode == 2
    assert [p.name for p in list_checkpoints(root / "runs" / "r")] == ["step-00000002", "step-00000004"]


def wait_for(predicate, what: str, child: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not predicate():
        if child.poll() is not None:
            raise AssertionError(f"the first process ended (rc {child.returncode}) before {what}: "
                                 f"{child.stderr.read()[-2000:]}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_locked_run_refuses_a_second_process_and_a_kill_leaves_no_stale_lock(project, tiny_data_dir):
    """Two real processes: a training run holds the lock; --overwrite and --resume from a second process stop at
    once naming the holder; after kill -9 of the holder, --resume takes the lock and finishes the run."""
    root, config = project
    run_dir = root / "runs" / "r"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "minbert", "train", "--data-dir", str(tiny_data_dir)]
    holder = subprocess.Popen([*command, "--config", str(config), "name=r", "train.epochs=400",
                               "train.checkpoint_every=5"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(list_checkpoints(run_dir)) >= 1, "its first checkpoint", holder)
        for second in ([*command, "--config", str(config), "name=r", "--overwrite"], [*command, "--resume",
                                                                                        str(run_dir)]):
            started = time.time()
            result = subprocess.run(second, env=env, capture_output=True, text=True, timeout=120)
            assert result.returncode == 2, result.stderr[-2000:]
            assert "in use" in result.stderr and f"pid {holder.pid}" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
            assert holder.poll() is None, "the second process stopped the first"
            print(f"second process refused in {time.time() - started:.1f} s: {result.stderr.strip()}")
        assert (run_dir / "config.toml").is_file() and sentinels_intact(root)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stderr.close()
    with RunLock(run_dir):  # the kernel dropped the killed holder's lock: no stale lock file blocks anyone
        pass
    resumed = subprocess.Popen([*command, "--resume", str(run_dir)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "resuming from" in (run_dir / "train.log").read_text(), "the resume to start", resumed)
    finally:
        resumed.send_signal(signal.SIGKILL)
        resumed.wait()
        resumed.stderr.close()


def test_resume_of_a_finished_run_is_refused(project, tiny_data_dir, capsys):
    root, config = project
    assert main(["train", "--config", str(config), "name=r", "--data-dir", str(tiny_data_dir)]) == 0
    metrics = (root / "runs" / "r" / "metrics.json").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(root / "runs" / "r"), "--data-dir", str(tiny_data_dir)]) == 2
    assert "already finished" in capsys.readouterr().err
    assert (root / "runs" / "r" / "metrics.json").read_text() == metrics


def test_weight_files_follow_the_umask(project, tiny_data_dir):
    root, config = project
    previous = os.umask(0o022)
    try:
        assert main(["train", "--config", str(config), "name=r", "--data-dir", str(tiny_data_dir)]) == 0
    finally:
        os.umask(previous)
    run_dir = root / "runs" / "r"
    for path in [run_dir / "best" / "model.safetensors", *run_dir.glob("checkpoints/*/tensors.safetensors")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert json.loads((run_dir / MARKER).read_text())["name"] == "r"
