"""`classify`: a single text or a pair of texts -> one of the spec's classes (SST, CFIMDB, Quora, ...): class
logits (B, K), or one logit (B,) for a binary loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from minbert.data.spec import DataSpec
from minbert.metrics import confusion_matrix
from minbert.tasks.kinds.base import KINDS, TaskKind
from minbert.tasks.losses import LOSSES, Loss, TaskOutput

if TYPE_CHECKING:
    from torch import nn

EPS = 1e-7  # probabilities are kept this far from 0 and 1 in a log loss


@KINDS.register("classify")
class Classify(TaskKind):
    default_loss = "cross_entropy"
    described = "classification"
    label_dtype = torch.long
    prediction_dtype = np.int64
    balanced_extra = True

    @classmethod
    def serves(cls, spec: DataSpec) -> bool:
        return bool(spec.classes)

    @classmethod
    def outputs(cls, spec: DataSpec, loss: str) -> int:
        return 1 if getattr(LOSSES.get(loss), "one_logit", False) else spec.num_classes

    @classmethod
    def takes_loss(cls, loss: type[Loss]) -> bool:
        return loss.for_classification

    @property
    def one_logit(self) -> bool:
        """Two classes on one logit (a binary loss), not one logit per class."""
        return self.num_outputs == 1

    @property
    def class_names(self) -> list[str]:
        return self.spec.labels_for_people

    @property
    def positive(self) -> int:
        return self.spec.positive_index

    def score(self, logits: Tensor, loss: Loss, head: nn.Module) -> Tensor:
        return logits  # classes keep their logits

    def predict(self, output: TaskOutput) -> Tensor:
        """A class index."""
        if self.one_logit:
            return (output.logits.float().view(-1) > 0).long()
        return output.logits.float().argmax(dim=-1)

    def soft(self, output: TaskOutput) -> Tensor:
        """Class probabilities (B, K), or the second class's probability (B,) for one logit."""
        if self.one_logit:
            return torch.sigmoid(output.logits.float().view(-1))
        return output.logits.float().softmax(dim=-1)

    def decide(self, soft: np.ndarray) -> np.ndarray:
        if self.one_logit:
            return (soft > 0.5).astype(np.int64)
        return soft.argmax(axis=-1)

    def buffers(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        hard, soft = super().buffers(count)
        return hard, soft if self.one_logit else np.zeros((count, self.num_outputs), dtype=np.float64)

    def show(self, prediction: int | float) -> str:
        """The class's name."""
        return self.class_names[int(prediction)]

    def written(self, prediction: int | float) -> str:
        return str(prediction)  # the class index

    def named(self, predictions: list) -> list:
        return [self.show(p) for p in predictions]

    def answer(self, decided: np.ndarray, soft: np.ndarray) -> dict:
        """The class (index, name, every class's probability)."""
        probabilities = [1 - float(soft), float(soft)] if self.one_logit else soft.tolist()
        return {"label": int(decided), "name": self.class_names[int(decided)], "probabilities": probabilities}

    def divergence(self, a: TaskOutput, b: TaskOutput) -> Tensor:
        """Symmetric KL between the predicted distributions (softmax over classes, or Bernoulli for one logit)."""
        x, y = a.logits.float(), b.logits.float()
        if x.dim() == 1 or x.shape[-1] == 1:  # one logit: two classes
            x, y = x.view(-1, 1), y.view(-1, 1)
            x, y = torch.cat([torch.zeros_like(x), x], dim=-1), torch.cat([torch.zeros_like(y), y], dim=-1)
        p, q = F.log_softmax(x, dim=-1), F.log_softmax(y, dim=-1)
        return (F.kl_div(p, q, log_target=True, reduction="batchmean")
                + F.kl_div(q, p, log_target=True, reduction="batchmean"))

    def distillation_target(self, gold: Tensor, teacher: Tensor, share: float, temperature: float) -> Tensor:
        """Class probabilities: one-hot gold mixed with the teacher's distribution sharpened or softened at
        `temperature`; for one logit, the teacher's probability mixed with 0/1."""
        if self.one_logit:
            return (1 - share) * gold.float() + share * teacher
        tempered = teacher.clamp_min(1e-12) ** (1.0 / temperature)
        tempered = tempered / tempered.sum(dim=-1, keepdim=True)
        one_hot = F.one_hot(gold.long(), self.num_outputs).float()
        return (1 - share) * one_hot + share * tempered

    def strata(self, labels: np.ndarray) -> np.ndarray:
        return labels  # per class

    def analysis(self, predictions: np.ndarray, labels: np.ndarray) -> dict:
        return {"confusion": confusion_matrix(predictions, labels, self.spec.num_classes).tolist()}

    def ensemble_loss(self, mean: np.ndarray, labels: np.ndarray) -> float:
        """Log loss."""
        if mean.ndim == 2:
            return float(-np.log(np.clip(mean[np.arange(len(labels)), labels], EPS, 1)).mean())
        p = np.clip(mean, EPS, 1 - EPS)
        return float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean())

    def export_entry(self) -> dict:
        return {"classification": True, "num_outputs": self.num_outputs, "classes": self.class_names,
                "score_range": None}
