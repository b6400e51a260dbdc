"""Examples -> token ids (once, at load time) -> padded batches, with length bucketing.

A pair task is either cross-encoded (one sequence `[CLS] a [SEP] b [SEP]` per example) or siamese (each distinct
sentence is its own sequence, encoded once per batch however many pairs share it; `Batch.index` says which rows
form each pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from minbert.data.files import Example
from minbert.tokenizer import Tokenizer

BUCKET_BATCHES = 50  # training sorts by length within windows of this many batches, then shuffles the batches
# token-budget batches pad every row to a multiple of this many tokens (tensor cores' tile), so shapes repeat
BUCKET_MULTIPLE = 8


@dataclass(frozen=True)
class ExtraSource:
    """Examples [start, stop) of a task's training data came from one extra file; `share` > 0: each epoch draws
    that share of the epoch's examples afresh from them instead of taking them all."""

    name: str
    start: int
    stop: int
    share: float = 0.0


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """A host tensor's copy on `device` that does not wait for the device's queue: a copy from pageable memory
    is staged through a driver buffer and can block the host until the GPU has caught up, so a CUDA copy goes
    from pinned memory (torch's caching host allocator reuses the pinned block once the copy is done)."""
    if torch.device(device).type == "cuda" and tensor.is_cpu and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


@dataclass
class Batch:
    task: str
    inputs: dict[str, Tensor]  # input_ids, attention_mask, token_type_ids: (N, T)
    labels: Tensor | None  # (B,), None for unlabelled files
    positions: list[int]  # the examples' positions in their TaskData (predictions go back there)
    index: Tensor | None = None  # siamese pairs: (B, 2) rows of `inputs`; None: row i is example i
    rows: list[int] | None = None  # the TaskData rows (tokenized sequences) in `inputs`
    # where the frozen layers' outputs for those rows are kept (a training.layer_cache.LayerCache: get/put), if any
    cache: Any = None
    teacher: Tensor | None = None  # distillation: the teacher's soft outputs for these examples
    # known on the host (read by `to` before the copy): every row fills its width, so the encoder is handed no
    # attention mask and a GPU may take its fastest attention kernel without reading the mask back from the device
    unpadded: bool = False

    def to(self, device: torch.device) -> Batch:
        mask = self.inputs.get("attention_mask")
        unpadded = self.unpadded or (mask is not None and mask.is_cpu and bool(mask.all()))
        inputs = {k: to_device(v, device) for k, v in self.inputs.items()}
        labels = None if self.labels is None else to_device(self.labels, device)
        index = None if self.index is None else to_device(self.index, device)
        teacher = None if self.teacher is None else to_device(self.teacher, device)
        return Batch(self.task, inputs, labels, self.positions, index, self.rows, self.cache, teacher, unpadded)

    @property
    def encoder_mask(self) -> Tensor | None:
        """The attention mask the encoder applies: None where no row is padded (pooling still reads
        `inputs["attention_mask"]`)."""
        return None if self.unpadded else self.inputs.get("attention_mask")

    def __len__(self) -> int:
        return len(self.positions)


class TaskData:
    """One split of one task, tokenized."""

    # > 1: `collate` pads to a multiple of this (capped at the split's longest row), not to the batch's longest row,
    # so that token-budget batches repeat a few shapes (the trainer sets it on training data)
    pad_multiple: int = 1

    def __init__(self, task: str, examples: list[Example], tokenizer: Tokenizer, max_length: int,
                 siamese: bool = False, label_dtype: torch.dtype = torch.long, sources: list[ExtraSource] = (),
                 both_orders: bool = False, random_order: bool = False):
        self.task = task
        self.examples = examples
        self.sources = list(sources)  # the extra files' examples, after the task's own (training data only)
        self.tokenizer = tokenizer
        self.siamese = siamese
        # cross-encoded pairs of a symmetric task: with `both_orders` (predict_order = "both": predictions average
        # the two) or `random_order` (train_order = "random": each epoch draws one per example), rows len(self) + i
        # hold example i's texts the other way round ([CLS] b [SEP] a [SEP]), and a position p >= len(self) means
        # example p - len(self) so
        pairs_here = not siamese and bool(examples) and len(examples[0].texts) == 2
        self.both_orders = both_orders and pairs_here
        self.random_order = random_order and pairs_here
        self.swapped_rows = self.both_orders or self.random_order
        self.cache: Any = None  # a LayerCache, set by the trainer when the encoder's bottom is frozen
        self.teacher: np.ndarray | None = None  # distillation: a teacher's soft output per example (training data)
        self.labelled = bool(examples) and all(e.label is not None for e in examples)
        self.labels = torch.tensor([e.label for e in examples], dtype=label_dtype) if self.labelled else None
        if siamese:
            sentences = sorted({t for e in examples for t in e.texts})
            row_of = {s: i for i, s in enumerate(sentences)}
            self.rows = tokenizer.encode_ids(sentences, max_length=max_length)
            self.pair_rows = np.array([[row_of[t] for t in e.texts] for e in examples], dtype=np.int64).reshape(-1, 2)
            self.lengths = self.rows.lengths[self.pair_rows].max(axis=1) if len(examples) else self.rows.lengths
        else:
            texts = [e.texts[0] for e in examples]
            pairs = [e.texts[1] for e in examples] if examples and len(examples[0].texts) == 2 else None
            if self.swapped_rows:
                texts, pairs = texts + pairs, pairs + texts
            self.rows = tokenizer.encode_ids(texts, pairs, max_length=max_length)
            self.lengths = self.rows.lengths

    def __len__(self) -> int:
        return len(self.examples)

    def batches(self, batch_size: int, shuffle: bool, bucketing: bool, rng: np.random.Generator | None = None,
                positions: np.ndarray | None = None, max_tokens: int = 0) -> list[list[int]]:
        """Example positions (default: all; repeats allowed) per batch. Without shuffling, bucketing sorts globally
        (inference: least padding); with shuffling, it sorts within random windows, then shuffles the batches.
        `max_tokens` > 0: batches of up to that many padded tokens instead of `batch_size` examples
        (`token_batches`)."""
        order = np.arange(len(self)) if positions is None else np.asarray(positions)
        if shuffle:
            order = order[rng.permutation(len(order))]
        if max_tokens:
            batches = self.token_batches(order, max_tokens, bucketing)
            return [batches[i] for i in rng.permutation(len(batches))] if shuffle else batches
        if bucketing and len(order):
            window = batch_size * BUCKET_BATCHES if shuffle else len(order)
            order = np.concatenate([chunk[np.argsort(self.lengths[chunk], kind="stable")]
                                    for chunk in np.array_split(order, -(-len(order) // window))])
        batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        if shuffle and bucketing:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def token_batches(self, order: np.ndarray, max_tokens: int, bucketing: bool) -> list[list[int]]:
        """The examples at `order` as batches of at most `max_tokens` tokens as `collate` pads them (rows times the
        bucket width of the longest; a siamese batch's distinct sentences, a question's every choice), filled in
        order. With `bucketing`, each batch holds examples of one bucket width only, so almost every batch of a
        width has the same shape. An example over the budget by itself (a question whose choices together exceed
        it) is a batch of its own."""
        widths = self.bucket_width(self.lengths[order])
        if bucketing:
            sort = np.argsort(widths, kind="stable")  # the draw's order within each width
            order, widths = order[sort], widths[sort]
        counts = self.rows_per_example(order)
        pairs = self.pair_rows[order].tolist() if self.siamese else None
        batches: list[list[int]] = []
        batch: list[int] = []
        rows, width, seen = 0, 0, set()
        for i, (p, w, alone) in enumerate(zip(order.tolist(), widths.tolist(), counts.tolist(), strict=True)):
            pair = set(pairs[i]) if pairs is not None else set()
            added = len(pair - seen) if pairs is not None else alone  # a sentence in the batch is encoded once
            if batch and ((bucketing and w != width) or (rows + added) * max(width, w) > max_tokens):
                batches.append(batch)
                batch, rows, width, seen, added = [], 0, 0, set(), alone
            batch.append(p)
            rows, width = rows + added, max(width, w)
            seen |= pair
        if batch:
            batches.append(batch)
        return batches

    def rows_per_example(self, positions: np.ndarray) -> np.ndarray:
        """How many rows `collate` pads for each example alone (a siamese pair: its distinct sentences)."""
        if self.siamese:
            pairs = self.pair_rows[np.asarray(positions, dtype=np.int64)]
            return 1 + (pairs[:, 0] != pairs[:, 1])
        return np.ones(len(positions), dtype=np.int64)

    @cached_property
    def longest_row(self) -> int:
        return int(self.row_lengths.max(initial=0))

    def bucket_width(self, lengths: np.ndarray | int) -> np.ndarray | int:
        """The padded width of a batch whose longest row has `lengths` tokens: itself, or with `pad_multiple` the
        next multiple of it, capped at the split's longest row (which stays within model.max_length)."""
        if self.pad_multiple <= 1:
            return lengths
        return np.minimum(-(-np.asarray(lengths) // self.pad_multiple) * self.pad_multiple, self.longest_row)

    def pad(self, rows: list) -> dict[str, Tensor]:
        """(ids, type ids) rows padded to the batch's width (`bucket_width`)."""
        longest = max((len(ids) for ids, _ in rows), default=0)
        return self.tokenizer.pad(rows, width=int(self.bucket_width(longest)))

    def collate(self, positions: list[int]) -> Batch:
        """A batch of the examples at `positions` (with both orders, a position past the examples is one of them
        the other way round: the batch's `rows` keep it, its `positions` name the example)."""
        rows = list(positions)
        if self.swapped_rows:
            positions = [p % len(self) for p in rows]
        labels = self.labels[positions] if self.labels is not None else None
        teacher = torch.from_numpy(self.teacher[positions]) if self.teacher is not None else None
        if not self.siamese:
            inputs = self.pad([self.rows[r] for r in rows])
            return Batch(self.task, inputs, labels, positions, None, rows, self.cache, teacher)
        pair_rows = self.pair_rows[positions]  # (B, 2) rows in self.rows
        distinct, index = np.unique(pair_rows, return_inverse=True)  # each distinct sentence is encoded once
        inputs = self.pad([self.rows[r] for r in distinct])
        return Batch(self.task, inputs, labels, positions, torch.from_numpy(index.reshape(-1, 2)), distinct.tolist(),
                     self.cache, teacher)

    def epoch_positions(self, use: str, rng: np.random.Generator) -> np.ndarray:
        """The examples one epoch trains on. `use`: all | base (the task's own file) | extra (its extra files).
        An extra source with a share is drawn afresh each epoch (without repeats) so that it makes up that share
        of the epoch; without one it is taken whole. With a random order, each example's order is drawn too.
        Draws from `rng` only when a share or an order is drawn."""
        base_stop = self.sources[0].start if self.sources else len(self)
        parts = [np.arange(base_stop)] if use in ("all", "base") else []
        if use in ("all", "extra"):
            for source in self.sources:
                size = source.stop - source.start
                if source.share and use == "all":
                    size = min(size, round(base_stop * source.share / (1 - source.share)))
                    parts.append(source.start + np.sort(rng.choice(source.stop - source.start, size, replace=False)))
                else:
                    parts.append(np.arange(source.start, source.stop))
        positions = np.concatenate(parts) if parts else np.arange(0)
        if self.random_order:  # each example in one of its two orders, drawn afresh each epoch
            positions = positions + len(self) * rng.integers(0, 2, len(positions))
        return positions

    def example_ids(self, positions: list[int]) -> list[str]:
        """The ids of the examples at `positions` (for messages)."""
        return [self.examples[p % len(self)].id for p in positions]

    def other_order(self, positions: list[int]) -> list[int]:
        """The same examples with their texts the other way round (rows of both orders only)."""
        return [p + len(self) for p in positions]

    @property
    def row_lengths(self) -> np.ndarray:
        """Tokens per tokenized sequence (for a siamese task: per distinct sentence)."""
        return self.rows.lengths

    def batch_row_lengths(self, positions: list[int]) -> np.ndarray:
        """Tokens of each sequence that `collate(positions)` pads into one batch, in no particular order: a
        siamese batch's distinct sentences, any other batch's rows (a kind whose example spans several rows, such
        as a question's choices, says which). The padding a batch carries follows from it."""
        rows = np.unique(self.pair_rows[positions]) if self.siamese else np.asarray(positions, dtype=np.int64)
        return self.row_lengths[rows]


class WindowData(TaskData):
    """One split whose examples are cut into windows, each a model row (a long sentence's overlapping parts, a
    question's windows over its context): a position is a window, so batches, samplers and the layer cache work on
    windows as they do on sentence rows. A window has `input_ids` and, where a pair makes it, `token_type_ids`;
    `owners[i]` is the example that window i belongs to. Windows come from a task's own files only (no extra data)."""

    def __init__(self, task: str, examples: list, tokenizer: Tokenizer, windows: list, owners: list[int],
                 labels: Tensor | None):
        self.task = task
        self.examples = examples
        self.sources = []
        self.tokenizer = tokenizer
        self.siamese = self.both_orders = self.random_order = self.swapped_rows = False
        self.cache = None
        self.teacher = None
        self.windows = windows
        self.owners = owners
        self.lengths = np.array([len(w.input_ids) for w in windows], dtype=np.int64)
        self.labelled = labels is not None
        self.labels = labels

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def row_lengths(self) -> np.ndarray:
        return self.lengths

    def example_ids(self, positions: list[int]) -> list[str]:
        return [self.examples[self.owners[p]].id for p in positions]

    def batch_labels(self, positions: list[int], width: int) -> Tensor | None:
        """The labels of the windows at `positions`, padded to `width` tokens."""
        return self.labels[positions] if self.labels is not None else None

    def collate(self, positions: list[int]) -> Batch:
        windows = [self.windows[p] for p in positions]
        inputs = self.pad([(w.input_ids, getattr(w, "token_type_ids", None)) for w in windows])
        labels = self.batch_labels(list(positions), inputs["input_ids"].shape[1])
        return Batch(self.task, inputs, labels, list(positions), None, list(positions), self.cache, None)
