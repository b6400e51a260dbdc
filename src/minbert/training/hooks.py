"""Hooks: the techniques and chores that act on the training loop, each one object.

`Trainer.train_step` and `Trainer.fit_stage` call every hook's methods at fixed points, in the order the hooks were
given; a hook defines only the methods it needs (the base class's do nothing). The points:

    stage_starting(trainer, index, from_best)  before a stage sets up its trainable parts and optimizer
    encoder_parts(trainer)                     the encoder's parts and their learning-rate multipliers (the first
                                               hook that answers decides; None: the whole encoder at 1)
    loss_terms(trainer)                        extra terms of every batch's loss: [(weight, term(batch, output))]
    stage_started(trainer)                     after the stage's optimizer exists
    fit_starting(trainer) / fit_ended(trainer) around the epochs of a stage
    epoch_starting(trainer, epoch, plan)
    before_step(trainer, step_batches)         before the forward passes of an optimizer step
    after_backward(trainer, task)              after one task's backward pass
    before_update(trainer)                     after every backward pass, before the optimizer step
    after_update(trainer, losses)              after the optimizer step ({task: loss}, 0-d tensors still on the
                                               device: reading one here would make every step wait for it)
    after_step(trainer)                        after the step is counted in the epoch
    steps_read(trainer, steps)                 the figures of the steps since the last read, now on the host
                                               (StepFigures; every train.log_every steps, at an epoch's end and
                                               before a checkpoint)
    epoch_ended(trainer, record)               on the main rank, after the dev evaluation
    after_epoch(trainer)                       on every rank, once the epoch is closed
    state() / load_state(state, tensors)       what a resumable checkpoint keeps of the hook
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from minbert.errors import MinbertError
from minbert.interrupts import STOP, Interrupted
from minbert.optim import AdamW
from minbert.tasks.model import MultitaskModel
from minbert.training.distillation import Distillation
from minbert.training.distributed import World

log = logging.getLogger("minbert")
PROGRESS_LOG_SECONDS = 60.0


class TrainerView(Protocol):
    """What a hook reads and calls of the trainer that runs it (minbert.training.loop.Trainer is one). Declared
    here, at the bottom of training/, so that hooks and the techniques built on them import nothing above them: the
    config, its stages, the experiment and the loss module are typed where they live, above this module, and are
    `Any` here."""

    config: Any  # the run's RunConfig (hooks read .train and .seed)
    stages: Sequence[Any]  # the run's StageConfigs (.name, .epochs)
    exp: Any  # the Experiment: .data[task][split] is a TaskData
    task_loss: Any  # the loop's TaskLoss (.teacher_share)
    model: MultitaskModel
    candidates: dict[str, MultitaskModel]  # other weights best-checkpoint selection also scores (averages)
    optimizer: AdamW
    scaler: torch.amp.GradScaler
    distillation: Distillation | None
    world: World
    stage: int
    epoch: int
    step: int
    stage_step: int
    step_in_epoch: int
    total_steps: int
    plan: list
    epoch_losses: dict[str, list[float]]
    epoch_seen: int
    epoch_seconds: float
    last_checkpoint_step: int | None

    def save_checkpoint(self) -> None: ...
    def evaluate(self, split: str = "dev", model: MultitaskModel | None = None) -> dict[str, dict]: ...
    def selection_score(self, dev: dict[str, dict]) -> float: ...


@dataclass
class StepFigures:
    """One optimizer step's figures: its losses stay on the device until `Trainer.read_figures` reads every unread
    step's at once (then they are floats), with what naming a non-finite loss needs."""

    step: int  # trainer.step when the step began (what a non-finite loss names; after the update it is step + 1)
    epoch: int
    lr: float  # the first parameter group's rate in this step
    losses: dict[str, Tensor | float] = field(default_factory=dict)  # task -> its batch's loss
    positions: dict[str, list[int]] = field(default_factory=dict)  # task -> the batch's example positions
    skipped: bool = False  # dropped by on_nan = "skip" (its losses before the non-finite one still count)


class Schedule(Protocol):
    """The keys of train (TrainConfig) that the learning-rate schedule reads."""

    warmup_ratio: float
    decay: str
    gamma: float


class TrainingError(MinbertError):
    """Training cannot go on (a non-finite loss, ...)."""


class Hook:
    """A no-op at every point; subclasses override what they need."""

    def stage_starting(self, trainer: TrainerView, index: int, from_best: bool) -> None: ...
    def encoder_parts(self, trainer: TrainerView) -> list[tuple[torch.nn.Module, float]] | None: return None
    def loss_terms(self, trainer: TrainerView) -> list[tuple[float, Callable]]: return []
    def stage_started(self, trainer: TrainerView) -> None: ...
    def fit_starting(self, trainer: TrainerView) -> None: ...
    def fit_ended(self, trainer: TrainerView) -> None: ...
    def epoch_starting(self, trainer: TrainerView, epoch: int, plan: list) -> None: ...
    def before_step(self, trainer: TrainerView, step_batches: list) -> None: ...
    def after_backward(self, trainer: TrainerView, task: str) -> None: ...
    def before_update(self, trainer: TrainerView) -> None: ...
    def after_update(self, trainer: TrainerView, losses: dict[str, Tensor]) -> None: ...
    def after_step(self, trainer: TrainerView) -> None: ...
    def steps_read(self, trainer: TrainerView, steps: list[StepFigures]) -> None: ...
    def epoch_ended(self, trainer: TrainerView, record: dict) -> None: ...
    def after_epoch(self, trainer: TrainerView) -> None: ...
    def state(self) -> tuple[dict, dict[str, Tensor]]: return {}, {}
    def load_state(self, state: dict, tensors: dict[str, Tensor]) -> None: ...


def lr_factor(train: Schedule, step: int, epoch: int, total_steps: int) -> float:
    """Linear warm-up over warmup_ratio of all steps, then constant, linear decay to 0, or gamma**epoch."""
    warmup = int(train.warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if train.decay == "linear":
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    if train.decay == "exponential":
        return train.gamma**epoch
    return 1.0


class LearningRateSchedule(Hook):
    """Every parameter group's rate: its base rate times lr_factor at the stage's step."""

    def stage_started(self, trainer: TrainerView) -> None:
        self.base_lrs = [g["lr"] for g in trainer.optimizer.param_groups]

    def before_step(self, trainer: TrainerView, step_batches: list) -> None:
        factor = lr_factor(trainer.config.train, trainer.stage_step, trainer.epoch, trainer.total_steps)
        for group, base in zip(trainer.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor


class GradientClipping(Hook):
    """The global gradient norm clipped at `train.grad_clip` (after unscaling fp16 gradients)."""

    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    def before_update(self, trainer: TrainerView) -> None:
        trainer.scaler.unscale_(trainer.optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in trainer.optimizer.param_groups for p in g["params"]],
                                       self.max_norm)


class TeacherShare(Hook):
    """Distillation: the teacher's share of each target at this point of the stage (fixed, or annealed)."""

    def before_step(self, trainer: TrainerView, step_batches: list) -> None:
        progress = trainer.stage_step / max(1, trainer.total_steps)
        trainer.task_loss.teacher_share = trainer.distillation.share(progress)


class NonFiniteLoss(Hook):
    """`train.on_nan`: a non-finite loss stops the run naming the step, task and example ids ("stop"), or drops
    that step and counts it ("skip"). The count is checkpointed and reported in every epoch's record.

    "stop" checks the losses where the trainer reads them from the device (every `train.log_every` steps, at an
    epoch's end, before every checkpoint), so a step never waits on the host: the run stops up to that many steps
    after the bad one, and no checkpoint holds weights trained past it. "skip" must know before the update whether
    to make it, so it reads each loss in its step (`per_step`): a GPU then waits once a step."""

    def __init__(self, policy: str):
        self.policy = policy
        self.skipped = 0

    @property
    def per_step(self) -> bool:
        return self.policy == "skip"

    def handle(self, trainer: TrainerView, figures: StepFigures, task: str, loss: float) -> None:
        ids = trainer.exp.data[task]["train"].example_ids(figures.positions[task])
        message = (f"non-finite loss {loss} at step {figures.step} (epoch {figures.epoch + 1}), task {task}; "
                   f"example ids: {', '.join(ids)}")
        if self.policy == "stop":
            found = f" (found at step {trainer.step})" if trainer.step > figures.step + 1 else ""
            raise TrainingError(f"{message}; the last good checkpoint is kept{found}")
        self.skipped += 1
        log.warning("%s: step skipped (%d skipped so far)", message, self.skipped)

    def state(self) -> tuple[dict, dict[str, Tensor]]:
        return {"nan_skipped": self.skipped}, {}

    def load_state(self, state: dict, tensors: dict[str, Tensor]) -> None:
        self.skipped = state["nan_skipped"]


def checkpoints_epoch_end(trainer: TrainerView) -> bool:
    """Whether the epoch that just ended gets its checkpoint now (between stages, once the next one is set up)."""
    return trainer.epoch < trainer.stages[trainer.stage].epochs or trainer.stage + 1 == len(trainer.stages)


class Checkpointing(Hook):
    """Resumable checkpoints every `train.checkpoint_every` steps inside an epoch and at every epoch's end (between
    stages the Trainer saves one once the next stage is set up)."""

    def __init__(self, every: int):
        self.every = every

    def after_step(self, trainer: TrainerView) -> None:
        if self.every and trainer.step % self.every == 0 and trainer.step_in_epoch < len(trainer.plan):
            trainer.save_checkpoint()

    def after_epoch(self, trainer: TrainerView) -> None:
        if checkpoints_epoch_end(trainer):
            trainer.save_checkpoint()


class ReturnFreedMemory(Hook):
    """Hands the allocator's free pages back to the system every N steps and after each epoch's evaluation.

    On glibc's malloc: `malloc_trim(0)` every `train.malloc_trim_every` steps. glibc keeps what the ever-changing
    batch shapes freed in its heap and seldom gives it back, so the resident memory climbs through a run; a trim
    costs about 2 ms on the default job (allocator.py and results/README.md have the figures). Under mimalloc:
    `mi_collect(true)` every `train.mimalloc_collect_every` steps, off by default: mimalloc purges emptied pages
    by itself, and glibc's heap, which malloc_trim would walk, holds next to nothing there. jemalloc: never."""

    def __init__(self, glibc_every: int, mimalloc_every: int = 0):
        from minbert.allocator import active_allocator, release_freed_memory

        self.allocator = active_allocator()
        self.every = {"glibc": glibc_every, "mimalloc": mimalloc_every}.get(self.allocator, 0)
        self.release = release_freed_memory(self.allocator) if self.every else None

    def after_step(self, trainer: TrainerView) -> None:
        if self.release is not None and trainer.step % self.every == 0:
            self.release()

    def epoch_ended(self, trainer: TrainerView, record: dict) -> None:
        if self.release is not None:
            self.release()


class GracefulStop(Hook):
    """A first Ctrl-C or SIGTERM (minbert.interrupts) ends training at the next step boundary: a checkpoint of
    where training stands (unless one was just written), then `Interrupted`. Under torchrun every rank stops at the
    same step."""

    def after_step(self, trainer: TrainerView) -> None:
        self.stop_if_asked(trainer)

    def after_epoch(self, trainer: TrainerView) -> None:
        if checkpoints_epoch_end(trainer):  # just written; between stages, the next stage's first step stops
            self.stop_if_asked(trainer)

    def stop_if_asked(self, trainer: TrainerView) -> None:
        if not trainer.world.any(STOP.requested is not None):
            return
        if trainer.last_checkpoint_step != trainer.step:
            trainer.save_checkpoint()
        raise Interrupted(STOP.requested or signal.SIGTERM)  # another rank's signal: the launcher's SIGTERM


NOT_READ_YET = "not read yet"  # the progress line's loss before the epoch's first read of the device's losses


class ProgressReport(Hook):
    """A live bar on a terminal; in logs and pipes, a line a minute instead."""

    def fit_starting(self, trainer: TrainerView) -> None:
        columns = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]:.1f} ex/s"),
                   TimeRemainingColumn()]
        self.progress = Progress(*columns, transient=False, disable=not trainer.world.is_main)
        self.progress.start()
        stage = trainer.stages[trainer.stage]
        self.label = f"{stage.name} " if len(trainer.stages) > 1 else ""

    def fit_ended(self, trainer: TrainerView) -> None:
        self.progress.stop()

    def epoch_starting(self, trainer: TrainerView, epoch: int, plan: list) -> None:
        self.epoch_text = f"{self.label}{epoch + 1}/{trainer.stages[trainer.stage].epochs}"
        self.bar = self.progress.add_task("train", total=len(plan), completed=trainer.step_in_epoch,
                                          epoch=self.epoch_text, loss=NOT_READ_YET, rate=0.0)
        self.last_report = time.perf_counter()

    def after_step(self, trainer: TrainerView) -> None:
        recent = [v for task_losses in trainer.epoch_losses.values() for v in task_losses[-20:]]
        # losses reach the host every train.log_every steps: before the epoch's first read there is none to show
        loss = f"{float(np.mean(recent)):.4f}" if recent else NOT_READ_YET
        rate = trainer.epoch_seen / trainer.epoch_seconds
        self.progress.update(self.bar, advance=1, loss=loss, rate=rate)
        if not sys.stdout.isatty() and time.perf_counter() - self.last_report > PROGRESS_LOG_SECONDS:
            self.last_report = time.perf_counter()
            log.info("epoch %s: step %d/%d, loss %s, %.1f ex/s, %.0f s", self.epoch_text, trainer.step_in_epoch,
                     len(trainer.plan), loss, rate, trainer.epoch_seconds)
