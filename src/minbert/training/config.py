"""The run configuration: a TOML file plus `key=value` overrides, checked against this schema before any work.

Unknown keys are an error naming the nearest valid key; values are type-checked (an int is accepted where a float
is expected); names of techniques (poolings, heads, losses, ...) are checked against their registries.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from minbert.device import TRAINING_PRECISIONS
from minbert.errors import ConfigError


@dataclass
class ModelConfig:
    path: str = ""  # HF-layout directory; "" = the embedded all-MiniLM-L6-v2
    freeze: str = "none"  # "none" | "encoder" (the starter's "pretrain" mode: only the heads train)
    frozen_layers: int = 0  # freeze the embeddings and this many bottom layers (0: none)
    trainable_layers: int = -1  # or: only the top k layers (+ pooler) train; -1 = use frozen_layers
    max_length: int = 128  # tokens per sequence (a pair counts as one sequence when cross-encoded)
    hidden_dropout: float = 0.1  # the encoder's dropout (BERT's hidden_dropout_prob)
    attention_dropout: float = 0.1  # dropout on attention weights; 0 lets SDPA use its fused kernel (faster)
    freeze_word_embeddings: bool = False  # the 30k x H table is half of MiniLM: frozen, AdamW steps are 2x cheaper
    pal_size: int = 0  # projected attention layers per task (Stickland & Murray 2019): projection size; 0 = off
    pal_heads: int = 12
    pal_shared: bool = True  # one encoder/decoder projection pair shared by all layers (else one per layer)
    common_layers: int = 0  # dense + GELU + dropout layers shared by every task, between pooling and heads
    common_dropout: float = 0.1


@dataclass
class ExtraDataConfig:
    """More training examples for a task from another file, mapped onto the task's columns and labels."""

    file: str = ""  # in the data directory, or a path
    format: str = "tsv"  # tsv (columns named below) | sst_trees (every node of SST's PTB trees: a labelled phrase)
    min_tokens: int = 1  # sst_trees: only phrases of at least this many tokens
    include_roots: bool = False  # sst_trees: also the whole-sentence nodes (the training file's own sentences)
    dedup: bool = True  # sst_trees: one example per distinct phrase (majority label; ties dropped and counted)
    share: float = 0.0  # each epoch draws this share of the task's examples afresh from this file; 0 = all of it
    text_columns: list[str] = field(default_factory=list)  # one column, or two for a pair task
    label_column: str = ""
    id_column: str = ""  # "" = rows are named by file and line
    delimiter: str = "\t"
    label_offset: float = 0.0  # label -> (label + offset) * scale, e.g. ratings 1..5 -> 0..4: offset = -1
    label_scale: float = 1.0  # e.g. relatedness 1..5 -> 0..5: offset = -1, scale = 1.25
    max_examples: int = 0  # 0 = all
    class_balanced: bool = False  # classification: sub-sample to the same count per class


@dataclass
class TaskConfig:
    data: str = ""  # the file format: sst | cfimdb | quora | sts
    train: str = ""  # file names in the data directory; "" = the data set's standard file
    dev: str = ""
    test: str = ""
    pooling: str = "cls"  # see minbert.tasks.pooling.POOLINGS
    pair_encoding: str = "cross"  # pair tasks: cross ([CLS] a [SEP] b [SEP]) | siamese (each sentence alone)
    pair_features: list[str] = field(default_factory=lambda: ["u", "v", "abs_diff", "product"])  # siamese
    head: str = "linear"  # see minbert.tasks.heads.HEADS
    hidden_layers: int = 0  # extra hidden layers in an "mlp" head
    hidden_size: int = 0  # width of those layers; 0 = the encoder's hidden size
    dropout: float = 0.3
    loss: str = ""  # "" = the task kind's default
    batch_size: int = 0  # 0 = train.batch_size
    loss_weight: float = 1.0
    extra: list[ExtraDataConfig] = field(default_factory=list)  # [[tasks.X.extra]] tables: more training data
    teacher: str = ""  # distillation: this task's teacher run or ensemble directory; "" = train.teacher
    regularizers: list[str] = field(default_factory=list)  # see minbert.training.regularizers: fgsm, mnrl
    fgsm_epsilon: float = 1e-5  # FGSM: step on the word embeddings
    mnrl_weight: float = 0.5  # multiple negatives ranking loss: weight of the extra term
    mnrl_scale: float = 20.0  # MNRL: cosine similarities are multiplied by this before the softmax
    smart_weight: float = 1.0  # SMART: weight of the smoothness term
    smart_noise: float = 1e-5  # SMART: standard deviation of the initial perturbation
    smart_step: float = 1e-3  # SMART: size of the ascent step (on the max-normalised gradient)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-5
    head_lr: float = 0.0  # learning rate of the task heads and common layers; 0 = lr
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-6
    warmup_ratio: float = 0.0  # fraction of all steps with a linear warm-up
    decay: str = "constant"  # constant | linear (to 0 at the end) | exponential (gamma per epoch)
    gamma: float = 0.9
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    precision: str = "auto"  # fp32 | bf16 | auto (bf16 where the hardware has it)
    sampler: str = "sequential"  # see minbert.training.samplers.SAMPLERS
    update: str = "local"  # round_robin: local (a step per task batch) | global (one step on the summed losses)
    alpha: float = 0.5  # proportional sampling: p_task ~ N_task ** alpha
    balancing: str = "full"  # full | trimmed | padded | ratios such as "1:2:1" (in task order)
    steps_per_epoch: int = 0  # sampling schedules: 0 = as many steps as all tasks' batches
    gradient_surgery: str = "none"  # none | pcgrad (projects conflicting task gradients; needs steps with 2+ tasks)
    bregman_weight: float = 0.0  # SMART's Bregman proximal term: pull towards a slow-moving copy; 0 = off
    bregman_momentum: float = 0.99  # the slow copy's EMA decay per optimizer step
    teacher: str = ""  # distillation from a finished run or ensemble directory (see training/distillation.py)
    teacher_weight: float = 0.5  # the teacher's share of each target, when not annealed
    teacher_annealing: bool = True  # the teacher's share falls from 1 to 0 over each stage (BAM!)
    teacher_temperature: float = 1.0  # SST: the teacher's class distribution p -> p ** (1 / T), renormalised
    select_best_by: str = "overall"  # overall (mean normalised dev metric) | two_of_three (improves 2+ tasks)
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps (0: at epoch ends only)
    keep_checkpoints: int = 2  # the newest N resumable checkpoints are kept
    on_nan: str = "stop"  # stop (naming step, task and example ids) | skip (drop that step, count it)
    fused_adamw: str = "auto"  # on | off | auto (on when 5M+ parameters train: the ~20 s compile then pays back)
    compile: bool = False  # torch.compile the encoder (dynamic shapes); pays a compile time up front
    bucketing: bool = True  # draw batches from length buckets (less padding), then shuffle the batches
    eval_batch_size: int = 64
    cache_frozen: bool = True  # compute the frozen bottom's outputs once and reuse them in later epochs
    cache_budget_mb: int = 4096  # in memory up to this; a memory-mapped file beyond it
    train_fraction: float = 1.0  # train on a fixed random share of each task's examples (ablation budgets)
    max_train_examples: int = 0  # 0 = all; else a fixed random subsample per task (quick looks, tests)
    max_eval_examples: int = 0
    stage_epoch_limit: int = 0  # > 0: every stage runs at most this many epochs (--quick sets 1)


@dataclass
class StageConfig:
    """One stage of a staged run; each starts from the best checkpoint so far, with a fresh optimizer."""

    name: str = ""
    epochs: int = 1
    tasks: list[str] = field(default_factory=list)  # the tasks trained in this stage; [] = all
    lr: float = 0.0  # 0 = train.lr
    head_lr: float = 0.0  # 0 = train.head_lr
    train_encoder: bool = True  # False: only the stage's heads train
    train_data: str = "all"  # all | base (each task's own train file) | extra (only its [[tasks.X.extra]] data)


@dataclass
class RunConfig:
    name: str = "run"  # run directory name under output_dir (one path component); a config file's default: its stem
    seed: int = 11711  # 0 .. 2**32 - 1 (numpy's range)
    data_dir: str = ""  # "" = --data-dir, then $MINBERT_DATA, then ./data, then ../shared/data
    output_dir: str = "runs"
    device: str = "auto"  # auto | cpu | cuda
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    stages: list[StageConfig] = field(default_factory=list)  # [] = one stage: every task, train.epochs

    def run_stages(self) -> list[StageConfig]:
        stages = self.stages or [StageConfig(name="train", epochs=self.train.epochs)]
        if self.train.stage_epoch_limit:  # a first look (--quick): every stage cut to this many epochs
            stages = [dataclasses.replace(s, epochs=min(s.epochs, self.train.stage_epoch_limit)) for s in stages]
        return stages

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


CHOICES = {
    "model.freeze": ("none", "encoder"),
    "train.decay": ("constant", "linear", "exponential"),
    "train.precision": TRAINING_PRECISIONS,
    "train.update": ("local", "global"),
    "train.on_nan": ("stop", "skip"),
    "train.fused_adamw": ("auto", "on", "off"),
    "train.gradient_surgery": ("none", "pcgrad"),
    "train.select_best_by": ("overall", "two_of_three"),
    "device": ("auto", "cpu", "cuda"),
}
POSITIVE = {"train.eps", "model.pal_heads", "train.epochs", "train.batch_size", "train.eval_batch_size",
            "model.max_length"}
NON_NEGATIVE = {"train.lr", "train.head_lr", "train.weight_decay", "train.grad_clip", "train.warmup_ratio",
                "train.max_train_examples", "train.max_eval_examples", "train.stage_epoch_limit",
                "train.steps_per_epoch", "train.alpha",
                "train.cache_budget_mb", "train.checkpoint_every", "train.keep_checkpoints", "train.bregman_weight",
                "model.common_layers", "model.frozen_layers", "model.pal_size",
                "dropout", "batch_size", "loss_weight", "hidden_layers", "hidden_size", "fgsm_epsilon", "mnrl_weight",
                "mnrl_scale", "smart_weight", "smart_noise", "smart_step"}


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"


def _check_type(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)
        if dataclasses.is_dataclass(item):
            return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(kind):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} has the wrong type")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is type(None) and value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, values: dict, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in hints:
            raise ConfigError(f"unknown key {path!r}{_nearest(key, names)}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, path)
        elif typing.get_origin(kind) is dict:
            _, item = typing.get_args(kind)
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a table of named entries")
            kwargs[key] = {name: _build(item, v, f"{path}.{name}") for name, v in value.items()}
        else:
            kwargs[key] = _check_type(value, kind, path)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=2e-5` -> (["train", "lr"], 2e-05). Values are TOML; a bare word is a string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def merge(base: dict, path: list[str], value: Any) -> None:
    node = base
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is not a table")
    node[path[-1]] = value


def read_toml(path: str | Path, what: str = "config file") -> dict:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a TOML file (or start from nothing), apply `key=value` overrides, check everything."""
    values: dict = {}
    if path is not None:
        values = read_toml(path)
        values.setdefault("name", Path(path).stem)
    for override in overrides:
        merge(values, *parse_override(override))
    config = _build(RunConfig, values, "")
    validate(config)
    return config


SEED_RANGE = (0, 2**32 - 1)


def check_run_name(name: str) -> None:
    """A run name is one safe path component: the run directory is output_dir/name and nothing else."""
    problem = None
    if not name.strip():
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is not a directory name"
    elif any(c in name for c in "/\\\0"):
        problem = "holds a path separator (a run name is one directory name; set output_dir for its parent)"
    elif name != name.strip():
        problem = "starts or ends with whitespace"
    if problem:
        raise ConfigError(f"name = {name!r} {problem}")


def non_finite(value: Any, where: str) -> tuple[str, float] | None:
    """The first float anywhere in a config (tables, lists, stages, extra data) that is nan or infinite."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, value)
    if dataclasses.is_dataclass(value):
        items = [(f"{where}.{f.name}" if where else f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    elif isinstance(value, dict):
        items = [(f"{where}.{k}", v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None
    for path, item in items:
        if found := non_finite(item, path):
            return found
    return None


def validate(config: RunConfig) -> None:
    """Impossible values and unknown technique names, one clear message each."""
    from minbert.tasks import registry_names  # late: the registries import torch modules
    from minbert.tasks.heads import HEADS

    if found := non_finite(config, ""):
        raise ConfigError(f"{found[0]} = {found[1]} is not a finite number")
    check_run_name(config.name)
    if not SEED_RANGE[0] <= config.seed <= SEED_RANGE[1]:
        raise ConfigError(f"seed = {config.seed} must be in {SEED_RANGE[0]}..{SEED_RANGE[1]}")
    betas = config.train.betas
    if len(betas) != 2:
        raise ConfigError(f"train.betas = {betas}: expected two numbers (beta1, beta2)")
    if not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"train.betas = {betas}: each must be in [0, 1)")
    if config.train.max_eval_examples == 1:
        raise ConfigError("train.max_eval_examples = 1 must be 0 (all) or at least 2 (Pearson r needs two values)")

    def check(where: str, value: Any) -> None:
        leaf = where.split(".")[-1]
        if where in CHOICES and value not in CHOICES[where]:
            raise ConfigError(f"{where} = {value!r} is not one of {', '.join(CHOICES[where])}")
        if where in POSITIVE and value <= 0:
            raise ConfigError(f"{where} = {value!r} must be > 0")
        if (where in NON_NEGATIVE or leaf in NON_NEGATIVE) and value < 0:
            raise ConfigError(f"{where} = {value!r} must be >= 0")
        if leaf.endswith("dropout") and not 0 <= value < 1:
            raise ConfigError(f"{where} = {value!r} must be in [0, 1)")

    for section in ("model", "train"):
        for f in dataclasses.fields(getattr(config, section)):
            check(f"{section}.{f.name}", getattr(getattr(config, section), f.name))
    check("device", config.device)
    if not config.tasks:
        raise ConfigError("no tasks: add at least one [tasks.NAME] table with a `data` format")
    if not 0 < config.train.train_fraction <= 1:
        raise ConfigError(f"train.train_fraction = {config.train.train_fraction} must be in (0, 1]")
    if not 0 <= config.train.bregman_momentum < 1:
        raise ConfigError(f"train.bregman_momentum = {config.train.bregman_momentum} must be in [0, 1)")
    if not 0 <= config.train.teacher_weight <= 1:
        raise ConfigError(f"train.teacher_weight = {config.train.teacher_weight} must be in [0, 1]")
    if config.train.teacher_temperature <= 0:
        raise ConfigError(f"train.teacher_temperature = {config.train.teacher_temperature} must be > 0")
    if not 0 <= config.train.warmup_ratio <= 1:
        raise ConfigError(f"train.warmup_ratio = {config.train.warmup_ratio} must be in [0, 1]")
    parse_balancing(config.train.balancing, len(config.tasks))
    if config.model.pal_size % config.model.pal_heads:
        raise ConfigError(f"model.pal_size = {config.model.pal_size} must be a multiple of model.pal_heads = "
                          f"{config.model.pal_heads}")
    registries = registry_names()
    if config.train.sampler not in registries["sampler"]:
        raise ConfigError(f"train.sampler = {config.train.sampler!r} is not one of "
                          f"{', '.join(registries['sampler'])}")
    for i, stage in enumerate(config.stages):
        where = f"stages[{i}]"
        if stage.epochs <= 0:
            raise ConfigError(f"{where}.epochs = {stage.epochs} must be > 0")
        if stage.lr < 0 or stage.head_lr < 0:
            raise ConfigError(f"{where}: learning rates must be >= 0")
        if stage.train_data not in ("all", "base", "extra"):
            raise ConfigError(f"{where}.train_data = {stage.train_data!r} is not one of all, base, extra")
        if stage.train_data == "extra":
            bare = [t for t in (stage.tasks or config.tasks) if not config.tasks[t].extra] if all(
                t in config.tasks for t in stage.tasks) else []
            if bare:
                raise ConfigError(f"{where}.train_data = 'extra' but task {bare[0]} has no extra data")
        unknown = [t for t in stage.tasks if t not in config.tasks]
        if unknown:
            raise ConfigError(f"{where}.tasks: {unknown[0]!r} is not a task of this run ({', '.join(config.tasks)})")
    for name, task in config.tasks.items():
        for f in dataclasses.fields(task):
            check(f"tasks.{name}.{f.name}", getattr(task, f.name))
        if not task.data:  # most often a misspelt task name in an override: tasks.stt.pooling=mean
            others = [t for t in config.tasks if t != name and config.tasks[t].data]
            close = difflib.get_close_matches(name, others, n=1, cutoff=0.5)
            hint = f"did you mean tasks.{close[0]}?" if close else f"set tasks.{name}.data to one of " \
                f"{', '.join(registries['data'])}"
            raise ConfigError(f"tasks.{name} has no `data` format; {hint}")
        if task.data not in registries["data"]:
            raise ConfigError(f"tasks.{name}.data = {task.data!r} is not one of {', '.join(registries['data'])}")
        for kind in ("pooling", "head", "loss"):
            value = getattr(task, kind)
            if value and value not in registries[kind]:
                raise ConfigError(f"tasks.{name}.{kind} = {value!r} is not one of {', '.join(registries[kind])}")
        check_task_pieces(name, task)
        perturbing = [r for r in ("fgsm", "smart") if r in task.regularizers]
        model = config.model
        if perturbing and (model.frozen_layers or model.trainable_layers >= 0 or model.freeze == "encoder"):
            raise ConfigError(f"tasks.{name}: {perturbing[0]} perturbs the word embeddings, which frozen "
                              "(cached) layers never see again: use it without frozen layers")
        if model.freeze == "encoder" and not model.common_layers and getattr(HEADS[task.head], "needs_pairs", False):
            raise ConfigError(f"tasks.{name}.head = {task.head!r} has no parameters and model.freeze = 'encoder' "
                              "freezes the rest: nothing would train for this task (use head = 'linear' on the "
                              "pair features, or model.common_layers > 0)")


def check_task_pieces(name: str, task: TaskConfig) -> None:
    """Combinations that cannot work: a cosine head on a cross-encoded pair, a cosine loss on a classifier..."""
    from minbert.tasks.heads import HEADS, PAIR_FEATURES
    from minbert.tasks.kinds import KINDS
    from minbert.tasks.losses import LOSSES

    kind = KINDS[task.data]
    if task.pair_encoding not in ("cross", "siamese"):
        raise ConfigError(f"tasks.{name}.pair_encoding = {task.pair_encoding!r} is not one of cross, siamese")
    siamese = kind.is_pair and task.pair_encoding == "siamese"
    if siamese:
        unknown = [f for f in task.pair_features if f not in PAIR_FEATURES]
        if unknown or not task.pair_features:
            raise ConfigError(f"tasks.{name}.pair_features = {task.pair_features} must be a non-empty list of "
                              f"{', '.join(PAIR_FEATURES)}")
    if getattr(HEADS[task.head], "needs_pairs", False) and not (siamese and not kind.is_classification):
        raise ConfigError(f"tasks.{name}.head = {task.head!r} scores the cosine of two sentence vectors: it needs "
                          "a similarity task with pair_encoding = 'siamese'")
    loss = LOSSES[task.loss or kind.default_loss]
    if getattr(loss, "needs_cosine", False) and not getattr(HEADS[task.head], "needs_pairs", False):
        raise ConfigError(f"tasks.{name}.loss = {task.loss!r} compares a cosine with the label: it needs head = "
                          "'cosine' or 'relu_cosine'")
    from minbert.training.regularizers import REGULARIZERS

    for regularizer in task.regularizers:
        if regularizer not in REGULARIZERS:
            raise ConfigError(f"tasks.{name}.regularizers: {regularizer!r} is not one of {', '.join(REGULARIZERS)}")
    if "mnrl" in task.regularizers and kind.is_pair and not siamese:
        raise ConfigError(f"tasks.{name}: mnrl compares sentence vectors: it needs pair_encoding = 'siamese'")
    for i, extra in enumerate(task.extra):
        where = f"tasks.{name}.extra[{i}]"
        if extra.format not in ("tsv", "sst_trees"):
            raise ConfigError(f"{where}.format = {extra.format!r} is not one of tsv, sst_trees")
        if not 0 <= extra.share < 1:
            raise ConfigError(f"{where}.share = {extra.share} must be in [0, 1) (0: all of it every epoch)")
        if extra.min_tokens < 1:
            raise ConfigError(f"{where}.min_tokens = {extra.min_tokens} must be >= 1")
        if extra.format == "sst_trees":
            if not extra.file:
                raise ConfigError(f"{where}: `file` is required")
            if kind.format.num_classes != 5:
                raise ConfigError(f"{where}: sst_trees hold 5-class sentiment phrases; {task.data} is not SST-5")
            continue
        if not extra.file or not extra.label_column:
            raise ConfigError(f"{where}: `file` and `label_column` are required")
        if len(extra.text_columns) != len(kind.format.text_columns):
            raise ConfigError(f"{where}.text_columns: {task.data} takes {len(kind.format.text_columns)} text "
                              f"column(s), got {extra.text_columns}")
        if extra.class_balanced and not kind.is_classification:
            raise ConfigError(f"{where}.class_balanced: {task.data} is not a classification task")
        if extra.max_examples < 0 or len(extra.delimiter) != 1:
            raise ConfigError(f"{where}: max_examples must be >= 0 and delimiter one character")
    if kind.is_classification and (task.loss or kind.default_loss) not in ("cross_entropy", "bce"):
        raise ConfigError(f"tasks.{name}.loss = {task.loss!r} is a regression loss; {task.data} is classification")
    if not kind.is_classification and (task.loss or kind.default_loss) in ("cross_entropy", "bce"):
        raise ConfigError(f"tasks.{name}.loss = {task.loss!r} is a classification loss; {task.data} is regression")


def parse_balancing(balancing: str, num_tasks: int) -> list[float] | None:
    """None for full / trimmed / padded; a list of per-task ratios for "1:2:1"."""
    if balancing in ("full", "trimmed", "padded"):
        return None
    try:
        ratios = [float(r) for r in balancing.split(":")]
    except ValueError:
        ratios = []
    if len(ratios) != num_tasks or any(r <= 0 for r in ratios):
        raise ConfigError(f"train.balancing = {balancing!r}: use full, trimmed, padded, or {num_tasks} positive "
                          f"ratios such as {':'.join(['1'] * num_tasks)}")
    return ratios
