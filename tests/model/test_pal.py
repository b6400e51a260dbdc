"""Projected attention layers: start as the identity change, count their parameters, train per task."""

from __future__ import annotations

import pytest
import torch

from minbert import BertModel
from minbert.data.batching import Batch
from minbert.errors import ConfigError
from minbert.tasks.model import MultitaskModel
from minbert.training.config import load_config
from tests.conftest import random_batch, tiny_config


def build(*overrides):
    torch.manual_seed(0)
    config = load_config(None, ["tasks.sst.data=sst", "tasks.cf.data=cfimdb", "model.pal.size=16",
                                "model.pal.heads=4", *overrides])
    encoder = BertModel(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    return MultitaskModel(encoder, config.tasks, config.model).eval()


def batch(task):
    return Batch(task, random_batch(99, batch=3, length=8), torch.tensor([0, 1, 1]), [0, 1, 2])


def test_parameter_count_shared_and_per_layer():
    h, r, layers, tasks = 64, 16, 2, 2
    attention = 3 * r * r + 3 * r
    assert build().pal_parameters == tasks * (2 * h * r + layers * attention)
    assert build("model.pal_shared=false").pal_parameters == tasks * layers * (2 * h * r + attention)
    assert build("model.trainable_layers=1").pal_parameters == tasks * (2 * h * r + 1 * attention)


def test_pal_starts_as_the_plain_encoder_and_then_differs_per_task():
    model = build()
    plain = build("model.pal.size=0")
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if ".pal." not in k})
    with torch.no_grad():
        torch.testing.assert_close(model(batch("sst")).logits, plain(batch("sst")).logits)
    for head in model.heads.values():
        for decoder in head.pal.decoders:
            torch.nn.init.normal_(decoder.weight, std=0.1)
    with torch.no_grad():
        with_pal = model.encode(batch("sst")).last_hidden_state
        other_task = model.encode(batch("cf")).last_hidden_state
        without = plain.encode(batch("sst")).last_hidden_state
    assert not torch.allclose(with_pal, without) and not torch.allclose(with_pal, other_task)


def test_a_tasks_loss_trains_only_its_own_pal():
    model = build()
    model.train()
    model.loss(batch("sst")).backward()
    assert model.heads["sst"].pal.decoders[0].weight.grad.abs().sum() > 0
    assert model.heads["cf"].pal.decoders[0].weight.grad is None


def test_pal_size_must_split_into_heads():
    with pytest.raises(ConfigError, match="model.pal.size = 10 must be a multiple of model.pal.heads = 4"):
        load_config(None, ["tasks.sst.data=sst", "model.pal.size=10", "model.pal.heads=4"])
