"""Issue 45's MLflow goal on the real default job: logged to a real tracking server, killed, resumed, one MLflow run.

    .venv/bin/python bench/mlflow_default_job.py --workdir DIR [--kill-after 600] [--replay-seconds 120]
        [--config configs/multitask.toml] [--data-dir ../shared/data] [key=value ...]

starts `mlflow server` on 127.0.0.1 (bench/mlflow_screenshots.py's: a SQLite store and the artifact root in WORKDIR),
trains the default job (`minbert train --config CONFIG`, every stage) into WORKDIR/runs/default with `train.tracking =
["tensorboard", { name = "mlflow", ... }]`, kills it with SIGKILL KILL_AFTER seconds in (or later, once its newest
checkpoint is REPLAY_SECONDS old), resumes it (`minbert train --resume`) to the end, and then reads the server back:
the runs of the experiment (one), every metric's steps (each once), every epoch's dev metrics beside metrics.json's,
and the artifacts. It prints what it found and exits 1 if any of that is wrong. A second call with the same WORKDIR
reuses a finished run and only reads the server back. key=value overrides go to the first `minbert train` (e.g.
train.max_train_examples=300 for a quick look). The kill and the resume happen in one call: the server's port is new
each start, and the run's config records the one it was started with.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.mlflow_screenshots import REPO, mlflow_server
from minbert.training.checkpoint import NAME as CHECKPOINT_NAME
from minbert.training.checkpoint import list_checkpoints

EXPERIMENT = "minbert-default-job"


def train(command: list[str], kill_after: float | None = None, run_dir: Path | None = None,
          replay_seconds: float = 0.0) -> int:
    """`minbert train ...`; with `kill_after`, SIGKILLed once that many seconds have passed and `run_dir`'s newest
    checkpoint is `replay_seconds` old (a kill before the first would leave nothing to resume; one long after it
    leaves steps that the tracker holds and the resumed run replays). Its exit status."""
    child = subprocess.Popen([sys.executable, "-m", "minbert", "train", *command])
    began = time.monotonic()
    while child.poll() is None:
        newest = max((p.stat().st_mtime for p in list_checkpoints(run_dir)), default=None) \
            if kill_after is not None else None
        if newest is not None and time.monotonic() - began > kill_after and time.time() - newest > replay_seconds:
            child.send_signal(signal.SIGKILL)
            return child.wait()
        time.sleep(1)
    return child.returncode


def artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def newest_step(url: str, run_dir: Path) -> int:
    """The newest step of the run's `lr` metric that the server holds (0: none)."""
    from mlflow.tracking import MlflowClient

    run_id = json.loads((run_dir / "tracking.json").read_text(encoding="utf-8"))["mlflow"]["run_id"]
    return max((m.step for m in MlflowClient(url).get_metric_history(run_id, "lr")), default=0)


def read_back(url: str, run_dir: Path) -> bool:
    """What the server holds for the run, printed; True when it is all as it should be."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    run_id = json.loads((run_dir / "tracking.json").read_text(encoding="utf-8"))["mlflow"]["run_id"]
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    run = client.get_run(run_id)
    print(f"experiment {EXPERIMENT}: {len(runs)} run(s); run {run.info.run_name} ({run_id}): {run.info.status}, "
          f"{len(run.data.params)} params")
    good = [r.info.run_id for r in runs] == [run_id] and run.info.status == "FINISHED"
    repeated = {}
    for key in sorted(run.data.metrics):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        if len(steps) != len(set(steps)):
            repeated[key] = len(steps) - len(set(steps))
    print(f"{len(run.data.metrics)} metrics; steps held more than once: {repeated or 'none'}")
    good &= not repeated
    epochs = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["epochs"]
    print(f"{'epoch':<18}" + "".join(f"{task:>24}" for task in epochs[0]["dev"]))
    for number, epoch in enumerate(epochs):
        row, epoch_step = [], None
        for task, figures in epoch["dev"].items():
            history = client.get_metric_history(run_id, f"dev/{task}_{figures['metric']}")
            held = sorted((m.step, m.value) for m in history)
            if number >= len(held):
                row.append("missing")
                good = False
                continue
            step, value = held[number]
            epoch_step = step
            good &= value == figures["score"]
            row.append(f"{value:.4f} ({'=' if value == figures['score'] else '!='} metrics.json)")
        print(f"{epoch.get('stage', '')}/{epoch['epoch']} @{epoch_step}".ljust(18) + "".join(f"{c:>24}" for c in row))
    held_artifacts = artifacts(client, run_id)
    print(f"artifacts: {', '.join(held_artifacts)}")
    good &= {"report.html", "metrics.json", "config.toml", "best/config.json"} <= set(held_artifacts)
    print("as it should be" if good else "NOT as it should be")
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the server's store and the run (kept)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "multitask.toml")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--kill-after", type=float, default=600.0, help="seconds before the SIGKILL")
    parser.add_argument("--replay-seconds", type=float, default=120.0,
                        help="how old the newest checkpoint must be at the kill: the steps logged since then come "
                             "again when the run resumes")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    run_dir = args.workdir / "runs" / "default"
    data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    with mlflow_server(args.workdir.resolve()) as url:
        if not (run_dir / "metrics.json").is_file():
            if not (run_dir / "checkpoints").is_dir():
                tracking = f'train.tracking=["tensorboard", {{name = "mlflow", tracking_uri = "{url}", ' \
                           f'experiment = "{EXPERIMENT}"}}]'
                began = time.monotonic()
                status = train(["--config", str(args.config), *data, *args.overrides, tracking,
                                f"output_dir={run_dir.parent}", f"name={run_dir.name}"], args.kill_after, run_dir,
                               args.replay_seconds)
                print(f"first try: exit {status} after {time.monotonic() - began:.0f} s")
                newest = int(CHECKPOINT_NAME.fullmatch(list_checkpoints(run_dir)[-1].name).group(1))
                held = newest_step(url, run_dir)
                print(f"at the kill the server held steps up to {held}; the newest checkpoint is step {newest}: "
                      f"the resumed run replays {max(held - newest, 0)} step(s) the server holds")
            status = train(["--resume", str(run_dir), *data])
            if status != 0:
                print(f"the resumed run failed: exit {status}")
                return 1
        return 0 if read_back(url, run_dir) else 1


if __name__ == "__main__":
    sys.exit(main())
