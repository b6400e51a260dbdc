"""The BERT encoder, written from scratch: embeddings -> N x (self-attention, add & norm, GELU FFN, add & norm)
-> pooler. Numerically equal to HF transformers' BertModel (tests/model/test_bert_vs_hf.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minbert.model.config import GELU_APPROXIMATIONS, BertConfig


@dataclass
class BertOutput:
    last_hidden_state: Tensor  # (B, T, H)
    pooler_output: Tensor  # (B, H)


class Embeddings(nn.Module):
    """word + position + token type, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                word_embeds: Tensor | None = None, position_ids: Tensor | None = None) -> Tensor:
        # word_embeds lets adversarial regularizers feed perturbed word embeddings in place of a lookup;
        # position_ids (B, T) let packed rows count each sequence's positions from 0 (minbert.data.packing)
        T = input_ids.size(1)
        if word_embeds is None:
            word_embeds = self.word_embeddings(input_ids)  # (B, T, H)
        if position_ids is None:
            positions = self.position_embeddings.weight[:T]  # (T, H), broadcast over the batch
        else:
            positions = self.position_embeddings(position_ids)
        if token_type_ids is None:
            types = self.token_type_embeddings.weight[0]  # every token is segment 0
        else:
            types = self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(word_embeds + positions + types))


class SelfAttention(nn.Module):
    """Multi-head self-attention; query, key and value share one fused projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.n_head = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.use_sdpa = True  # False selects the explicit reference path below

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        # x (B, T, H); mask (B, 1, 1, T) or (B, 1, T, T) bool, True where a key may be attended to; None: no padding
        B, T, H = x.shape
        q, k, v = self.qkv(x).split(H, dim=2)
        q, k, v = (t.view(B, T, self.n_head, H // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        dropout_p = self.dropout_p if self.training else 0.0
        # CPU's fused kernel has a slow bf16 backward (MiniLM, batch 32: 0.41 s per training step vs 0.25 s on the
        # explicit path): bf16 training on a CPU takes the explicit one (fp32 and inference keep the fused kernel).
        slow_backward = x.is_cpu and q.dtype == torch.bfloat16 and torch.is_grad_enabled()
        if self.use_sdpa and not slow_backward:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, T, T)
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))
            att = F.dropout(F.softmax(att, dim=-1), p=dropout_p)
            y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, H)
        return self.out(y)


class FeedForward(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.approximate = GELU_APPROXIMATIONS[config.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.up(x)
        if torch.is_grad_enabled() and isinstance(self.down, nn.Linear):
            return GeluDown.apply(hidden, self.down.weight, self.down.bias, self.approximate)
        return self.down(F.gelu(hidden, approximate=self.approximate))


class GeluDown(torch.autograd.Function):
    """down(gelu(h)) that keeps h, not gelu(h), for the backward pass and recomputes the GELU there: one
    (B, T, intermediate) tensor less per layer (72 MiB of a long MiniLM batch's 465), at no measurable cost in
    time. One forward and backward give autograd's own outputs and gradients bit for bit
    (tests/model/test_bert_vs_hf.py). Where a step runs the encoder twice (FGSM, SMART), each pass casts the
    weight to bf16 on its own and their gradients are summed in fp32, where autocast's shared cast summed them in
    bf16 first: the same sum, rounded less."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor, approximate: str) -> Tensor:
        weight, bias = weight.to(hidden.dtype), bias.to(hidden.dtype)  # what autocast would cast them to
        ctx.save_for_backward(hidden, weight)
        ctx.approximate = approximate
        return F.linear(F.gelu(hidden, approximate=approximate), weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        hidden, weight = ctx.saved_tensors
        activated = F.gelu(hidden, approximate=ctx.approximate)
        rows = grad.reshape(-1, grad.shape[-1])
        grad_weight = rows.t() @ activated.reshape(-1, activated.shape[-1])
        grad_hidden = torch.ops.aten.gelu_backward(grad @ weight, hidden, approximate=ctx.approximate)
        return grad_hidden, grad_weight, rows.sum(0), None


class Layer(nn.Module):
    """One post-LayerNorm transformer block, as in the original BERT."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, mask: Tensor | None, adapter=None) -> Tensor:
        attended = self.dropout(self.attention(x, mask))
        if adapter is not None:  # a task-specific branch in parallel to self-attention (PAL)
            attended = attended + adapter(x, mask)
        x = self.attention_norm(x + attended)
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class Pooler(nn.Module):
    """dense + tanh on the first ([CLS]) token."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def attention_mask_for(attention_mask: Tensor | None) -> Tensor | None:
    """(B, T) 1/0 padding mask -> (B, 1, 1, T) bool; None when nothing is padded (lets SDPA use its fastest
    kernel). A (B, T, T) mask says which keys each query may see (packed rows' block diagonal) -> (B, 1, T, T).
    Seeing that nothing is padded means reading the mask, which is free only for a CPU tensor in eager mode: on a
    GPU it would stall every forward on a device-to-host copy, and under torch.compile it would break the graph,
    so there the mask is always applied (same result: no key is masked)."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 3:
        return attention_mask.bool()[:, None]
    if attention_mask.is_cpu and not torch.compiler.is_compiling() and bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


class BertModel(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, identity LayerNorm.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def set_dropout(self, hidden: float, attention: float) -> None:
        """Override the checkpoint's dropout rates (config.json keeps the checkpoint's own)."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = hidden
            elif isinstance(module, SelfAttention):
                module.dropout_p = attention

    def set_attention_impl(self, impl: str) -> None:
        """'sdpa' (fused kernel) or 'manual' (explicit softmax(QK^T/sqrt(d))V, for reading and testing)."""
        if impl not in ("sdpa", "manual"):
            raise ValueError(f"attention impl must be 'sdpa' or 'manual', not {impl!r}")
        for layer in self.layers:
            layer.attention.use_sdpa = impl == "sdpa"

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, word_embeds: Tensor | None = None, pal=None,
                position_ids: Tensor | None = None) -> BertOutput:
        x = self.embeddings(input_ids, token_type_ids, word_embeds, position_ids)
        return self.finish(self.run_layers(x, attention_mask, 0, len(self.layers), pal))

    def run_layers(self, x: Tensor, attention_mask: Tensor | None, start: int, end: int, pal=None) -> Tensor:
        """Layers start..end-1 on hidden states x (B, T, H): lets a frozen bottom be cached. `pal`: a task's
        projected attention layers (minbert.model.pal.PAL), if any."""
        mask = attention_mask_for(attention_mask)
        for index in range(start, end):
            x = self.layers[index](x, mask, pal.for_layer(index) if pal is not None else None)
        return x

    def finish(self, hidden: Tensor) -> BertOutput:
        return BertOutput(last_hidden_state=hidden, pooler_output=self.pooler(hidden))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> BertModel:
        """Load a checkpoint directory in HF layout (None: the embedded all-MiniLM-L6-v2). Returns eval mode."""
        from minbert.model.loading import load_pretrained

        return load_pretrained(cls, path)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors with HF parameter names, loadable by HF transformers too."""
        from minbert.model.loading import save_pretrained

        save_pretrained(self, directory)
