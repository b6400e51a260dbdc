"""`regress`: a single text or a pair of texts -> a score in the spec's [low, high] (STS)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from minbert.data.files import Example
from minbert.data.spec import DataSpec
from minbert.metrics import score_bins
from minbert.tasks.kinds.base import KINDS, TaskKind
from minbert.tasks.losses import Loss, TaskOutput

if TYPE_CHECKING:
    from torch import nn

EPS = 1e-7
METRIC_NAMES = {"pearson": "Pearson r", "spearman": "Spearman's rho"}  # for messages


@KINDS.register("regress")
class Regress(TaskKind):
    default_loss = "mse"
    described = "regression"
    label_dtype = torch.float32
    prediction_dtype = np.float64
    similarity_heads = True

    @classmethod
    def serves(cls, spec: DataSpec) -> bool:
        return bool(spec.score_range)

    @classmethod
    def outputs(cls, spec: DataSpec, loss: str) -> int:
        return 1

    @classmethod
    def takes_loss(cls, loss: type[Loss]) -> bool:
        return not loss.for_classification

    def score(self, logits: Tensor, loss: Loss, head: nn.Module) -> Tensor:
        """A loss trained on a transformed target reads back through its own inverse (cosine_mse: 5 * cos, not the
        cosine head's 2.5 * (1 + cos)); otherwise the head's mapping onto the score range."""
        if loss.to_score is not None:
            return loss.to_score(logits)
        return head.to_score(logits, *self.score_range)

    def predict(self, output: TaskOutput) -> Tensor:
        """The score, within the range."""
        low, high = self.score_range
        return output.score.float().view(-1).clamp(low, high)

    def soft(self, output: TaskOutput) -> Tensor:
        """The score on the label's scale (B,)."""
        return self.predict(output)

    def decide(self, soft: np.ndarray) -> np.ndarray:
        return soft.astype(np.float64)

    def show(self, prediction: int | float) -> str:
        return f"{prediction:.4f}"

    def written(self, prediction: int | float) -> str:
        return self.show(prediction)

    def named(self, predictions: list) -> list:
        return predictions  # scores have no names

    def answer(self, decided: np.ndarray, soft: np.ndarray) -> dict:
        return {"score": float(soft)}

    def divergence(self, a: TaskOutput, b: TaskOutput) -> Tensor:
        """Squared error between the scores."""
        return F.mse_loss(a.score.float().view(-1), b.score.float().view(-1))

    def distillation_target(self, gold: Tensor, teacher: Tensor, share: float, temperature: float) -> Tensor:
        return (1 - share) * gold.float() + share * teacher

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """Deciles of the label."""
        return np.searchsorted(np.quantile(labels, np.linspace(0, 1, 11)[1:-1]), labels, side="right")

    def dev_problem(self, examples: Sequence[Example]) -> str | None:
        if len({e.label for e in examples}) < 2:
            return f"{METRIC_NAMES.get(self.metric, self.metric)} needs at least 2 with different labels"
        return None

    def analysis(self, predictions: np.ndarray, labels: np.ndarray) -> dict:
        return {"bins": score_bins(predictions, labels, *self.score_range)}

    def ensemble_loss(self, mean: np.ndarray, labels: np.ndarray) -> float:
        """1 - Pearson r."""
        centred, gold = mean - mean.mean(), labels - labels.mean()
        return float(1 - centred @ gold / (np.linalg.norm(centred) * np.linalg.norm(gold) + EPS))

    def export_entry(self) -> dict:
        return {"classification": False, "num_outputs": self.num_outputs, "classes": None,
                "score_range": list(self.score_range)}
