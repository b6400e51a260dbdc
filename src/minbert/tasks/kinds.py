"""What each data set asks of a model: inputs, outputs, default loss, metric, and how outputs become predictions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from minbert.data.files import FORMATS, FileFormat


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

    def predict(self, outputs: Tensor) -> Tensor:
        """Model outputs -> what the prediction files hold: a class index, or a similarity score."""
        outputs = outputs.float()
        if self.format.num_classes is not None and self.num_outputs > 1:
            return outputs.argmax(dim=-1)
        if self.format.num_classes is not None:  # one logit: binary
            return (outputs.view(-1) > 0).long()
        low, high = self.format.score_range
        return outputs.view(-1).clamp(low, high)


KINDS = {
    "sst": TaskKind("sst", FORMATS["sst"], 5, "cross_entropy", "accuracy", "sst", "Predicted_Sentiment"),
    "cfimdb": TaskKind("cfimdb", FORMATS["cfimdb"], 2, "cross_entropy", "accuracy", "cfimdb", "Predicted_Sentiment"),
    "quora": TaskKind("quora", FORMATS["quora"], 1, "bce", "accuracy", "para", "Predicted_Is_Paraphrase"),
    "sts": TaskKind("sts", FORMATS["sts"], 1, "mse", "pearson", "sts", "Predicted_Similiarity"),
}


def labels_tensor(kind: TaskKind, labels: list) -> Tensor:
    return torch.tensor(labels, dtype=torch.long if kind.is_classification else torch.float32)
