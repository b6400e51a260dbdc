"""Poolings: (encoder output, padding mask) -> one vector per sequence. Units of one registry, chosen by name in a
task's config (`pooling = "mean"`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from minbert.model.bert import BertOutput
from minbert.options import Registry


class Pooling(nn.Module):
    def output_dim(self, hidden_size: int) -> int:
        return hidden_size

    def forward(self, output: BertOutput, attention_mask: Tensor) -> Tensor:  # -> (N, D)
        raise NotImplementedError


class ClsPooling(Pooling):
    """The pooler output: dense + tanh on [CLS] (what the CS224N starter used)."""

    def forward(self, output: BertOutput, attention_mask: Tensor) -> Tensor:
        return output.pooler_output


class ClsRawPooling(Pooling):
    """[CLS]'s last hidden state, without the pooler."""

    def forward(self, output: BertOutput, attention_mask: Tensor) -> Tensor:
        return output.last_hidden_state[:, 0]


class MeanPooling(Pooling):
    """Average over real tokens (padding excluded); what sentence-transformers' MiniLM was trained with."""

    def forward(self, output: BertOutput, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.unsqueeze(-1).to(output.last_hidden_state.dtype)  # (N, T, 1)
        return (output.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MaxPooling(Pooling):
    """Element-wise max over real tokens."""

    def forward(self, output: BertOutput, attention_mask: Tensor) -> Tensor:
        hidden = output.last_hidden_state
        padding = ~attention_mask.bool().unsqueeze(-1)
        return hidden.masked_fill(padding, torch.finfo(hidden.dtype).min).max(dim=1).values


class MeanMaxPooling(Pooling):
    """[mean; max], twice the hidden size."""

    def __init__(self):
        super().__init__()
        self.mean, self.max = MeanPooling(), MaxPooling()

    def output_dim(self, hidden_size: int) -> int:
        return 2 * hidden_size

    def forward(self, output: BertOutput, attention_mask: Tensor) -> Tensor:
        return torch.cat([self.mean(output, attention_mask), self.max(output, attention_mask)], dim=-1)


class TokenStates(Pooling):
    """Every token's hidden state (N, T, H): what a token-level head reads (tagging, span starts and ends). Not a
    choice of tasks.X.pooling: a kind whose head reads tokens takes it whatever the task's pooling says."""

    def forward(self, output: BertOutput, attention_mask: Tensor) -> Tensor:
        return output.last_hidden_state


POOLINGS = Registry("pooling", {
    "cls": ClsPooling,
    "cls_raw": ClsRawPooling,
    "mean": MeanPooling,
    "max": MaxPooling,
    "mean_max": MeanMaxPooling,
})
