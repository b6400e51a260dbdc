"""Tracking units: where a run's figures go besides its own directory (`train.tracking`).

    train.tracking = ["tensorboard", { name = "mlflow", tracking_uri = "http://127.0.0.1:5000" }, "wandb"]

Each unit is one class of `TRACKERS` with its own option table. A run's `Tracking` hands every unit the resolved
config (flattened keys, as parameters), each optimizer step's figures (losses, learning rate), each epoch's dev
metrics and throughput (at the global step the epoch ended on) and, at the end, the run's files as artifacts.

A resumed run continues the same tracked run: each unit keeps what reopens it (a run id) in the run directory's
tracking.json. The loop resumes from its newest checkpoint, so the steps after it that were logged before the run
stopped come again; a unit skips every figure at a step the tracked run already holds (MLflow: asked of the server,
per metric; W&B: the last step it logged, kept in tracking.json), so the tracked run holds each step once. MLflow
and W&B buffer their rows and send them at least every FLUSH_SECONDS, at every epoch's end and before every
checkpoint is written, so a checkpoint never comes before the figures of the steps it holds.

A unit that cannot be reached (no server, no login) is one warning; the run goes on without it and its figures
stay in metrics.json. A missing package is one line naming `pip install`, before any training (`check_trackers`).
mlflow and wandb are imported only by a run that asks for them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minbert.errors import ConfigError
from minbert.options import Chosen, Registry, option
from minbert.outputs import atomic_write_text

log = logging.getLogger("minbert")
TRACKERS = Registry("tracker")
TRACKING_FILE = "tracking.json"  # in a run directory (or a sweep's): {tracker: what reopens its tracked run}
FLUSH_SECONDS = 10.0
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter's value


class MissingPackage(ConfigError):
    """A tracker's package is not installed."""


@dataclass
class TrackedRun:
    """What a unit opens its tracked run with."""

    name: str  # the run's name (config.name)
    run_dir: Path
    params: dict[str, str]  # the resolved config, flattened keys
    saved: dict | None = None  # this unit's entry of tracking.json: the run to reopen (a resumed run)
    group: dict | None = None  # this unit's share of a sweep's group (`open_group`): parent run, group name


class Tracker:
    """One place a run's figures go. `module`: what it imports (None: nothing beyond minbert's own)."""

    module: str | None = None

    def __init__(self, options: Any):
        self.options = options
        self.logged: dict[str, int] = {}  # metric key ("*": every key) -> the last step the tracked run holds

    @classmethod
    def require(cls, where: str) -> None:
        if cls.module and importlib.util.find_spec(cls.module) is None:
            raise MissingPackage(f"{where}: the {cls.module} tracker needs its package: pip install {cls.module} "
                                 "(or pip install 'minbert[tracking]')")

    def describe(self) -> str:
        """The unit and where it logs, for warnings."""
        return type(self).__name__

    def open(self, run: TrackedRun) -> dict:
        """Start (or, with run.saved, reopen) the tracked run; returns what reopens it (kept in tracking.json)."""
        return {}

    def fresh(self, step: int, figures: dict[str, float]) -> dict[str, float]:
        """The figures the tracked run does not hold yet at this step (a resumed run replays the steps after its
        checkpoint)."""
        every = self.logged.get("*", -1)
        return {k: v for k, v in figures.items() if step > max(every, self.logged.get(k, -1))}

    def log_step(self, step: int, figures: dict[str, float]) -> dict | None:
        """Returns an updated tracking.json entry when it sent rows (a unit that buffers), else None."""

    def log_epoch(self, step: int, epoch: int, figures: dict[str, float]) -> None: ...
    def flush(self) -> dict | None:
        """Send what is buffered; returns an updated tracking.json entry, or None when it did not change."""
        return None

    def log_artifacts(self, files: dict[str, Path]) -> None: ...
    def close(self, status: str) -> None: ...

    @classmethod
    def open_group(cls, options: Any, name: str, saved: dict | None) -> dict:
        """A sweep's group (an ablation, a tuning study): what its runs are opened with (`TrackedRun.group`), also
        kept in the sweep's tracking.json so that a rerun continues the same group."""
        return {}

    @classmethod
    def close_group(cls, options: Any, group: dict, files: dict[str, Path]) -> None: ...


class BufferedTracker(Tracker):
    """Rows of figures by step, sent together (`send`) rather than one request per step."""

    def __init__(self, options: Any):
        super().__init__(options)
        self.rows: dict[int, dict[str, float]] = {}
        self.last_flush = time.monotonic()

    def log_step(self, step: int, figures: dict[str, float]) -> dict | None:
        entry = None
        if time.monotonic() - self.last_flush > FLUSH_SECONDS:
            entry = self.send_rows(lambda s: s < step)  # this step's row may still take the epoch's figures
        if figures := self.fresh(step, figures):
            self.rows.setdefault(step, {}).update(figures)
        return entry

    def log_epoch(self, step: int, epoch: int, figures: dict[str, float]) -> None:
        if figures := self.fresh(step, {**figures, "epoch": float(epoch)}):
            self.rows.setdefault(step, {}).update(figures)

    def flush(self) -> dict | None:
        return self.send_rows(lambda s: True)

    def send_rows(self, due: Any) -> dict | None:
        rows = [(step, row) for step, row in sorted(self.rows.items()) if due(step)]
        self.last_flush = time.monotonic()
        if not rows:
            return None
        for step, _ in rows:
            del self.rows[step]
        return self.send(rows)

    def send(self, rows: list[tuple[int, dict[str, float]]]) -> dict | None:
        raise NotImplementedError


@TRACKERS.register("tensorboard")
class TensorBoard(Tracker):
    """runs/NAME/tensorboard: per-step losses and learning rate at the step, dev metrics and throughput at the
    epoch (`tensorboard --logdir runs`)."""

    def describe(self) -> str:
        return "tensorboard"

    def open(self, run: TrackedRun) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run.run_dir / "tensorboard"))
        return {}

    def log_step(self, step: int, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            self.writer.add_scalar(key, value, step)

    def log_epoch(self, step: int, epoch: int, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


@dataclass
class MLflowOptions:
    tracking_uri: str = ""  # "" = $MLFLOW_TRACKING_URI, else mlflow's default
    experiment: str = ""  # "" = $MLFLOW_EXPERIMENT_NAME, else "minbert"


def mlflow_client(tracking_uri: str) -> Any:
    # a server that does not answer should cost seconds, not mlflow's default minutes of retries (the user's own
    # settings of these variables win)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri or None)


def mlflow_experiment(client: Any, name: str) -> str:
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "minbert"
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)


@TRACKERS.register("mlflow")
class MLflow(BufferedTracker):
    """An MLflow run (a child of the sweep's parent run in an ablation or a study), through MlflowClient."""

    module = "mlflow"
    Options = MLflowOptions

    def describe(self) -> str:
        return f"mlflow ({self.options.tracking_uri or os.environ.get('MLFLOW_TRACKING_URI') or 'default store'})"

    def open(self, run: TrackedRun) -> dict:
        from mlflow.entities import Param

        saved, group = run.saved or {}, run.group or {}
        uri = saved.get("tracking_uri") or group.get("tracking_uri") or self.options.tracking_uri
        self.client = mlflow_client(uri)
        if saved.get("run_id"):  # a resumed run: the same MLflow run, holding what it logged before
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            for key in self.client.get_run(self.run_id).data.metrics:
                self.logged[key] = max(m.step for m in self.client.get_metric_history(self.run_id, key))
            return saved
        experiment = group.get("experiment_id") or mlflow_experiment(self.client, self.options.experiment)
        tags = {"mlflow.parentRunId": group["parent_run_id"]} if group.get("parent_run_id") else {}
        self.run_id = self.client.create_run(experiment, run_name=run.name, tags=tags).info.run_id
        params = [Param(key, value[:MAX_PARAM_LENGTH]) for key, value in run.params.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a request
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        return {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri, "experiment_id": experiment}

    def send(self, rows: list[tuple[int, dict[str, float]]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for step, row in rows for key, value in row.items()]
        for start in range(0, len(metrics), 1000):  # at most 1000 metrics a request
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])
        for step, row in rows:
            for key in row:
                self.logged[key] = step

    def log_artifacts(self, files: dict[str, Path]) -> None:
        for name, path in files.items():
            parent = str(Path(name).parent)
            self.client.log_artifact(self.run_id, str(path), None if parent == "." else parent)

    def close(self, status: str) -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status)

    @classmethod
    def open_group(cls, options: MLflowOptions, name: str, saved: dict | None) -> dict:
        if saved and saved.get("parent_run_id"):
            mlflow_client(saved["tracking_uri"]).update_run(saved["parent_run_id"], status="RUNNING")
            return saved
        client = mlflow_client(options.tracking_uri)
        experiment = mlflow_experiment(client, options.experiment)
        parent = client.create_run(experiment, run_name=name).info.run_id
        return {"parent_run_id": parent, "tracking_uri": client.tracking_uri, "experiment_id": experiment}

    @classmethod
    def close_group(cls, options: MLflowOptions, group: dict, files: dict[str, Path]) -> None:
        client = mlflow_client(group["tracking_uri"])
        for path in files.values():
            client.log_artifact(group["parent_run_id"], str(path))
        client.set_terminated(group["parent_run_id"], "FINISHED")


@dataclass
class WandbOptions:
    project: str = ""  # "" = $WANDB_PROJECT, else "minbert"
    entity: str = ""  # "" = $WANDB_ENTITY, else the API key's default entity
    mode: str = option("auto", choices=("auto", "online", "offline", "disabled"))  # auto: $WANDB_MODE, else online


@TRACKERS.register("wandb")
class Wandb(BufferedTracker):
    """A Weights & Biases run (in the sweep's group in an ablation or a study). Its local files go to $WANDB_DIR,
    else to the run directory (wandb/)."""

    module = "wandb"
    Options = WandbOptions

    def describe(self) -> str:
        return f"wandb ({self.mode or os.environ.get('WANDB_MODE') or 'online'})"

    @property
    def mode(self) -> str | None:
        return None if self.options.mode == "auto" else self.options.mode

    def open(self, run: TrackedRun) -> dict:
        import wandb

        saved, group = run.saved or {}, run.group or {}
        self.run_dir = run.run_dir
        self.entry = {"run_id": saved.get("run_id") or secrets.token_hex(4),
                      "logged_step": saved.get("logged_step", -1)}
        self.run = wandb.init(
            project=self.options.project or os.environ.get("WANDB_PROJECT") or "minbert",
            entity=self.options.entity or None, mode=self.mode, id=self.entry["run_id"],
            resume="allow", name=run.name, group=group.get("group"), config=run.params,
            dir=None if os.environ.get("WANDB_DIR") else str(run.run_dir),
            settings=wandb.Settings(init_timeout=30, silent=True), reinit="create_new")
        # W&B's steps only go up: the tracked run holds every step below its own (online) or below what this unit
        # logged (kept in tracking.json: an offline run starts from 0 again)
        self.logged["*"] = max(self.entry["logged_step"], (self.run.step or 0) - 1)
        return dict(self.entry)

    def send(self, rows: list[tuple[int, dict[str, float]]]) -> dict:
        for step, row in rows:
            self.run.log(row, step=step, commit=True)
        self.entry["logged_step"] = self.logged["*"] = rows[-1][0]
        return dict(self.entry)

    def log_artifacts(self, files: dict[str, Path]) -> None:
        # copies in the W&B run's own files: uploaded with it (offline: by `wandb sync`), whatever becomes of the
        # run directory
        root = Path(self.run.dir)
        for name, path in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, root / name)
            self.run.save(str(root / name), base_path=str(root), policy="now")

    def close(self, status: str) -> None:
        self.flush()
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)

    @classmethod
    def open_group(cls, options: WandbOptions, name: str, saved: dict | None) -> dict:
        return saved or {"group": name}


def check_trackers(chosen: list[Chosen | str], where: str = "train.tracking") -> None:
    """Every chosen tracker's package is installed: checked before any training."""
    for i, unit in enumerate(chosen):
        TRACKERS[TRACKERS.resolve(unit).name].require(f"{where}[{i}]")


def flat_params(table: dict, prefix: str = "") -> dict[str, str]:
    """{"train.lr": "1e-05", ...}: a nested table's leaves under dotted keys, as text (lists as JSON)."""
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


def read_tracking(directory: Path) -> dict:
    path = directory / TRACKING_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        log.warning("%s: unreadable; the trackers start new tracked runs", path)
        return {}


def write_tracking(directory: Path, entries: dict) -> None:
    atomic_write_text(directory / TRACKING_FILE, json.dumps(entries, indent=2) + "\n")


class Tracking:
    """A run's trackers. A unit that fails (a server that does not answer, a login that is missing) is one warning
    and is left out for the rest of the run: tracking never stops training."""

    def __init__(self, chosen: list[Chosen | str], name: str, run_dir: Path, config: dict,
                 group: dict | None = None):
        self.run_dir = run_dir
        self.entries = read_tracking(run_dir)  # a resumed run's tracked runs
        self.units: dict[str, Tracker] = {}
        params = flat_params(config)
        for unit in map(TRACKERS.resolve, chosen):
            tracker = self.units[unit.name] = TRACKERS[unit.name](unit.options)
            run = TrackedRun(name, run_dir, params, self.entries.get(unit.name), (group or {}).get(unit.name))
            entry = self.attempt(unit.name, tracker, lambda t=tracker, r=run: t.open(r), "cannot be reached")
            if entry and unit.name in self.units:
                self.entries[unit.name] = entry
        self.save()

    def attempt(self, name: str, tracker: Tracker, action: Any, failure: str) -> Any:
        """action(), or, if it raises, one warning and the unit left out for the rest of the run (None)."""
        try:
            return action()
        except Exception as exc:  # any failure of a tracker's library: the run must go on
            self.units.pop(name, None)
            text = str(exc).strip()
            log.warning("train.tracking: %s %s (%s); training goes on without it (metrics.json and the run "
                        "directory keep every figure)", tracker.describe(), failure,
                        text.splitlines()[0][:300] if text else type(exc).__name__)
            return None

    def save(self) -> None:
        if self.entries:
            write_tracking(self.run_dir, self.entries)

    def each(self, call: str, *args: Any) -> None:
        changed = False
        for name, tracker in list(self.units.items()):
            entry = self.attempt(name, tracker, lambda t=tracker: getattr(t, call)(*args), "failed")
            if isinstance(entry, dict) and entry and name in self.units:
                self.entries[name], changed = entry, True
        if changed:
            self.save()

    def log_step(self, step: int, figures: dict[str, float]) -> None:
        self.each("log_step", step, figures)

    def log_epoch(self, step: int, epoch: int, figures: dict[str, float]) -> None:
        self.each("log_epoch", step, epoch, figures)
        self.flush()

    def flush(self) -> None:
        self.each("flush")

    def finish(self, files: dict[str, Path], status: str = "FINISHED") -> None:
        """The run's files as artifacts (those that exist), then every tracked run ended with `status`."""
        present = {name: path for name, path in files.items() if path.is_file()}
        if present and status == "FINISHED":
            self.each("log_artifacts", present)
        self.close(status)

    def close(self, status: str) -> None:
        self.each("flush")
        for name, tracker in list(self.units.items()):
            self.attempt(name, tracker, lambda t=tracker: t.close(status), "failed")
        self.units.clear()


def sweep_trackers(tracking_lists: list[list[Chosen]]) -> list[Chosen]:
    """The trackers of a sweep's runs, each once (the first run's options of each): what its group opens."""
    chosen: dict[str, Chosen] = {}
    for tracking in tracking_lists:
        for unit in map(TRACKERS.resolve, tracking):
            chosen.setdefault(unit.name, unit)
    return list(chosen.values())


def open_group(chosen: list[Chosen | str], name: str, directory: Path) -> dict:
    """The group of a sweep's runs (an MLflow parent run, a W&B group) for each tracker that groups; kept in
    directory/tracking.json, so that a rerun of the sweep continues the same group. Pass it to each run
    (`train_run(..., tracking_group=...)`)."""
    check_trackers(chosen)
    saved = read_tracking(directory)
    group = {}
    for unit in map(TRACKERS.resolve, chosen):
        cls = TRACKERS[unit.name]
        try:
            if entry := cls.open_group(unit.options, name, saved.get(unit.name)):
                group[unit.name] = entry
        except Exception as exc:  # the runs then go on ungrouped (each says once that it cannot reach it)
            log.warning("train.tracking: %s cannot open the group %s (%s); its runs are tracked ungrouped",
                        unit.name, name, str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc)
    if group:
        directory.mkdir(parents=True, exist_ok=True)
        write_tracking(directory, group)
    return group


def close_group(chosen: list[Chosen | str], group: dict, files: dict[str, Path]) -> None:
    """The sweep's own files (its table, chart, report) on the group's parent run, which then ends."""
    present = {name: path for name, path in files.items() if path.is_file()}
    for unit in map(TRACKERS.resolve, chosen):
        if unit.name in group:
            try:
                TRACKERS[unit.name].close_group(unit.options, group[unit.name], present)
            except Exception as exc:  # the sweep's results are on disk whatever the tracker says
                log.warning("train.tracking: %s could not close the group (%s)", unit.name, exc)


