"""The hand-written encoder against HF transformers' BertModel (the numerical reference)."""

from __future__ import annotations

import pytest
import torch

from minbert import BertModel, Tokenizer
from minbert.model.loading import native_to_hf
from tests.conftest import random_batch, read_columns, tiny_config

transformers = pytest.importorskip("transformers")


def hf_twin(config) -> tuple[BertModel, torch.nn.Module]:
    """A random HF BertModel and our model loaded from its state dict (which exercises the name mapping)."""
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(**config.to_dict(), attn_implementation="eager")).eval()
    ours = BertModel(config)
    from minbert.model.loading import load_encoder_weights

    load_encoder_weights(ours, hf.state_dict(), "hf")
    return ours.eval(), hf


def max_diffs(ours_out, hf_out) -> tuple[float, float]:
    return ((ours_out.last_hidden_state - hf_out.last_hidden_state).abs().max().item(),
            (ours_out.pooler_output - hf_out.pooler_output).abs().max().item())


@pytest.mark.parametrize("with_token_types", [True, False])
@pytest.mark.parametrize("attention", ["sdpa", "manual"])
def test_tiny_random_config_matches_hf(with_token_types, attention):
    config = tiny_config()
    ours, hf = hf_twin(config)
    ours.set_attention_impl(attention)
    batch = random_batch(config.vocab_size, batch=6, length=19)
    if not with_token_types:
        del batch["token_type_ids"]
    with torch.no_grad():
        hidden_diff, pooled_diff = max_diffs(ours(**batch), hf(**batch))
    print(f"tiny config ({attention}, token types={with_token_types}): max abs diff hidden {hidden_diff:.2e}, "
          f"pooled {pooled_diff:.2e}")
    assert hidden_diff < 1e-5
    assert pooled_diff < 1e-5


def test_padding_does_not_leak_into_real_tokens():
    config = tiny_config()
    model = BertModel(config).eval()
    batch = random_batch(config.vocab_size, batch=2, length=12)
    batch["attention_mask"][1, 6:] = 0
    with torch.no_grad():
        padded = model(**batch).last_hidden_state[1, :6]
        garbage = dict(batch)
        garbage["input_ids"] = batch["input_ids"].clone()
        garbage["input_ids"][1, 6:] = 7  # different content under the mask
        changed = model(**garbage).last_hidden_state[1, :6]
        alone = model(**{k: v[1:, :6] for k, v in batch.items()}).last_hidden_state[0]
    torch.testing.assert_close(padded, changed, rtol=0, atol=1e-6)
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-5)


def test_gradients_match_hf():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ours, hf = hf_twin(config)
    batch = random_batch(config.vocab_size, batch=4, length=11, seed=3)
    ours(**batch).last_hidden_state.square().mean().backward()
    hf(**batch).last_hidden_state.square().mean().backward()
    ours_grads = native_to_hf({n: p.grad for n, p in ours.named_parameters()})
    for name, param in hf.named_parameters():
        torch.testing.assert_close(ours_grads[name], param.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_embedded_minilm_matches_hf_on_real_sentences(data_dir, embedded_dir):
    ours = BertModel.from_pretrained()
    hf = transformers.BertModel.from_pretrained(str(embedded_dir)).eval()
    tokenizer = Tokenizer.from_pretrained()
    sst = [s for (s,) in read_columns(data_dir / "ids-sst-dev.csv", "sentence")[:32]]
    sts = read_columns(data_dir / "sts-dev.csv", "sentence1", "sentence2")[:32]
    batches = [tokenizer.encode(sst), tokenizer.encode([a for a, _ in sts], [b for _, b in sts])]
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            ours_out, hf_out = ours(**batch), hf(**batch)
            real = batch["attention_mask"].bool()  # padded positions are outside any result (and differ by
            worst = max(worst, (ours_out.last_hidden_state - hf_out.last_hidden_state)[real].abs().max().item(),
                        (ours_out.pooler_output - hf_out.pooler_output).abs().max().item())  # ~1e-4 by kernel)
    print(f"embedded MiniLM, 64 real sequences: max abs diff on real tokens and pooled outputs {worst:.2e}")
    assert worst < 5e-5


@pytest.mark.parametrize("autocast", [False, True])
def test_feed_forward_recomputing_gelu_equals_autograds_own_path_bit_for_bit(autocast):
    from minbert.model.bert import FeedForward

    torch.manual_seed(0)
    ffn = FeedForward(tiny_config())
    x = torch.randn(3, 7, 64)
    results = []
    for recompute in (True, False):
        ffn.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            hidden = ffn.up(inputs)
            out = ffn(inputs) if recompute else ffn.down(torch.nn.functional.gelu(hidden))
        out.float().sin().sum().backward()
        results.append([out.detach(), inputs.grad, *(p.grad for p in ffn.parameters())])
    for recomputed, plain in zip(*results, strict=True):
        assert torch.equal(recomputed, plain)
