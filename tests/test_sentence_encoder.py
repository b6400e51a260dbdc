"""Bucketed inference returns embeddings in input order, equal to one-at-a-time encoding."""

from __future__ import annotations

import pytest
import torch

from minbert import BertModel, Tokenizer
from minbert.errors import ConfigError
from minbert.sentence_encoder import SentenceEncoder
from tests.conftest import WORDS


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return SentenceEncoder(BertModel.from_pretrained(tiny_model_dir), Tokenizer.from_pretrained(tiny_model_dir))


def sentences(n: int = 37) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + (i * 5) % 13)) for i in range(n)]


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_bucketed_equals_unbucketed_and_keeps_input_order(encoder, pooling):
    texts = sentences()
    bucketed = encoder.encode(texts, batch_size=8, pooling=pooling)
    plain = encoder.encode(texts, batch_size=8, pooling=pooling, sort_by_length=False)
    one_by_one = torch.cat([encoder.encode([t], pooling=pooling) for t in texts])
    assert bucketed.shape == (37, 64)
    torch.testing.assert_close(bucketed, one_by_one, rtol=0, atol=1e-5)
    torch.testing.assert_close(plain, one_by_one, rtol=0, atol=1e-5)


def test_bad_arguments(encoder):
    with pytest.raises(ConfigError, match="pooling 'median' is not one of"):
        encoder.encode(["x"], pooling="median")
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        encoder.encode(["x"], precision="fp8")


def test_bf16_autocast_stays_close_to_fp32(encoder):
    texts = sentences(9)
    fp32 = encoder.encode(texts, precision="fp32")
    bf16 = encoder.encode(texts, precision="bf16")
    assert bf16.dtype == torch.float32  # results come back in fp32
    assert not torch.equal(bf16, fp32)  # bf16 really ran
    assert torch.nn.functional.cosine_similarity(bf16, fp32).min() > 0.999


def test_int8_quantizes_a_copy_and_stays_close_to_fp32(encoder):
    texts = sentences(9)
    fp32 = encoder.encode(texts, precision="fp32")
    int8 = encoder.encode(texts, precision="int8")
    quantized = encoder._int8_model
    assert not any(isinstance(m, torch.nn.Linear) and type(m) is torch.nn.Linear
                   for m in quantized.layers.modules())  # every layer's Linear became a quantized one
    assert type(encoder.model.layers[0].attention.qkv) is torch.nn.Linear  # the fp32 model is untouched
    assert not torch.equal(int8, fp32)  # int8 really ran
    assert torch.nn.functional.cosine_similarity(int8, fp32).min() > 0.99
    torch.testing.assert_close(encoder.encode(texts, precision="fp32"), fp32, rtol=0, atol=0)


def test_int8_is_cpu_only():
    from minbert.device import quantize_int8

    with pytest.raises(ConfigError, match="CPU only"):
        quantize_int8(torch.nn.Linear(2, 2), torch.device("cuda"))
