"""Task heads: pooled features (B, D) -> task outputs (B, K). Chosen by name in a task's config."""

from __future__ import annotations

from torch import Tensor, nn


class FeedForwardHead(nn.Module):
    """dropout -> [linear -> ReLU -> dropout] x hidden_layers -> linear."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float, hidden_layers: int = 0, hidden_size: int = 0):
        super().__init__()
        width = hidden_size or in_dim
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        for i in range(hidden_layers):
            layers += [nn.Linear(in_dim if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(width if hidden_layers else in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


def linear_head(in_dim: int, out_dim: int, dropout: float, hidden_layers: int = 0, hidden_size: int = 0):
    """dropout + linear: hidden_layers is ignored."""
    return FeedForwardHead(in_dim, out_dim, dropout)


def mlp_head(in_dim: int, out_dim: int, dropout: float, hidden_layers: int = 0, hidden_size: int = 0):
    """An MLP with at least one hidden ReLU layer."""
    return FeedForwardHead(in_dim, out_dim, dropout, max(hidden_layers, 1), hidden_size)


HEADS = {"linear": linear_head, "mlp": mlp_head}
