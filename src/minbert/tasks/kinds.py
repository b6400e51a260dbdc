"""What each data set asks of a model: inputs, outputs, default loss, metric, and how outputs become predictions."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from minbert.data.files import FORMATS, FileFormat
from minbert.tasks.losses import TaskOutput


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


KINDS = {
    "sst": TaskKind("sst", FORMATS["sst"], 5, "cross_entropy", "accuracy", "sst", "Predicted_Sentiment"),
    "cfimdb": TaskKind("cfimdb", FORMATS["cfimdb"], 2, "cross_entropy", "accuracy", "cfimdb", "Predicted_Sentiment"),
    "quora": TaskKind("quora", FORMATS["quora"], 1, "bce", "accuracy", "para", "Predicted_Is_Paraphrase"),
    "sts": TaskKind("sts", FORMATS["sts"], 1, "mse", "pearson", "sts", "Predicted_Similiarity"),
}
