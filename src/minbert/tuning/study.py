"""`minbert tune`: an Optuna study over a search file, one worker or many sharing one storage.

The study lives in `output_dir/tune/<study>/`: `study.db` (SQLite, the default storage; any Optuna RDB URL such as
PostgreSQL lets workers on several machines share the study), `trials/trial-NNNN/` (each trial a normal run
directory), and after the workers end `best.toml` (the best trial's settings on the base config, ready for
`minbert train --config`), `trials.md` / `trials.csv` and `figures/` (Optuna's history, importances, parallel
coordinates). Each trial's per-epoch score on the tune split feeds the pruner.

A worker that is stopped (Ctrl-C, SIGTERM) ends its trial at a step boundary and marks it failed, "stopped"; one
that is killed loses its running trial: the next `tune` on the same machine sees that the trial's process is gone
and marks it failed at once (workers elsewhere: the heartbeat, after two heartbeats). Stopped trials do not count
towards `trials`, so a rerun of the same command finishes the study.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from filelock import FileLock

from minbert.errors import ConfigError, RunFailed
from minbert.interrupts import Interrupted, run_in_processes
from minbert.names import check_name
from minbert.outputs import atomic_write_text
from minbert.runs.run import train_run
from minbert.training.hooks import Hook
from minbert.training.tracking import close_group, open_group
from minbert.tuning.search import Search, active, choice_label, choice_of, read_search

log = logging.getLogger("minbert")
TRIAL_DIR_KEY = "run_dir"
STOPPED_KEY = "stopped"  # a trial ended by a signal or a dead worker: failed, and not counted towards `trials`
WORKER_KEY = "worker"  # {host, pid, started}: whether the trial's process still lives
# the heartbeat (a killed worker's trial is failed) and the matplotlib plots are marked experimental in Optuna
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class Pruning(Hook):
    """Reports each epoch's tune-split score to the trial; when the pruner rules the trial out, training ends after
    that epoch like a finished run (its directory, best checkpoint and metrics stay), and the trial is pruned."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self.pruned: str | None = None

    def epoch_ended(self, trainer, record: dict) -> None:
        step, score = len(trainer.history) - 1, record["selection_score"]
        self.trial.report(score, step)
        if self.trial.should_prune():
            self.pruned = trainer.stop_reason = f"pruned after epoch {step + 1} at {score:.4f}"


def suggest(trial: optuna.Trial, search: Search) -> dict[str, Any]:
    """The trial's values for the active keys of the space, in the file's order."""
    chosen: dict[str, Any] = {}
    for key, parameter in search.space.items():
        if not active(parameter, chosen):
            continue
        if parameter.type == "float":
            chosen[key] = trial.suggest_float(key, parameter.low, parameter.high, log=parameter.log)
        elif parameter.type == "int":
            chosen[key] = trial.suggest_int(key, int(parameter.low), int(parameter.high), step=parameter.step,
                                            log=parameter.log)
        else:
            labels = [choice_label(c) for c in parameter.choices]
            chosen[key] = choice_of(parameter, trial.suggest_categorical(key, labels))
    return chosen


def params_of(trial: optuna.trial.FrozenTrial, search: Search) -> dict[str, Any]:
    """A finished trial's values mapped back to config values (choices stored as labels)."""
    return {key: choice_of(search.space[key], value) if search.space[key].type == "choice" else value
            for key, value in trial.params.items()}


@dataclass
class Study:
    search: Search
    directory: Path
    storage_url: str
    name: str
    data_dir: str | None = None
    shared: bool = False  # other workers draw from the same study (--jobs > 1, or a storage URL)
    tracking_group: dict | None = None  # the trials' group of tracked runs (minbert.training.tracking.open_group)

    def storage(self) -> optuna.storages.RDBStorage:
        heartbeat = self.search.heartbeat_seconds
        return optuna.storages.RDBStorage(self.storage_url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat)

    def sampler_seed(self, existing: int) -> int:
        """The search file's seed for a lone worker on a new study (reproducible); mixed with the number of trials
        already in the study, so that a rerun does not draw the first run's parameters again, and with the process
        and host when workers share the study, so that two of them never draw from the same seed."""
        parts = [self.search.sampler_seed] + ([existing] if existing else [])
        if self.shared:
            parts += [os.getpid(), int.from_bytes(socket.gethostname().encode()[:8].ljust(8, b"\0"), "little")]
        if len(parts) == 1:
            return parts[0]
        return int(np.random.SeedSequence(parts).generate_state(1)[0])

    def load(self, existing: int = 0) -> optuna.Study:
        seed = self.sampler_seed(existing)
        # constant liar: a worker treats the others' running trials as bad, so parallel workers spread out
        sampler = (optuna.samplers.RandomSampler(seed=seed) if self.search.sampler == "random"
                   else optuna.samplers.TPESampler(seed=seed, constant_liar=self.shared))
        pruner = {"none": optuna.pruners.NopPruner(), "median": optuna.pruners.MedianPruner(n_startup_trials=3),
                  "hyperband": optuna.pruners.HyperbandPruner()}[self.search.pruner]
        return optuna.create_study(storage=self.storage(), study_name=self.name, direction="maximize",
                                   sampler=sampler, pruner=pruner, load_if_exists=True)

    def objective(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_KEY, this_worker())
        params = suggest(trial, self.search)
        name = f"trial-{trial.number:04d}"
        config = self.search.config(params, budget=True, extra=[f"name={name}",
                                                                f"output_dir={self.directory / 'trials'}"])
        trial.set_user_attr(TRIAL_DIR_KEY, str(self.directory / "trials" / name))
        started, pruning = time.perf_counter(), Pruning(trial)
        try:
            run_dir = train_run(config, self.data_dir, hooks=[pruning], tracking_group=self.tracking_group)
        except Interrupted as exc:  # Optuna marks the trial failed and lets the interrupt through
            trial.set_user_attr(STOPPED_KEY, f"stopped by {exc.name}")
            raise
        finally:
            trial.set_user_attr("minutes", (time.perf_counter() - started) / 60)
        if pruning.pruned:
            raise optuna.TrialPruned(pruning.pruned)
        return best_score(run_dir)

    def optimize(self, quota: int, total: int, timeout_minutes: float | None, existing: int = 0) -> None:
        """Run at most `quota` trials, and stop once the study counts `total` (every worker's, on every machine;
        stopped trials left out)."""
        if quota < 1:
            return
        study = self.load(existing)  # existing: the trials in the study when `tune` started

        def enough(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if len(counted(study.get_trials(deepcopy=False))) >= total:
                study.stop()

        with quiet_interrupts():
            study.optimize(self.objective, n_trials=quota, catch=(Exception,), callbacks=[enough],
                           timeout=timeout_minutes * 60 if timeout_minutes else None)


def counted(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the study's `trials`: all but those a signal or a killed worker ended (failed
    with STOPPED_KEY, or without the minutes every trial that ran to an end records)."""
    return [t for t in trials if not (t.state == optuna.trial.TrialState.FAIL
                                      and (STOPPED_KEY in t.user_attrs or "minutes" not in t.user_attrs))]


class _DropInterruptTraceback(logging.Filter):
    """Optuna logs a trial ended by an exception with its traceback; for a stop that is noise (the trial is marked
    failed and the command says what was kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))


@contextmanager
def quiet_interrupts() -> Iterator[None]:
    logger, quiet = logging.getLogger("optuna.study._optimize"), _DropInterruptTraceback()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def this_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start_time(os.getpid())}


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a live worker from a process that
    reuses its pid; None where /proc is not there or the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; the name in brackets may hold spaces


def worker_is_gone(worker: dict[str, Any]) -> bool:
    """A worker of this machine whose process no longer runs (or whose pid now belongs to another process)."""
    if worker.get("host") != socket.gethostname():
        return False  # another machine's: the heartbeat decides
    if worker.get("started") is not None:  # Linux: the pid and its start time name one process
        return process_start_time(int(worker["pid"])) != worker["started"]
    try:
        os.kill(int(worker["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive
        pass
    return False


def fail_dead_workers_trials(study: optuna.Study) -> list[int]:
    """Mark failed the running trials whose worker was killed: this machine's at once, others' once their heartbeat
    is stale (Optuna's own check). Returns the numbers of this machine's."""
    storage, ended = study._storage, []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_KEY)
        if worker and worker_is_gone(worker):
            with suppress(optuna.exceptions.UpdateFinishedTrialError):  # another worker got there first
                storage.set_trial_user_attr(trial._trial_id, STOPPED_KEY,
                                            f"its worker (pid {worker['pid']}) was killed")
                storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
                ended.append(trial.number)
    optuna.storages.fail_stale_trials(study)
    return ended


def best_score(run_dir: Path) -> float:
    """The best epoch's selection score (mean normalised score on the tune split)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return max(epoch["selection_score"] for epoch in metrics["epochs"])


def _worker(study: Study, quota: int, total: int, timeout: float | None, threads: int, existing: int) -> None:
    """One worker process of `tune --jobs`."""
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(quota, total, timeout, existing)


def tune(search_path: str | Path, trials: int | None = None, timeout: float | None = None, jobs: int = 1,
         storage: str | None = None, study_name: str | None = None, output_dir: str = "runs",
         data_dir: str | None = None) -> Path:
    """Run (or continue) a study and write its report; returns the study directory."""
    # the study's directory and its best config's run (NAME-best): checked before anything is read or made
    name = check_name(Path(search_path).stem if study_name is None else study_name,
                      "--study" if study_name is not None else f"--study (default: the stem of {search_path})",
                      suffix="-best")
    search = read_search(search_path)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be more than 0 minutes, got {timeout}")
    if storage is not None:
        check_storage(storage)  # before the study's directory is made
    directory = Path(output_dir) / "tune" / name
    (directory / "trials").mkdir(parents=True, exist_ok=True)
    # the trials as one group of their trackers (an MLflow parent run, a W&B group), named after the study
    trackers = search.config({}, budget=False).train.tracking
    study = Study(search, directory, storage or f"sqlite:///{(directory / 'study.db').resolve()}", name, data_dir,
                  shared=jobs > 1 or storage is not None, tracking_group=open_group(trackers, name, directory))
    total = trials or search.trials
    loaded = study.load()
    for number in fail_dead_workers_trials(loaded):
        log.warning("trial %d was left running by a worker that was killed: marked failed (it does not count)",
                    number)
    # what is left of the study, shared out between the workers: on one machine they end with exactly `total`
    # trials that count; workers on other machines stop once the study holds them
    remaining = max(0, total - len(counted(loaded.trials)))
    quotas = [q for q in (remaining // jobs + (i < remaining % jobs) for i in range(jobs)) if q]
    try:
        if jobs == 1:
            study.optimize(remaining, total, timeout, len(loaded.trials))
        elif quotas:  # one process per worker, threads shared out as `ablate --jobs` does
            threads = max(1, (os.cpu_count() or 1) // jobs)
            outcomes = run_in_processes([(f"worker {i}", _worker, (study, quota, total, timeout, threads,
                                                                    len(loaded.trials)))
                                         for i, quota in enumerate(quotas)], jobs)
            failed = [o for o in outcomes if o.rc]
            if failed:
                raise RunFailed("tune: " + "; ".join(f"{o.label} failed: {o.message}" for o in failed))
    except Interrupted as exc:
        write_report(study)
        done = len(counted(study.load().trials))
        exc.detail = (f"{done} of {total} trials done, the running ones marked failed (they do not count); the "
                      f"study is in {directory}. Rerun the same command to continue it")
        raise
    write_report(study)
    close_group(trackers, study.tracking_group or {},
                {name: directory / name for name in ("trials.md", "trials.csv", "best.toml")})
    return directory


def check_storage(url: str) -> None:
    """A storage URL that parses, whose database driver is installed and whose server answers, or a one-line
    error naming it (its password masked)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"--storage {url!r} is not a database URL (e.g. sqlite:///study.db, "
                          "postgresql://user:password@host/db, mysql+pymysql://user:password@host/db)") from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        engine = sqlalchemy.create_engine(parsed)
    except ImportError as exc:
        driver = {"postgresql": "psycopg2-binary (or use postgresql+psycopg:// and pip install 'psycopg[binary]')",
                  "postgresql+psycopg": "'psycopg[binary]'",
                  "postgresql+psycopg2": "psycopg2-binary", "mysql": "mysqlclient", "mysql+pymysql": "pymysql"}
        package = driver.get(parsed.drivername, exc.name or parsed.drivername)
        raise ConfigError(f"--storage {shown}: its database driver is not installed ({exc}); "
                          f"pip install {package}") from None
    except SQLAlchemyError as exc:  # an unknown dialect, a bad option
        raise ConfigError(f"--storage {shown}: {str(exc).splitlines()[0]}") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"--storage {shown}: cannot connect: {reason}") from None
    finally:
        engine.dispose()


def write_report(study: Study) -> None:
    """best.toml, trials.md, trials.csv and figures/ from the storage (whichever worker writes last wins)."""
    with FileLock(study.directory / ".report.lock"):
        loaded = study.load()
        trials = sorted(loaded.trials, key=lambda t: t.number)
        keys = list(study.search.space)
        rows = [[t.number, t.state.name.lower() + (f" ({t.user_attrs[STOPPED_KEY]})" if STOPPED_KEY in t.user_attrs
                                                   else ""), "" if t.value is None else f"{t.value:.4f}",
                 *[t.params.get(k, "") for k in keys], f"{t.user_attrs.get('minutes', 0):.1f}",
                 t.user_attrs.get(TRIAL_DIR_KEY, "")] for t in trials]
        header = ["trial", "state", "tune score", *keys, "minutes", "run"]
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *rows])
        atomic_write_text(study.directory / "trials.csv", buffer.getvalue())
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        lines = [f"# Study {study.name}", "",
                 f"{len(trials)} trials: {len(complete)} complete, "
                 f"{sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)} pruned, "
                 f"{sum(t.state == optuna.trial.TrialState.FAIL for t in trials)} failed. Scores are the best "
                 f"epoch's mean normalised score on the tune split ({study.search.tune_split:.0%} of each training "
                 f"file); budget per trial: {', '.join(study.search.budget) or 'the base config'}.", "",
                 "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        if complete:
            best = max(complete, key=lambda t: t.value)
            best_params = params_of(best, study.search)
            config = study.search.config(best_params, budget=False, extra=[f"name={study.name}-best"])
            atomic_write_text(study.directory / "best.toml",
                              f"# Study {study.name}: trial {best.number}, tune score {best.value:.4f}, without the "
                              f"trial budget.\n# Train it with: minbert train --config "
                              f"{study.directory / 'best.toml'}\n" + config.to_toml())
            lines += ["", f"Best: trial {best.number}, {best.value:.4f}: "
                      + ", ".join(f"`{k}={v}`" for k, v in best_params.items())
                      + f". Its config: `{study.directory / 'best.toml'}`."]
            write_figures(loaded, study.directory / "figures")
        atomic_write_text(study.directory / "trials.md", "\n".join(lines) + "\n")


def write_figures(study: optuna.Study, directory: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    directory.mkdir(exist_ok=True)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    figures = {"history": plots.plot_optimization_history, "parallel": plots.plot_parallel_coordinate}
    if len(complete) >= 2 and any(len({str(t.params.get(k)) for t in complete}) > 1
                                  for k in complete[0].params):
        figures["importances"] = lambda s: plots.plot_param_importances(
            s, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    for name, plot in figures.items():
        try:
            axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for this plot
            log.info("figure %s skipped: %s", name, exc)
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.savefig(directory / f"{name}.png", dpi=120, bbox_inches="tight")
        plt.close(figure)
