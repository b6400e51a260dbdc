"""Build everything a run needs from its config: device, tokenizer, model, tokenized data, optimizer."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from minbert.data.batching import ExtraSource, TaskData
from minbert.data.extra import EXTRA_FORMATS, ExtraContext
from minbert.data.files import Example, LoadedFile
from minbert.data.spec import resolve_data_dir, resolve_spec
from minbert.device import resolve_device, resolve_precision
from minbert.errors import ConfigError, DataError
from minbert.evaluation.predict import Inference
from minbert.model.bert import BertModel
from minbert.model_dir import resolve_model_dir
from minbert.optim import AdamW, decay_groups
from minbert.tasks.config import extra_context
from minbert.tasks.kinds import TaskKind, kind_of, refuse
from minbert.tasks.model import MultitaskModel, check_max_length
from minbert.tokenizer import Tokenizer
from minbert.training.config import ExtraDataConfig, RunConfig
from minbert.training.distributed import World

log = logging.getLogger("minbert")
SPLITS = ("train", "dev", "test")


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


def subsample(examples: list[Example], limit: int, seed: int) -> list[Example]:
    if not limit or len(examples) <= limit:
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=limit, replace=False))
    return [examples[i] for i in keep]


def carve_tune_split(examples: list[Example], share: float, seed: int,
                     strata_of: Callable[[np.ndarray], np.ndarray]) -> tuple[list[Example], list[Example]]:
    """(rest, held out): `share` of the examples held out, drawn evenly from each group of `strata_of(labels)` (a
    task kind's `strata`: per class, or per tenth of the label range), so the held-out part has the file's label
    distribution. Both keep the file's order."""
    rng = np.random.default_rng([seed, len(examples)])
    strata = strata_of(np.array([e.label for e in examples], dtype=float))
    held = []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        held.extend(rng.permutation(members)[: round(share * len(members))])
    held_set = set(int(i) for i in held)
    return ([e for i, e in enumerate(examples) if i not in held_set],
            [e for i, e in enumerate(examples) if i in held_set])


def load_extra(directory: Path, extra: ExtraDataConfig, context: ExtraContext, seed: int,
               cap: int = 0) -> list[Example]:
    """Extra training examples in the extra table's format (minbert.data.extra), optionally balanced per class and
    capped (at max_examples, and at `cap`: train.max_train_examples, so that a quick look stays quick)."""
    path = Path(extra.file) if Path(extra.file).is_absolute() else directory / extra.file
    examples = EXTRA_FORMATS[extra.format.name].load(path, extra.format.options, context)
    rng = np.random.default_rng(seed)
    if extra.class_balanced:
        by_class: dict = {}
        for i, example in enumerate(examples):
            by_class.setdefault(example.label, []).append(i)
        smallest = min(len(v) for v in by_class.values())
        keep = sorted(i for label in sorted(by_class)
                      for i in rng.choice(by_class[label], smallest, replace=False))
        examples = [examples[i] for i in keep]
    examples = subsample(examples, min((n for n in (extra.max_examples, cap) if n), default=0), seed)
    log.info("%s: %d extra training examples%s", path.name, len(examples),
             f" ({extra.share:.0%} of each epoch's examples drawn from them)" if extra.share else "")
    return examples


def check_enough_rows(path: Path, split: str, examples: list[Example], kind: TaskKind, skipped: int) -> None:
    """Refuse, before any training, a train or dev file with too few rows to train on or to score (a header-only
    dev file would otherwise fail after a whole epoch)."""
    if split == "test":
        return
    note = f" ({skipped} skipped as malformed)" if skipped else ""
    if not examples:
        what = "train on" if split == "train" else "evaluate on"
        raise DataError(f"{path}: no rows to {what}{note}")
    problem = kind.dev_problem(examples) if split == "dev" else None
    if problem:
        count = f"{len(examples)} row{'s' if len(examples) > 1 else ''}"
        raise DataError(f"{path}: {count}; {problem}{note}")


DEV_SHARE_SEED = 0  # a spec's dev_share holds out the same rows whatever the run's seed: runs stay comparable
# train.max_eval_examples samples dev and test with this seed, not the run's: every run and every fork of a config
# scores the same rows. It is the default seed, so the default-seed runs keep the sample they always drew.
EVAL_SAMPLE_SEED = 11711


def read_split(config: RunConfig, task: str, split: str, directory: Path, strict: bool = False) -> LoadedFile | None:
    """A task's rows of one split as its spec and config say (None: no such file, or no test file): its file, or
    for a spec with `dev_share` and no dev file the held-out share of the train file (the rest is train)."""
    kind = kind_of(task, config.tasks[task])
    share = kind.spec.dev_share if not task_file(config, task, "dev") else 0.0
    file_split = "train" if share and split != "test" else split
    name = task_file(config, task, file_split)
    if not name:
        return None
    path = directory / name
    if not path.exists():
        if split == "test":
            return None
        raise ConfigError(f"tasks.{task}.{split}: {path} does not exist")
    loaded = kind.spec.read(path, labelled=split != "test", strict=strict, what=f"tasks.{task}.{file_split}",
                            tags=kind.spec.tag_labels)
    if share and split != "test":
        rest, held = carve_tune_split(loaded.examples, share, DEV_SHARE_SEED, kind.strata)
        loaded = dataclasses.replace(loaded, examples=held if split == "dev" else rest)
        if split == "dev":
            log.info("%s: %d rows of %s held out as dev (dev_share %.0f%%)", task, len(held), path.name, 100 * share)
    return loaded


def tune_split_rows(config: RunConfig, task: str, directory: Path) -> list[Example]:
    """The rows of a task's training file that a run with `train.tune_split` held out (never trained on), exactly
    as its training carved them."""
    loaded = read_split(config, task, "train", directory)
    _, held = carve_tune_split(loaded.examples, config.train.tune_split, config.train.tune_split_seed,
                               kind_of(task, config.tasks[task]).strata)
    return held


def load_task_data(config: RunConfig, tokenizer: Tokenizer, data_dir: str | None, strict: bool = False,
                   splits: tuple[str, ...] = SPLITS) -> dict[str, dict[str, TaskData]]:
    directory = resolve_data_dir(data_dir or config.data_dir or None)
    data: dict[str, dict[str, TaskData]] = {}
    tuning = config.train.tune_split > 0
    if tuning:  # evaluation on a share of the training files: dev is not read, test not predicted
        splits = tuple(s for s in splits if s != "test")
    for task, task_config in config.tasks.items():
        kind = kind_of(task, task_config)
        if tuning:
            refuse(kind, "train.tune_split")
        data[task] = {}
        held_out: list[Example] = []  # the tune split, carved from the training file
        for split in splits:
            if tuning and split == "dev":  # the tune split stands in for dev, which is not read
                path = directory / task_file(config, task, "train")
                loaded = LoadedFile(path, held_out)
            else:
                loaded = read_split(config, task, split, directory, strict)
                if loaded is None:
                    if split == "test" and task_file(config, task, "test"):
                        log.info("%s: no test file %s; test predictions skipped", task,
                                 directory / task_file(config, task, "test"))
                    continue
                path = loaded.path
            if split == "train" and not kind.num_outputs and (tags := kind.spec.train_tags(loaded)):
                # a tagging spec's label set, read from its train file, is kept in the spec: the run's config.toml
                # records it (evaluate, predict and serve read no train file), and dev and test are checked on it
                kind.spec.format.options.labels = list(tags)
                kind = kind_of(task, task_config)
            if tuning and split == "train":
                rest, held_out = carve_tune_split(loaded.examples, config.train.tune_split,
                                                  config.train.tune_split_seed, kind.strata)
                log.info("%s: %d training examples held out as the tune split (%.0f%%); dev is not used", task,
                         len(held_out), 100 * config.train.tune_split)
                loaded = dataclasses.replace(loaded, examples=rest)
            limit = {"train": config.train.max_train_examples}.get(split, config.train.max_eval_examples)
            if split == "train" and config.train.train_fraction < 1:  # an ablation budget: a fixed share
                share = max(1, round(config.train.train_fraction * len(loaded.examples)))
                limit = min(limit, share) if limit else share
            examples = subsample(loaded.examples, limit, config.seed if split == "train" else EVAL_SAMPLE_SEED)
            check_enough_rows(path, split, examples, kind, len(loaded.skipped))
            sources = []
            if split == "train":
                base, held_sentences = examples, frozenset(e.texts[0] for e in held_out)
                for i, extra in enumerate(task_config.extra):
                    context = extra_context(f"tasks.{task}.extra[{i}]", task, task_config, strict=strict,
                                            train_examples=tuple(base), held_out=held_sentences)
                    added = load_extra(directory, extra, context, config.seed, config.train.max_train_examples)
                    sources.append(ExtraSource(extra.file, len(examples), len(examples) + len(added), extra.share))
                    examples = examples + added
            data[task][split] = kind.task_data(examples, tokenizer, config.model.max_length,
                                               siamese=kind.is_pair and task_config.pair_encoding == "siamese",
                                               sources=sources, both_orders=task_config.predict_order == "both",
                                               random_order=split == "train" and task_config.train_order == "random")
        missing = [split for split in ("train", "dev") if split in splits and split not in data[task]]
        if missing:
            raise ConfigError(f"tasks.{task}: no {missing[0]} file (train and dev files are required)")
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
