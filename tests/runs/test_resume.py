"""Fault tolerance: a real SIGKILL mid-run, a crash between writing a checkpoint and renaming it, forced NaNs.
A resumed run must end with the same weights and metrics as an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from minbert.cli import main
from minbert.training.checkpoint import list_checkpoints
from tests.conftest import SIAMESE_STS, write_tiny_config
from tests.faults import run_with_fault


def write_config(path, out, model_dir, epochs=4, every=3, extra=""):
    return write_tiny_config(path, out, model_dir, tasks=f'[tasks.sst]\ndata = "sst"\npooling = "mean"\n{SIAMESE_STS}',
                             train=f'epochs = {epochs}\nbatch_size = 4\nsampler = "proportional"\n'
                                   f'checkpoint_every = {every}\nkeep_checkpoints = 2\n{extra}')


def train_command(*args):
    return [sys.executable, "-m", "minbert", "train", *args]


def final_weights(run_dir):
    last = list_checkpoints(run_dir)[-1]
    return last.name, {k: v for k, v in load_file(last / "tensors.safetensors").items() if k.startswith("model.")}


def assert_same_run(reference, resumed):
    ref_name, ref = final_weights(reference)
    res_name, res = final_weights(resumed)
    assert ref_name == res_name  # the same number of steps
    worst = max((ref[k] - res[k]).abs().max().item() for k in ref)
    ref_metrics = json.loads((reference / "metrics.json").read_text())
    res_metrics = json.loads((resumed / "metrics.json").read_text())
    for a, b in zip(ref_metrics["epochs"], res_metrics["epochs"], strict=True):
        assert a["dev"] == b["dev"] and a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    assert ref_metrics["final_dev"] == res_metrics["final_dev"]
    return worst


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    out = tmp_path_factory.mktemp("reference")
    config = write_config(out / "run.toml", out, tiny_model_dir)
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=uninterrupted"]) == 0
    return out / "uninterrupted", config


def test_sigkill_at_a_random_step_then_resume(reference, tiny_data_dir, tmp_path):
    reference_dir, config = reference
    run_dir = tmp_path / "killed"
    total = int(final_weights(reference_dir)[0].split("-")[1])
    kill_after = random.Random().randint(4, total - 6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(train_command("--config", str(config), "--data-dir", str(tiny_data_dir),
                                           f"output_dir={tmp_path}", "name=killed"),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in list_checkpoints(run_dir)]
        if steps and max(steps) >= kill_after:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert child.wait() == -signal.SIGKILL, "the run ended before the kill landed"
    landed = max(int(p.name.split("-")[1]) for p in list_checkpoints(run_dir))
    assert main(["train", "--resume", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 0
    resumed_at = json.loads((run_dir / "metrics.json").read_text())["resumed_from"]["step"]
    worst = assert_same_run(reference_dir, run_dir)
    print(f"SIGKILL after checkpoint step {kill_after} requested, newest checkpoint at kill: step {landed}, "
          f"resumed at step {resumed_at} of {total}; max abs weight difference {worst:.2e}")
    assert 0 < resumed_at < total
    assert worst <= 1e-6


def test_crash_between_write_and_rename_keeps_the_previous_checkpoint(reference, tiny_data_dir, tmp_path):
    reference_dir, config = reference
    run_dir = tmp_path / "torn"
    result = run_with_fault("checkpoint-before-rename@9", "train", "--config", str(config), "--data-dir",
                            str(tiny_data_dir), f"output_dir={tmp_path}", "name=torn")
    assert result.returncode == 137
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000003", "step-00000006"]
    assert (run_dir / "checkpoints" / ".tmp-step-00000009" / "tensors.safetensors").exists()  # written, not renamed
    assert main(["train", "--resume", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from"]["step"] == 6
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    worst = assert_same_run(reference_dir, run_dir)
    print(f"crash before renaming step 9: resumed from step 6; max abs weight difference {worst:.2e}")
    assert worst <= 1e-6


def test_bregman_proximal_copy_is_checkpointed(tiny_model_dir, tiny_data_dir, tmp_path):
    """The slow copy is training state: a resume without it would pull towards the wrong weights."""
    config = write_config(tmp_path / "run.toml", tmp_path, tiny_model_dir, epochs=2,
                          extra="techniques.bregman = { weight = 1.0, momentum = 0.9 }")
    args = ["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]
    assert main([*args, "name=uninterrupted"]) == 0
    result = run_with_fault("checkpoint-before-rename@9", "train", "--config", str(config), "--data-dir",
                            str(tiny_data_dir), "name=torn")
    assert result.returncode == 137
    checkpoint = list_checkpoints(tmp_path / "torn")[-1]
    assert any(k.startswith("proximal.") for k in load_file(checkpoint / "tensors.safetensors"))
    assert main(["train", "--resume", str(tmp_path / "torn"), "--data-dir", str(tiny_data_dir)]) == 0
    assert assert_same_run(tmp_path / "uninterrupted", tmp_path / "torn") <= 1e-6


def test_forced_nan_stops_with_the_step_task_and_ids(tmp_path, tiny_model_dir, tiny_data_dir):
    config = write_config(tmp_path / "nan.toml", tmp_path, tiny_model_dir, epochs=2)
    result = run_with_fault("nan-loss@7", "train", "--config", str(config), "--data-dir", str(tiny_data_dir),
                            "name=stop")
    assert result.returncode == 2
    assert "non-finite loss nan at step 7 (epoch 1), task s" in result.stderr
    assert "example ids: " in result.stderr and "the last good checkpoint is kept" in result.stderr
    kept = list_checkpoints(tmp_path / "stop")
    assert [p.name for p in kept] == ["step-00000003", "step-00000006"]
    load_file(kept[-1] / "tensors.safetensors")  # intact


def test_skip_mode_drops_the_step_and_counts_it(tmp_path, tiny_model_dir, tiny_data_dir):
    config = write_config(tmp_path / "skip.toml", tmp_path, tiny_model_dir, epochs=2, extra='on_nan = "skip"')
    result = run_with_fault("nan-loss@7", "train", "--config", str(config), "--data-dir", str(tiny_data_dir),
                            "name=skip")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert [e["nan_steps_skipped"] for e in metrics["epochs"]] == [1, 1]
    assert "step skipped (1 skipped so far)" in (tmp_path / "skip" / "train.log").read_text()


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    (tmp_path / "config.toml").write_text('[tasks.sst]\ndata = "sst"\n')
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


# --- Ctrl-C and SIGTERM: a real signal at a chosen moment, then --resume ends as an uninterrupted run ---

def steps_of(run_dir):
    return [int(p.name.split("-")[1]) for p in list_checkpoints(run_dir)]


def assert_clean_stop(result, signum):
    assert result.returncode == 128 + signum, result.stderr
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"minbert: stopped by {signal.Signals(signum).name}"), result.stderr
    return last


@pytest.mark.parametrize(("where", "signum", "newest"), [
    ("step-5:SIGINT", signal.SIGINT, 5),  # mid-step: the step ends, a checkpoint of step 5 is written
    ("checkpoint-6:SIGTERM", signal.SIGTERM, 6),  # mid-write: the write completes, no second checkpoint
    ("step-5:SIGINTx2", signal.SIGINT, 3),  # a second signal stops at once: the last complete one is step 3
])
def test_a_signal_stops_at_a_step_boundary_and_resume_matches(reference, tiny_data_dir, tmp_path, where, signum,
                                                              newest):
    reference_dir, config = reference
    run_dir = tmp_path / "stopped"
    result = run_with_fault(f"signal@{where}", "train", "--config", str(config), "--data-dir", str(tiny_data_dir),
                            f"output_dir={tmp_path}", "name=stopped")
    last = assert_clean_stop(result, signum)
    assert max(steps_of(run_dir)) == newest
    if "x2" not in where:  # the one line says what was kept and how to continue
        assert f"step-{newest:08d}" in last and f"minbert train --resume {run_dir}" in last
    assert not (run_dir / "metrics.json").exists() or "final_dev" not in (run_dir / "metrics.json").read_text()
    assert main(["train", "--resume", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 0  # the lock is free
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from"]["step"] == newest
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    assert assert_same_run(reference_dir, run_dir) <= 1e-6


def test_sigint_from_outside_mid_run(reference, tiny_data_dir, tmp_path):
    """As at a terminal: Ctrl-C from another process while the run trains."""
    _, config = reference
    run_dir = tmp_path / "outside"
    child = subprocess.Popen(train_command("--config", str(config), "--data-dir", str(tiny_data_dir),
                                           f"output_dir={tmp_path}", "name=outside"),
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None and not list_checkpoints(run_dir):
        time.sleep(0.01)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert_clean_stop(subprocess.CompletedProcess([], child.returncode, "", stderr), signal.SIGINT)
    assert steps_of(run_dir)


def test_an_interrupt_before_training_removes_the_new_run(reference, tiny_data_dir, tmp_path):
    _, config = reference
    result = run_with_fault("signal@start:SIGINT", "train", "--config", str(config), "--data-dir",
                            str(tiny_data_dir), f"output_dir={tmp_path}", "name=early")
    last = assert_clean_stop(result, signal.SIGINT)
    assert not (tmp_path / "early").exists() and "removed" in last  # so the same command starts it again


# --- a damaged newest checkpoint: resume passes over it, says why, and ends as an uninterrupted run ---

@pytest.fixture(scope="module")
def stopped_at_9(reference, tiny_data_dir, tmp_path_factory):
    """A run that died while writing its step-12 checkpoint: it holds step-6 and step-9."""
    _, config = reference
    out = tmp_path_factory.mktemp("stopped")
    result = run_with_fault("checkpoint-before-rename@12", "train", "--config", str(config), "--data-dir",
                            str(tiny_data_dir), f"output_dir={out}", "name=run")
    assert result.returncode == 137, result.stderr
    shutil.rmtree(out / "run" / "checkpoints" / ".tmp-step-00000012")
    assert steps_of(out / "run") == [6, 9]
    return out / "run"


def truncate_tensors(step_dir, _):
    tensors = step_dir / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-1000])


def remove_state(step_dir, _):
    (step_dir / "state.json").unlink()


def drop_stage(step_dir, _):
    state = json.loads((step_dir / "state.json").read_text())
    del state["stage"]
    (step_dir / "state.json").write_text(json.dumps(state))


def state_of_another_config(step_dir, other_run):
    """The checkpoint of a run trained with another pooling, copied in whole (tensors of the same shapes)."""
    other = list_checkpoints(other_run)[-1]
    for name in ("tensors.safetensors", "state.json", "digests.json"):
        (step_dir / name).write_bytes((other / name).read_bytes())


@pytest.mark.parametrize(("damage", "reason"), [
    (truncate_tensors, "tensors.safetensors is truncated"),
    (remove_state, "state.json is missing"),
    (drop_stage, "state.json is incomplete: no 'stage'"),
    (state_of_another_config, "another"),
])
def test_a_damaged_newest_checkpoint_resumes_from_the_previous_one(reference, stopped_at_9, tiny_data_dir, tmp_path,
                                                                   caplog, damage, reason):
    reference_dir, config = reference
    other_run = None
    if damage is state_of_another_config:
        assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), f"output_dir={tmp_path}",
                     "name=other", "tasks.sst.pooling=cls", "train.epochs=1"]) == 0
        other_run = tmp_path / "other"
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_at_9, run_dir)
    damage(run_dir / "checkpoints" / "step-00000009", other_run)
    caplog.clear()
    assert main(["train", "--resume", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 0
    err = caplog.text
    assert "step-00000009: cannot resume from it" in err and reason in err, err
    assert "resuming from the previous complete checkpoint step-00000006 instead: 3 steps to train again" in err
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from"]["step"] == 6
    assert assert_same_run(reference_dir, run_dir) <= 1e-6
