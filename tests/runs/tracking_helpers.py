"""What the tracking tests share: a tiny two-epoch run config with a tracker, and a run killed with SIGKILL mid-step
whose trackers send every step's figures at once (so that steps after its newest checkpoint reach the tracker
before the kill, and the resumed run replays them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_tiny_config
from tests.faults import REPO

STEPS_PER_EPOCH = 12  # the tiny SST train set (48 rows) in batches of 4
# tests.faults in a child whose trackers flush every step (FLUSH_SECONDS = 0), from outside the production code
FLUSH_EVERY_STEP = ("import runpy, sys; import minbert.training.tracking as tracking; tracking.FLUSH_SECONDS = 0; "
                    "sys.argv = ['tests.faults', *sys.argv[1:]]; runpy.run_module('tests.faults', run_name='__main__')")


def tracked_config(directory: Path, model_dir: Path, tracking: str, epochs: int = 2) -> Path:
    """SST alone, `epochs` epochs of STEPS_PER_EPOCH steps, a checkpoint every 5 steps, the report written; every
    step's figures read and handed to the trackers at once (log_every = 1), so a kill between checkpoints leaves
    steps the tracker holds and the resumed run replays."""
    return write_tiny_config(directory / "run.toml", directory, model_dir,
                             train=f"epochs = {epochs}\nbatch_size = 4\ncheckpoint_every = 5\nlog_every = 1\n"
                                   f"report = true\ntracking = {tracking}")


def train_killed_at(step: int, config: Path, data_dir: Path, env: dict[str, str] | None = None) -> None:
    """`minbert train` SIGKILLed in the middle of optimizer step `step`."""
    result = subprocess.run([sys.executable, "-c", FLUSH_EVERY_STEP, f"signal@step-{step}:SIGKILL", "train",
                             "--config", str(config), "--data-dir", str(data_dir)], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == -9, result.stderr[-3000:]
