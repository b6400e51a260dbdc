"""The one training loop: single-task, multitask and (later) staged runs all go through `Trainer.fit`."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from minbert.data.batching import Batch, TaskData
from minbert.data.layer_cache import LayerCache
from minbert.device import autocast
from minbert.errors import MinbertError
from minbert.evaluation.metrics import accuracy, pearson, selection_score
from minbert.tasks.kinds import TaskKind
from minbert.tasks.model import MultitaskModel
from minbert.training.checkpoint import (
    load_optimizer_state,
    optimizer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from minbert.training.config import TrainConfig
from minbert.training.distillation import Distillation, attach_teacher_outputs, teachers_of
from minbert.training.distributed import World
from minbert.training.experiment import Experiment, build_optimizer
from minbert.training.regularizers import BregmanProximal, build_regularizers, pcgrad
from minbert.training.samplers import SAMPLERS, balance

log = logging.getLogger("minbert")
PROGRESS_LOG_SECONDS = 60.0


class TrainingError(MinbertError):
    """Training cannot go on (a non-finite loss, ...)."""


def lr_factor(train: TrainConfig, step: int, epoch: int, total_steps: int) -> float:
    """Linear warm-up over warmup_ratio of all steps, then constant, linear decay to 0, or gamma**epoch."""
    warmup = int(train.warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if train.decay == "linear":
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    if train.decay == "exponential":
        return train.gamma**epoch
    return 1.0


@torch.no_grad()
def predict(model: MultitaskModel, data: TaskData, experiment: Experiment, soft: bool = False) -> np.ndarray:
    """Predictions for every example of `data`, in file order (batches are length-sorted, then put back); with
    `soft`, the task kind's soft outputs (class probabilities, paraphrase probability, score) instead."""
    model.eval()
    kind = model.heads[data.task].kind
    shape = (len(data), kind.num_outputs) if soft and kind.is_classification and kind.num_outputs > 1 else len(data)
    out = np.zeros(shape, dtype=np.int64 if kind.is_classification and not soft else np.float64)
    for positions in data.batches(experiment.config.train.eval_batch_size, shuffle=False, bucketing=True):
        batch = data.collate(positions).to(experiment.device)
        with autocast(experiment.device, experiment.autocast_dtype):
            outputs = model(batch)
        out[positions] = (kind.soft(outputs) if soft else kind.predict(outputs)).cpu().numpy()
    return out


def score(kind: TaskKind, predictions: np.ndarray, labels: np.ndarray) -> dict:
    """{"metric": accuracy or pearson, "score": its value} for labelled predictions."""
    value = pearson(predictions, labels) if kind.metric == "pearson" else accuracy(predictions, labels)
    return {"metric": kind.metric, "score": value}


def dev_result(model: MultitaskModel, task: str, data: TaskData, predictions: np.ndarray) -> dict:
    return score(model.heads[task].kind, predictions, data.labels.numpy())


class TaskLoss(nn.Module):
    """A batch's training objective (its task's loss plus the task's regularizers) as a module's output, so
    DistributedDataParallel can wrap it."""

    def __init__(self, model: MultitaskModel, regularizers: dict[str, list],
                 proximal: BregmanProximal | None = None, distillation: Distillation | None = None):
        super().__init__()
        self.model = model
        self.regularizers = regularizers
        self.proximal = proximal  # a plain object, not a submodule: DDP must not see the slow copy
        self.distillation = distillation
        self.teacher_share = 0.0  # set by the trainer before each step (annealing)

    def forward(self, batch: Batch) -> torch.Tensor:
        regularizers = self.regularizers.get(batch.task, [])
        word_embeds = None
        if any(r.needs_word_embeds for _, r in regularizers):
            word_embeds = self.model.encoder.embeddings.word_embeddings(batch.inputs["input_ids"])
            if not word_embeds.requires_grad:  # frozen word embeddings: the perturbations still need d loss / d x
                word_embeds.requires_grad_()
        output = self.model(batch, word_embeds=word_embeds)
        target_batch = batch  # the regularizers keep the gold labels; the task's loss takes the distilled targets
        if self.distillation is not None and batch.teacher is not None:
            kind = self.model.heads[batch.task].kind
            target_batch = dataclasses.replace(batch, labels=self.distillation.targets(
                kind, batch.labels, batch.teacher, self.teacher_share))
        loss = self.model.loss(target_batch, output)
        total = loss
        for weight, regularizer in regularizers:
            total = total + weight * regularizer(self.model, batch, output, loss, word_embeds)
        if self.proximal is not None:
            total = total + self.proximal.weight * self.proximal(batch, output)
        return total


class Trainer:
    def __init__(self, experiment: Experiment, on_epoch_end: Callable[[dict], None] | None = None,
                 on_step: Callable[[int, dict[str, float], float], None] | None = None,
                 cache_dir: Path | None = None, world: World | None = None, run_dir: Path | None = None):
        self.exp = experiment
        self.config = experiment.config
        self.model = experiment.model
        self.world = world or World()
        self.regularizers = {name: build_regularizers(task) for name, task in self.config.tasks.items()}
        self.sampler = SAMPLERS[self.config.train.sampler](self.config.train)
        self.rng = np.random.default_rng(self.config.seed)
        self.on_epoch_end = on_epoch_end
        self.on_step = on_step
        self.run_dir = run_dir  # where resumable checkpoints go (None: none are written)
        # where training stands: what a checkpoint saves and a resume restores
        self.stages = self.config.run_stages()
        self.stage = 0
        self.stage_start_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.epoch_rng_state: dict | None = None  # the sampler RNG at the start of the current epoch
        self.epoch_losses: dict[str, list[float]] = defaultdict(list)
        self.epoch_seen = 0
        self.epoch_seconds = 0.0
        self.nan_skipped = 0
        self.history: list[dict] = []
        self.step = 0
        self.distillation = None
        if teachers_of(self.config):  # the teacher's outputs, computed once and cached in the run directory
            self.distillation = Distillation.from_config(self.config.train)
            attach_teacher_outputs(self.config, self.exp.data, run_dir / "teacher" if run_dir else None,
                                   write=self.world.is_main)
        self.begin_stage(0, from_best=False)
        if self.config.train.compile:
            self.model.encoder.compile(dynamic=True)  # in place: parameter names stay the same
        self.caches = self.attach_caches(cache_dir) if self.config.train.cache_frozen else []

    def attach_caches(self, cache_dir: Path | None) -> list[LayerCache]:
        """Cache the frozen bottom's outputs for the train and dev sets (they never change)."""
        if not self.model.frozen_depth:
            return []
        budget = self.config.train.cache_budget_mb * 2**20
        hidden = self.model.encoder.config.hidden_size
        caches = []
        for task, splits in self.exp.data.items():
            for split in ("train", "dev"):
                data = splits[split]
                data.cache = LayerCache(data.row_lengths, hidden, budget, cache_dir, name=f"{task}-{split}")
                budget = max(0, budget - data.cache.store.nbytes) if data.cache.spill_path is None else budget
                caches.append(data.cache)
        return caches

    def close(self) -> None:
        for cache in self.caches:
            cache.close()
        for splits in self.exp.data.values():
            for data in splits.values():
                data.cache = None

    def begin_stage(self, index: int, from_best: bool = True) -> None:
        """Which tasks train and what is trainable in this stage; a fresh optimizer and schedule. Later stages
        start from the best checkpoint so far."""
        stage = self.stages[index]
        self.stage = index
        self.active_tasks = stage.tasks or list(self.config.tasks)
        if from_best and self.run_dir is not None and (self.run_dir / "best" / "model.safetensors").exists():
            self.model.load_checkpoint(self.run_dir / "best")
            log.info("stage %s starts from the best checkpoint so far", stage.name or index + 1)
        self.model.set_trainable(stage.train_encoder, self.active_tasks)
        train = self.config.train
        self.proximal = (BregmanProximal(self.model, train.bregman_weight, train.bregman_momentum)
                         if train.bregman_weight > 0 else None)
        self.task_loss = TaskLoss(self.model, self.regularizers, self.proximal, self.distillation)
        self.loss_module: nn.Module = self.task_loss
        if self.world.distributed:  # wrapped per stage: DDP syncs the parameters that train when it is built
            # a step may hold one task's batch only: the other heads then have no gradient on this step
            device_ids = [self.world.local_rank] if self.exp.device.type == "cuda" else None
            self.loss_module = DistributedDataParallel(self.loss_module, device_ids=device_ids,
                                                       find_unused_parameters=True)
        self.optimizer = build_optimizer(self.config, self.model, lr=stage.lr or None, head_lr=stage.head_lr or None)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        # fp16 (GPUs without bf16) needs loss scaling; bf16 and fp32 do not (the scaler is then a no-op)
        self.scaler = torch.amp.GradScaler(self.exp.device.type,
                                           enabled=self.exp.autocast_dtype == torch.float16)

    def task_batch_size(self, task: str) -> int:
        return self.config.tasks[task].batch_size or self.config.train.batch_size

    def epoch_plan(self, epoch: int) -> list:
        train = self.config.train
        data = {task: self.exp.data[task]["train"] for task in self.active_tasks}
        use = self.stages[self.stage].train_data
        pools = {task: d.epoch_positions(use, self.rng) for task, d in data.items()}  # own file + extra data
        balancing = train.balancing if len(data) == len(self.config.tasks) else "full"  # ratios name every task
        chosen = balance({task: len(pool) for task, pool in pools.items()}, balancing, self.rng)
        batches = {task: d.batches(self.task_batch_size(task), shuffle=True, bucketing=train.bucketing,
                                   rng=self.rng, positions=pools[task][chosen[task]]) for task, d in data.items()}
        plan = self.sampler.plan(batches, epoch, self.stages[self.stage].epochs, self.rng)
        if self.world.distributed:  # every rank needs a share of every batch: drop batches too small to split
            plan = [step for step in plan if all(len(positions) >= self.world.size for _, positions in step)]
        return plan

    def evaluate(self, split: str = "dev") -> dict[str, dict]:
        results = {}
        for task, splits in self.exp.data.items():
            if split not in splits:
                continue
            predictions = predict(self.model, splits[split], self.exp)
            results[task] = dev_result(self.model, task, splits[split], predictions)
        return results

    def train_step(self, step_batches: list, epoch: int, total_steps: int, losses: dict) -> int:
        """One optimizer update over the step's batches; returns the number of examples seen."""
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * lr_factor(self.config.train, self.step - self.stage_start_step, epoch, total_steps)
        if self.distillation is not None:
            progress = (self.step - self.stage_start_step) / max(1, total_steps)
            self.task_loss.teacher_share = self.distillation.share(progress)
        self.optimizer.zero_grad(set_to_none=True)
        seen, step_losses = 0, {}
        surgery = self.config.train.gradient_surgery == "pcgrad" and len(step_batches) > 1
        shared = [p for p in [*self.model.encoder.parameters(), *self.model.common.parameters()] if p.requires_grad]
        task_gradients = []
        for task, positions in step_batches:
            positions = self.world.shard(positions)
            batch = self.exp.data[task]["train"].collate(positions).to(self.exp.device)
            with autocast(self.exp.device, self.exp.autocast_dtype):
                loss = self.loss_module(batch)
            if os.environ.get("MINBERT_FAULT") == f"nan-loss@{self.step}":  # the tests' forced NaN
                loss = loss * float("nan")
            if not torch.isfinite(loss):
                ids = [self.exp.data[task]["train"].examples[p].id for p in positions]
                message = (f"non-finite loss {loss.item()} at step {self.step} (epoch {epoch + 1}), task {task}; "
                           f"example ids: {', '.join(ids)}")
                if self.config.train.on_nan == "stop":
                    raise TrainingError(message + "; the last good checkpoint is kept")
                self.nan_skipped += 1
                log.warning("%s: step skipped (%d skipped so far)", message, self.nan_skipped)
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                return seen
            self.scaler.scale(self.model.heads[task].loss_weight * loss).backward()
            if surgery:  # keep this task's gradient of the shared parameters apart
                task_gradients.append(torch.cat([torch.zeros(p.numel(), device=p.device) if p.grad is None
                                                 else p.grad.reshape(-1) for p in shared]))
                for p in shared:
                    p.grad = None
            losses[task].append(loss.item())
            step_losses[task] = losses[task][-1]
            seen += len(batch)
        if task_gradients:
            # its own seeded order per step: resumable, and the sampler's stream is untouched
            combined = pcgrad(task_gradients, np.random.default_rng([self.config.seed, self.step]))
            for p, chunk in zip(shared, combined.split([p.numel() for p in shared]), strict=True):
                p.grad = chunk.view_as(p).to(p.dtype)
        if self.config.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                           self.config.train.grad_clip)
        self.scaler.step(self.optimizer)  # with fp16, skips the step when the scaled gradients overflowed
        self.scaler.update()
        if self.proximal is not None:
            self.proximal.update(self.model)
        self.step += 1
        if self.on_step:
            self.on_step(self.step, step_losses, self.optimizer.param_groups[0]["lr"])
        return seen

    def total_steps(self) -> int:
        """Steps in the whole run (for warm-up and decay), from a probe of the first epoch's plan."""
        state = self.rng.bit_generator.state
        total = len(self.epoch_plan(0)) * self.stages[self.stage].epochs  # a plan's length is fixed by the config
        self.rng.bit_generator.state = state  # the probe must not shift the real draws
        return total

    def fit(self) -> list[dict]:
        """Run every stage (one, unless the config lists stages) from where training stands."""
        while self.stage < len(self.stages):
            self.fit_stage()
            if self.stage + 1 < len(self.stages):
                self.begin_stage(self.stage + 1)
                self.stage_start_step, self.epoch = self.step, 0
                self.save_checkpoint()
            else:
                self.stage += 1
        return self.history

    def fit_stage(self) -> None:
        stage = self.stages[self.stage]
        total_steps = self.total_steps()
        columns = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} ex/s"),
                   TimeRemainingColumn()]
        label = f"{stage.name} " if len(self.stages) > 1 else ""
        with Progress(*columns, transient=False, disable=not self.world.is_main) as progress:
            for epoch in range(self.epoch, stage.epochs):
                if self.epoch_rng_state is None:
                    self.epoch_rng_state = self.rng.bit_generator.state
                self.rng.bit_generator.state = self.epoch_rng_state  # a resumed epoch gets the same plan
                plan = self.epoch_plan(epoch)
                bar = progress.add_task("train", total=len(plan), completed=self.step_in_epoch,
                                        epoch=f"{label}{epoch + 1}/{stage.epochs}", loss=math.nan, rate=0.0)
                self.model.train()
                start = time.perf_counter() - self.epoch_seconds
                last_report = time.perf_counter()
                for step_batches in plan[self.step_in_epoch:]:
                    self.epoch_seen += self.train_step(step_batches, epoch, total_steps, self.epoch_losses)
                    self.step_in_epoch += 1
                    self.epoch_seconds = time.perf_counter() - start
                    recent = [v for task_losses in self.epoch_losses.values() for v in task_losses[-20:]]
                    loss, rate = float(np.mean(recent)) if recent else math.nan, self.epoch_seen / self.epoch_seconds
                    progress.update(bar, advance=1, loss=loss, rate=rate)
                    if not sys.stdout.isatty() and time.perf_counter() - last_report > PROGRESS_LOG_SECONDS:
                        last_report = time.perf_counter()  # logs and pipes get no live bar: a line a minute instead
                        log.info("epoch %s%d/%d: step %d/%d, loss %.4f, %.1f ex/s, %.0f s", label, epoch + 1,
                                 stage.epochs, self.step_in_epoch, len(plan), loss, rate, self.epoch_seconds)
                    every = self.config.train.checkpoint_every
                    if every and self.step % every == 0 and self.step_in_epoch < len(plan):
                        self.save_checkpoint()
                if self.world.is_main:  # rank 0 evaluates, logs and saves
                    self.finish_epoch(epoch)
                self.epoch, self.step_in_epoch = epoch + 1, 0
                self.epoch_rng_state = self.rng.bit_generator.state  # the next epoch starts from here
                self.epoch_losses, self.epoch_seen, self.epoch_seconds = defaultdict(list), 0, 0.0
                if self.epoch < stage.epochs or self.stage + 1 == len(self.stages):
                    self.save_checkpoint()  # (between stages, fit saves one after the next stage is set up)
                self.world.barrier()

    def finish_epoch(self, epoch: int) -> None:
        eval_start = time.perf_counter()
        dev = self.evaluate("dev")
        record = {
            "epoch": len(self.history) + 1,
            "stage": self.stages[self.stage].name or str(self.stage + 1),
            "stage_epoch": epoch + 1,
            "train_loss": {task: float(np.mean(v)) for task, v in self.epoch_losses.items()},
            "dev": dev,
            "selection_score": selection_score({t: (r["metric"], r["score"]) for t, r in dev.items()}),
            "train_examples": self.epoch_seen,
            "train_seconds": round(self.epoch_seconds, 2),
            "eval_seconds": round(time.perf_counter() - eval_start, 2),
            "train_examples_per_second": round(self.epoch_seen / max(self.epoch_seconds, 1e-9), 2),
            "lr": self.optimizer.param_groups[0]["lr"],
            "nan_steps_skipped": self.nan_skipped,
        }
        self.history.append(record)
        log.info("epoch %d: %s; selection %.4f; %.0f s train (%.1f ex/s), %.0f s eval", record["epoch"],
                 ", ".join(f"{t} {r['metric']} {r['score']:.4f}" for t, r in dev.items()),
                 record["selection_score"], record["train_seconds"], record["train_examples_per_second"],
                 record["eval_seconds"])
        if self.on_epoch_end:
            self.on_epoch_end(record)

    # --- resumable checkpoints ---------------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        if self.run_dir is None or not self.world.is_main:
            return
        rng_states, tensors = rng_state()
        optimizer_saved, optimizer_tensors = optimizer_state(self.optimizer)
        tensors.update(optimizer_tensors)
        tensors.update({f"model.{k}": v for k, v in self.model.checkpoint_state().items()})
        if self.proximal is not None:
            tensors.update({f"proximal.{k}": v for k, v in self.proximal.teacher.checkpoint_state().items()})
        state = {
            "step": self.step, "stage": self.stage, "stage_start_step": self.stage_start_step,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "epoch_rng_state": self.epoch_rng_state, "rng": rng_states, "optimizer": optimizer_saved,
            "scaler": self.scaler.state_dict(), "epoch_losses": self.epoch_losses, "epoch_seen": self.epoch_seen,
            "epoch_seconds": self.epoch_seconds, "nan_skipped": self.nan_skipped, "history": self.history,
        }
        path = save_checkpoint(self.run_dir, self.step, tensors, state, self.config.train.keep_checkpoints)
        log.info("checkpoint: %s (stage %d, epoch %d, step %d of the epoch)", path, self.stage + 1, self.epoch + 1,
                 self.step_in_epoch)

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict) -> None:
        """Continue exactly where a checkpoint left off (call after building everything else)."""
        self.begin_stage(state["stage"], from_best=False)  # the stage's trainable set and optimizer groups
        self.model.load_state({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
        if self.proximal is not None:
            self.proximal.teacher.load_state({k.removeprefix("proximal."): v for k, v in tensors.items()
                                              if k.startswith("proximal.")})
        self.stage_start_step = state["stage_start_step"]
        load_optimizer_state(self.optimizer, state["optimizer"], tensors)
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.step_in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        self.epoch_rng_state = state["epoch_rng_state"]
        self.epoch_losses = defaultdict(list, state["epoch_losses"])
        self.epoch_seen, self.epoch_seconds = state["epoch_seen"], state["epoch_seconds"]
        self.nan_skipped, self.history = state["nan_skipped"], state["history"]
        set_rng_state(state["rng"], tensors)  # last: building the model above drew from the torch RNG
