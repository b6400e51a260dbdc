"""A cache of what the frozen bottom of the encoder computes, so later epochs pay only for trainable layers.

When the embeddings and the bottom k layers are frozen (or the whole encoder, the starter's "pretrain" mode),
they run in eval mode (no dropout), so their output for a sequence never changes: it is computed once, stored
unpadded (one (length, H) slice per sequence), and re-padded for each later batch. Padding does not change what
real tokens see (padded keys are masked), so a cache hit equals a fresh computation at every real token.
The store lives in memory up to a byte budget and in a memory-mapped file beyond it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger("minbert")


class LayerCache:
    def __init__(self, lengths: np.ndarray, hidden_size: int, budget_bytes: int, spill_dir: Path | None = None,
                 name: str = "cache"):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.hidden_size = hidden_size
        shape = (int(self.offsets[-1]), hidden_size)
        size = shape[0] * hidden_size * 4
        if size <= budget_bytes:
            self.store = np.zeros(shape, dtype=np.float32)
            self.spill_path = None
        else:
            spill_dir = Path(spill_dir or tempfile.gettempdir())
            spill_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=spill_dir, prefix=f"{name}-", suffix=".f32", delete=False) as f:
                self.spill_path = Path(f.name)
            self.store = np.memmap(self.spill_path, dtype=np.float32, mode="w+", shape=shape)
            log.info("%s: %.0f MB of cached hidden states exceed the %.0f MB budget: spilled to %s", name,
                     size / 2**20, budget_bytes / 2**20, self.spill_path)
        self.filled = np.zeros(len(self.lengths), dtype=bool)

    def get(self, rows: list[int], width: int) -> Tensor | None:
        """(len(rows), width, H) zero-padded hidden states, or None unless every row is cached."""
        if not self.filled[rows].all():
            return None
        out = torch.zeros(len(rows), width, self.hidden_size)
        for i, r in enumerate(rows):
            out[i, : self.lengths[r]] = torch.from_numpy(np.asarray(self.store[self.offsets[r]:self.offsets[r + 1]]))
        return out

    def put(self, rows: list[int], hidden: Tensor) -> None:
        hidden = hidden.detach().float().cpu().numpy()
        for i, r in enumerate(rows):
            self.store[self.offsets[r]:self.offsets[r + 1]] = hidden[i, : self.lengths[r]]
        self.filled[rows] = True

    def close(self) -> None:
        if self.spill_path is not None:
            del self.store
            self.spill_path.unlink(missing_ok=True)
            self.spill_path = None
