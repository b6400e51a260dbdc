"""Our tokenizer against transformers' BertTokenizerFast on every dev sentence and pair."""

from __future__ import annotations

import pytest
import torch

from minbert import Tokenizer
from tests.conftest import read_columns

transformers = pytest.importorskip("transformers")

DEV_FILES = {"sst": ("ids-sst-dev.csv", ("sentence",)),
             "sts": ("sts-dev.csv", ("sentence1", "sentence2")),
             "quora": ("quora-dev.csv", ("sentence1", "sentence2"))}


@pytest.fixture(scope="module")
def tokenizers(embedded_model_path):
    return Tokenizer.from_pretrained(), transformers.BertTokenizerFast.from_pretrained(str(embedded_model_path))


def assert_same_encoding(ours: Tokenizer, hf, texts, pairs=None, max_length=512) -> None:
    for start in range(0, len(texts), 256):
        a = texts[start:start + 256]
        b = pairs[start:start + 256] if pairs is not None else None
        mine = ours.encode(a, b, max_length=max_length)
        ref = hf(a, b, padding=True, truncation="longest_first", max_length=max_length, return_tensors="pt")
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(mine[key], ref[key]), f"{key} differs in rows {start}..{start + len(a)}"


@pytest.mark.parametrize("task", sorted(DEV_FILES))
def test_every_dev_sentence_and_pair_matches_hf(task, tokenizers, data_dir):
    name, columns = DEV_FILES[task]
    rows = read_columns(data_dir / name, *columns)
    texts = [r[0] for r in rows]
    assert_same_encoding(*tokenizers, texts)
    if len(columns) == 2:
        seconds = [r[1] for r in rows]
        assert_same_encoding(*tokenizers, seconds)
        assert_same_encoding(*tokenizers, texts, seconds)
        assert_same_encoding(*tokenizers, texts, seconds, max_length=24)  # exercises longest-first truncation


def test_pair_layout_and_types(tokenizers):
    ours, _ = tokenizers
    batch = ours.encode(["a cat"], ["the dog sat"])
    tokens = ours.backend.id_to_token
    assert [tokens(i) for i in batch["input_ids"][0].tolist()] == ["[CLS]", "a", "cat", "[SEP]", "the", "dog",
                                                                   "sat", "[SEP]"]
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_lowercases_and_pads_to_longest(tokenizers):
    ours, _ = tokenizers
    batch = ours.encode(["HELLO", "hello there friend"])
    assert batch["input_ids"][0, 1] == batch["input_ids"][1, 1]
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 0, 0]
    assert batch["input_ids"][0, 3:].tolist() == [ours.pad_id] * 2


def test_truncation_is_capped_at_model_maximum(tokenizers):
    ours, _ = tokenizers
    batch = ours.encode(["word " * 2000], max_length=100_000)
    assert batch["input_ids"].shape[1] == ours.model_max_length == 512


def test_mismatched_pair_counts_are_an_error(tokenizers):
    ours, _ = tokenizers
    with pytest.raises(ValueError, match="2 first sentences but 1 second"):
        ours.encode(["a", "b"], ["c"])


def test_cased_vocab_keeps_case(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "Hello", "hello"]) + "\n")
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 64}')
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    assert Tokenizer.from_pretrained(tmp_path).tokenize("Hello hello") == ["Hello", "hello"]
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    assert Tokenizer.from_pretrained(tmp_path).tokenize("Hello hello") == ["hello", "hello"]


def test_rows_are_stored_flat_across_chunks_and_read_back_per_row(tokenizers, monkeypatch):
    import minbert.tokenizer

    ours, hf = tokenizers
    texts = [f"sentence number {i} " + "word " * (i % 5) for i in range(23)]
    pairs = [f"and its pair {i}" for i in range(23)]
    monkeypatch.setattr(minbert.tokenizer, "ENCODE_CHUNK", 7)  # four chunks, the last one short
    rows = ours.encode_ids(texts, pairs)
    assert len(rows) == 23 and rows.ids.dtype.name == "int32" and rows.types.dtype.name == "int8"
    for i, (ids, types) in enumerate(rows):
        ref = hf(texts[i], pairs[i])
        assert ids.tolist() == ref["input_ids"] and types.tolist() == ref["token_type_ids"]
        assert rows.lengths[i] == len(ref["input_ids"])
    assert [a.tolist() for a in rows[-1]] == [a.tolist() for a in rows[22]]
    with pytest.raises(IndexError, match="row 23 of 23"):
        rows[23]
    assert len(ours.encode_ids([])) == 0
