"""Each pooling: output shape, padding ignored, gradients reach the real tokens only."""

from __future__ import annotations

import pytest
import torch

from minbert.model.bert import BertOutput
from minbert.tasks.pooling import POOLINGS


def fake_output(hidden: torch.Tensor) -> BertOutput:
    return BertOutput(last_hidden_state=hidden, pooler_output=torch.tanh(hidden[:, 0] * 2))


MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_shape_and_padding_is_ignored(name):
    pooling = POOLINGS[name]()
    hidden = torch.randn(2, 4, 6)
    out = pooling(fake_output(hidden), MASK)
    assert out.shape == (2, pooling.output_dim(6))
    changed = hidden.clone()
    changed[1, 2:] = 1e4  # huge values under the mask
    torch.testing.assert_close(pooling(fake_output(changed), MASK), out)


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_gradients_reach_only_real_tokens(name):
    hidden = torch.randn(2, 4, 6, requires_grad=True)
    POOLINGS[name]()(fake_output(hidden), MASK).sum().backward()
    assert hidden.grad[1, 2:].abs().sum() == 0
    assert hidden.grad[1, :2].abs().sum() > 0 or name in ("cls", "cls_raw")
    assert hidden.grad[:, 0].abs().sum() > 0


def test_values():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    out = fake_output(hidden)
    assert POOLINGS["mean"]()(out, mask).item() == 2.0
    assert POOLINGS["max"]()(out, mask).item() == 3.0
    assert POOLINGS["cls_raw"]()(out, mask).item() == 1.0
    assert POOLINGS["mean_max"]()(out, mask).tolist() == [[2.0, 3.0]]
    torch.testing.assert_close(POOLINGS["cls"]()(out, mask), out.pooler_output)
