"""Data parallelism: torchrun with 2 CPU processes (gloo) takes the same steps as one process with the same
global batch."""

from __future__ import annotations

import os
import subprocess
import sys

from safetensors.torch import load_file

from minbert.cli import main
from tests.conftest import SIAMESE_STS, write_tiny_config


def write_config(path, out, model_dir):
    # bf16 rounds the two ranks' partial sums differently; exactness needs fp32
    return write_tiny_config(path, out, model_dir, model="hidden_dropout = 0.0\nattention_dropout = 0.0",
                             train='sampler = "round_robin"\nprecision = "fp32"',
                             tasks=f'[tasks.sst]\ndata = "sst"\npooling = "mean"\ndropout = 0.0\n{SIAMESE_STS}')


def test_two_gloo_processes_match_one_process(tmp_path, tiny_model_dir, tiny_data_dir):
    config = tmp_path / "ddp.toml"
    write_config(config, tmp_path, tiny_model_dir)
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=single"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "minbert",
         "train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=ddp"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    single = load_file(tmp_path / "single" / "best" / "model.safetensors")
    ddp = load_file(tmp_path / "ddp" / "best" / "model.safetensors")
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert single.keys() == ddp.keys()
    worst = max((single[k] - ddp[k]).abs().max().item() for k in single)
    moved = max((single["bert." + k] - v).abs().max().item() for k, v in initial.items())
    print(f"max abs difference 2 ranks vs 1 process: {worst:.2e} (training moved weights by up to {moved:.2e})")
    assert moved > 1e-3
    assert worst < 1e-5
    assert "data parallel over 2 ranks" in (tmp_path / "ddp" / "train.log").read_text()
