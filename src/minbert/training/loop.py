"""The one training loop: single-task, multitask and staged runs all go through `Trainer.fit`.

`train_step` does one optimizer update; everything else that acts on the loop (the learning-rate schedule,
gradient surgery, clipping, the Bregman proximal point, distillation's teacher share, the NaN policy, progress,
checkpoints, best-checkpoint selection) is a hook object (minbert.training.hooks) called at fixed points.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from minbert.data.batching import BUCKET_MULTIPLE, Batch
from minbert.device import autocast
from minbert.evaluation.predict import evaluate_tasks
from minbert.interrupts import STOP
from minbert.metrics import dev_selection_score
from minbert.tasks.model import MultitaskModel
from minbert.tasks.regularizers import build_regularizers
from minbert.training.checkpoint import (
    load_optimizer_state,
    optimizer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from minbert.training.config import TrainConfig, model_digest, model_keys, teachers_of
from minbert.training.distillation import Distillation
from minbert.training.distributed import World
from minbert.training.experiment import Experiment, build_optimizer, seed_everything
from minbert.training.hooks import (
    Checkpointing,
    GracefulStop,
    GradientClipping,
    Hook,
    LearningRateSchedule,
    NonFiniteLoss,
    ProgressReport,
    ReturnFreedMemory,
    StepFigures,
    TeacherShare,
)
from minbert.training.layer_cache import LayerCache
from minbert.training.samplers import SAMPLERS, balance
from minbert.training.techniques import build_techniques

log = logging.getLogger("minbert")


def compile_stats(functions: Sequence[Callable]) -> dict:
    """What torch.compile has done in this process: graphs made, recompiles (graphs past the first for each of
    `functions`, e.g. a new shape the dynamic graph did not cover), graph breaks, and seconds spent compiling."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list
    from torch._dynamo.utils import compilation_time_metrics, counters

    entries = [len(_debug_get_cache_entry_list(f.__code__)) for f in functions]
    return {"graphs": counters["stats"]["unique_graphs"], "recompiles": sum(max(0, n - 1) for n in entries),
            "graph_breaks": sum(counters["graph_break"].values()),
            "seconds": round(sum(compilation_time_metrics.get("_compile.compile_inner", [])), 2)}


def default_hooks(train: TrainConfig, distillation: bool) -> list[Hook]:
    """The hooks a config asks for, in the order they act: the schedule, distillation's share, the training
    techniques of `[train.techniques.*]` (in their registry's order, whatever order the config lists them in),
    clipping, then the chores."""
    hooks: list[Hook] = [LearningRateSchedule()]
    if distillation:
        hooks.append(TeacherShare())
    hooks += build_techniques(train.techniques)
    if train.grad_clip > 0:
        hooks.append(GradientClipping(train.grad_clip))
    return [*hooks, NonFiniteLoss(train.on_nan), ProgressReport(), Checkpointing(train.checkpoint_every),
            ReturnFreedMemory(train.malloc_trim_every, train.mimalloc_collect_every), GracefulStop()]


class TaskLoss(nn.Module):
    """A batch's training objective as a module's output, so DistributedDataParallel can wrap it: the task's loss
    (on distilled targets when a teacher is set), plus the task's regularizers, plus the hooks' terms (the Bregman
    proximal point) that span every task."""

    def __init__(self, model: MultitaskModel, regularizers: dict[str, list],
                 terms: Sequence[tuple[float, Callable]] = (), distillation: Distillation | None = None):
        super().__init__()
        self.model = model
        self.regularizers = regularizers
        self.terms = list(terms)  # plain objects, not submodules: DDP must not see a slow copy of the model
        self.distillation = distillation
        self.teacher_share = 0.0  # set before each step (annealing)

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
        for weight, term in self.terms:
            total = total + weight * term(batch, output)
        return total


class Trainer:
    """Trains `experiment.model` on its data through every stage of its config, calling `hooks` (default: those
    the config asks for) at the points listed in minbert.training.hooks."""

    def __init__(self, experiment: Experiment, hooks: Sequence[Hook] = (), cache_dir: Path | None = None,
                 world: World | None = None, run_dir: Path | None = None):
        self.exp = experiment
        self.config = experiment.config
        self.model = experiment.model
        self.world = world or World()
        self.run_dir = run_dir  # where resumable checkpoints go (None: none are written)
        self.regularizers = {name: build_regularizers(task.regularizers) for name, task in self.config.tasks.items()}
        sampler = self.config.train.sampler
        self.sampler = SAMPLERS[sampler.name](sampler.options)
        if self.config.train.max_tokens_per_batch:  # token budgets: batches of repeatable widths, uneven in examples
            self.sampler.uneven_batches = True
            for splits in self.exp.data.values():
                splits["train"].pad_multiple = BUCKET_MULTIPLE
        self.rng = np.random.default_rng(self.config.seed)
        self.distillation = None
        if teachers_of(self.config):
            self.distillation = self.config.train.distillation
            missing = [task for task in teachers_of(self.config) if self.exp.data[task]["train"].teacher is None]
            if missing:  # a programming error: the run attaches them (minbert.runs.teachers) before the loop
                raise ValueError(f"tasks {missing} distil, but their teacher outputs were not attached")
        self.hooks = [*default_hooks(self.config.train, self.distillation is not None), *hooks]
        self.nan_policy = next(h for h in self.hooks if isinstance(h, NonFiniteLoss))
        # where training stands: what a checkpoint saves and a resume restores
        self.stages = self.config.run_stages()
        self.stage = 0
        self.stage_start_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.epoch_rng_state: dict | None = None  # the sampler RNG at the start of the current epoch
        self.epoch_losses: dict[str, list[float]] = defaultdict(list)
        self.unread: list[StepFigures] = []  # steps whose losses are still on the device (read_figures)
        self.epoch_seen = 0
        self.epoch_seconds = 0.0
        self.history: list[dict] = []
        self.step = 0
        self.last_checkpoint_step: int | None = None  # the step of the newest checkpoint this process wrote
        self.total_steps = 0
        self.stop_reason: str | None = None  # set by a hook (on the main rank) to end training after this epoch
        self.plan: list = []
        # other weights than the training model's that an epoch may choose as its own (averaged weights: EMA,
        # SWA), by the name its record gives in "weights"; what the best checkpoint then saves
        self.candidates: dict[str, MultitaskModel] = {}
        self.begin_stage(0, from_best=False)
        self.compile_seconds_counted = 0.0
        if self.config.train.compile:
            self.model.encoder.compile(dynamic=True)  # in place: parameter names stay the same
        self.caches = self.attach_caches(cache_dir) if self.config.train.cache_frozen else []

    def call(self, point: str, *args) -> None:
        for hook in self.hooks:
            getattr(hook, point)(self, *args)

    @property
    def stage_step(self) -> int:
        return self.step - self.stage_start_step

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
                data.cache = LayerCache(data.row_lengths, hidden, budget, cache_dir, name=f"{task}-{split}",
                                        dtype=self.config.train.cache_dtype)
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
        start from the best checkpoint so far (the BestCheckpoint hook loads it)."""
        stage = self.stages[index]
        self.stage = index
        self.active_tasks = stage.tasks or list(self.config.tasks)
        self.call("stage_starting", index, from_best)
        self.model.set_trainable(stage.train_encoder, self.active_tasks, stage.train_shared)
        terms = [term for hook in self.hooks for term in hook.loss_terms(self)]
        self.task_loss = TaskLoss(self.model, self.regularizers, terms, self.distillation)
        self.loss_module: nn.Module = self.task_loss
        if self.world.distributed:  # wrapped per stage: DDP syncs the parameters that train when it is built
            # a step may hold one task's batch only: the other heads then have no gradient on this step
            device_ids = [self.world.local_rank] if self.exp.device.type == "cuda" else None
            self.loss_module = DistributedDataParallel(self.loss_module, device_ids=device_ids,
                                                       find_unused_parameters=True)
        parts = next((p for hook in self.hooks if (p := hook.encoder_parts(self)) is not None), None)
        self.optimizer = build_optimizer(self.config, self.model, lr=stage.lr or None, head_lr=stage.head_lr or None,
                                         encoder_parts=parts)
        # fp16 (GPUs without bf16) needs loss scaling; bf16 and fp32 do not (the scaler is then a no-op)
        self.scaler = torch.amp.GradScaler(self.exp.device.type,
                                           enabled=self.exp.autocast_dtype == torch.float16)
        self.call("stage_started")

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
                                   rng=self.rng, positions=pools[task][chosen[task]],
                                   max_tokens=train.max_tokens_per_batch) for task, d in data.items()}
        plan = self.sampler.plan(batches, epoch, self.stages[self.stage].epochs, self.rng)
        if self.world.distributed:  # every rank needs a share of every batch: drop batches too small to split
            plan = [step for step in plan if all(len(positions) >= self.world.size for _, positions in step)]
        return plan

    def evaluate(self, split: str = "dev", model: MultitaskModel | None = None) -> dict[str, dict]:
        """Every task's metrics on `split`, of the training model or of another copy of it (averaged weights)."""
        return evaluate_tasks(self.model if model is None else model, self.exp.data, self.exp.inference, split)

    def selection_score(self, dev: dict[str, dict]) -> float:
        """What picks the best epoch: the mean of the normalised primary metrics, helper tasks left out."""
        return dev_selection_score(dev, {t for t in dev if self.config.tasks[t].helper})

    def train_step(self, step_batches: list) -> int:
        """One optimizer update over the step's batches; returns the number of examples seen. Nothing here reads a
        device tensor on the host (but on_nan = "skip"'s check): the losses wait in `unread` for `read_figures`."""
        self.call("before_step", step_batches)
        self.optimizer.zero_grad(set_to_none=True)
        seen = 0
        figures = StepFigures(self.step, self.epoch, self.optimizer.param_groups[0]["lr"])
        self.unread.append(figures)
        for task, positions in step_batches:
            positions = self.world.shard(positions)
            batch = self.exp.data[task]["train"].collate(positions).to(self.exp.device)
            with autocast(self.exp.device, self.exp.autocast_dtype):
                loss = self.loss_module(batch)
            figures.positions[task] = positions
            if self.nan_policy.per_step and not torch.isfinite(loss):
                figures.skipped = True
                self.nan_policy.handle(self, figures, task, loss.item())  # the step is dropped
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                return seen
            self.scaler.scale(self.model.heads[task].loss_weight * loss).backward()
            self.call("after_backward", task)
            figures.losses[task] = loss.detach()
            seen += len(batch)
        self.call("before_update")
        self.scaler.step(self.optimizer)  # with fp16, skips the step when the scaled gradients overflowed
        self.scaler.update()
        self.step += 1
        self.call("after_update", figures.losses)
        return seen

    def read_figures(self) -> None:
        """Every unread step's losses to the host in one read (every train.log_every steps, at an epoch's end and
        before a checkpoint): the epoch's losses, the non-finite check of on_nan = "stop" (which raises here,
        naming the first bad step), and the hooks' `steps_read` (the trackers' per-step rows)."""
        unread, self.unread = self.unread, []
        device_losses = [loss.float() for figures in unread for loss in figures.losses.values()]
        values = iter(torch.stack(device_losses).tolist() if device_losses else [])
        for figures in unread:
            figures.losses = {task: next(values) for task in figures.losses}
            for task, loss in figures.losses.items():
                if not math.isfinite(loss):
                    self.nan_policy.handle(self, figures, task, loss)  # "stop": raises
                self.epoch_losses[task].append(loss)
        self.call("steps_read", unread)

    def count_total_steps(self) -> int:
        """Steps in the whole stage (for warm-up and decay), from a probe of the first epoch's plan: its length is
        fixed by the config. Under a token budget how many batches an epoch's examples fill depends on their draw,
        so each remaining epoch's plan is drawn ahead from the generator as the epochs will draw it (only the plans
        draw from it), plus the steps already done in this stage (a resumed run)."""
        state = self.rng.bit_generator.state
        epochs = self.stages[self.stage].epochs
        if not self.config.train.max_tokens_per_batch:
            total = len(self.epoch_plan(0)) * epochs
        else:
            if self.epoch_rng_state is not None:
                self.rng.bit_generator.state = self.epoch_rng_state
            total = self.step - self.step_in_epoch - self.stage_start_step
            total += sum(len(self.epoch_plan(epoch)) for epoch in range(self.epoch, epochs))
        self.rng.bit_generator.state = state  # the probe must not shift the real draws
        return total

    def fit(self) -> list[dict]:
        """Run every stage (one, unless the config lists stages) from where training stands. A first Ctrl-C or
        SIGTERM stops it at the next step boundary, with a checkpoint (minbert.interrupts, GracefulStop)."""
        with STOP.stoppable():
            return self._fit()

    def _fit(self) -> list[dict]:
        while self.stage < len(self.stages):
            self.fit_stage()
            if self.stopped:
                break
            if self.stage + 1 < len(self.stages):
                self.begin_stage(self.stage + 1)
                self.stage_start_step, self.epoch = self.step, 0
                self.save_checkpoint()
            else:
                self.stage += 1
        return self.history

    @property
    def stopped(self) -> bool:
        """A hook asked to end training early (a tuning study's pruner): every rank agrees."""
        return self.world.any(self.stop_reason is not None)

    def fit_stage(self) -> None:
        stage = self.stages[self.stage]
        self.total_steps = self.count_total_steps()
        self.call("fit_starting")
        try:
            for epoch in range(self.epoch, stage.epochs):
                if self.epoch_rng_state is None:
                    self.epoch_rng_state = self.rng.bit_generator.state
                self.rng.bit_generator.state = self.epoch_rng_state  # a resumed epoch gets the same plan
                self.plan = self.epoch_plan(epoch)
                self.call("epoch_starting", epoch, self.plan)
                self.model.train()
                start = time.perf_counter() - self.epoch_seconds
                for step_batches in self.plan[self.step_in_epoch:]:
                    self.epoch_seen += self.train_step(step_batches)
                    self.step_in_epoch += 1
                    if self.step % self.config.train.log_every == 0:
                        self.read_figures()
                    self.epoch_seconds = time.perf_counter() - start
                    self.call("after_step")
                self.read_figures()
                if self.world.is_main:  # rank 0 evaluates, logs and saves
                    self.finish_epoch(epoch)
                self.epoch, self.step_in_epoch = epoch + 1, 0
                self.epoch_rng_state = self.rng.bit_generator.state  # the next epoch starts from here
                self.epoch_losses, self.epoch_seen, self.epoch_seconds = defaultdict(list), 0, 0.0
                self.call("after_epoch")  # (between stages, fit saves a checkpoint once the next stage is set up)
                self.world.barrier()
                if self.stopped:
                    break
        finally:
            self.call("fit_ended")

    def finish_epoch(self, epoch: int) -> None:
        if self.config.train.compile:  # compile seconds spent in this epoch's training (evaluation compiles too)
            compile_seconds_in_training = compile_stats([])["seconds"] - self.compile_seconds_counted
        eval_start = time.perf_counter()
        dev = self.evaluate("dev")
        record = {
            "epoch": len(self.history) + 1,
            "stage": self.stages[self.stage].name or str(self.stage + 1),
            "stage_epoch": epoch + 1,
            "train_loss": {task: float(np.mean(v)) for task, v in self.epoch_losses.items()},
            "dev": dev,
            "selection_score": self.selection_score(dev),
            "train_examples": self.epoch_seen,
            "train_seconds": round(self.epoch_seconds, 2),
            "eval_seconds": round(time.perf_counter() - eval_start, 2),
            "train_examples_per_second": round(self.epoch_seen / max(self.epoch_seconds, 1e-9), 2),
            "lr": self.optimizer.param_groups[0]["lr"],
            "nan_steps_skipped": self.nan_policy.skipped,
        }
        if self.config.train.compile:
            stats = record["compile"] = compile_stats([type(self.model.encoder).forward])
            record["compile_seconds"] = round(compile_seconds_in_training, 2)
            self.compile_seconds_counted = stats["seconds"]  # this process's count (a resumed run starts again)
            log.info("torch.compile: %d graphs so far, %d recompiles (one is evaluation's no-grad graph), "
                     "%d graph breaks; %.0f s of this epoch's training spent compiling (%.1f ex/s without it)",
                     stats["graphs"], stats["recompiles"], stats["graph_breaks"], compile_seconds_in_training,
                     self.epoch_seen / max(self.epoch_seconds - compile_seconds_in_training, 1e-9))
        self.history.append(record)
        log.info("epoch %d: %s; selection %.4f; %.0f s train (%.1f ex/s), %.0f s eval", record["epoch"],
                 ", ".join(f"{t} {r['metric']} {r['score']:.4f}" for t, r in dev.items()),
                 record["selection_score"], record["train_seconds"], record["train_examples_per_second"],
                 record["eval_seconds"])
        self.call("epoch_ended", record)

    # --- resumable checkpoints ---------------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        self.read_figures()  # the epoch's losses are saved; weights trained past a non-finite loss never are
        if self.run_dir is None or not self.world.is_main:
            return
        rng_states, tensors = rng_state()
        optimizer_saved, optimizer_tensors = optimizer_state(self.optimizer)
        tensors.update(optimizer_tensors)
        tensors.update({f"model.{k}": v for k, v in self.model.checkpoint_state().items()})
        state = {
            "step": self.step, "stage": self.stage, "stage_start_step": self.stage_start_step,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "epoch_rng_state": self.epoch_rng_state, "rng": rng_states, "optimizer": optimizer_saved,
            "scaler": self.scaler.state_dict(), "epoch_losses": self.epoch_losses, "epoch_seen": self.epoch_seen,
            "epoch_seconds": self.epoch_seconds, "history": self.history,
            "model_digest": model_digest(model_keys(self.config)),
        }
        for hook in self.hooks:
            hook_state, hook_tensors = hook.state()
            state.update(hook_state)
            tensors.update(hook_tensors)
        path = save_checkpoint(self.run_dir, self.step, tensors, state, self.config.train.keep_checkpoints)
        self.last_checkpoint_step = self.step
        log.info("checkpoint: %s (stage %d, epoch %d, step %d of the epoch)", path, self.stage + 1, self.epoch + 1,
                 self.step_in_epoch)

    def state_mismatch(self, tensors: dict[str, torch.Tensor], state: dict) -> str | None:
        """Why a checkpoint cannot continue this trainer (written under a config whose model-shaping keys differ,
        a stage this config lacks, tensors that are not this model's), or None."""
        digest = state.get("model_digest")  # absent in checkpoints written before minbert recorded it
        if digest is not None and digest != model_digest(model_keys(self.config)):
            return "written under another config (its model-shaping keys differ from this run's)"
        if not isinstance(state["stage"], int) or not 0 <= state["stage"] < len(self.stages):
            return f"its stage index {state['stage']!r} is not one of this config's {len(self.stages)} stages"
        expected = {k: tuple(v.shape) for k, v in self.model.checkpoint_state().items()}
        found = {k.removeprefix("model."): tuple(v.shape) for k, v in tensors.items() if k.startswith("model.")}
        if missing := sorted(expected.keys() - found.keys()):
            return f"it holds no {missing[0]} ({len(missing)} of the model's tensors missing)"
        if extra := sorted(found.keys() - expected.keys()):
            return f"it holds {extra[0]}, which this model has not"
        for name, shape in expected.items():
            if found[name] != shape:
                return f"its {name} is {list(found[name])}, this model's is {list(shape)}"
        if "rng.torch" not in tensors:
            return "it holds no RNG state"
        return None

    def reseed(self, seed: int) -> None:
        """Draw what comes next (data order, dropout) from `seed` instead of the restored generators: a run forked
        from another run's checkpoint goes its own way from there (with the parent's own seed too)."""
        self.rng = np.random.default_rng(seed)
        self.epoch_rng_state = None  # the next epoch's plan comes from the new generator
        seed_everything(seed)

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict) -> None:
        """Continue exactly where a checkpoint left off (call after building everything else)."""
        self.begin_stage(state["stage"], from_best=False)  # the stage's trainable set and optimizer groups
        self.model.load_state({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
        for hook in self.hooks:
            hook.load_state(state, tensors)
        self.stage_start_step = state["stage_start_step"]
        load_optimizer_state(self.optimizer, state["optimizer"], tensors)
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.step_in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        self.epoch_rng_state = state["epoch_rng_state"]
        self.epoch_losses = defaultdict(list, state["epoch_losses"])
        self.unread = []
        self.epoch_seen, self.epoch_seconds = state["epoch_seen"], state["epoch_seconds"]
        self.history = state["history"]
        set_rng_state(state["rng"], tensors)  # last: building the model above drew from the torch RNG
