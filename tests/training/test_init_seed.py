"""`init_seed`: the heads' random initialisation, apart from the run's seed (data order, dropout), so that runs of
several seeds can start from one point (what a weight soup needs)."""

from __future__ import annotations

import torch

from minbert.training.config import load_config
from minbert.training.experiment import build_experiment, seed_everything

TASKS = ["tasks.sst.data=sst", "tasks.sts.data=sts", "tasks.sts.pair_encoding=siamese", "tasks.sts.head=linear"]


def built(tiny_model_dir, tiny_data_dir, *overrides):
    config = load_config(None, [f"model.path={tiny_model_dir}", "model.max_length=32", *TASKS, *overrides])
    exp = build_experiment(config, data_dir=str(tiny_data_dir))
    draw = torch.rand(4)  # what training's first random draw (a dropout mask) would see
    return {k: v.clone() for k, v in exp.model.heads.state_dict().items()}, draw


def test_the_heads_follow_init_seed_and_training_follows_seed(tiny_model_dir, tiny_data_dir):
    heads_5, draw_5 = built(tiny_model_dir, tiny_data_dir, "seed=5")
    heads_1_from_5, draw_1_from_5 = built(tiny_model_dir, tiny_data_dir, "seed=1", "init_seed=5")
    heads_1, draw_1 = built(tiny_model_dir, tiny_data_dir, "seed=1")
    assert heads_5.keys() == heads_1.keys() and heads_5
    assert all(torch.equal(heads_5[k], heads_1_from_5[k]) for k in heads_5)  # one start
    assert not all(torch.equal(heads_5[k], heads_1[k]) for k in heads_5)
    seed_everything(1)
    assert torch.equal(draw_1_from_5, torch.rand(4))  # training's randomness is the run's seed's
    assert not torch.equal(draw_1_from_5, draw_5)
    # init_seed = seed (or unset) is the run it always was, draw for draw
    heads_same, draw_same = built(tiny_model_dir, tiny_data_dir, "seed=1", "init_seed=1")
    assert all(torch.equal(heads_1[k], heads_same[k]) for k in heads_1) and torch.equal(draw_1, draw_same)
