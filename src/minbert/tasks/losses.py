"""Losses: (task outputs, labels) -> scalar. Each a small class, chosen by name in a task's config."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CrossEntropy(nn.Module):
    """Multi-class classification on logits (B, K) with integer labels."""

    def forward(self, outputs: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(outputs.float(), labels.long())


class BinaryCrossEntropy(nn.Module):
    """Binary classification on one logit per example, labels 0/1."""

    def forward(self, outputs: Tensor, labels: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs.float().view(-1), labels.float())


class MeanSquaredError(nn.Module):
    """Regression on one score per example."""

    def forward(self, outputs: Tensor, labels: Tensor) -> Tensor:
        return F.mse_loss(outputs.float().view(-1), labels.float())


LOSSES: dict[str, type[nn.Module]] = {
    "cross_entropy": CrossEntropy,
    "bce": BinaryCrossEntropy,
    "mse": MeanSquaredError,
}
