"""Fault injection for tests, from outside the production code: `python -m tests.faults FAULT minbert-args...`
installs FAULT, then runs the `minbert` command in this process.

    nan-loss@N                   the loss of optimizer step N is NaN
    checkpoint-before-rename@N   the process dies (exit 137, as after SIGKILL) when checkpoint N is written and
                                 synced but not yet renamed into place
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from minbert.cli import main
from minbert.training import checkpoint
from minbert.training.loop import TaskLoss, Trainer


def nan_loss_at(step: int) -> None:
    current = {"step": -1}
    train_step, forward = Trainer.train_step, TaskLoss.forward

    def counting_train_step(self, *args, **kwargs):
        current["step"] = self.step
        return train_step(self, *args, **kwargs)

    def poisoned_forward(self, batch):
        loss = forward(self, batch)
        return loss * float("nan") if current["step"] == step else loss

    Trainer.train_step, TaskLoss.forward = counting_train_step, poisoned_forward


def die_before_rename(step: int) -> None:
    publish = checkpoint.publish

    def dying_publish(tmp, final):
        if final.name == f"step-{step:08d}":
            os._exit(137)
        publish(tmp, final)

    checkpoint.publish = dying_publish


REPO = Path(__file__).resolve().parents[1]
FAULTS = {"nan-loss": nan_loss_at, "checkpoint-before-rename": die_before_rename}


def run_with_fault(fault: str, *args: str) -> subprocess.CompletedProcess:
    """`minbert ARGS` in a child process (one thread) with `fault` installed; its output captured as text."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tests.faults", fault, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


if __name__ == "__main__":
    name, step = sys.argv[1].split("@")
    FAULTS[name](int(step))
    sys.exit(main(sys.argv[2:]))
