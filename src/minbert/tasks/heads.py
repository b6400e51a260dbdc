"""Task heads: units of one registry, chosen by name in a task's config (`head = "linear"`, or a table with the
head's own options: `head = { name = "mlp", hidden_layers = 2 }`).

A head turns pooled sentence vectors into `logits` (class logits, one pair logit, or a cosine) and says how
logits map onto the label's scale (`to_score`, used by similarity tasks: 0..5 for STS). Each is built by
`build(task, options, in_dim, out_dim)` from its options and the task's dropout, and declares `needs_pairs` (it
compares two sentence vectors, so it serves siamese similarity tasks only).

- feature heads (`linear`, `mlp`): one vector per example: the pooled sequence, or for siamese pairs the
  concatenation of the chosen pair features (u, v, |u-v|, u*v, u+v). On a score range: low + (high-low)*sigmoid.
- similarity heads (`cosine`, `relu_cosine`): siamese pairs only, no parameters: cos(u, v), mapped to the range
  as low + (high-low)*(1+cos)/2, or high*ReLU(cos).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minbert.options import NoOptions, Registry, option

PAIR_FEATURES = {
    "u": lambda u, v: u,
    "v": lambda u, v: v,
    "abs_diff": lambda u, v: (u - v).abs(),
    "product": lambda u, v: u * v,
    "sum": lambda u, v: u + v,
}


class FeatureHead(nn.Module):
    """dropout -> [linear -> ReLU -> dropout] x hidden_layers -> linear."""

    needs_pairs = False

    @classmethod
    def build(cls, task: Any, options: Any, in_dim: int, out_dim: int,
              pair_features: tuple[str, ...] = ()) -> FeatureHead:
        return cls(in_dim, out_dim, task.dropout, 0, 0, pair_features)

    def __init__(self, in_dim: int, out_dim: int, dropout: float, hidden_layers: int = 0, hidden_size: int = 0,
                 pair_features: tuple[str, ...] = ()):
        super().__init__()
        self.pair_features = pair_features
        in_dim = in_dim * len(pair_features) if pair_features else in_dim
        width = hidden_size or in_dim
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        for i in range(hidden_layers):
            layers += [nn.Linear(in_dim if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(width if hidden_layers else in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, pooled: Tensor, pairs: Tensor | None = None) -> Tensor:
        if pairs is not None:  # siamese: (B, 2) rows of `pooled`
            u, v = pooled[pairs[:, 0]], pooled[pairs[:, 1]]
            pooled = torch.cat([PAIR_FEATURES[name](u, v) for name in self.pair_features], dim=-1)
        return self.net(pooled)

    def to_score(self, logits: Tensor, low: float, high: float) -> Tensor:
        return low + (high - low) * torch.sigmoid(logits.view(-1))


class LinearHead(FeatureHead):
    """dropout + linear."""


class MLPHead(FeatureHead):
    """An MLP with at least one hidden ReLU layer."""

    @dataclass
    class Options:
        hidden_layers: int = option(1, low=1)
        hidden_size: int = option(0, low=0)  # width of the hidden layers; 0 = the input's

    @classmethod
    def build(cls, task: Any, options: Options, in_dim: int, out_dim: int,
              pair_features: tuple[str, ...] = ()) -> FeatureHead:
        return cls(in_dim, out_dim, task.dropout, options.hidden_layers, options.hidden_size, pair_features)


class CosineHead(nn.Module):
    """cos(u, v) -> low + (high - low) * (1 + cos) / 2  (STS: 2.5 * (1 + cos))."""

    needs_pairs = True

    @classmethod
    def build(cls, task: Any, options: NoOptions, in_dim: int, out_dim: int,
              pair_features: tuple[str, ...] = ()) -> CosineHead:
        return cls()  # no parameters

    def forward(self, pooled: Tensor, pairs: Tensor | None = None) -> Tensor:
        return F.cosine_similarity(pooled[pairs[:, 0]].float(), pooled[pairs[:, 1]].float(), dim=-1)

    def to_score(self, logits: Tensor, low: float, high: float) -> Tensor:
        return low + (high - low) * (1 + logits) / 2


class ReluCosineHead(CosineHead):
    """cos(u, v) -> high * ReLU(cos)  (STS: 5 * ReLU(cos))."""

    def to_score(self, logits: Tensor, low: float, high: float) -> Tensor:
        return high * torch.relu(logits)


HEADS = Registry("head", {"linear": LinearHead, "mlp": MLPHead, "cosine": CosineHead, "relu_cosine": ReluCosineHead})
