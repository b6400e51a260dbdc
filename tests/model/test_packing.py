"""Packed rows (several sequences per row, block-diagonal attention, positions from 0) give every real token what a
padded batch gives it."""

from __future__ import annotations

import pytest
import torch

from minbert import BertModel
from minbert.data.packing import pack, unpack
from minbert.tasks.pooling import POOLINGS
from tests.conftest import tiny_config


def ragged_rows(count: int = 9, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(count):
        length = int(torch.randint(2, 15, (1,), generator=g))
        ids = torch.randint(1, 99, (length,), generator=g).tolist()
        types = [0] * (length // 2) + [1] * (length - length // 2) if i % 2 else [0] * length
        rows.append((ids, types))
    return rows


def padded(rows):
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    types = torch.zeros_like(input_ids)
    mask = torch.zeros_like(input_ids)
    for i, (ids, t) in enumerate(rows):
        input_ids[i, : len(ids)], types[i, : len(ids)], mask[i, : len(ids)] = torch.tensor(ids), torch.tensor(t), 1
    return {"input_ids": input_ids, "token_type_ids": types, "attention_mask": mask}


def test_pack_places_every_sequence_once_within_capacity():
    rows = ragged_rows(20)
    packed = pack(rows, capacity=24, pad_id=0)
    assert packed.inputs["input_ids"].shape[1] <= 24
    assert len(packed.inputs["input_ids"]) < len(rows)  # several sequences share a row
    for i, (ids, types) in enumerate(rows):
        r, s, n = int(packed.row[i]), int(packed.start[i]), int(packed.length[i])
        assert n == len(ids)
        assert packed.inputs["input_ids"][r, s:s + n].tolist() == ids
        assert packed.inputs["token_type_ids"][r, s:s + n].tolist() == types
        assert packed.inputs["position_ids"][r, s:s + n].tolist() == list(range(n))
        block = packed.inputs["attention_mask"][r, s:s + n]  # the sequence's queries see exactly its own keys
        assert block[:, s:s + n].all() and block.sum() == n * n
    with pytest.raises(ValueError, match="a sequence of 14 tokens does not fit rows of 10"):
        pack([([1] * 14, [0] * 14)], capacity=10, pad_id=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_and_padded_batches_give_the_same_outputs(dtype):
    torch.manual_seed(0)
    model = BertModel(tiny_config(max_position_embeddings=64)).eval()
    rows = ragged_rows(11)
    reference = padded(rows)
    packed = pack(rows, capacity=32, pad_id=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        expected = model(**reference).last_hidden_state.float()
        hidden, mask = unpack(model(**packed.inputs).last_hidden_state.float(), packed)
    assert torch.equal(mask, reference["attention_mask"])
    tolerance = 1e-5 if dtype == torch.float32 else 0.05  # bf16: the two paths round at different points
    torch.testing.assert_close(hidden * mask[..., None], expected * mask[..., None], rtol=0, atol=tolerance)


def test_a_sequence_in_a_packed_row_sees_nothing_of_its_neighbours():
    torch.manual_seed(0)
    model = BertModel(tiny_config(max_position_embeddings=64)).eval()
    rows = [([5, 6, 7], [0, 0, 0]), ([8, 9], [0, 0]), ([10, 11, 12, 13], [0, 0, 0, 0])]
    changed = [rows[0], ([40, 41], [0, 0]), rows[2]]
    with torch.no_grad():
        outputs = []
        for version in (rows, changed):
            packed = pack(version, capacity=16, pad_id=0)
            assert len(packed.inputs["input_ids"]) == 1  # all three share one row
            outputs.append(unpack(model(**packed.inputs).last_hidden_state, packed)[0])
    torch.testing.assert_close(outputs[0][[0, 2]], outputs[1][[0, 2]], rtol=0, atol=1e-6)
    assert not torch.allclose(outputs[0][1], outputs[1][1])


@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_sentence_encoder_packed_equals_padded(tiny_model_dir, pooling):
    from minbert.sentence_encoder import SentenceEncoder
    from tests.conftest import WORDS

    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, device="cpu")
    texts = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(1 + i % 7)) for i in range(23)]
    padded_out = encoder.encode(texts, batch_size=8, pooling=pooling, precision="fp32")
    packed_out = encoder.encode(texts, batch_size=8, pooling=pooling, precision="fp32", packing=16)
    torch.testing.assert_close(packed_out, padded_out, rtol=0, atol=1e-5)
