"""What a task asks of a model, derived from its data spec and loss: inputs, outputs, metrics, and how outputs
become predictions. No data set is named here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from minbert.data.files import Example, FileFormat
from minbert.data.spec import DataSpec, builtin_name, resolve_spec
from minbert.options import Chosen, chosen_name
from minbert.tasks.losses import LOSSES, TaskOutput


@dataclass(frozen=True)
class TaskKind:
    name: str  # the task's name in the config
    data: str  # the built-in data set's name (sst, cfimdb, quora, sts), "" for a task's own spec
    spec: DataSpec
    loss: str  # the task's loss (its own, else the spec's default)
    loss_options: object  # that loss's options (its defaults when the task did not choose it)
    num_outputs: int  # class logits, or one logit (a binary loss; a score)
    helper: bool = False  # tasks.X.helper: not counted in best-epoch selection or the overall score

    @property
    def format(self) -> FileFormat:
        return self.spec.file_format()

    @property
    def metric(self) -> str:
        """The primary metric: it picks the best epoch and enters the overall score."""
        return self.spec.primary_metric

    @property
    def file_prefix(self) -> str:
        return self.spec.prediction_file or self.name

    @property
    def prediction_header(self) -> str:
        return self.spec.prediction_header()

    @property
    def class_names(self) -> list[str]:
        return self.spec.labels_for_people

    @property
    def is_pair(self) -> bool:
        return self.spec.is_pair

    @property
    def is_classification(self) -> bool:
        return self.spec.is_classification

    @property
    def score_range(self) -> tuple[float, float] | None:
        return tuple(self.spec.score_range) if self.spec.score_range else None

    def predict(self, output: TaskOutput) -> Tensor:
        """Model output -> what the prediction files hold: a class index, or a score."""
        if self.is_classification and self.num_outputs > 1:
            return output.logits.float().argmax(dim=-1)
        if self.is_classification:  # one logit: binary
            return (output.logits.float().view(-1) > 0).long()
        low, high = self.score_range
        return output.score.float().view(-1).clamp(low, high)

    def labels(self, examples: Sequence[Example]) -> np.ndarray:
        """Gold labels as training sees them (float32 scores), so metrics match the epochs' dev metrics."""
        return np.array([e.label for e in examples], dtype=np.int64 if self.is_classification else np.float32)

    def soft(self, output: TaskOutput) -> Tensor:
        """What an ensemble averages and a teacher passes on: class probabilities (B, K), the second class's
        probability (B,) for one logit, or the score on the label's scale (B,)."""
        if self.is_classification and self.num_outputs > 1:
            return output.logits.float().softmax(dim=-1)
        if self.is_classification:
            return torch.sigmoid(output.logits.float().view(-1))
        low, high = self.score_range
        return output.score.float().view(-1).clamp(low, high)

    def decide(self, soft: np.ndarray) -> np.ndarray:
        """Soft outputs (averaged, say) -> predictions, as `predict` does for one model's output."""
        if self.is_classification and self.num_outputs > 1:
            return soft.argmax(axis=-1)
        if self.is_classification:
            return (soft > 0.5).astype(np.int64)
        return soft.astype(np.float64)

    def show(self, prediction: int | float) -> str:
        """A prediction for people: the class's name, or the score."""
        return self.class_names[int(prediction)] if self.is_classification else f"{prediction:.4f}"


def default_loss(spec: DataSpec) -> str:
    return spec.loss or ("cross_entropy" if spec.is_classification else "mse")


def kind_of(name: str, task: object, where: str | None = None) -> TaskKind:
    """The kind of task `name` with config `task` (a TaskConfig: its `data` and `loss`)."""
    spec = resolve_spec(task.data, where or f"tasks.{name}.data")
    chosen = LOSSES.resolve(task.loss) if chosen_name(task.loss) in LOSSES else Chosen(chosen_name(task.loss))
    loss = chosen.name or default_loss(spec)
    options = chosen.options if chosen.name else (LOSSES.options_of(loss)() if loss in LOSSES else None)
    one_logit = spec.is_classification and getattr(LOSSES.get(loss), "one_logit", False)
    outputs = spec.num_classes if spec.is_classification and not one_logit else 1
    return TaskKind(name, builtin_name(task.data), spec, loss, options, outputs, getattr(task, "helper", False))


def builtin_kind(name: str, loss: str = "") -> TaskKind:
    """A task named after a built-in data set (sst, cfimdb, quora, sts), with its default loss or `loss`."""
    from types import SimpleNamespace

    return kind_of(name, SimpleNamespace(data=name, loss=loss))
