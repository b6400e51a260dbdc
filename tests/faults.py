"""Fault injection for tests, from outside the production code: `python -m tests.faults FAULT minbert-args...`
installs FAULT, then runs the `minbert` command in this process.

    nan-loss@N                   the loss of optimizer step N is NaN
    checkpoint-before-rename@N   the process dies (exit 137, as after SIGKILL) when checkpoint N is written and
                                 synced but not yet renamed into place
    signal@step-N:SIG[xK]        the process sends itself SIG (SIGINT, SIGTERM) K times (default once) in the
                                 middle of optimizer step N: after the forward pass, before the backward
    signal@checkpoint-N:SIG[xK]  the same while checkpoint N is being written (synced, not yet renamed)
    signal@start:SIG             the same once the run directory is made, before training starts
    signal@call-NAME:SIG         the same when the function NAME (module.attribute, e.g.
                                 minbert.predictor.MultitaskBERT.predict) is first called
"""

from __future__ import annotations

import os
import signal
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


def signal_at(where: str) -> None:
    """A real signal, from the process to itself, at a chosen moment (see the module's docstring)."""
    moment, _, spec = where.partition(":")
    name, _, times = spec.partition("x")
    signum, count = getattr(signal, name), int(times or 1)

    def send() -> None:
        for _ in range(count):
            os.kill(os.getpid(), signum)

    if moment.startswith("call-"):
        owner, attribute = resolve(moment.removeprefix("call-"))
        original = getattr(owner, attribute)

        def signalled(*args, **kwargs):
            send()
            return original(*args, **kwargs)

        setattr(owner, attribute, signalled)
        return
    if moment == "start":
        from minbert.runs import run

        train_main = run._train_main

        def signalled_train_main(*args, **kwargs):
            send()
            return train_main(*args, **kwargs)

        run._train_main = signalled_train_main
        return
    kind, step = moment.split("-")
    step = int(step)
    if kind == "checkpoint":
        publish = checkpoint.publish

        def signalled_publish(tmp, final):
            if final.name == f"step-{step:08d}":
                send()
            publish(tmp, final)

        checkpoint.publish = signalled_publish
        return
    current = {"step": -1}
    train_step, forward = Trainer.train_step, TaskLoss.forward

    def counting_train_step(self, *args, **kwargs):
        current["step"] = self.step + 1  # the step being taken (self.step counts the finished ones)
        return train_step(self, *args, **kwargs)

    def signalled_forward(self, batch):
        loss = forward(self, batch)
        if current["step"] == step:
            current["step"] = -1
            send()
        return loss

    Trainer.train_step, TaskLoss.forward = counting_train_step, signalled_forward


def resolve(dotted: str) -> tuple[object, str]:
    """"package.module.Class.method" -> (Class, "method")."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ValueError(f"no module in {dotted!r}")


REPO = Path(__file__).resolve().parents[1]
FAULTS = {"nan-loss": nan_loss_at, "checkpoint-before-rename": die_before_rename, "signal": signal_at}


def run_with_fault(fault: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`minbert ARGS` in a child process (one thread, `env` added to the environment) with `fault` installed; its
    output captured as text."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tests.faults", fault, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


if __name__ == "__main__":
    name, where = sys.argv[1].split("@")
    FAULTS[name](where if name == "signal" else int(where))
    sys.exit(main(sys.argv[2:]))
