"""The multitask model: one shared encoder, and per task a pooling, a head and a loss (a single-task model is the
one-task case)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from minbert.data.batching import Batch
from minbert.errors import CheckpointError
from minbert.model.bert import BertModel, BertOutput
from minbert.model.loading import load_encoder_weights, native_to_hf
from minbert.tasks.heads import HEADS
from minbert.tasks.kinds import KINDS, TaskKind
from minbert.tasks.losses import LOSSES
from minbert.tasks.pooling import POOLINGS
from minbert.training.config import TaskConfig

ENCODER_PREFIX = "bert."  # checkpoint keys: bert.<HF names> for the encoder, heads.<task>.<...> for the rest


class TaskModule(nn.Module):
    """pooling -> head for one task, plus its loss."""

    def __init__(self, kind: TaskKind, config: TaskConfig, hidden_size: int):
        super().__init__()
        self.kind = kind
        self.pooling = POOLINGS[config.pooling]()
        in_dim = self.pooling.output_dim(hidden_size)
        self.head = HEADS[config.head](in_dim, kind.num_outputs, config.dropout, config.hidden_layers,
                                       config.hidden_size)
        self.loss_fn = LOSSES[config.loss or kind.default_loss]()
        self.loss_weight = config.loss_weight

    def forward(self, output: BertOutput, batch: Batch) -> Tensor:
        return self.head(self.pooling(output, batch.inputs["attention_mask"]))


class MultitaskModel(nn.Module):
    def __init__(self, encoder: BertModel, tasks: dict[str, TaskConfig], freeze: str = "none"):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict({name: TaskModule(KINDS[cfg.data], cfg, encoder.config.hidden_size)
                                    for name, cfg in tasks.items()})
        self.freeze = freeze
        if freeze == "encoder":
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> MultitaskModel:
        super().train(mode)
        if self.freeze == "encoder":
            self.encoder.eval()  # a frozen encoder is a fixed feature extractor: no dropout
        return self

    def encode(self, inputs: dict[str, Tensor]) -> BertOutput:
        if self.freeze == "encoder":
            with torch.no_grad():
                return self.encoder(**inputs)
        return self.encoder(**inputs)

    def forward(self, batch: Batch) -> Tensor:
        return self.heads[batch.task](self.encode(batch.inputs), batch)

    def loss(self, batch: Batch, outputs: Tensor | None = None) -> Tensor:
        module = self.heads[batch.task]
        outputs = self(batch) if outputs is None else outputs
        return module.loss_fn(outputs, batch.labels)

    def checkpoint_state(self) -> dict[str, Tensor]:
        state = {ENCODER_PREFIX + k: v for k, v in native_to_hf(self.encoder.state_dict()).items()}
        state.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def save(self, directory: str | Path) -> None:
        """config.json + model.safetensors: `BertModel.from_pretrained(directory)` loads the encoder part."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.config.to_json(directory / "config.json")
        save_file(self.checkpoint_state(), directory / "model.safetensors", metadata={"format": "pt"})

    def load_checkpoint(self, directory: str | Path) -> None:
        path = Path(directory) / "model.safetensors"
        if not path.exists():
            raise CheckpointError(f"{path}: checkpoint not found")
        state = load_file(path)
        load_encoder_weights(self.encoder, {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}, str(path))
        heads = {k.removeprefix("heads."): v for k, v in state.items() if k.startswith("heads.")}
        try:
            self.heads.load_state_dict(heads, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: the task heads do not match the run's config ({exc})") from None
