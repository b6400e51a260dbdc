"""Build everything a run needs from its config: device, tokenizer, model, tokenized data, optimizer."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from minbert.data import assembly
from minbert.data.assembly import Sampling, TaskSource, assemble_task_data
from minbert.data.batching import TaskData
from minbert.data.files import Example, LoadedFile
from minbert.data.spec import SPLITS, resolve_data_dir, resolve_spec
from minbert.device import resolve_device, resolve_precision
from minbert.evaluation.predict import Inference
from minbert.model.bert import BertModel
from minbert.model_dir import resolve_model_dir
from minbert.optim import AdamW, decay_groups
from minbert.tasks.config import extra_context
from minbert.tasks.kinds import kind_of, refuse
from minbert.tasks.model import MultitaskModel, check_max_length
from minbert.tokenizer import Tokenizer
from minbert.training.config import RunConfig
from minbert.training.distributed import World


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Experiment:
    config: RunConfig
    device: torch.device
    autocast_dtype: torch.dtype | None
    tokenizer: Tokenizer
    model: MultitaskModel
    model_dir: Path  # where the encoder and tokenizer came from
    data: dict[str, dict[str, TaskData]]  # task -> split -> data (splits without a file are absent)

    @property
    def inference(self) -> Inference:
        return Inference(self.device, self.autocast_dtype, self.config.train.eval_batch_size)


def task_file(config: RunConfig, task: str, split: str) -> str:
    chosen = getattr(config.tasks[task], split)
    return chosen or getattr(resolve_spec(config.tasks[task].data, f"tasks.{task}.data"), split)


def task_source(config: RunConfig, task: str) -> TaskSource:
    """Where task `task`'s rows come from, with its kind's rules for reading them (minbert.data.assembly)."""
    task_config = config.tasks[task]
    kind = kind_of(task, task_config)
    extras = [(extra, extra_context(f"tasks.{task}.extra[{i}]", task, task_config))
              for i, extra in enumerate(task_config.extra)]
    return TaskSource(task, kind.spec, {split: task_file(config, task, split) for split in SPLITS}, kind.row_strata,
                      kind.dev_problem, extras)


def read_split(config: RunConfig, task: str, split: str, directory: Path, strict: bool = False) -> LoadedFile | None:
    """A task's rows of one split as its spec and config say (minbert.data.assembly.read_split)."""
    return assembly.read_split(task_source(config, task), split, directory, strict)


def tune_split_rows(config: RunConfig, task: str, directory: Path) -> list[Example]:
    """The rows of a task's training file that a run with `train.tune_split` held out (never trained on), exactly
    as its training carved them."""
    return assembly.tune_split_rows(task_source(config, task), directory, config.train.tune_split,
                                    config.train.tune_split_seed)


def load_task_data(config: RunConfig, tokenizer: Tokenizer, data_dir: str | None, strict: bool = False,
                   splits: tuple[str, ...] = SPLITS) -> dict[str, dict[str, TaskData]]:
    """Task -> split -> its rows as model inputs: each task's rows assembled in one call (minbert.data.assembly),
    then turned into model rows by its kind."""
    sources = {task: task_source(config, task) for task in config.tasks}
    directory = resolve_data_dir(data_dir or config.data_dir or None,
                                 needed=any(not s.spec.hub or s.extras for s in sources.values()))
    train = config.train
    sampling = Sampling(config.seed, train.tune_split, train.tune_split_seed, train.max_train_examples,
                        train.max_eval_examples, train.train_fraction)
    data: dict[str, dict[str, TaskData]] = {}
    for task, task_config in config.tasks.items():
        if sampling.tune_split > 0:
            refuse(kind_of(task, task_config), "train.tune_split")
        rows = assemble_task_data(sources[task], directory, sampling, splits, strict)
        kind = kind_of(task, task_config)  # after assembly: a tagging spec may have read its label set from train
        data[task] = {split: kind.task_data(part.examples, tokenizer, config.model.max_length,
                                            siamese=kind.is_pair and task_config.pair_encoding == "siamese",
                                            sources=part.sources, both_orders=task_config.predict_order == "both",
                                            random_order=split == "train" and task_config.train_order == "random")
                      for split, part in rows.items()}
    return data


def build_model(config: RunConfig, model_dir: Path) -> MultitaskModel:
    encoder = BertModel.from_pretrained(model_dir)
    encoder.set_dropout(config.model.hidden_dropout, config.model.attention_dropout)
    check_max_length(config.model, encoder)
    return MultitaskModel(encoder, config.tasks, config.model)


def build_experiment(config: RunConfig, data_dir: str | None = None, strict: bool = False,
                     world: World | None = None, splits: tuple[str, ...] = SPLITS) -> Experiment:
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if world is not None and world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    model_dir = resolve_model_dir(config.model.path or None, config.model.revision or None)
    tokenizer = Tokenizer.from_pretrained(model_dir)
    data = load_task_data(config, tokenizer, data_dir, strict, splits)
    # the heads' initialisation does not depend on how much data was read
    init_seed = config.seed if config.init_seed < 0 else config.init_seed
    seed_everything(init_seed)
    model = build_model(config, model_dir).to(device)
    if init_seed != config.seed:  # what training draws (dropout, sampling) still follows the run's seed
        seed_everything(config.seed)
    return Experiment(config, device, resolve_precision(config.train.precision, device), tokenizer, model,
                      model_dir, data)


# The fused AdamW saves ~2.5 ms per million parameters per step and costs ~20 s to compile: below this many
# trainable parameters (tiny test models, heads only) the compile would not pay back within a run.
FUSED_ADAMW_MIN_PARAMS = 5_000_000


def build_optimizer(config: RunConfig, model: MultitaskModel, lr: float | None = None,
                    head_lr: float | None = None,
                    encoder_parts: list[tuple[nn.Module, float]] | None = None) -> AdamW:
    """Weight decay on matrices only; the encoder at `lr` (train.lr), or each of `encoder_parts` at lr times its
    multiplier; the heads and common layers at `head_lr` (train.head_lr, else lr). Parameters that do not train are
    left out."""
    train = config.train
    lr = lr or train.lr
    head_lr = head_lr or train.head_lr or lr
    groups = [group for part, scale in encoder_parts or [(model.encoder, 1.0)]
              for group in decay_groups(part, train.weight_decay, lr=lr * scale)]
    groups += decay_groups(model.task_layers, train.weight_decay, lr=lr)  # the tasks' own top layers: encoder layers
    groups += decay_groups(nn.ModuleList([model.common, model.heads]), train.weight_decay, lr=head_lr)
    trainable = sum(p.numel() for g in groups for p in g["params"])
    fused = train.fused_adamw == "on" or (train.fused_adamw == "auto" and trainable >= FUSED_ADAMW_MIN_PARAMS)
    return AdamW(groups, lr=lr, betas=tuple(train.betas), eps=train.eps, fused=fused)
