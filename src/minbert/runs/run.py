"""A run directory: resolved config, log, metrics, best checkpoint, predictions and figures.

runs/<name>/
  config.toml       the resolved config (every default filled in)
  train.log         the log
  metrics.json      per-epoch train loss, dev metrics, times; the best epoch; final dev, wall time, machine, peak RSS
  best/             the best checkpoint: config.json + model.safetensors (+ tokenizer files), HF layout
  predictions/      {sst,para,sts,cfimdb}-{dev,test}-output.csv from the best checkpoint; TASK-dev-details.jsonl
                    (every dev example: text, gold, prediction, soft output)
  figures/          confusion matrices, learning curves
  report.html       the run's self-contained HTML report (minbert report)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import logging.handlers
import resource
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from rich.table import Table

from minbert.data.spec import builtin_name, resolve_data_dir
from minbert.device import machine
from minbert.errors import CheckpointError, ConfigError, MinbertError
from minbert.evaluation.plots import plot_learning_curves
from minbert.evaluation.predict import evaluate_tasks
from minbert.interrupts import Interrupted
from minbert.metrics import CS224N_LABEL, TaskScore, overall
from minbert.model_dir import is_hub_name, resolve_model_source
from minbert.predictor import MultitaskBERT
from minbert.reporting.report import write_report_quietly
from minbert.runs.ensemble import member_inputs
from minbert.runs.outputs import write_json, write_outputs
from minbert.runs.rundir import (
    Input,
    NewRun,
    RunLock,
    as_it_was,
    check_new_run,
    create_run_dir,
    is_staging,
    remove_failed_start,
    resumed_run,
    staging_dir,
)
from minbert.runs.teachers import attach_teacher_outputs, check_teachers
from minbert.tasks.model import MultitaskModel
from minbert.terminal import console as make_console
from minbert.training.checkpoint import (
    ResumePoint,
    damage,
    list_checkpoints,
    load_checkpoint,
    newest_usable,
    remove_leftovers,
)
from minbert.training.config import TRAINED_WITH, RunConfig, check_trained_with, teachers_of, trained_with
from minbert.training.distributed import World, init_world, shutdown
from minbert.training.experiment import SPLITS, Experiment, build_experiment, load_task_data, task_file
from minbert.training.hooks import Hook, StepFigures
from minbert.training.loop import Trainer
from minbert.training.tracking import Tracking, check_trackers

log = logging.getLogger("minbert")


def check_free_space(run_dir: Path, config: RunConfig) -> None:
    """Refuse to start when the disk cannot hold the checkpoints (each about 4x the model: weights, two AdamW
    moments, the best copy), rather than fail hours in."""
    from minbert.model.config import BertConfig
    from minbert.model_dir import resolve_model_dir

    model_dir = resolve_model_dir(config.model.path or None, config.model.revision or None)
    encoder = BertConfig.from_json(model_dir / "config.json")
    h, n = encoder.hidden_size, encoder.num_hidden_layers
    params = encoder.vocab_size * h + n * (4 * h * h + 2 * h * encoder.intermediate_size) + h * h
    needed = 4 * params * 4 * (config.train.keep_checkpoints + 1)
    probe = run_dir if run_dir.exists() else next(p for p in run_dir.parents if p.exists())
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise ConfigError(f"{probe}: {free / 2**20:.0f} MB free, the run's checkpoints need about "
                          f"{needed / 2**20:.0f} MB; free space or lower train.keep_checkpoints")


def run_inputs(config: RunConfig, data_dir: str | None) -> list[Input]:
    """What a training run reads, which its run directory may never replace: its teachers (and every run behind
    them), the starting model, the data files."""
    inputs = [item for task, teacher in teachers_of(config).items()
              for item in member_inputs([teacher], f"the teacher of tasks.{task}")]
    if config.model.path:
        inputs.append(Input("model.path", resolve_model_source(config.model.path, config.model.revision).directory))
    try:
        directory = resolve_data_dir(data_dir or config.data_dir or None)
    except MinbertError:  # reported when the data is read
        return inputs
    inputs.append(Input("the data directory", directory))
    for task, task_config in config.tasks.items():
        inputs += [Input(f"tasks.{task}.{split}", directory / name) for split in SPLITS
                   if (name := task_file(config, task, split))]
        inputs += [Input(f"tasks.{task}.extra", directory / extra.file) for extra in task_config.extra]
    return inputs


def check_resumable(run_dir: Path, config: RunConfig) -> None:
    """An unfinished run with at least one checkpoint that is complete (whether it fits the model is checked
    once the model is built: `resume_point`)."""
    metrics = run_dir / "metrics.json"
    if metrics.exists() and "final_dev" in json.loads(metrics.read_text(encoding="utf-8")):
        if is_staging(staging := staging_dir(run_dir)):
            raise ConfigError(f"{run_dir}: the run already finished; the unfinished --overwrite of it is {staging}: "
                              f"continue that with: minbert train --resume {staging}")
        raise ConfigError(f"{run_dir}: the run already finished; nothing to resume (`minbert evaluate --run "
                          f"{run_dir} --write-outputs` rewrites its outputs)")
    check_trained_with(run_dir, config)
    remove_leftovers(run_dir)
    found = list_checkpoints(run_dir)
    if not found:
        raise ConfigError(f"{run_dir}: no checkpoint to resume from")
    reasons = []
    for path in reversed(found):  # newest first, until one is usable (each check reads its files' digests)
        if not (reason := damage(path)):
            break
        reasons.append((path, reason))
    else:
        raise CheckpointError(f"{run_dir}: no checkpoint can be resumed from: " + "; ".join(
            f"{path.name}: {reason}" for path, reason in reversed(reasons)))


def resume_point(run_dir: Path, trainer: Trainer) -> ResumePoint:
    """The newest checkpoint that is complete and fits the trainer's model and config; the newer ones passed over
    are reported by path and reason, with the steps the fallback costs."""
    point, passed_over = newest_usable(run_dir, trainer.state_mismatch)
    if point is None:
        raise CheckpointError(f"{run_dir}: no checkpoint can be resumed from: " + "; ".join(
            f"{path.name}: {reason}" for path, reason in passed_over))
    for path, reason in passed_over:
        steps = int(path.name.removeprefix("step-")) - point.step
        log.warning("%s: cannot resume from it (%s); resuming from the previous complete checkpoint %s instead: "
                    "%d step%s to train again (the damaged one is replaced when training reaches it)", path, reason,
                    point.path.name, steps, "" if steps == 1 else "s")
    return point


def fork_point(checkpoint: Path, trainer: Trainer) -> ResumePoint:
    """The checkpoint a fork starts from: complete, fitting the fork's model and config, and taken at an epoch's
    end with the best weights so far in it (a stage's start, or the end of the best epoch so far: its raw weights,
    or the average a weight-averaging technique kept), so that the fork's best checkpoint is defined from its first
    step (`best_so_far`)."""
    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"--fork {checkpoint}: cannot start from it: {why}")

    if reason := damage(checkpoint):
        raise refuse(reason)
    tensors, state = load_checkpoint(checkpoint)
    if mismatch := trainer.state_mismatch(tensors, state):
        raise refuse(mismatch)
    if state["step_in_epoch"]:
        raise refuse(f"it was taken at step {state['step_in_epoch']} of an epoch; fork from a checkpoint taken at "
                     "an epoch's end (train.keep_checkpoints keeps more of them)")
    best = BestCheckpoint(checkpoint, trainer.exp)
    best.replay(state["history"])
    at_stage_start = state["epoch"] == 0 and state["stage"] > 0  # the stage began from the best weights
    last = state["history"][-1] if state["history"] else None
    if not at_stage_start:
        if last is None or best.best["epoch"] != last["epoch"]:
            where = "" if best.best is None else f" (epoch {best.best['epoch']}'s are)"
            raise refuse(f"its weights are not the best so far{where}; fork from the checkpoint after the best "
                         "epoch, or from a stage's start")
        weights = best.best["weights"]
        if weights != "raw" and weights not in trainer.candidates:
            raise refuse(f"epoch {last['epoch']}'s best weights are its {weights} average, which this config does "
                         f"not keep (train.techniques.{weights})")
    return ResumePoint(checkpoint, tensors, state, [])


def best_so_far(trainer: Trainer, best: BestCheckpoint) -> MultitaskModel:
    """A restored trainer's best weights so far: the model at a stage's start (it began from them), else the last
    epoch's own weights or the average that epoch chose (fork_point makes sure the last epoch is the best)."""
    weights = best.best["weights"] if best.best and trainer.epoch else "raw"
    return trainer.candidates[weights] if weights != "raw" else trainer.model


def continue_from(trainer: Trainer, run_dir: Path, resume: bool, fork: Path | None) -> ResumePoint | None:
    """Where a resumed run or a fork starts: the run's own newest usable checkpoint, exactly where it left off, or
    another run's checkpoint, drawing from the fork's own seed from there on. None for a new run."""
    if resume:
        point = resume_point(run_dir, trainer)
        trainer.load_state(point.tensors, point.state)
        return point
    if fork is not None:
        point = fork_point(fork, trainer)
        trainer.load_state(point.tensors, point.state)
        trainer.reseed(trainer.config.seed)
        return point
    return None


@contextmanager
def held_log() -> Iterator[logging.handlers.MemoryHandler]:
    """Keep the log records of the work done before the run directory exists, for its train.log."""
    logger = logging.getLogger("minbert")
    memory = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
    logger.addHandler(memory)
    logger.setLevel(logging.INFO)
    try:
        yield memory
    finally:
        logger.removeHandler(memory)
        memory.close()


class FinalPaths(logging.Formatter):
    """train.log names the run's files where they will be: a replacement is built beside the run it replaces
    (`NewRun`), and once in place its log must not send a reader to the directory it was built in."""

    def __init__(self, run: NewRun):
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self.building, self.run_dir = str(run.building), str(run.run_dir)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace(self.building, self.run_dir)


def attach_log_file(run: NewRun) -> logging.Handler:
    handler = logging.FileHandler(run.building / "train.log", encoding="utf-8")
    handler.setFormatter(FinalPaths(run))
    logger = logging.getLogger("minbert")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def improves(record: dict, best: dict | None, rule: str) -> bool:
    """Is this epoch the new best? overall: a higher selection score; two_of_three: better dev metrics on at
    least two tasks (on every task when there are fewer)."""
    if best is None:
        return True
    if rule == "two_of_three":
        better = sum(record["dev"][t]["score"] > best["dev"][t]["score"] for t in record["dev"])
        return better >= min(2, len(record["dev"]))
    return record["selection_score"] > best["selection_score"]


class BestCheckpoint(Hook):
    """The best epoch so far by `train.select_best_by`, saved as run_dir/best (an HF-layout model with the
    tokenizer's files) on the main rank; every later stage, on every rank, starts from it."""

    def __init__(self, run_dir: Path, exp: Experiment):
        self.path, self.exp = run_dir / "best", exp
        self.best: dict | None = None

    def replay(self, history: list[dict]) -> None:
        for record in history:
            if improves(record, self.best, self.exp.config.train.select_best_by):
                self.best = {"epoch": record["epoch"], "selection_score": record["selection_score"],
                             "dev": record["dev"], "weights": record.get("weights", "raw")}

    def save(self, model: MultitaskModel) -> None:
        model.save(self.path, tokenizer_from=self.exp.model_dir)

    def stage_starting(self, trainer: Trainer, index: int, from_best: bool) -> None:
        if from_best and (self.path / "model.safetensors").exists():
            trainer.model.load_checkpoint(self.path)
            stage = trainer.stages[index]
            log.info("stage %s starts from the best checkpoint so far", stage.name or index + 1)

    def epoch_ended(self, trainer: Trainer, record: dict) -> None:
        before = self.best
        self.replay([record])
        if self.best is not before:
            weights = record.get("weights", "raw")  # the epoch's own weights, or averaged ones that did better
            self.save(trainer.candidates[weights] if weights != "raw" else self.exp.model)
            log.info("epoch %d is the best so far: saved %s%s", record["epoch"], self.path,
                     "" if weights == "raw" else f" (its {weights} weights)")


class RunRecorder(Hook):
    """metrics.json after every epoch, and the run's trackers (`train.tracking`, minbert.training.tracking; by
    default tensorboard/): per-step losses and rate, per-epoch dev metrics and throughput, the run's files at the
    end."""

    def __init__(self, run_dir: Path, metrics: dict, best: BestCheckpoint, config: RunConfig | None = None,
                 tracking_group: dict | None = None):
        self.run_dir, self.metrics, self.best = run_dir, metrics, best
        config = config or best.exp.config
        self.tracking = Tracking(config.train.tracking, config.name, run_dir, config.to_dict(), tracking_group)

    def steps_read(self, trainer: Trainer, steps: list[StepFigures]) -> None:
        for step in steps:  # each row under the update's count, as trainer.step reads after it
            if not step.skipped:
                figures = {f"train_loss/{task}": value for task, value in step.losses.items()}
                self.tracking.log_step(step.step + 1, {**figures, "lr": step.lr})

    def epoch_ended(self, trainer: Trainer, record: dict) -> None:
        self.metrics["epochs"] = list(trainer.history)
        figures = {f"dev/{task}_{result['metric']}": result["score"] for task, result in record["dev"].items()}
        figures["dev/selection_score"] = record["selection_score"]
        figures["throughput/train_examples_per_second"] = record["train_examples_per_second"]
        self.tracking.log_epoch(trainer.step, record["epoch"], figures)
        self.metrics["best"] = self.best.best
        write_json(self.run_dir / "metrics.json", self.metrics)

    def state(self) -> tuple[dict, dict]:
        self.tracking.flush()  # before the checkpoint is written: it never holds steps the trackers lack
        return {}, {}

    def close(self) -> None:
        """Training is over: what the trackers buffered is sent (their runs stay open for `finish`)."""
        self.tracking.flush()

    def finish(self, run_dir: Path) -> None:
        """The finished run's report.html, metrics.json, resolved config and best checkpoint's config as
        artifacts; the tracked runs end."""
        self.tracking.finish({name: run_dir / name for name in
                              ("report.html", "metrics.json", "config.toml", "best/config.json")})

    def abandon(self, exc: BaseException) -> None:
        """The run stopped (an interrupt: it can be resumed) or failed: the tracked runs end saying so."""
        self.tracking.close("KILLED" if isinstance(exc, Interrupted) else "FAILED")


# Published reference points (dev) that the summary prints beside a run's own scores.
PUBLISHED = {"best CS224N multitask report (bert-base)": {"overall": 0.738}}


def task_scores(config: RunConfig, final_dev: dict[str, dict]) -> list[TaskScore]:
    """Each task's primary dev metric, with its data set, in the config's task order (what `overall` takes)."""
    return [TaskScore(task, builtin_name(c.data), final_dev[task]["metric"], final_dev[task]["score"], c.helper)
            for task, c in config.tasks.items() if task in final_dev]


def print_summary(config: RunConfig, metrics: dict) -> None:
    """One column per task (its primary metric), then the overall score and what it is."""
    table = Table(title=f"{config.name}: dev scores of the best checkpoint (epoch {metrics['best']['epoch']})")
    scores = task_scores(config, metrics["final_dev"])
    value, label = overall(scores)
    table.add_column("")
    for item in scores:
        table.add_column(f"{item.task}\n{item.metric}", justify="right")
    allocator = metrics.get("environment", {}).get("allocator")  # the peak depends on it
    for column in ("overall", "minutes", f"peak GiB\n{allocator}" if allocator else "peak GiB"):
        table.add_column(column, justify="right")
    peak = f"{metrics['peak_rss_mb'] / 1024:.2f}" if "peak_rss_mb" in metrics else ""
    table.add_row("this run", *(f"{item.value:.4f}" for item in scores), "" if value is None else f"{value:.4f}",
                  f"{metrics['wall_seconds'] / 60:.1f}", peak)
    if label == CS224N_LABEL:
        for name, published in PUBLISHED.items():
            table.add_row(name, *("" for _ in scores), f"{published['overall']:.3f}", "", "")
    if label:
        table.caption = label
    make_console().print(table)


def build_run_experiment(config: RunConfig, data_dir: str | None, strict: bool, world: World) -> Experiment:
    check_teachers(config)  # cheap, and before the data: a wrong teacher path fails at once
    return build_experiment(config, data_dir, strict, world)


def start_trainer(exp: Experiment, hooks: Sequence[Hook], world: World, run_dir: Path,
                  cache_dir: Path | None = None) -> Trainer:
    """The run's loop, its teachers' outputs (if it distils) read from the run's cache or computed first."""
    attach_teacher_outputs(exp.config, exp.data, run_dir / "teacher", write=world.is_main)
    return Trainer(exp, hooks, cache_dir=cache_dir, world=world, run_dir=run_dir)


def train_run(config: RunConfig, data_dir: str | None = None, overwrite: bool = False, strict: bool = False,
              resume: str | Path | None = None, hooks: Sequence[Hook] = (), fork: str | Path | None = None,
              tracking_group: dict | None = None) -> Path:
    """Train one run, or continue one from its newest checkpoint (`resume`: its run directory), or start a new run
    from another run's checkpoint (`fork`: forks of one checkpoint share their training up to it, then each draws
    from its own seed). Under torchrun every rank trains its share; rank 0 alone locks and writes the run directory.

    Everything checkable is checked before the directory is made (config, an existing run, free space, the data
    files and their rows); a new run that still fails before its first checkpoint removes its directory again.
    With `overwrite` the new run is built beside the old one, which it replaces only once it has finished
    (minbert.runs.rundir); resuming such an unfinished replacement puts it in place when it finishes.
    `hooks` act on the main rank's loop after the run's own (a tuning study's pruner). `tracking_group`: the
    sweep's group of tracked runs that this run joins (minbert.training.tracking.open_group)."""
    check_trackers(config.train.tracking)  # a missing package is one line, before any work
    world = init_world()
    config = pin_model_revision(config)
    root = Path(config.output_dir)
    run_dir = Path(resume) if resume else root / config.name
    fork = Path(fork) if fork else None
    inputs = [*run_inputs(config, data_dir), *([Input("--fork", fork)] if fork else [])]
    try:
        with RunLock(run_dir) if world.is_main else nullcontext():  # a staging directory's lock is its run's
            if resume:
                check_resumable(run_dir, config)
                place = resumed_run(run_dir)
            else:  # an --overwrite is built beside the run it replaces
                place = NewRun(run_dir, check_new_run(run_dir, root, overwrite, inputs))
            world.barrier()  # every rank has looked before rank 0 changes anything
            if not world.is_main:
                world.barrier()  # rank 0 prepares the run directory
                exp = build_run_experiment(config, data_dir, strict, world)
                trainer = start_trainer(exp, [BestCheckpoint(place.building, exp)], world, place.building)
                continue_from(trainer, place.building, bool(resume), fork)
                try:
                    trainer.fit()
                finally:
                    trainer.close()
                world.barrier()  # rank 0 writes the outputs: the process group ends on every rank together
                return run_dir
            started = time.perf_counter()
            with held_log() as held:
                if not resume:
                    check_free_space(run_dir, config)
                exp = build_run_experiment(config, data_dir, strict, world)
                files = {"config.toml": config.to_toml(), TRAINED_WITH: trained_with(config)}
                if not resume:
                    place = create_run_dir(run_dir, root, overwrite, files, inputs)
                handler = attach_log_file(place)
                held.setTarget(handler)
                held.flush()
            try:
                world.barrier()
                finished = _train_main(exp, world, place, bool(resume), handler, started, hooks, fork,
                                       tracking_group)
            except BaseException as exc:  # an error, or an interrupt that came before the first checkpoint
                removed = remove_failed_start(place)
                if removed:
                    log.info("removed %s: the run failed before its first checkpoint%s", place.building,
                             as_it_was(place))
                elif place.replacing and not place.finished and not isinstance(exc, Interrupted):
                    log.warning("%s is as it was; the unfinished run that was to replace it stays in %s: "
                                "`minbert train --resume %s` finishes it and then puts it in place", place.run_dir,
                                place.building, place.building)
                if isinstance(exc, Interrupted):
                    exc.detail = what_was_kept(place, removed)
                raise
            world.barrier()  # the other ranks wait here for the outputs (on a failure above, torchrun stops them)
            return finished
    finally:
        shutdown(world)


def pin_model_revision(config: RunConfig) -> RunConfig:
    """A Hub model's commit, fetched into the cache now: the run records it in its config.toml, so that `--resume`
    (and anything else that rebuilds the run) reads the same weights later, offline. Other configs are unchanged."""
    if not is_hub_name(config.model.path):
        return config
    source = resolve_model_source(config.model.path, config.model.revision or None)
    if source.revision and source.revision != config.model.revision:
        log.info("model %s: revision %s (commit %s), cached in %s", source.hub_name, config.model.revision or "main",
                 source.revision, source.directory)
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, revision=source.revision))
    return config


def what_was_kept(run: NewRun, removed: bool) -> str:
    """The line an interrupted run ends with: its newest complete checkpoint and how to continue (a replacement:
    and that the run it replaces is as it was until then)."""
    if run.finished:
        return f"the run had finished: {run.run_dir}"
    if removed:
        return (f"it had not reached its first checkpoint, so {run.building} was removed{as_it_was(run)}: start it "
                "again with the same command")
    kept = [path for path in list_checkpoints(run.building) if damage(path) is None]
    if not kept:
        return f"{run.building} holds no complete checkpoint{as_it_was(run)}"
    state = json.loads((kept[-1] / "state.json").read_text(encoding="utf-8"))
    then = f" (it replaces {run.run_dir} when it finishes; until then {run.run_dir} is as it was)" \
        if run.replacing else ""
    return (f"kept {kept[-1]} (step {state['step']}, epoch {state['epoch'] + 1}, step {state['step_in_epoch']} "
            f"of the epoch); continue with: minbert train --resume {run.building}{then}")


def _train_main(exp: Experiment, world: World, place: NewRun, resume: bool, handler: logging.Handler,
                started: float, hooks: Sequence[Hook] = (), fork: Path | None = None,
                tracking_group: dict | None = None) -> Path:
    config, run_dir = exp.config, place.building
    recorder = None
    try:
        for task, splits in exp.data.items():
            log.info("%s: %s", task, ", ".join(f"{split} {len(d.examples)}" for split, d in splits.items()))
        if exp.model.pal_parameters:
            encoder_size = exp.model.encoder.num_parameters()
            log.info("PAL adds %d parameters over %d tasks (%.1f%% of the encoder's %d)", exp.model.pal_parameters,
                     len(exp.model.heads), 100 * exp.model.pal_parameters / encoder_size, encoder_size)
        if world.distributed:
            log.info("data parallel over %d ranks: each takes 1/%d of every batch", world.size, world.size)
        best = BestCheckpoint(run_dir, exp)
        recorder = RunRecorder(run_dir, {"name": config.name, "epochs": [], "best": None}, best, config,
                               tracking_group)
        trainer = start_trainer(exp, [best, recorder, *hooks], world, run_dir, cache_dir=run_dir / "cache")
        metrics = recorder.metrics
        metrics_file = run_dir / "metrics.json"
        earlier = json.loads(metrics_file.read_text(encoding="utf-8")) if resume and metrics_file.exists() else {}
        point = continue_from(trainer, run_dir, resume, fork)
        if point is not None:
            best.replay(trainer.history)  # the finished epochs, as if they had just run
            metrics["best"], metrics["epochs"] = best.best, list(trainer.history)
        if fork is not None:
            best.save(best_so_far(trainer, best))  # until the fork does better
            metrics["forked_from"] = {"checkpoint": str(fork), "step": trainer.step, "epochs": len(trainer.history)}
            log.info("forked from %s: %d epochs trained there; from here on drawing from seed %d", fork,
                     len(trainer.history), exp.config.seed)
        elif point is not None:
            if "forked_from" in earlier:  # a resumed fork is still a fork
                metrics["forked_from"] = earlier["forked_from"]
            metrics["resumed_from"] = {"checkpoint": point.path.name, "step": trainer.step}
            log.info("resuming from %s: epoch %d, step %d of the epoch (global step %d)", point.path,
                     trainer.epoch + 1, trainer.step_in_epoch, trainer.step)
        try:
            trainer.fit()
        finally:
            trainer.close()
            recorder.close()
        if trainer.stop_reason:
            metrics["stopped_early"] = trainer.stop_reason
            log.info("training ended early: %s", trainer.stop_reason)
        exp.model.load_checkpoint(run_dir / "best")
        report = config.train.report
        metrics["final_dev"] = write_outputs(exp.model, exp.data, exp.inference, run_dir, figures=report)
        if report:
            plot_learning_curves(metrics["epochs"], run_dir / "figures" / "learning-curves.png")
        metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
        metrics["environment"] = machine(exp.inference.device, exp.inference.autocast_dtype)
        # the process's peak resident memory (Linux reports KiB): what the run needed of the machine
        metrics["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        write_json(run_dir / "metrics.json", metrics)
        run_dir = place.finish()  # finished: a replacement takes its place now; the report names where it is
        if report:
            write_report_quietly(run_dir)
        print_summary(config, metrics)
        recorder.finish(run_dir)
        return run_dir
    except BaseException as exc:
        if recorder is not None:
            recorder.abandon(exc)
        raise
    finally:
        logging.getLogger("minbert").removeHandler(handler)
        handler.close()


def evaluate_run(run_dir: str | Path, data_dir: str | None = None, precision: str | None = None,
                 quiet: bool = False, backend: str = "torch", onnx_dir: str | Path | None = None) -> dict[str, dict]:
    """Re-compute the dev metrics of a run's best checkpoint (or its ONNX export) and print them beside the
    recorded ones."""
    loaded = MultitaskBERT.load(run_dir, precision, backend, onnx_dir)
    data = load_task_data(loaded.config, loaded.tokenizer, data_dir, splits=("dev",))
    recorded = {}
    metrics_path = Path(run_dir) / "metrics.json"
    if metrics_path.exists():
        recorded = json.loads(metrics_path.read_text(encoding="utf-8")).get("final_dev", {})
    results = evaluate_tasks(loaded.model, data, loaded.inference)
    for task, result in results.items():
        before = recorded.get(task, {}).get("score")
        note = f" (recorded {before:.4f})" if before is not None else ""
        if not quiet:
            print(f"{task:<10} dev {result['metric']:<9} {result['score']:.4f}{note}")
    return results


def write_run_outputs(run_dir: str | Path, data_dir: str | None = None) -> dict[str, dict]:
    """(Re)write a run's predictions and figures from its best checkpoint, and its final dev metrics: for a run
    that was stopped before its last epoch."""
    run_dir = Path(run_dir)
    with RunLock(run_dir):  # never beside a training process writing the same run
        loaded = MultitaskBERT.load(run_dir)
        data = load_task_data(loaded.config, loaded.tokenizer, data_dir, splits=("dev", "test"))
        final_dev = write_outputs(loaded.model, data, loaded.inference, run_dir)
        metrics_path = run_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
        metrics["final_dev"] = final_dev
        if metrics.get("epochs"):
            plot_learning_curves(metrics["epochs"], run_dir / "figures" / "learning-curves.png")
        write_json(metrics_path, metrics)
        write_report_quietly(run_dir)
    return final_dev
