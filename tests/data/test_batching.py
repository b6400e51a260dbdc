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


def test_a_batch_knows_on_the_host_whether_any_row_is_padded(tiny_model_dir):
    from minbert.model import BertModel
    from minbert.tasks.model import MultitaskModel
    from minbert.training.config import ModelConfig, TaskConfig

    tok = Tokenizer.from_pretrained(tiny_model_dir)
    data = TaskData("sst", examples(["good film", "bad film", "fun"], [0, 1, 2]), tok, max_length=64)
    full, padded = data.collate([0, 1]), data.collate([0, 2])
    assert not full.unpadded  # unknown until `to` reads the host's mask
    moved = full.to(torch.device("cpu"))
    assert moved.unpadded and moved.encoder_mask is None
    assert moved.inputs["attention_mask"].tolist() == [[1] * 4] * 2  # pooling still has it
    assert not padded.to(torch.device("cpu")).unpadded
    assert padded.to(torch.device("cpu")).encoder_mask is padded.inputs["attention_mask"]
    on_meta = full.to(torch.device("meta"))  # another device: decided before the copy, never read back
    assert on_meta.unpadded and on_meta.inputs["input_ids"].device.type == "meta"
    assert not padded.to(torch.device("meta")).unpadded

    torch.manual_seed(0)
    model = MultitaskModel(BertModel.from_pretrained(tiny_model_dir),
                           {"sst": TaskConfig(data="sst", pooling="mean", dropout=0.0)}, ModelConfig()).eval()
    masks = []
    run_layers = model.encoder.run_layers
    model.encoder.run_layers = lambda x, mask, *args: masks.append(mask) or run_layers(x, mask, *args)
    with torch.no_grad():
        given_none = model(moved).logits
        given_mask = model(full).logits  # not moved: the mask of ones is handed on (and found empty there)
        both = model(padded.to(torch.device("cpu"))).logits
    assert masks[0] is None and masks[1] is full.inputs["attention_mask"] and masks[2] is not None
    torch.testing.assert_close(given_none, given_mask, rtol=0, atol=0)
    torch.testing.assert_close(both[0], given_none[0], rtol=0, atol=1e-5)  # row 0 unchanged beside a shorter row
