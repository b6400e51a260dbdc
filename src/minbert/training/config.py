"""The run configuration: a TOML file plus `key=value` overrides, checked against this schema before any work.

A generic reader (minbert.options): unknown keys are an error naming the nearest valid key, values are type- and
range-checked by their fields' declarations, and a technique chosen by name (a sampler, a training technique, a
task's regularizers, pooling, head and loss) is built from its own options table and checked by its own `check`.
Keys of older configs (flat technique options such as `train.alpha` or `model.pal_size`) are moved to their
tables through `ALIASES`, with one warning per key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from minbert.data.extra import EXTRA_FORMATS, FLAT_OPTIONS
from minbert.device import TRAINING_PRECISIONS
from minbert.errors import ConfigError
from minbert.names import check_name
from minbert.options import Chosen, build, option, to_table
from minbert.outputs import check_input_file
from minbert.tasks.config import (
    ExtraDataConfig,
    ModelConfig,
    TaskConfig,
    TaskContext,
    check_task,
    check_task_layers,
    check_task_names,
)
from minbert.training.distillation import Distillation
from minbert.training.samplers import SAMPLERS, parse_balancing
from minbert.training.techniques import TECHNIQUES
from minbert.training.tracking import TRACKERS

__all__ = ["ExtraDataConfig", "ModelConfig", "RunConfig", "StageConfig", "TaskConfig", "TrainConfig",
           "load_config", "parse_override", "teachers_of"]
log = logging.getLogger("minbert")


@dataclass
class TrainConfig:
    epochs: int = option(10, low=0, low_open=True)
    batch_size: int = option(8, low=0, low_open=True)
    lr: float = option(1e-5, low=0, high=1)  # above 1 AdamW's steps are larger than the weights: a typo
    head_lr: float = option(0.0, low=0, high=1)  # learning rate of the task heads and common layers; 0 = lr
    weight_decay: float = option(0.0, low=0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = option(1e-6, low=0, low_open=True)
    warmup_ratio: float = option(0.0, low=0, high=1)  # fraction of all steps with a linear warm-up
    decay: str = option("constant", choices=("constant", "linear", "exponential"))  # linear: to 0 at the end
    gamma: float = 0.9  # exponential decay: the factor per epoch
    grad_clip: float = option(0.0, low=0)  # max gradient norm; 0 = off
    precision: str = option("auto", choices=TRAINING_PRECISIONS)  # auto: bf16 where the hardware has it
    # how the tasks' batches become steps: a name, or [train.sampler] name = "...", options (minbert.training.samplers)
    sampler: Chosen = option(Chosen("sequential"), registry=SAMPLERS)
    balancing: str = "full"  # full | trimmed | padded | ratios such as "1:2:1" (in task order)
    # [train.techniques.NAME] tables: pcgrad, bregman, layerwise_lr_decay (minbert.training.techniques)
    techniques: dict[str, Any] = option({}, registry=TECHNIQUES, many=True)
    # [train.distillation] teacher (a run or ensemble), weight, annealing, temperature (training/distillation.py)
    distillation: Distillation = option(Distillation())
    select_best_by: str = option("overall", choices=("overall", "two_of_three"))  # two_of_three: improves 2+ tasks
    checkpoint_every: int = option(0, low=0)  # also checkpoint every N optimizer steps (0: at epoch ends only)
    keep_checkpoints: int = option(2, low=0)  # the newest N resumable checkpoints are kept
    # on glibc's malloc: hand freed memory back to the system every N steps and after each evaluation (0: never)
    malloc_trim_every: int = option(20, low=0)
    # the same under mimalloc (mi_collect), off: mimalloc purges freed pages itself (minbert/allocator.py)
    mimalloc_collect_every: int = option(0, low=0)
    on_nan: str = option("stop", choices=("stop", "skip"))  # stop: naming step, task, ids; skip: drop, count
    # steps between two reads of the training figures from the device (losses, the non-finite check): a step itself
    # never waits on the host; epoch ends and checkpoints read them too (minbert.training.loop.Trainer.read_figures)
    log_every: int = option(50, low=1)
    fused_adamw: str = option("auto", choices=("auto", "on", "off"))  # auto: on when 5M+ parameters train
    compile: bool = False  # torch.compile the encoder (dynamic shapes); pays a compile time up front
    bucketing: bool = True  # draw batches from length buckets (less padding), then shuffle the batches
    # > 0: each training batch holds at most this many tokens (rows x padded width, widths rounded up to a multiple
    # of 8) instead of batch_size examples, one bucket width per batch, so shapes repeat (minbert.data.batching)
    max_tokens_per_batch: int = option(0, low=0)
    eval_batch_size: int = option(64, low=0, low_open=True)
    cache_frozen: bool = True  # compute the frozen bottom's outputs once and reuse them in later epochs
    cache_budget_mb: int = option(4096, low=0)  # in memory up to this; a memory-mapped file beyond it
    cache_dtype: str = option("bfloat16", choices=("bfloat16", "float32"))  # bf16 halves the cache's bytes
    train_fraction: float = option(1.0, low=0, high=1, low_open=True)  # a fixed random share of each task's data
    max_train_examples: int = option(0, low=0)  # 0 = all; else a fixed random subsample per task (quick looks)
    max_eval_examples: int = option(0, low=0)
    # > 0: hold out this share of each training file (seeded by tune_split_seed, stratified by label) and evaluate
    # on it instead of dev, which is then not read at all: what a tuning study selects on
    tune_split: float = option(0.0, low=0, high=1, high_open=True)
    tune_split_seed: int = option(0, low=0)
    stage_epoch_limit: int = option(0, low=0)  # > 0: every stage runs at most this many epochs (--quick sets 1)
    # at the end, figures/ (PNG) and report.html besides the numbers and predictions; false saves about a second a
    # run in sweeps of small runs (later: `minbert report RUN`, `minbert evaluate --run RUN --write-outputs`)
    report: bool = True
    # where the run's figures also go: tensorboard, mlflow, wandb, each a name or a table with its options
    # ({ name = "mlflow", tracking_uri = "...", experiment = "..." }; minbert.training.tracking)
    tracking: list[Chosen] = option([Chosen("tensorboard")], registry=TRACKERS)


@dataclass
class StageConfig:
    """One stage of a staged run; each starts from the best checkpoint so far, with a fresh optimizer."""

    name: str = ""
    epochs: int = option(1, low=0, low_open=True)
    tasks: list[str] = field(default_factory=list)  # the tasks trained in this stage; [] = all
    lr: float = option(0.0, low=0, high=1)  # 0 = train.lr
    head_lr: float = option(0.0, low=0, high=1)  # 0 = train.head_lr
    train_encoder: bool = True  # False: only the stage's heads train
    # False: the shared encoder stays as it is and only the stage's tasks' own top layers (model.task_layers) and
    # heads train, so the other tasks' predictions cannot change in this stage
    train_shared: bool = True
    # all | base (each task's own train file) | extra (only its [[tasks.X.extra]] data)
    train_data: str = option("all", choices=("all", "base", "extra"))


SEED_RANGE = (0, 2**32 - 1)


@dataclass
class RunConfig:
    name: str = "run"  # run directory name under output_dir (one path component); a config file's default: its stem
    seed: int = option(11711, low=SEED_RANGE[0], high=SEED_RANGE[1])  # numpy's range
    # the heads' random initialisation (-1: `seed`); runs that share it and differ in `seed` (data order, dropout)
    # start from one point, which a weight soup needs
    init_seed: int = option(-1, low=-1, high=SEED_RANGE[1])
    data_dir: str = ""  # "" = --data-dir, then $MINBERT_DATA, then ./data, then ../shared/data
    output_dir: str = "runs"
    device: str = option("auto", choices=("auto", "cpu", "cuda"))
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
        return to_table(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


def teachers_of(config: RunConfig) -> dict[str, str]:
    """{task: teacher run or ensemble directory} for the tasks that have one (minbert.training.distillation)."""
    default = config.train.distillation.teacher
    return {task: t.teacher or default for task, t in config.tasks.items() if t.teacher or default}


# What changes only how a run trains, not what its checkpoint computes. Every other key shapes the model (the tasks
# and their data sets, pooling, head, loss, pair encoding, model.max_length, PAL, common layers, ...): a run's
# prediction is only its own while these match what it was trained with (`model_keys`).
TRAINING_ONLY = ("name", "output_dir", "data_dir", "seed", "init_seed", "device", "train", "stages", "model.path",
                 "model.revision", "model.freeze",
                 "model.frozen_layers", "model.trainable_layers", "model.hidden_dropout", "model.attention_dropout",
                 "model.freeze_word_embeddings", "model.common_dropout", "tasks.*.train", "tasks.*.dev",
                 "tasks.*.test", "tasks.*.data.train", "tasks.*.data.dev", "tasks.*.data.test",
                 "tasks.*.data.metrics", "tasks.*.data.prediction_file", "tasks.*.data.prediction_column",
                 "tasks.*.data.class_names", "tasks.*.dropout", "tasks.*.batch_size", "tasks.*.loss_weight",
                 "tasks.*.helper",
                 "tasks.*.extra", "tasks.*.teacher", "tasks.*.regularizers")


def model_keys(config: RunConfig) -> dict[str, Any]:
    """{dotted key: value} of every key that shapes the trained model (all but TRAINING_ONLY)."""
    keys: dict[str, Any] = {}

    def walk(value: Any, path: list[str]) -> None:
        generic = ".".join("*" if len(path) > 1 and path[0] == "tasks" and i == 1 else part
                           for i, part in enumerate(path))
        if any(generic == k or generic.startswith(k + ".") for k in TRAINING_ONLY):
            return
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, [*path, key])
        else:
            keys[".".join(path)] = value

    walk(config.to_dict(), [])
    return keys


def model_digest(keys: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_model_keys(recorded: dict[str, Any], config: RunConfig) -> list[str]:
    """'key: value (trained with other)' for each model-shaping key that differs from what was recorded; keys
    the record lacks (added to minbert after the run) are not compared."""
    now = model_keys(config)
    tasks_then = {k.split(".")[1] for k in recorded if k.startswith("tasks.")}
    tasks_now = {k.split(".")[1] for k in now if k.startswith("tasks.")}
    changes = [f"tasks: {', '.join(sorted(tasks_now))} (trained with {', '.join(sorted(tasks_then))})"
               ] if tasks_then != tasks_now else []
    return changes + [f"{key} = {now.get(key, '(absent)')!r} (trained with {value!r})"
                      for key, value in recorded.items() if key in now and now[key] != value]


TRAINED_WITH = "trained-with.json"  # the model-shaping keys of a run's config, as it was trained


def trained_with(config: RunConfig) -> str:
    keys = model_keys(config)
    return json.dumps({"digest": model_digest(keys), "keys": keys}, indent=2) + "\n"


def check_trained_with(run_dir: Path, config: RunConfig) -> None:
    """Refuse a run whose config.toml was edited after training in a key that shapes the model (pooling, head,
    max_length, ...): its checkpoint would compute something else than what it learnt. Runs made before minbert
    recorded the keys are not checked."""
    record = run_dir / TRAINED_WITH
    if not record.is_file():
        return
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))["keys"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{record}: unreadable ({exc})") from None
    changes = changed_model_keys(recorded, config)
    if changes:
        raise ConfigError(f"{run_dir / 'config.toml'} no longer matches the config the run was trained with "
                          f"({record}): {'; '.join(changes)}. Restore those values: the checkpoint was trained "
                          "with them")


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
        if isinstance(node.get(part), str):  # a unit chosen by name takes options: "x" is {name = "x"}
            node[part] = {"name": node[part]}
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is not a table")
    node[path[-1]] = value


# Keys of earlier configs (and of run directories written by them), moved to the tables of their techniques.
# old key -> new key; a value the old schema read as "off" drops the table (see migrate).
ALIASES = {
    "train.update": "train.sampler.update",
    "train.alpha": "train.sampler.alpha",
    "train.steps_per_epoch": "train.sampler.steps_per_epoch",
    "train.gradient_surgery": "train.techniques.pcgrad",
    "train.bregman_weight": "train.techniques.bregman.weight",
    "train.bregman_momentum": "train.techniques.bregman.momentum",
    "train.teacher": "train.distillation.teacher",
    "train.teacher_weight": "train.distillation.weight",
    "train.teacher_annealing": "train.distillation.annealing",
    "train.teacher_temperature": "train.distillation.temperature",
    "model.pal_size": "model.pal.size",
    "model.pal_heads": "model.pal.heads",
    "model.pal_shared": "model.pal.shared",
    "tasks.*.fgsm_epsilon": "tasks.*.regularizers.fgsm.epsilon",
    "tasks.*.mnrl_weight": "tasks.*.regularizers.mnrl.weight",
    "tasks.*.mnrl_scale": "tasks.*.regularizers.mnrl.scale",
    "tasks.*.smart_weight": "tasks.*.regularizers.smart.weight",
    "tasks.*.smart_noise": "tasks.*.regularizers.smart.noise",
    "tasks.*.smart_step": "tasks.*.regularizers.smart.step",
}
_warned: set[str] = set()


def _warn_once(old: str, message: str) -> None:
    if old not in _warned:
        _warned.add(old)
        log.warning("config: %s", message)


HEAD_OPTIONS = ("hidden_layers", "hidden_size")  # once task keys, now the mlp head's own options


def move_head_options(name: str, task: dict, source: str) -> None:
    """`tasks.X.hidden_layers` / `hidden_size` -> the mlp head's table (0, the old default, is the mlp's least: 1
    layer). On any other head they had no effect: zero is dropped, anything else is an error, not ignored."""
    flat = {key: task.pop(key) for key in HEAD_OPTIONS if key in task}
    head = task.get("head", "linear")
    head_name = head.get("name") if isinstance(head, dict) else head
    if head_name == "mlp":
        table = dict(head) if isinstance(head, dict) else {"name": "mlp"}
        for key, value in flat.items():
            if value:
                _warn_once(key, f"{source}: tasks.{name}.{key} is now an option of the mlp head: "
                           f"head = {{ name = \"mlp\", {key} = {value} }} (read as such)")
                table.setdefault(key, value)
        task["head"] = table if len(table) > 1 or isinstance(head, dict) else head
        return
    for key, value in flat.items():
        if value:
            raise ConfigError(f"{source}: tasks.{name}.{key} = {value!r} has no effect on head {head_name!r}: only "
                              f"an mlp head has hidden layers (head = {{ name = \"mlp\", {key} = {value!r} }})")


def move_extra_options(name: str, task: dict, source: str) -> None:
    """Flat format keys of `[[tasks.X.extra]]` (min_tokens, label_column, ...) -> the format's own table. A key of
    the other format had no effect: its default value (what old run directories record) is dropped, anything else
    is an error."""
    for i, extra in enumerate(task.get("extra") or []):
        if not isinstance(extra, dict):
            continue
        fmt = extra.get("format", "tsv")
        fmt_name = fmt.get("name") if isinstance(fmt, dict) else fmt
        if fmt_name not in EXTRA_FORMATS:
            continue  # the format's own check names the bad value
        table = dict(fmt) if isinstance(fmt, dict) else {"name": fmt_name}
        moved = False
        for format_name, keys in FLAT_OPTIONS.items():
            defaults = EXTRA_FORMATS.options_of(format_name)()
            for key in keys:
                if key not in extra:
                    continue
                value = extra.pop(key)
                where = f"tasks.{name}.extra[{i}].{key}"
                if format_name == fmt_name:
                    _warn_once(f"extra.{key}", f"{source}: {where} is now an option of its format: format = "
                               f"{{ name = \"{fmt_name}\", {key} = ... }} (read as such)")
                    table.setdefault(key, value)
                    moved = True
                elif value != to_table(getattr(defaults, key)):
                    raise ConfigError(f"{source}: {where} = {value!r} has no effect on format {fmt_name!r} (it is an "
                                      f"option of format {format_name!r})")
        if moved or isinstance(fmt, dict):
            extra["format"] = table


def migrate(values: dict, source: str = "config") -> dict:
    """Move the keys of `ALIASES` to their tables (in place), warning once per key. An option of a unit the config
    does not use (`alpha` with a round-robin sampler, `mnrl_weight` without mnrl) had no effect and is dropped."""
    train, model = values.get("train", {}), values.get("model", {})
    tasks = values.get("tasks", {})
    if isinstance(train, dict) and isinstance(train.get("sampler"), str):
        train["sampler"] = {"name": train["sampler"]}
    sampler = train.get("sampler", {"name": "sequential"}) if isinstance(train, dict) else {}
    for name, task in tasks.items():  # first, so that the flat regularizer options below find their tables
        if isinstance(task, dict) and isinstance(task.get("regularizers"), list):
            _warn_once("regularizers", f"{source}: tasks.{name}.regularizers is now a table per regularizer "
                       f"([tasks.{name}.regularizers.NAME]; read as such)")
            task["regularizers"] = {n: {} for n in task["regularizers"]}
    for name, task in tasks.items():
        if isinstance(task, dict):
            move_head_options(name, task, source)
            move_extra_options(name, task, source)
    bregman_aliased = False
    for old, new in ALIASES.items():
        section, key = old.split(".", 1)
        if section == "tasks":
            key = key.split(".", 1)[1]
            tables = [(f"tasks.{n}", t) for n, t in tasks.items() if isinstance(t, dict)]
        else:
            tables = [(section, {"train": train, "model": model}[section])]
        for prefix, table in tables:
            if not isinstance(table, dict) or key not in table:
                continue
            value = table.pop(key)
            old_key, new_key = f"{prefix}.{key}", new.replace("tasks.*", prefix)
            _warn_once(old, f"{source}: {old_key} is now {new_key} (read as such; write the new key)")
            *parents, leaf = new_key.split(".")[len(prefix.split(".")):]
            bregman_aliased |= new_key.startswith("train.techniques.bregman")
            if new_key == "train.techniques.pcgrad":
                if value != "none":
                    train.setdefault("techniques", {})["pcgrad"] = {}
                continue
            if parents[0] == "sampler":  # only the chosen sampler's own options
                name = sampler.get("name", "sequential")
                if name in SAMPLERS and leaf in {f.name for f in dataclasses.fields(SAMPLERS.options_of(name))}:
                    sampler[leaf] = value
                    train["sampler"] = sampler
                continue
            if parents[0] == "regularizers":  # only the regularizers the task uses
                chosen = table.get("regularizers", {})
                if parents[1] in chosen:
                    chosen[parents[1]][leaf] = value
                continue
            node = table
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    bregman = train.get("techniques", {}).get("bregman") if isinstance(train, dict) else None
    if bregman_aliased and bregman is not None and not bregman.get("weight"):  # the old weight 0 (default) was off
        del train["techniques"]["bregman"]
    return values


def read_toml(path: str | Path, what: str = "config file") -> dict:
    path = check_input_file(path, what)  # a FIFO would block the read, a directory fail it with a traceback
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def default_config_path() -> Path:
    """configs/multitask.toml here, else in the minbert checkout this package was installed from: the default job."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / "configs" / "multitask.toml").exists():
            return root / "configs" / "multitask.toml"
    raise ConfigError("no --config given and no configs/multitask.toml found here or in the minbert checkout")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a TOML file (or start from nothing), apply `key=value` overrides, check everything."""
    values: dict = {}
    if path is not None:
        values = read_toml(path)
        values.setdefault("name", Path(path).stem)
    migrate(values, str(path) if path is not None else "config")
    for override in overrides:
        merge(values, *parse_override(override))
    migrate(values, "override")
    config = build(RunConfig, values)
    validate(config)
    return config


def check_run_name(name: str, key: str = "name") -> None:
    """A run name is one safe path component (minbert.names): the run directory is output_dir/name and nothing
    else."""
    check_name(name, key)


def check_token_budget(config: RunConfig) -> None:
    """A token budget must hold one sequence of model.max_length, and sizes every task's batches."""
    budget = config.train.max_tokens_per_batch
    if not budget:
        return
    if budget < config.model.max_length:
        raise ConfigError(f"train.max_tokens_per_batch = {budget} is below model.max_length = "
                          f"{config.model.max_length}: a batch must hold one sequence of the longest length (raise it, "
                          "or 0 for batches of train.batch_size examples)")
    for name, task in config.tasks.items():
        if task.batch_size:
            raise ConfigError(f"tasks.{name}.batch_size = {task.batch_size} with train.max_tokens_per_batch = "
                              f"{budget}: a token budget sizes every task's batches; drop one of the two")


def validate(config: RunConfig) -> None:
    """What a single field cannot say: combinations, the stages' tasks, each chosen unit's own checks."""
    check_run_name(config.name)
    for name in config.tasks:  # a task's name names its prediction files, figures, caches and model modules
        check_name(name, "tasks.NAME")
        if "." in name:  # torch refuses a module name with a dot, and `tasks.a.b.key=...` could not name it
            raise ConfigError(f"tasks.NAME = {name!r}: a task name has no '.' (it is a key of dotted overrides, "
                              "tasks.NAME.key, and of the model's modules)")
    betas = config.train.betas
    if len(betas) != 2:
        raise ConfigError(f"train.betas = {betas}: expected two numbers (beta1, beta2)")
    if not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"train.betas = {betas}: each must be in [0, 1)")
    if config.train.max_eval_examples == 1:
        raise ConfigError("train.max_eval_examples = 1 must be 0 (all) or at least 2 (Pearson r needs two values)")
    if not config.tasks:
        raise ConfigError("no tasks: add at least one [tasks.NAME] table with a `data` format")
    parse_balancing(config.train.balancing, len(config.tasks))
    check_token_budget(config)
    for name, options in config.train.techniques.items():
        TECHNIQUES.check(name, options, TaskContext(config, f"train.techniques.{name}"))
    check_task_layers(config.model, config.tasks)  # here too, before any data loads
    for i, stage in enumerate(config.stages):
        where = f"stages[{i}]"
        check_task_names(stage.tasks, config.tasks, f"{where}.tasks")
        if stage.train_data == "extra":
            bare = [t for t in (stage.tasks or config.tasks) if not config.tasks[t].extra]
            if bare:
                raise ConfigError(f"{where}.train_data = 'extra' but task {bare[0]} has no extra data")
        if not stage.train_shared:
            owners = config.model.task_layer_tasks or (list(config.tasks) if config.model.task_layers else [])
            without = [t for t in (stage.tasks or config.tasks) if t not in owners]
            if without:
                raise ConfigError(f"{where}.train_shared = false: task {without[0]} has no top layers of its own "
                                  "(model.task_layers, model.task_layer_tasks), so only its head would train; "
                                  "for that, say train_encoder = false")
    for name, task in config.tasks.items():
        check_task(name, task, config)
