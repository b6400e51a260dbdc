"""The model's and each task's config tables, with their checks. Techniques chosen by name (poolings, heads, losses,
regularizers) are checked against their registries and by what each declares it needs; no technique is named here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from minbert.data.extra import EXTRA_FORMATS, ExtraContext, ExtraDataConfig
from minbert.data.spec import DataSpec, builtin_specs, resolve_spec
from minbert.errors import ConfigError
from minbert.model.pal import PALOptions
from minbert.options import Chosen, chosen_name, option
from minbert.tasks.heads import HEADS, PAIR_FEATURES
from minbert.tasks.kinds import kind_of
from minbert.tasks.losses import LOSSES
from minbert.tasks.pooling import POOLINGS
from minbert.tasks.regularizers import REGULARIZERS


@dataclass
class ModelConfig:
    # an HF-layout directory, or a Hugging Face Hub name (org/name, cached by huggingface_hub); "" = the embedded
    # all-MiniLM-L6-v2
    path: str = ""
    revision: str = ""  # a Hub model's branch, tag or commit ("" = main); a run records the commit it got
    freeze: str = option("none", choices=("none", "encoder"))  # "encoder": the starter's "pretrain" mode
    frozen_layers: int = option(0, low=0)  # freeze the embeddings and this many bottom layers (0: none)
    trainable_layers: int = -1  # or: only the top k layers (+ pooler) train; -1 = use frozen_layers
    max_length: int = option(128, low=0, low_open=True)  # tokens per sequence (a cross-encoded pair is one)
    hidden_dropout: float = option(0.1, low=0, high=1, high_open=True)  # BERT's hidden_dropout_prob
    attention_dropout: float = option(0.1, low=0, high=1, high_open=True)  # 0 lets SDPA use its fused kernel
    freeze_word_embeddings: bool = False  # the 30k x H table is half of MiniLM: frozen, AdamW steps are 2x cheaper
    pal: PALOptions = option(PALOptions())  # projected attention layers per task ([model.pal] size = 0: off)
    common_layers: int = option(0, low=0)  # dense + GELU + dropout layers shared by every task, before the heads
    common_dropout: float = option(0.1, low=0, high=1, high_open=True)
    # each task's own copy of the encoder's top k layers (initialised from the shared ones); 0: all layers shared
    task_layers: int = option(0, low=0)
    task_layer_tasks: list[str] = field(default_factory=list)  # the tasks given those copies ([]: every task)

    def freezes_layers(self) -> bool:
        """Whether some encoder layers are frozen (and their outputs cached): perturbing embeddings cannot work."""
        return bool(self.frozen_layers) or self.trainable_layers >= 0 or self.freeze == "encoder"


@dataclass
class TaskConfig:
    # a built-in data set (sst | cfimdb | quora | sts) or the task's own spec, a table (minbert.data.spec)
    data: str | DataSpec = ""
    train: str = ""  # file names in the data directory; "" = the data spec's file
    dev: str = ""
    test: str = ""
    pooling: Chosen = option(Chosen("cls"), registry=POOLINGS)  # see minbert.tasks.pooling
    pair_encoding: str = option("cross", choices=("cross", "siamese"))  # cross: [CLS] a [SEP] b [SEP]
    pair_features: list[str] = field(default_factory=lambda: ["u", "v", "abs_diff", "product"])  # siamese
    # cross-encoded pairs of a symmetric data set: which order of the two texts training sees ("random": each
    # example's drawn afresh every epoch), and what predictions use ("both": the mean of both orders' outputs)
    train_order: str = option("given", choices=("given", "random"))
    predict_order: str = option("given", choices=("given", "both"))
    # a name, or a table with the head's options: { name = "mlp", hidden_layers = 2 } (see minbert.tasks.heads)
    head: Chosen = option(Chosen("linear"), registry=HEADS)
    dropout: float = option(0.3, low=0, high=1, high_open=True)
    # a name, or a table with the loss's options: { name = "cosent", scale = 20 }; "" = the data spec's default
    loss: Chosen = option(Chosen(""), registry=LOSSES)
    batch_size: int = option(0, low=0)  # 0 = train.batch_size
    loss_weight: float = option(1.0, low=0)
    # true: a helper task (MT-DNN's auxiliary tasks): it trains and is scored, but never counts in best-epoch
    # selection or the overall score
    helper: bool = False
    extra: list[ExtraDataConfig] = field(default_factory=list)  # [[tasks.X.extra]] tables: more training data
    teacher: str = ""  # distillation: this task's teacher run or ensemble directory; "" = train.teacher
    # [tasks.X.regularizers.NAME] tables, in order (see minbert.tasks.regularizers)
    regularizers: dict[str, Any] = option({}, registry=REGULARIZERS, many=True)


@dataclass
class TaskContext:
    """What a unit's `check` may ask about where it is used."""

    config: Any  # the RunConfig
    where: str  # the dotted path of the unit's table, for messages
    task: TaskConfig | None = None

    @property
    def model(self) -> ModelConfig:
        return self.config.model

    @property
    def is_pair(self) -> bool:
        return resolve_spec(self.task.data, f"{self.where}.data").is_pair

    @property
    def siamese(self) -> bool:
        return self.is_pair and self.task.pair_encoding == "siamese"


def check_task_names(names: list[str], tasks: Any, where: str) -> None:
    """Names in a table that must each be a task of the run (a stage's tasks, the tasks with their own layers)."""
    unknown = [name for name in names if name not in tasks]
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]!r} is not a task of this run ({', '.join(tasks)})")


def check_task_layers(model: ModelConfig, tasks: Any) -> None:
    """model.task_layer_tasks: only with task_layers, and only the run's tasks."""
    if model.task_layer_tasks and not model.task_layers:
        raise ConfigError("model.task_layer_tasks names the tasks given their own top layers, but "
                          "model.task_layers = 0 gives none: set model.task_layers")
    check_task_names(model.task_layer_tasks, tasks, "model.task_layer_tasks")


def check_task(name: str, task: TaskConfig, config: Any) -> None:
    """A task's data format, the pieces' combination (by what each declares it needs), its regularizers' own
    checks and its extra data."""
    where = f"tasks.{name}"
    if not task.data:  # most often a misspelt task name in an override: tasks.stt.pooling=mean
        others = [t for t in config.tasks if t != name and config.tasks[t].data]
        close = difflib.get_close_matches(name, others, n=1, cutoff=0.5)
        hint = (f"did you mean tasks.{close[0]}?" if close else
                f"set {where}.data to one of {', '.join(builtin_specs())}, or to a data spec table")
        raise ConfigError(f"{where} has no `data` format; {hint}")
    kind = kind_of(name, task, f"{where}.data")  # checks the spec
    kind.check_config(task, where)
    kind.check_inputs(config.model.max_length, where)
    context = TaskContext(config, where, task)
    if context.siamese:
        unknown = [f for f in task.pair_features if f not in PAIR_FEATURES]
        if unknown or not task.pair_features:
            raise ConfigError(f"{where}.pair_features = {task.pair_features} must be a non-empty list of "
                              f"{', '.join(PAIR_FEATURES)}")
    for key, value in (("train_order", task.train_order), ("predict_order", task.predict_order)):
        if value == "given":
            continue
        if not kind.spec.symmetric:
            raise ConfigError(f"{where}.{key} = {value!r}: {what_data(name, task)} is not declared symmetric (its "
                              "data spec's `symmetric = true` says the label does not depend on the texts' order)")
        if context.siamese:
            raise ConfigError(f"{where}.{key} = {value!r} is for cross-encoded pairs; with pair_encoding = "
                              "'siamese' each text is encoded alone")
    head = chosen_name(task.head)
    head_needs_pairs = HEADS[head].needs_pairs
    if head_needs_pairs and not (context.siamese and kind.similarity_heads):
        raise ConfigError(f"{where}.head = {head!r} scores the cosine of two sentence vectors: it needs "
                          "a similarity task with pair_encoding = 'siamese'")
    if kind.loss not in LOSSES:
        raise ConfigError(f"{where}.data.loss = {kind.loss!r} is not one of {', '.join(LOSSES)}")
    loss = LOSSES[kind.loss]
    if loss.one_logit and kind.spec.num_classes != 2:
        raise ConfigError(f"{where}.loss = {kind.loss!r} is a one-logit binary loss; {what_data(name, task)} has "
                          f"{kind.spec.num_classes} classes")
    if loss.needs_cosine and not head_needs_pairs:
        raise ConfigError(f"{where}.loss = {kind.loss!r} compares a cosine with the label: it needs a cosine head "
                          f"({', '.join(h for h in HEADS if HEADS[h].needs_pairs)})")
    if not kind.takes_loss(loss):
        what = "a classification" if loss.for_classification else "a regression"  # the loss's own declaration
        raise ConfigError(f"{where}.loss = {kind.loss!r} is {what} loss; {what_data(name, task)} is {kind.described}")
    model = config.model
    if model.freeze == "encoder" and not model.common_layers and head_needs_pairs:
        raise ConfigError(f"{where}.head = {head!r} has no parameters and model.freeze = 'encoder' freezes "
                          "the rest: nothing would train for this task (use head = 'linear' on the pair features, or "
                          "model.common_layers > 0)")
    for regularizer, options in task.regularizers.items():
        REGULARIZERS.check(regularizer, options, TaskContext(config, f"{where}.regularizers", task))
    for i, extra in enumerate(task.extra):
        check_extra(f"{where}.extra[{i}]", extra, name, task)


def what_data(name: str, task: TaskConfig) -> str:
    """A task's data for messages: the built-in's name, or `tasks.NAME's data`."""
    return task.data if isinstance(task.data, str) else f"tasks.{name}'s data"


def extra_context(where: str, name: str, task: TaskConfig, **loading: Any) -> ExtraContext:
    """What an extra table's format is checked and loaded against (`loading`: strict, train_examples, held_out)."""
    return ExtraContext(where, what_data(name, task), kind_of(name, task).format, **loading)


def check_extra(where: str, extra: ExtraDataConfig, name: str, task: TaskConfig) -> None:
    if not extra.file:
        raise ConfigError(f"{where}: `file` is required")
    if extra.class_balanced and not kind_of(name, task).balanced_extra:
        raise ConfigError(f"{where}.class_balanced: {what_data(name, task)} is not a classification task")
    EXTRA_FORMATS.check(extra.format.name, extra.format.options, extra_context(where, name, task))
