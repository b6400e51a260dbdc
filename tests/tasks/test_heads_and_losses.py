"""Heads and losses on known values; the multitask model routes gradients only where they belong."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minbert import BertModel
from minbert.data.batching import Batch
from minbert.options import NoOptions
from minbert.tasks.config import ModelConfig, TaskConfig
from minbert.tasks.heads import HEADS, PAIR_FEATURES
from minbert.tasks.kinds import builtin_kind
from minbert.tasks.losses import LOSSES, TaskOutput
from minbert.tasks.model import MultitaskModel
from tests.conftest import random_batch, tiny_config


def test_feature_head_shapes_and_pair_features():
    pooled = torch.randn(5, 8)
    pairs = torch.tensor([[0, 1], [2, 2], [4, 3]])
    mlp = HEADS.choose({"name": "mlp", "hidden_layers": 2, "hidden_size": 6}, "head")
    head = HEADS["mlp"].build(TaskConfig(dropout=0.0), mlp.options, 8, 1, ("u", "abs_diff"))
    assert head(pooled, pairs).shape == (3, 1)
    assert head.net[1].in_features == 16 and head.net[1].out_features == 6
    assert sum(isinstance(m, torch.nn.Linear) for m in head.net) == 3
    linear = HEADS["linear"].build(TaskConfig(dropout=0.3), NoOptions(), 8, 5)
    assert linear(pooled).shape == (5, 5)
    u, v = pooled[0], pooled[1]
    assert torch.equal(PAIR_FEATURES["abs_diff"](u, v), (u - v).abs())
    assert torch.equal(PAIR_FEATURES["product"](u, v), u * v)


def test_similarity_heads_map_cosine_to_the_score_range():
    pooled = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    pairs = torch.tensor([[0, 1], [0, 2], [0, 3]])
    cosine = HEADS["cosine"].build(TaskConfig(), NoOptions(), 8, 1)
    logits = cosine(pooled, pairs)
    torch.testing.assert_close(logits, torch.tensor([1.0, -1.0, 0.0]))
    torch.testing.assert_close(cosine.to_score(logits, 0.0, 5.0), torch.tensor([5.0, 0.0, 2.5]))
    relu_cosine = HEADS["relu_cosine"].build(TaskConfig(), NoOptions(), 8, 1)
    torch.testing.assert_close(relu_cosine.to_score(logits, 0.0, 5.0), torch.tensor([5.0, 0.0, 0.0]))
    linear = HEADS["linear"].build(TaskConfig(dropout=0.0), NoOptions(), 2, 1)
    torch.testing.assert_close(linear.to_score(torch.tensor([0.0]), 0.0, 5.0), torch.tensor([2.5]))


def output(logits, score=None):
    logits = torch.as_tensor(logits, dtype=torch.float32)
    return TaskOutput(logits, logits if score is None else torch.as_tensor(score, dtype=torch.float32))


def test_losses_against_hand_values():
    labels = torch.tensor([0.0, 5.0])
    cos = output([0.0, 1.0])
    # cosine_embedding: targets -1 and 1: ((0 - -1)^2 + 0) / 2
    assert LOSSES["cosine_embedding"].build((0.0, 5.0))(cos, labels).item() == pytest.approx(0.5)
    # cosine_mse: targets 0 and 1: 0
    assert LOSSES["cosine_mse"].build((0.0, 5.0))(cos, labels).item() == pytest.approx(0.0)
    assert LOSSES["mse"].build((0.0, 5.0))(output([0.0], [4.0]), torch.tensor([5.0])).item() == 1.0
    assert LOSSES["bce"].build(None)(output([[0.0]]), torch.tensor([1.0])).item() == pytest.approx(math.log(2))
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    assert LOSSES["cross_entropy"].build(None)(output(logits), torch.tensor([0])).item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([0])).item())


def test_cosent_only_penalises_wrong_order():
    loss = LOSSES["cosent"].build((0.0, 5.0))
    labels = torch.tensor([1.0, 3.0, 5.0])
    right = loss(output([-0.9, 0.0, 0.9]), labels).item()
    wrong = loss(output([0.9, 0.0, -0.9]), labels).item()
    assert right < 1e-6 < wrong
    # one wrongly ordered pair (i=1 should beat j=0) with gap 0.1: log(1 + exp(20 * 0.1))
    two = loss(output([0.6, 0.5]), torch.tensor([1.0, 2.0])).item()
    assert two == pytest.approx(math.log(1 + math.exp(2.0)), rel=1e-5)


def tiny_multitask(freeze="none"):
    torch.manual_seed(0)
    tasks = {"sst": TaskConfig(data="sst", pooling="mean"),
             "sts": TaskConfig(data="sts", pair_encoding="siamese", pooling="mean", head="cosine", loss="cosine_mse")}
    return MultitaskModel(BertModel(tiny_config()), tasks, ModelConfig(freeze=freeze))


def sst_batch():
    inputs = random_batch(99, batch=4, length=9)
    return Batch("sst", inputs, torch.tensor([0, 1, 2, 4]), [0, 1, 2, 3])


def test_a_tasks_loss_reaches_the_encoder_and_its_own_head_only():
    model = tiny_multitask()
    model.loss(sst_batch()).backward()
    assert model.encoder.layers[0].attention.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.heads["sst"].parameters())
    assert model.heads["sts"].head is not None and not list(model.heads["sts"].parameters())  # cosine: none


def test_frozen_encoder_gets_no_gradient():
    model = tiny_multitask(freeze="encoder")
    model.train()
    assert not model.encoder.training  # no dropout in a frozen feature extractor
    model.loss(sst_batch()).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.heads["sst"].parameters())


def test_siamese_similarity_output_is_on_the_label_scale():
    model = tiny_multitask().eval()
    inputs = random_batch(99, batch=3, length=7)
    batch = Batch("sts", inputs, torch.tensor([1.0, 4.0]), [0, 1], index=torch.tensor([[0, 1], [2, 2]]))
    out = model(batch)
    assert out.logits.shape == (2,) and out.logits[1].item() == pytest.approx(1.0, abs=1e-5)
    assert out.score[1].item() == pytest.approx(5.0, abs=1e-4)
    assert builtin_kind("sts").predict(out).tolist() == pytest.approx(out.score.tolist())
    # cosine_mse trained cos towards label / 5: scores read back as 5 * cos, not the head's 2.5 * (1 + cos)
    torch.testing.assert_close(out.score, 5.0 * out.logits)


def test_cosine_losses_read_scores_back_through_their_target_mapping():
    cosine = torch.tensor([-0.2, 0.0, 0.5, 1.0])
    mse_on_unit = LOSSES["cosine_mse"].build((0.0, 5.0))
    torch.testing.assert_close(mse_on_unit.to_score(cosine), torch.tensor([-1.0, 0.0, 2.5, 5.0]))
    embedding = LOSSES["cosine_embedding"].build((0.0, 5.0))
    torch.testing.assert_close(embedding.to_score(cosine), torch.tensor([2.0, 2.5, 3.75, 5.0]))
    labels = torch.tensor([1.0, 4.0])  # the loss is zero exactly where to_score returns the label
    for loss in (mse_on_unit, embedding):
        grid = torch.linspace(-1, 1, 2001)
        scores = loss.to_score(grid)
        target = grid[(scores[None, :] - labels[:, None]).abs().argmin(dim=1)]
        assert loss(TaskOutput(target, None), labels).item() < 1e-5


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_builds_from_its_own_options(name):
    head = HEADS[name].build(TaskConfig(dropout=0.0), HEADS.options_of(name)(), 8, 1)
    assert isinstance(HEADS[name].needs_pairs, bool)
    logits = head(torch.randn(4, 8), torch.tensor([[0, 1], [2, 3]]) if HEADS[name].needs_pairs else None)
    assert head.to_score(logits, 0.0, 5.0).shape == logits.reshape(-1).shape


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_declares_what_it_serves_and_keeps_only_what_it_uses(name):
    loss = LOSSES[name].build((0.0, 5.0))
    assert isinstance(loss.for_classification, bool) and isinstance(loss.needs_cosine, bool)
    assert (loss.to_score is not None) == loss.needs_cosine  # only cosine losses map back onto the label scale
    assert hasattr(loss, "low") == loss.needs_cosine  # the others never needed the score range


def test_units_take_their_own_options_and_refuse_others(tmp_path):
    """CoSENT's scale is set from the config; a head's or loss's option that is not its own is an error naming
    the key; a linear head given hidden layers is refused, not silently ignored."""
    from minbert.errors import ConfigError
    from minbert.tasks.kinds import kind_of
    from minbert.training.config import load_config

    sts = ["tasks.sts.data=sts", "tasks.sts.pair_encoding=siamese", "tasks.sts.head=cosine", "tasks.sts.pooling=mean"]
    config = load_config(None, [*sts, 'tasks.sts.loss={name = "cosent", scale = 7.5}'])
    kind = kind_of("sts", config.tasks["sts"])
    assert kind.loss == "cosent" and LOSSES["cosent"].build(kind.score_range, kind.loss_options).scale == 7.5
    assert LOSSES["cosent"].build(kind.score_range, None).scale == 20.0
    with pytest.raises(ConfigError, match=r"unknown key 'tasks.sts.loss.scal'; did you mean 'scale'"):
        load_config(None, [*sts, 'tasks.sts.loss={name = "cosent", scal = 7.5}'])
    with pytest.raises(ConfigError, match=r"unknown key 'tasks.sts.loss.scale'"):  # mse has no options
        load_config(None, ["tasks.sts.data=sts", 'tasks.sts.loss={name = "mse", scale = 7.5}'])
    with pytest.raises(ConfigError, match=r"tasks.sts.loss.scale = 0.0 must be > 0"):
        load_config(None, [*sts, 'tasks.sts.loss={name = "cosent", scale = 0}'])
    with pytest.raises(ConfigError, match=r"tasks.sst.hidden_layers = 2 has no effect on head 'linear'"):
        load_config(None, ["tasks.sst.data=sst", "tasks.sst.hidden_layers=2"])
    old = load_config(None, ["tasks.sst.data=sst", "tasks.sst.head=mlp", "tasks.sst.hidden_layers=3"])
    assert old.tasks["sst"].head.options.hidden_layers == 3  # the old key, read into the mlp's table
    (tmp_path / "old.toml").write_text(old.to_toml())  # the resolved config writes the new table, and reads back
    assert load_config(tmp_path / "old.toml").tasks["sst"].head == old.tasks["sst"].head
    assert load_config(None, ["tasks.sst.data=sst"]).to_dict()["tasks"]["sst"]["head"] == "linear"  # bare names
