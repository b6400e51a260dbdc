"""PCGrad on known conflicting gradients; FGSM and MNRL on hand-built cases; a run that uses them all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minbert import BertModel
from minbert.data.batching import Batch
from minbert.errors import ConfigError
from minbert.tasks.config import TaskConfig
from minbert.tasks.kinds import builtin_kind
from minbert.tasks.losses import TaskOutput
from minbert.tasks.model import MultitaskModel
from minbert.tasks.regularizers import FGSM, MNRL, SMART
from minbert.training.config import load_config
from minbert.training.techniques import BregmanProximal, pcgrad
from tests.conftest import random_batch, tiny_config


def test_pcgrad_projects_conflicting_gradients():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # dot -1: they conflict
    # g1 - (g1.g2)/|g2|^2 g2 = [0.5, 0.5];  g2 - (g2.g1)/|g1|^2 g1 = [0, 1]
    torch.testing.assert_close(pcgrad([g1, g2], np.random.default_rng(0)), torch.tensor([0.5, 1.5]))
    agreeing = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])]
    torch.testing.assert_close(pcgrad(agreeing, np.random.default_rng(0)), torch.tensor([2.0, 1.0]))
    projected_first = pcgrad([g1, g2], np.random.default_rng(0)) - torch.tensor([0.0, 1.0])
    assert torch.dot(projected_first, g2) >= -1e-6  # no conflict left


def tiny_model(**task):
    torch.manual_seed(0)
    tasks = {"sst": TaskConfig(data="sst", pooling="mean", dropout=0.0, **task)}
    return MultitaskModel(BertModel(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
                          tasks).eval()


def test_fgsm_term_is_the_loss_at_sign_perturbed_embeddings():
    model = tiny_model()
    batch = Batch("sst", random_batch(99, batch=4, length=7), torch.tensor([0, 1, 2, 3]), [0, 1, 2, 3])
    embeds = model.encoder.embeddings.word_embeddings(batch.inputs["input_ids"])
    loss = model.loss(batch, model(batch, word_embeds=embeds))
    term = FGSM(FGSM.Options(epsilon=0.01))(model, batch, None, loss, embeds)
    (gradient,) = torch.autograd.grad(model.loss(batch, model(batch, word_embeds=embeds)), embeds)
    expected = model.loss(batch, model(batch, word_embeds=embeds + 0.01 * gradient.sign()))
    torch.testing.assert_close(term, expected)
    assert term > loss  # the adversarial step increases the loss
    term.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None


def test_mnrl_rewards_vectors_near_their_positives():
    mnrl = MNRL(MNRL.Options(scale=20.0))
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    batch = Batch("sst", {}, labels, [0, 1, 2, 3])
    zero = torch.zeros(())
    good = mnrl(None, batch, TaskOutput(zero, zero, (clustered,)), zero, None)
    bad = mnrl(None, batch, TaskOutput(zero, zero, (mixed,)), zero, None)
    assert good < 0.01 < bad
    u = torch.eye(3)
    pairs = Batch("quora", {}, torch.tensor([1.0, 0.0, 1.0]), [0, 1, 2])
    aligned = mnrl(None, pairs, TaskOutput(zero, zero, (u, u.clone())), zero, None)
    swapped = mnrl(None, pairs, TaskOutput(zero, zero, (u, u[[2, 1, 0]])), zero, None)
    assert aligned < 0.01 < swapped


def test_divergence_values():
    classes, scores = builtin_kind("sst"), builtin_kind("sts")
    same = TaskOutput(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]]))
    assert classes.divergence(same, same).item() == pytest.approx(0.0, abs=1e-7)
    a = TaskOutput(torch.tensor([0.0]), torch.tensor([0.0]))
    b = TaskOutput(torch.tensor([0.0]), torch.tensor([2.0]))
    assert scores.divergence(a, b).item() == 4.0
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])  # one logit 0 vs log 3: Bernoulli KLs both ways
    expected = (p * (p / q).log()).sum() + (q * (q / p).log()).sum()
    one_logit = classes.divergence(TaskOutput(torch.tensor([0.0]), None), TaskOutput(torch.tensor([3.0]).log(), None))
    assert one_logit.item() == pytest.approx(expected.item(), rel=1e-5)


def test_smart_penalises_sensitivity_near_the_input():
    model = tiny_model()
    batch = Batch("sst", random_batch(99, batch=4, length=7), torch.tensor([0, 1, 2, 3]), [0, 1, 2, 3])
    embeds = model.encoder.embeddings.word_embeddings(batch.inputs["input_ids"])
    output = model(batch, word_embeds=embeds)
    term = SMART(SMART.Options(noise=1e-3, step=1e-1))(model, batch, output, None, embeds)
    assert term.item() > 0
    term.backward()
    assert model.encoder.layers[0].attention.qkv.weight.grad.abs().sum() > 0


def test_bregman_proximal_pulls_towards_a_slow_moving_copy():
    model = tiny_model()
    batch = Batch("sst", random_batch(99, batch=4, length=7), torch.tensor([0, 1, 2, 3]), [0, 1, 2, 3])
    proximal = BregmanProximal(model, weight=1.0, momentum=0.75)
    assert proximal(batch, model(batch)).item() == pytest.approx(0.0, abs=1e-7)
    head = model.heads["sst"].head.net[-1].weight
    before = head.detach().clone()
    with torch.no_grad():
        head.add_(1.0)  # an update moves the model away from the copy
    term = proximal(batch, model(batch))
    assert term.item() > 0
    term.backward()
    assert head.grad.abs().sum() > 0  # the pull reaches the model ...
    assert all(p.grad is None for p in proximal.teacher.parameters())  # ... never the copy
    proximal.update(model)  # the copy moves a quarter of the way: theta~ = 0.75 theta~ + 0.25 theta
    torch.testing.assert_close(proximal.teacher.heads["sst"].head.net[-1].weight, before + 0.25)
    model.encoder.requires_grad_(False)  # frozen parameters: the copy keeps its own values
    with torch.no_grad():
        model.encoder.pooler.dense.weight.add_(1.0)
    proximal.update(model)
    assert not torch.equal(proximal.teacher.encoder.pooler.dense.weight, model.encoder.pooler.dense.weight)


def test_a_run_with_pcgrad_fgsm_and_mnrl(tmp_path, tiny_model_dir, tiny_data_dir):
    from minbert.training.experiment import build_experiment
    from minbert.training.loop import Trainer

    config = load_config(None, [f"model.path={tiny_model_dir}", "model.max_length=32",
                                "train.epochs=1", "train.lr=1e-3",
                                "train.sampler=round_robin", "train.sampler.update=global",
                                "train.techniques.pcgrad={}",
                                "tasks.sst.data=sst", "tasks.sst.regularizers={fgsm={}, mnrl={}, smart={}}",
                                "tasks.sts.data=sts", "tasks.sts.pair_encoding=siamese", "tasks.sts.head=cosine",
                                "tasks.sts.loss=cosine_mse", 'tasks.sts.regularizers.mnrl={}'])
    exp = build_experiment(config, data_dir=str(tiny_data_dir))
    before = [p.clone() for p in exp.model.encoder.parameters()]
    history = Trainer(exp).fit()
    assert np.isfinite(history[0]["train_loss"]["sst"])
    assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.encoder.parameters(), strict=True))


def test_perturbations_work_with_frozen_word_embeddings(tmp_path, tiny_model_dir, tiny_data_dir):
    from minbert.training.experiment import build_experiment
    from minbert.training.loop import Trainer

    config = load_config(None, [f"model.path={tiny_model_dir}", "model.max_length=32",
                                "train.epochs=1", "train.lr=1e-3",
                                "model.freeze_word_embeddings=true", "tasks.sst.data=sst",
                                'tasks.sst.regularizers.fgsm.epsilon=0.01', "tasks.sst.regularizers.smart={}"])
    exp = build_experiment(config, data_dir=str(tiny_data_dir))
    words = exp.model.encoder.embeddings.word_embeddings.weight.detach().clone()
    history = Trainer(exp).fit()
    assert np.isfinite(history[0]["train_loss"]["sst"])
    assert torch.equal(words, exp.model.encoder.embeddings.word_embeddings.weight)  # still frozen


def test_regularizer_config_errors():
    with pytest.raises(ConfigError, match="'smrt' is not a regularizer: one of fgsm, mnrl, smart"):
        load_config(None, ["tasks.sst.data=sst", "tasks.sst.regularizers.smrt={}"])
    with pytest.raises(ConfigError, match="mnrl compares sentence vectors: it needs pair_encoding = 'siamese'"):
        load_config(None, ["tasks.q.data=quora", "tasks.q.regularizers.mnrl={}"])
    with pytest.raises(ConfigError, match="fgsm perturbs"):
        load_config(None, ["tasks.sst.data=sst", "tasks.sst.regularizers.fgsm={}", "model.frozen_layers=2"])
    with pytest.raises(ConfigError, match=r"unknown key 'tasks.sst.regularizers.fgsm.epsilom'; did you mean 'epsilon'"):
        load_config(None, ["tasks.sst.data=sst", "tasks.sst.regularizers.fgsm.epsilom=0.1"])
    with pytest.raises(ConfigError, match=r"tasks.sst.regularizers.mnrl.scale = -1.0 must be >= 0"):
        load_config(None, ["tasks.sst.data=sst", "tasks.sst.regularizers.mnrl.scale=-1"])
    with pytest.raises(ConfigError, match="PCGrad needs steps that hold several tasks' batches"):
        load_config(None, ["tasks.sst.data=sst", "train.techniques.pcgrad={}", "train.sampler=round_robin"])
