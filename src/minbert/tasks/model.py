"""The multitask model: one shared encoder, and per task a pooling, a head and a loss (a single-task model is the
one-task case)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from minbert.data.batching import Batch
from minbert.errors import CheckpointError, ConfigError
from minbert.model.bert import BertModel, BertOutput, attention_mask_for
from minbert.model.loading import (
    DIGESTS,
    load_encoder_weights,
    load_state_file,
    native_to_hf,
    save_tensors,
    write_digests,
)
from minbert.model.pal import PAL, PALOptions
from minbert.tasks.config import ModelConfig, TaskConfig, check_task_layers
from minbert.tasks.heads import HEADS
from minbert.tasks.kinds import TaskKind, kind_of
from minbert.tasks.losses import LOSSES, TaskOutput
from minbert.tasks.pooling import POOLINGS
from minbert.tokenizer import copy_tokenizer_files

ENCODER_PREFIX = "bert."  # checkpoint keys: bert.<HF names> for the encoder, heads.<task>.<...> for the rest


class TaskModule(nn.Module):
    """pooling -> (pair features) -> head for one task, plus its loss."""

    def __init__(self, kind: TaskKind, config: TaskConfig, hidden_size: int):
        super().__init__()
        self.kind = kind
        self.siamese = kind.is_pair and config.pair_encoding == "siamese"
        self.pooling = kind.pooling(config.pooling)
        features = tuple(config.pair_features) if self.siamese else ()
        head = HEADS.resolve(config.head)
        self.head = HEADS[head.name].build(config, head.options, self.pooling.output_dim(hidden_size),
                                           kind.num_outputs, features)
        self.loss_fn = LOSSES[kind.loss].build(kind.score_range, kind.loss_options)
        self.loss_weight = config.loss_weight
        self.pal: PAL | None = None  # the task's projected attention layers in the encoder (MultitaskModel's)

    def vectors(self, output: BertOutput, attention_mask: Tensor, common: nn.Module) -> Tensor:
        """The task's sentence vectors (N sequences, D): its pooling, then the common layers."""
        return common(self.pooling(output, attention_mask))

    def forward(self, output: BertOutput, batch: Batch, common: nn.Module) -> TaskOutput:
        pooled = self.vectors(output, batch.inputs["attention_mask"], common)  # (N sequences, D)
        logits = self.head(pooled, batch.index if self.siamese else None)
        logits = self.kind.arrange(logits, batch)  # per example (a question's choices: one row each)
        # sentence vectors per example, for embedding losses: (u,) or, for siamese pairs, (u, v)
        embeddings = (pooled[batch.index[:, 0]], pooled[batch.index[:, 1]]) if self.siamese else (pooled,)
        return TaskOutput(logits, self.score(logits), embeddings)

    def score(self, logits: Tensor) -> Tensor:
        """Logits -> predictions on the label scale, as the task's kind maps them."""
        return self.kind.score(logits, self.loss_fn, self.head)


def vector_task(heads: Mapping[str, Any], task: str | None, where: str) -> str:
    """The task whose sentence vectors are meant: the named one, else the only task, else the one siamese task (a
    similarity task such as STS compares exactly these vectors)."""
    if task:
        if task not in heads:
            raise ConfigError(f"task {task!r} is not in {where} (it has {', '.join(heads)})")
        return task
    siamese = [name for name, head in heads.items() if head.siamese]
    if len(heads) == 1 or len(siamese) == 1:
        return next(iter(heads)) if len(heads) == 1 else siamese[0]
    raise ConfigError(f"{where} has tasks {', '.join(heads)}: name the one whose sentence vectors are meant (--task)")


def common_layers(count: int, width: int, dropout: float) -> nn.Module:
    """Dense layers shared by every task between pooling and the heads (identity when count is 0)."""
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def frozen_depth(model: ModelConfig, n_layers: int) -> int:
    """How many encoder layers (after the embeddings) are fixed, from the three ways a config says it: the whole
    encoder (`freeze = "encoder"`, the starter's pretrain mode), the bottom N (`frozen_layers`), or all but the top k
    (`trainable_layers`)."""
    if model.freeze == "encoder":
        return n_layers
    if model.trainable_layers >= 0:  # "top k trainable" is "bottom N - k frozen"
        if model.trainable_layers > n_layers:
            raise ConfigError(f"model.trainable_layers = {model.trainable_layers}: the encoder has {n_layers} layers")
        return n_layers - model.trainable_layers
    if model.frozen_layers > n_layers:
        raise ConfigError(f"model.frozen_layers = {model.frozen_layers}: the encoder has {n_layers} layers")
    return model.frozen_layers


def check_max_length(model: ModelConfig, encoder: BertModel) -> None:
    """A run's model.max_length within its encoder's position embeddings (longer inputs would index past them)."""
    positions = encoder.config.max_position_embeddings
    if model.max_length > positions:
        raise ConfigError(f"model.max_length={model.max_length} is more than the model's {positions} position "
                          f"embeddings: set model.max_length={positions} or less")


class MultitaskModel(nn.Module):
    """The shared encoder (frozen where `model` says), optional common layers, and one TaskModule per task, with
    its PALs when `model.pal.size` > 0."""

    def __init__(self, encoder: BertModel, tasks: dict[str, TaskConfig], model: ModelConfig | None = None):
        super().__init__()
        model = model or ModelConfig()
        self.encoder = encoder
        hidden, n_layers = encoder.config.hidden_size, len(encoder.layers)
        self.freeze = model.freeze
        self.freeze_words = model.freeze_word_embeddings
        self.frozen_depth = frozen_depth(model, n_layers)
        self.heads = nn.ModuleDict({name: TaskModule(kind_of(name, cfg), cfg, hidden) for name, cfg in tasks.items()})
        widths = {POOLINGS[POOLINGS.resolve(c.pooling).name]().output_dim(hidden) for c in tasks.values()}
        if model.common_layers and len(widths) > 1:
            raise ConfigError("model.common_layers needs every task's pooling to give the same width")
        self.common = common_layers(model.common_layers, widths.pop() if widths else hidden, model.common_dropout)
        # each task's own top layers (copies of the shared ones, which then no longer train); the rest is shared
        self.task_layer_count = model.task_layers
        self.shared_depth = n_layers - model.task_layers
        if model.task_layers:
            if model.task_layers > n_layers:
                raise ConfigError(f"model.task_layers = {model.task_layers}: the encoder has {n_layers} layers")
            if self.frozen_depth > self.shared_depth:
                raise ConfigError(f"{self.frozen_depth} frozen layers reach into the top {model.task_layers} that "
                                  "each task has its own copy of (model.task_layers): freeze fewer")
            if model.pal.size:
                raise ConfigError("model.task_layers and model.pal: each gives a task its own encoder parameters; "
                                  "choose one")
        check_task_layers(model, tasks)
        owners = model.task_layer_tasks or list(tasks)
        self.task_layers = nn.ModuleDict({name: copy.deepcopy(encoder.layers[self.shared_depth:])
                                          for name in owners} if model.task_layers else {})
        # the shared top layers still train where some task has no copy of its own
        self.shared_top_used = not self.task_layers or any(name not in self.task_layers for name in tasks)
        pal: PALOptions = model.pal
        if pal.size:  # per task, in the layers that train (made last: the other parts' initialisation stays put)
            for head in self.heads.values():
                head.pal = PAL(hidden, pal.size, pal.heads, n_layers - self.frozen_depth, pal.shared,
                               self.frozen_depth)
        self.pal_parameters = sum(h.pal.num_parameters() for h in self.heads.values() if h.pal is not None)
        self.set_trainable(True, list(tasks))

    def set_trainable(self, train_encoder: bool, tasks: list[str], train_shared: bool = True) -> None:
        """What trains: the heads of `tasks` (and the common layers), and the encoder's unfrozen part when
        `train_encoder` (with `train_shared` false, only the tasks' own top layers, the shared encoder and the
        common layers staying as they are); the model-level freezes (pretrain mode, frozen layers, word
        embeddings) always hold. The one place where freezing is applied."""
        for name, head in self.heads.items():
            head.requires_grad_(name in tasks)
        self.common.requires_grad_(train_shared)
        self.encoder.requires_grad_(train_encoder and train_shared and self.freeze != "encoder")
        if self.frozen_depth:
            for module in (self.encoder.embeddings, *self.encoder.layers[: self.frozen_depth]):
                module.requires_grad_(False)
        if self.freeze_words:
            self.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
        if self.task_layers:  # the tasks' own copies train in place of the shared top layers
            if not self.shared_top_used:
                for module in self.encoder.layers[self.shared_depth:]:
                    module.requires_grad_(False)
            for name, layers in self.task_layers.items():
                layers.requires_grad_(name in tasks and train_encoder and self.freeze != "encoder")

    def train(self, mode: bool = True) -> MultitaskModel:
        super().train(mode)
        if self.freeze == "encoder":
            self.encoder.eval()  # a frozen encoder is a fixed feature extractor: no dropout
        elif self.frozen_depth:
            for module in (self.encoder.embeddings, *self.encoder.layers[: self.frozen_depth]):
                module.eval()
        return self

    def frozen_bottom(self, batch: Batch) -> Tensor:
        """Hidden states after the embeddings and the frozen layers (no gradient)."""
        with torch.no_grad():
            x = self.encoder.embeddings(batch.inputs["input_ids"], batch.inputs.get("token_type_ids"))
            return self.encoder.run_layers(x, batch.encoder_mask, 0, self.frozen_depth)

    def encode(self, batch: Batch, word_embeds: Tensor | None = None) -> BertOutput:
        inputs, mask = batch.inputs, batch.encoder_mask
        pal = self.heads[batch.task].pal
        if not self.frozen_depth and not self.task_layers:
            return self.encoder(inputs["input_ids"], mask, inputs.get("token_type_ids"), word_embeds, pal,
                                inputs.get("position_ids"))
        if not self.frozen_depth:
            hidden = self.encoder.embeddings(inputs["input_ids"], inputs.get("token_type_ids"), word_embeds)
        elif word_embeds is not None:
            raise ConfigError("perturbing word embeddings needs trainable embeddings (no frozen layers)")
        else:
            hidden = None
            if batch.cache is not None:
                hidden = batch.cache.get(batch.rows, inputs["input_ids"].shape[1])
            if hidden is None:
                hidden = self.frozen_bottom(batch)
                if batch.cache is not None:
                    hidden = batch.cache.put(batch.rows, hidden)  # rounded as a later cache hit will be
            hidden = hidden.to(inputs["input_ids"].device)
        own = batch.task in self.task_layers
        top = self.encoder.run_layers(hidden, mask, self.frozen_depth,
                                      self.shared_depth if own else len(self.encoder.layers), pal)
        if own:
            mask = attention_mask_for(mask)
            for layer in self.task_layers[batch.task]:
                top = layer(top, mask, None)
        if self.freeze == "encoder":
            with torch.no_grad():
                return self.encoder.finish(top)
        return self.encoder.finish(top)

    def task_encoder(self, task: str) -> BertModel:
        """The one plain BERT that `task`'s hidden states come through (for exports): the shared encoder, or for a
        task with its own top layers (model.task_layers) a copy of it with those layers in place of the shared."""
        if task not in self.task_layers:
            return self.encoder
        encoder = copy.deepcopy(self.encoder)
        encoder.layers[self.shared_depth:].load_state_dict(self.task_layers[task].state_dict())
        return encoder

    def forward(self, batch: Batch, word_embeds: Tensor | None = None) -> TaskOutput:
        """`word_embeds` (N, T, H) replaces the word-embedding lookup (adversarial regularizers perturb it)."""
        return self.heads[batch.task](self.encode(batch, word_embeds), batch, self.common)

    def loss(self, batch: Batch, output: TaskOutput | None = None) -> Tensor:
        output = self(batch) if output is None else output
        return self.heads[batch.task].loss_fn(output, batch.labels)

    def checkpoint_state(self) -> dict[str, Tensor]:
        state = {ENCODER_PREFIX + k: v for k, v in native_to_hf(self.encoder.state_dict()).items()}
        state.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
        state.update({f"common.{k}": v for k, v in self.common.state_dict().items()})
        state.update({f"task_layers.{k}": v for k, v in self.task_layers.state_dict().items()})
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def save(self, directory: str | Path, tokenizer_from: Path | None = None) -> None:
        """config.json + model.safetensors (+ the tokenizer's files of `tokenizer_from`: a complete HF-layout
        model), then their digests (digests.json, checked whenever they are read): `BertModel.from_pretrained(
        directory)` loads the encoder part."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / DIGESTS).unlink(missing_ok=True)  # the earlier files' digests: none while these are written
        self.encoder.config.to_json(directory / "config.json")
        save_tensors(self.checkpoint_state(), directory / "model.safetensors", metadata={"format": "pt"})
        tokenizer = copy_tokenizer_files(tokenizer_from, directory) if tokenizer_from is not None else []
        write_digests(directory, ["config.json", "model.safetensors", *tokenizer])

    def load_checkpoint(self, directory: str | Path) -> None:
        path = Path(directory) / "model.safetensors"
        if not path.exists():
            raise CheckpointError(f"{path}: checkpoint not found")
        self.load_state(load_state_file(path), str(path))

    def load_state(self, state: dict[str, Tensor], path: str = "checkpoint") -> None:
        """The inverse of checkpoint_state."""
        load_encoder_weights(self.encoder, {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}, str(path))
        heads = {k.removeprefix("heads."): v for k, v in state.items() if k.startswith("heads.")}
        common = {k.removeprefix("common."): v for k, v in state.items() if k.startswith("common.")}
        own = {k.removeprefix("task_layers."): v for k, v in state.items() if k.startswith("task_layers.")}
        try:
            self.heads.load_state_dict(heads, strict=True)
            self.common.load_state_dict(common, strict=True)
            self.task_layers.load_state_dict(own, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: the task heads do not match the run's config ({exc})") from None
