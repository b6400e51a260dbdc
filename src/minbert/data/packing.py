"""Packing: several short sequences end to end in one row, so that no work goes to padding.

Each sequence counts its positions from 0 and attends only to itself (a block-diagonal attention mask), so every
real token gets what it would get alone in a padded batch. `unpack` gathers each sequence's tokens back into a
padded (N, L, H) tensor, so any pooling works on packed output unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class PackedBatch:
    inputs: dict[str, Tensor]  # input_ids, token_type_ids, position_ids (R, T); attention_mask (R, T, T) bool
    row: Tensor  # (N,) the packed row holding each sequence, in the order the sequences were given
    start: Tensor  # (N,) its first token's place in that row
    length: Tensor  # (N,) its tokens


def pack(rows: Sequence[tuple[Sequence[int], Sequence[int]]], capacity: int, pad_id: int) -> PackedBatch:
    """(ids, types) rows -> packed rows of at most `capacity` tokens (first fit, longest first)."""
    lengths = np.array([len(ids) for ids, _ in rows], dtype=np.int64)
    if len(lengths) and lengths.max() > capacity:
        raise ValueError(f"a sequence of {lengths.max()} tokens does not fit rows of {capacity}")
    fill: list[int] = []  # tokens placed in each packed row so far
    row, start = np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64)
    for i in np.argsort(-lengths, kind="stable"):
        target = next((r for r, used in enumerate(fill) if used + lengths[i] <= capacity), len(fill))
        if target == len(fill):
            fill.append(0)
        row[i], start[i] = target, fill[target]
        fill[target] += lengths[i]
    width = max(fill, default=0)
    input_ids = torch.full((len(fill), width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(fill), width), dtype=torch.long)
    position_ids = torch.zeros((len(fill), width), dtype=torch.long)
    segment = torch.full((len(fill), width), -1, dtype=torch.long)  # which sequence owns each slot (-1: none)
    for i, (ids, types) in enumerate(rows):
        place = slice(start[i], start[i] + lengths[i])
        input_ids[row[i], place] = torch.as_tensor(ids)
        token_type_ids[row[i], place] = torch.as_tensor(types)
        position_ids[row[i], place] = torch.arange(lengths[i])
        segment[row[i], place] = i
    # a token sees the keys of its own sequence; a padding slot sees itself (a softmax over no key would be NaN)
    same = segment[:, :, None] == segment[:, None, :]
    attention_mask = same & ((segment[:, :, None] >= 0) | torch.eye(width, dtype=torch.bool))
    inputs = {"input_ids": input_ids, "token_type_ids": token_type_ids, "position_ids": position_ids,
              "attention_mask": attention_mask}
    return PackedBatch(inputs, torch.from_numpy(row), torch.from_numpy(start), torch.from_numpy(lengths))


def unpack(hidden: Tensor, packed: PackedBatch) -> tuple[Tensor, Tensor]:
    """Packed hidden states (R, T, H) -> each sequence's own, zero-padded (N, L, H), and its (N, L) 1/0 mask."""
    width = int(packed.length.max()) if len(packed.length) else 0
    offsets = torch.arange(width, device=hidden.device)
    mask = offsets[None, :] < packed.length.to(hidden.device)[:, None]
    flat = (packed.row * hidden.shape[1] + packed.start).to(hidden.device)[:, None] + offsets[None, :]
    gathered = hidden.reshape(-1, hidden.shape[-1])[flat.clamp(max=hidden.shape[0] * hidden.shape[1] - 1)]
    return gathered * mask[..., None], mask.long()
