"""Staged training: later stages start from the best checkpoint so far, train only what they name, and resume
across stage boundaries."""

from __future__ import annotations

import json

from safetensors.torch import load_file

from minbert.cli import main
from minbert.training.checkpoint import list_checkpoints
from tests.conftest import write_tiny_config
from tests.faults import run_with_fault

STAGED_TASKS = """[tasks.sst]
data = "sst"
pooling = "mean"
[tasks.sts]
data = "sts"
pair_encoding = "siamese"
pooling = "mean"
head = "mlp"
loss = "mse"
[[stages]]
name = "multitask"
epochs = 1
[[stages]]
name = "sst-heads"
epochs = 2
tasks = ["sst"]
train_encoder = false
head_lr = 1e-2
"""


def write_staged(path, out, model_dir):
    return write_tiny_config(path, out, model_dir, model="hidden_dropout = 0.0", tasks=STAGED_TASKS,
                             train='sampler = "round_robin"\nkeep_checkpoints = 20\ncheckpoint_every = 4')


def tensors(checkpoint):
    return {k.removeprefix("model."): v for k, v in load_file(checkpoint / "tensors.safetensors").items()
            if k.startswith("model.")}


def test_stages_train_what_they_name_from_the_best_so_far(tmp_path, tiny_model_dir, tiny_data_dir):
    config = tmp_path / "staged.toml"
    write_staged(config, tmp_path, tiny_model_dir)
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    run_dir = tmp_path / "staged"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [(e["epoch"], e["stage"], e["stage_epoch"]) for e in metrics["epochs"]] == [
        (1, "multitask", 1), (2, "sst-heads", 1), (3, "sst-heads", 2)]
    assert set(metrics["epochs"][1]["train_loss"]) == {"sst"}
    steps = [int(p.name.split("-")[1]) for p in list_checkpoints(run_dir)]
    stage_one_end = 12  # 6 SST + 6 STS batches of 8, round robin
    start, end = tensors(run_dir / "checkpoints" / f"step-{stage_one_end:08d}"), tensors(list_checkpoints(run_dir)[-1])
    assert max(steps) == stage_one_end + 2 * 6
    encoder = [k for k in start if k.startswith("bert.")]
    assert all((start[k] == end[k]).all() for k in encoder)  # stage 2 leaves the encoder alone
    assert all((start[k] == end[k]).all() for k in start if k.startswith("heads.sts."))
    assert any((start[k] != end[k]).any() for k in start if k.startswith("heads.sst."))


def test_resume_inside_a_later_stage(tmp_path, tiny_model_dir, tiny_data_dir):
    config = tmp_path / "staged.toml"
    write_staged(config, tmp_path, tiny_model_dir)
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=whole"]) == 0
    crashed = run_with_fault("checkpoint-before-rename@20", "train", "--config", str(config), "--data-dir",
                             str(tiny_data_dir), "name=crashed")
    assert crashed.returncode == 137
    assert main(["train", "--resume", str(tmp_path / "crashed"), "--data-dir", str(tiny_data_dir)]) == 0
    resumed = json.loads((tmp_path / "crashed" / "metrics.json").read_text())["resumed_from"]
    assert resumed["step"] == 18  # the end of stage 2's first epoch: step 20's checkpoint was never renamed
    a, b = tensors(list_checkpoints(tmp_path / "whole")[-1]), tensors(list_checkpoints(tmp_path / "crashed")[-1])
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0
