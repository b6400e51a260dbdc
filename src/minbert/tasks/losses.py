"""Losses: (task output, labels) -> scalar. Each a small class of one registry, chosen by name in a task's config
(`loss = "cosent"`, or with its own options: `loss = { name = "cosent", scale = 20 }`; "" = the data spec's default).

A TaskOutput carries `logits` (what the head computed: class logits, a pair logit, or a cosine) and `score`
(the prediction on the label's scale). Each loss declares what it serves (`for_classification`), whether it needs
a cosine head (`needs_cosine`), and, when it trains logits towards a transformed label, the inverse mapping
(`to_score`: a cosine back onto the label scale; None: the head's own mapping holds). `build(score_range, options)`
makes one; only the losses that use the label range keep it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minbert.options import Registry, option


@dataclass
class TaskOutput:
    logits: Tensor  # (B, K) class logits, or (B,) a pair logit / a cosine
    score: Tensor  # predictions on the label scale: logits for classification, 0..5 for STS
    embeddings: tuple[Tensor, ...] = ()  # pooled sentence vectors: (u,), or (u, v) for siamese pairs

    def mean_with(self, other: TaskOutput) -> TaskOutput:
        """The mean of two outputs for the same examples (one pair in both orders): logits and scores averaged, in
        fp32 (bf16 logits would round the mean)."""
        return TaskOutput((self.logits.float() + other.logits.float()) / 2,
                          (self.score.float() + other.score.float()) / 2)


class Loss(nn.Module):
    """What every loss declares; the defaults suit a plain classification loss."""

    for_classification = True  # what it serves: class labels, or scores (regression)
    needs_cosine = False  # compares a cosine with the label: needs a cosine head
    to_score = None  # a loss on a transformed target maps logits back onto the label scale
    one_logit = False  # classification on one logit (two classes), not one logit per class

    @classmethod
    def build(cls, score_range: tuple[float, float] | None, options: Any = None) -> Loss:
        return cls()


class CrossEntropy(Loss):
    """Multi-class classification on logits (B, K) with integer labels, or class probabilities (B, K) as soft
    targets (distillation)."""

    def forward(self, output: TaskOutput, labels: Tensor) -> Tensor:
        return F.cross_entropy(output.logits.float(), labels.float() if labels.dim() == 2 else labels.long())


class BinaryCrossEntropy(Loss):
    """Binary classification on one logit per example, labels 0/1 (or probabilities: soft targets)."""

    one_logit = True  # the head gives one logit, not one per class

    def forward(self, output: TaskOutput, labels: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output.logits.float().view(-1), labels.float())


class MeanSquaredError(Loss):
    """Regression: MSE between the predicted score and the label."""

    for_classification = False

    def forward(self, output: TaskOutput, labels: Tensor) -> Tensor:
        return F.mse_loss(output.score.float().view(-1), labels.float())


class CosineRegression(Loss):
    """MSE between cos(u, v) and the label mapped linearly onto [target_low, target_high]."""

    target_low, target_high = -1.0, 1.0
    needs_cosine = True
    for_classification = False

    def __init__(self, score_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.low, self.high = score_range

    @classmethod
    def build(cls, score_range: tuple[float, float] | None, options: Any = None) -> CosineRegression:
        return cls(score_range or (0.0, 1.0))

    def forward(self, output: TaskOutput, labels: Tensor) -> Tensor:
        unit = (labels.float() - self.low) / (self.high - self.low)
        target = self.target_low + (self.target_high - self.target_low) * unit
        return F.mse_loss(output.logits.float().view(-1), target)

    def to_score(self, cosine: Tensor) -> Tensor:
        """The inverse of the target mapping: the label a cosine was trained to mean (cosine_mse: 5 * cos).
        Unclipped here; predictions are clipped to the label range by the task (so a negative cosine reads 0)."""
        unit = (cosine.float().view(-1) - self.target_low) / (self.target_high - self.target_low)
        return self.low + (self.high - self.low) * unit


class CosineEmbedding(CosineRegression):
    """MSE between cos and the label rescaled to [-1, 1] (STS 0 -> -1, 5 -> 1)."""


class CosineMSE(CosineRegression):
    """MSE between cos and the label rescaled to [0, 1] (label / 5), sentence-transformers' CosineSimilarityLoss."""

    target_low = 0.0


class CoSENT(Loss):
    """CoSENT (Su 2022): log(1 + sum over pairs (i, j) with y_i > y_j of exp(scale * (s_j - s_i))).
    Only the order of the similarities matters, which suits cosine geometry."""

    for_classification = False

    @dataclass
    class Options:
        scale: float = option(20.0, low=0, low_open=True)  # the similarities' temperature, 1 / tau

    @classmethod
    def build(cls, score_range: tuple[float, float] | None, options: Options | None = None) -> CoSENT:
        return cls((options or cls.Options()).scale)

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    def forward(self, output: TaskOutput, labels: Tensor) -> Tensor:
        s = output.logits.float().view(-1) * self.scale
        differences = s[None, :] - s[:, None]  # [i, j] = s_j - s_i
        wrong_order = labels[:, None] > labels[None, :]  # pairs that should have s_i > s_j
        differences = differences[wrong_order]
        zero = torch.zeros(1, device=s.device)
        return torch.logsumexp(torch.cat([zero, differences]), dim=0)


LOSSES = Registry("loss", {
    "cross_entropy": CrossEntropy,
    "bce": BinaryCrossEntropy,
    "mse": MeanSquaredError,
    "cosine_embedding": CosineEmbedding,
    "cosine_mse": CosineMSE,
    "cosent": CoSENT,
}, empty_is_default=True)
