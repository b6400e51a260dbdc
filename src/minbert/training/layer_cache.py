"""A cache of what the frozen bottom of the encoder computes, so later epochs pay only for trainable layers.

When the embeddings and the bottom k layers are frozen (or the whole encoder, the starter's "pretrain" mode),
they run in eval mode (no dropout), so their output for a sequence never changes: it is computed once, stored
unpadded (one (length, H) slice per sequence), and re-padded for each later batch. Padding does not change what
real tokens see (padded keys are masked), so a cache hit equals a fresh computation at every real token.

The store keeps bf16 by default (half of fp32's bytes; the next layer's matmuls read bf16 under autocast anyway).
A freshly computed batch is rounded the same way before it goes on, so every epoch sees the same values whether
they were just computed or read back. The store lives in memory up to a byte budget and in a memory-mapped file
(in the run directory) beyond it; both hold the same bytes.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger("minbert")

# cache dtype -> (torch dtype, the numpy dtype holding its bits: numpy has no bfloat16)
STORE_DTYPES = {"bfloat16": (torch.bfloat16, np.int16), "float32": (torch.float32, np.float32)}


class LayerCache:
    def __init__(self, lengths: np.ndarray, hidden_size: int, budget_bytes: int, spill_dir: Path | None = None,
                 name: str = "cache", dtype: str = "bfloat16"):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.hidden_size = hidden_size
        self.dtype, bits = STORE_DTYPES[dtype]
        shape = (int(self.offsets[-1]), hidden_size)
        size = shape[0] * hidden_size * np.dtype(bits).itemsize
        if size <= budget_bytes:
            self.store = np.zeros(shape, dtype=bits)
            self.spill_path = None
        else:
            spill_dir = Path(spill_dir or tempfile.gettempdir())
            spill_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=spill_dir, prefix=f"{name}-", suffix=f".{dtype}",
                                             delete=False) as f:
                self.spill_path = Path(f.name)
            self.store = np.memmap(self.spill_path, dtype=bits, mode="w+", shape=shape)
            log.info("%s: %.0f MB of cached hidden states exceed the %.0f MB budget: memory-mapped from %s", name,
                     size / 2**20, budget_bytes / 2**20, self.spill_path)
        self.filled = np.zeros(len(self.lengths), dtype=bool)

    def get(self, rows: list[int], width: int) -> Tensor | None:
        """(len(rows), width, H) zero-padded fp32 hidden states, or None unless every row is cached."""
        if not self.filled[rows].all():
            return None
        out = torch.zeros(len(rows), width, self.hidden_size, dtype=self.dtype)
        for i, r in enumerate(rows):
            stored = torch.from_numpy(np.asarray(self.store[self.offsets[r]:self.offsets[r + 1]]))
            out[i, : self.lengths[r]] = stored.view(self.dtype)
        return out.float()

    def put(self, rows: list[int], hidden: Tensor) -> Tensor:
        """Store each row's real tokens; returns `hidden` rounded to the store's dtype (what a later get gives)."""
        rounded = hidden.detach().to(self.dtype)  # on hidden's device: only the store's copy goes to the host
        bits = rounded.cpu().view(torch.int16) if self.dtype == torch.bfloat16 else rounded.cpu()
        array = bits.numpy()
        for i, r in enumerate(rows):
            self.store[self.offsets[r]:self.offsets[r + 1]] = array[i, : self.lengths[r]]
        self.filled[rows] = True
        return rounded.to(hidden.dtype)

    def close(self) -> None:
        if self.spill_path is not None:
            del self.store
            self.spill_path.unlink(missing_ok=True)
            self.spill_path = None
