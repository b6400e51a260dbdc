"""What each data set asks of a model: inputs, outputs, default loss, metric, and how outputs become predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from minbert.data.files import FORMATS, Example, FileFormat
from minbert.tasks.losses import TaskOutput

# What each class index means, for people (reports, the serve page).
CLASS_LABELS = {"sst": ["very negative", "negative", "neutral", "positive", "very positive"],
                "cfimdb": ["negative", "positive"], "quora": ["not paraphrase", "paraphrase"]}


@dataclass(frozen=True)
class TaskKind:
    data: str  # the file format's name
    format: FileFormat
    num_outputs: int
    default_loss: str
    metric: str  # "accuracy" or "pearson"
    file_prefix: str  # prediction files: {file_prefix}-{split}-output.csv, as in the CS224N starter
    prediction_header: str

    @property
    def is_pair(self) -> bool:
        return len(self.format.text_columns) == 2

    @property
    def is_classification(self) -> bool:
        return self.format.num_classes is not None

    def predict(self, output: TaskOutput) -> Tensor:
        """Model output -> what the prediction files hold: a class index, or a similarity score."""
        if self.format.num_classes is not None and self.num_outputs > 1:
            return output.logits.float().argmax(dim=-1)
        if self.format.num_classes is not None:  # one logit: binary
            return (output.logits.float().view(-1) > 0).long()
        low, high = self.format.score_range
        return output.score.float().view(-1).clamp(low, high)

    def labels(self, examples: Sequence[Example]) -> np.ndarray:
        """Gold labels as training sees them (float32 scores), so metrics match the epochs' dev metrics."""
        return np.array([e.label for e in examples], dtype=np.int64 if self.is_classification else np.float32)

    def soft(self, output: TaskOutput) -> Tensor:
        """What an ensemble averages and a teacher passes on: class probabilities (B, K), a paraphrase
        probability (B,), or the score on the label's scale (B,)."""
        if self.format.num_classes is not None and self.num_outputs > 1:
            return output.logits.float().softmax(dim=-1)
        if self.format.num_classes is not None:
            return torch.sigmoid(output.logits.float().view(-1))
        low, high = self.format.score_range
        return output.score.float().view(-1).clamp(low, high)

    def decide(self, soft: np.ndarray) -> np.ndarray:
        """Soft outputs (averaged, say) -> predictions, as `predict` does for one model's output."""
        if self.format.num_classes is not None and self.num_outputs > 1:
            return soft.argmax(axis=-1)
        if self.format.num_classes is not None:
            return (soft > 0.5).astype(np.int64)
        return soft.astype(np.float64)


KINDS = {
    "sst": TaskKind("sst", FORMATS["sst"], 5, "cross_entropy", "accuracy", "sst", "Predicted_Sentiment"),
    "cfimdb": TaskKind("cfimdb", FORMATS["cfimdb"], 2, "cross_entropy", "accuracy", "cfimdb", "Predicted_Sentiment"),
    "quora": TaskKind("quora", FORMATS["quora"], 1, "bce", "accuracy", "para", "Predicted_Is_Paraphrase"),
    "sts": TaskKind("sts", FORMATS["sts"], 1, "mse", "pearson", "sts", "Predicted_Similiarity"),
}
