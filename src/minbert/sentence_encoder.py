"""Sentence embeddings for inference: length-sorted batches (little padding), results in input order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from minbert.data.packing import pack, unpack
from minbert.device import INFERENCE_PRECISIONS, autocast, quantize_int8, resolve_device, resolve_precision
from minbert.errors import ConfigError
from minbert.model.bert import BertModel
from minbert.model_dir import resolve_model_dir
from minbert.tasks.pooling import POOLINGS
from minbert.tokenizer import Tokenizer


class SentenceEncoder:
    """`SentenceEncoder.from_pretrained().encode(["a sentence", ...])` -> (N, H) float32 embeddings."""

    def __init__(self, model: BertModel, tokenizer: Tokenizer, device: str = "auto"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self._int8_model: BertModel | None = None  # built on the first int8 call

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str = "auto",
                        revision: str | None = None) -> SentenceEncoder:
        """`path`: a model directory, a Hugging Face Hub name (with an optional `revision`), or None: the embedded
        MiniLM."""
        directory = resolve_model_dir(path, revision)
        return cls(BertModel.from_pretrained(directory), Tokenizer.from_pretrained(directory), device)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64, pooling: str = "mean", precision: str = "auto",
               max_length: int = 512, sort_by_length: bool = True, packing: int = 0) -> Tensor:
        """(N, H) embeddings in input order. `packing` > 0: each model call packs `batch_size` sentences into rows
        of that many tokens (block-diagonal attention, minbert.data.packing) instead of padding them."""
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        if precision not in INFERENCE_PRECISIONS:
            raise ConfigError(f"precision {precision!r} is not one of {', '.join(INFERENCE_PRECISIONS)}")
        if isinstance(texts, str):
            texts = [texts]
        pool = POOLINGS[pooling]()
        dtype = resolve_precision(precision, self.device)
        model = self.model
        if precision == "int8":
            if self._int8_model is None:
                self._int8_model = quantize_int8(self.model, self.device)
            model = self._int8_model
        rows = self.tokenizer.encode_ids(list(texts), max_length=max_length)
        # packing needs no sorting: short and long rows share a packed row
        sort = sort_by_length and not packing
        order = np.argsort(rows.lengths, kind="stable") if sort else np.arange(len(rows))
        out = torch.empty(len(rows), pool.output_dim(self.model.config.hidden_size))
        for start in range(0, len(rows), batch_size):
            chosen = order[start:start + batch_size]
            if packing:
                pooled = self._packed_call(model, pool, [rows[i] for i in chosen], packing, dtype)
            else:
                inputs = {k: v.to(self.device) for k, v in self.tokenizer.pad([rows[i] for i in chosen]).items()}
                with autocast(self.device, dtype):
                    pooled = pool(model(**inputs), inputs["attention_mask"])
            out[torch.from_numpy(chosen)] = pooled.float().cpu()
        return out

    def _packed_call(self, model: BertModel, pool, rows: list, capacity: int, dtype) -> Tensor:
        packed = pack(rows, capacity, self.tokenizer.pad_id)
        inputs = {k: v.to(self.device) for k, v in packed.inputs.items()}
        with autocast(self.device, dtype):
            hidden = model(**inputs).last_hidden_state
            hidden, mask = unpack(hidden, packed)  # each sentence's own tokens, as a padded batch would hold them
            return pool(model.finish(hidden), mask)
