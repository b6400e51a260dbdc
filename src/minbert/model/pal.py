"""Projected attention layers, PALs (Stickland & Murray 2019): a task-specific, low-rank attention added in
parallel to each encoder layer's self-attention:  h <- LN(h + SA(h) + V_D · MH(V_E · h)).

V_E (H -> r) and V_D (r -> H) are shared across layers or per layer; the multi-head attention MH works in the
small r-dimensional space. V_D starts at zero, so training starts from the pretrained encoder's function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from minbert.errors import ConfigError
from minbert.options import option


@dataclass
class PALOptions:
    """`[model.pal]`: one task's PALs in every encoder layer that trains."""

    size: int = option(0, low=0)  # the projection's width r; 0 = no PALs
    heads: int = option(12, low=0, low_open=True)
    shared: bool = True  # one encoder/decoder projection pair shared by all layers (else one per layer)

    def __post_init__(self) -> None:
        if self.size % self.heads:
            raise ConfigError(f"model.pal.size = {self.size} must be a multiple of model.pal.heads = {self.heads}")


class ProjectedAttention(nn.Module):
    def __init__(self, size: int, heads: int):
        super().__init__()
        if size % heads:
            raise ValueError(f"PAL size {size} is not a multiple of its {heads} heads")
        self.n_head = heads
        self.qkv = nn.Linear(size, 3 * size)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        B, T, r = x.shape  # (B, T, r)
        q, k, v = (t.view(B, T, self.n_head, r // self.n_head).transpose(1, 2) for t in self.qkv(x).split(r, dim=2))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, T, r)


class PAL(nn.Module):
    """One task's PALs for layers first..first+count-1 of the encoder."""

    def __init__(self, hidden: int, size: int, heads: int, count: int, shared: bool, first: int = 0):
        super().__init__()
        self.first = first
        projections = 1 if shared else count
        self.encoders = nn.ModuleList(nn.Linear(hidden, size, bias=False) for _ in range(projections))
        self.decoders = nn.ModuleList(nn.Linear(size, hidden, bias=False) for _ in range(projections))
        for decoder in self.decoders:
            nn.init.zeros_(decoder.weight)
        self.attentions = nn.ModuleList(ProjectedAttention(size, heads) for _ in range(count))

    def for_layer(self, index: int):
        """The adapter of encoder layer `index` (a function of (x, mask)), or None if that layer has none."""
        i = index - self.first
        if not 0 <= i < len(self.attentions):
            return None
        encoder = self.encoders[0 if len(self.encoders) == 1 else i]
        decoder = self.decoders[0 if len(self.decoders) == 1 else i]
        attention = self.attentions[i]
        return lambda x, mask: decoder(attention(encoder(x), mask))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
