"""Batching: dynamic padding, length bucketing that loses and repeats nothing, siamese de-duplication."""

from __future__ import annotations

import numpy as np
import torch

from minbert import Tokenizer
from minbert.data.batching import TaskData
from minbert.data.files import Example


def examples(texts, labels=None):
    return [Example(f"id{i}", t if isinstance(t, tuple) else (t,), None if labels is None else labels[i], i + 2)
            for i, t in enumerate(texts)]


def test_bucketed_batches_cover_every_example_once(tiny_model_dir):
    tok = Tokenizer.from_pretrained(tiny_model_dir)
    rng = np.random.default_rng(0)
    texts = [" ".join(["good"] * int(n)) for n in rng.integers(1, 30, size=203)]
    data = TaskData("sst", examples(texts, [1] * 203), tok, max_length=64)
    for shuffle in (False, True):
        batches = data.batches(16, shuffle=shuffle, bucketing=True, rng=np.random.default_rng(1))
        assert sorted(p for b in batches for p in b) == list(range(203))
    sorted_batches = data.batches(16, shuffle=False, bucketing=True)
    padded = sum(len(b) * data.lengths[b].max() for b in sorted_batches)
    plain = sum(len(b) * data.lengths[b].max() for b in data.batches(16, shuffle=False, bucketing=False))
    assert padded < 0.75 * plain  # bucketing removes most padding
    shuffled = data.batches(16, shuffle=True, bucketing=True, rng=np.random.default_rng(1))
    assert shuffled != data.batches(16, shuffle=True, bucketing=True, rng=np.random.default_rng(2))


def test_collate_pads_to_the_longest_in_batch(tiny_model_dir):
    tok = Tokenizer.from_pretrained(tiny_model_dir)
    data = TaskData("sst", examples(["good", "good bad film", "fun"], [0, 1, 2]), tok, max_length=64)
    batch = data.collate([0, 2])
    assert batch.inputs["input_ids"].shape == (2, 3)
    assert batch.labels.tolist() == [0, 2]
    assert data.collate([1]).inputs["input_ids"].shape == (1, 5)


def test_siamese_batches_encode_each_distinct_sentence_once(tiny_model_dir):
    tok = Tokenizer.from_pretrained(tiny_model_dir)
    pairs = [("the dog", "the cat"), ("the cat", "the dog"), ("the dog", "a film")]
    data = TaskData("sts", examples(pairs, [1.0, 2.0, 3.0]), tok, max_length=64, siamese=True,
                    label_dtype=torch.float32)
    batch = data.collate([0, 1, 2])
    assert batch.inputs["input_ids"].shape[0] == 3  # three distinct sentences, not six
    decoded = [tok.backend.decode(row.tolist()) for row in batch.inputs["input_ids"]]
    for (a, b), (i, j) in zip(pairs, batch.index.tolist(), strict=True):
        assert (decoded[i], decoded[j]) == (a, b)
