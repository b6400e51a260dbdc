"""Parameter groups: every trainable parameter once, decay on matrices only, heads at their own learning rate."""

from __future__ import annotations

from minbert import BertModel
from minbert.tasks.model import MultitaskModel
from minbert.training.config import load_config
from minbert.training.experiment import build_optimizer
from tests.conftest import tiny_config


def build(*overrides):
    config = load_config(None, ["tasks.sst.data=sst", "tasks.quora.data=quora", "train.lr=2e-5",
                                "train.weight_decay=0.01", *overrides])
    return config, MultitaskModel(BertModel(tiny_config()), config.tasks, config.model)


def test_groups_cover_trainable_parameters_once_with_head_lr():
    config, model = build("train.head_lr=1e-3", "model.common_layers=1")
    optimizer = build_optimizer(config, model)
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))
    head_ids = {id(p) for p in [*model.heads.parameters(), *model.common.parameters()]}
    for group in optimizer.param_groups:
        is_head = {id(p) in head_ids for p in group["params"]}
        assert len(is_head) == 1  # a group is all encoder or all heads
        assert group["lr"] == (1e-3 if is_head.pop() else 2e-5)
        assert group["weight_decay"] == (0.01 if all(p.dim() >= 2 for p in group["params"]) else 0.0)


def test_frozen_parameters_are_left_out():
    config, model = build("model.frozen_layers=1", "model.freeze_word_embeddings=true")
    grouped = {id(p) for g in build_optimizer(config, model).param_groups for p in g["params"]}
    assert not grouped & {id(p) for p in model.encoder.embeddings.parameters()}
    assert not grouped & {id(p) for p in model.encoder.layers[0].parameters()}
    assert {id(p) for p in model.encoder.layers[1].parameters()} <= grouped
