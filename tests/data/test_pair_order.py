"""Pair orders of a symmetric, cross-encoded pair task: `predict_order = "both"` predicts with the mean of both
orders' outputs, so its predictions do not depend on which text comes first; `train_order = "random"` trains each
example in an order drawn afresh every epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minbert import Tokenizer
from minbert.data.batching import TaskData
from minbert.data.files import Example
from minbert.data.spec import DataSpec, check_spec
from minbert.errors import ConfigError
from minbert.evaluation.predict import predict_both
from minbert.predictor import MultitaskBERT
from minbert.training.config import load_config
from minbert.training.experiment import build_experiment
from tests.conftest import SIAMESE_STS, THREE_TASKS, write_tiny_config

PAIRS = [("the dog sat", "a film"), ("how do i learn python", "why"), ("fun", "the cat ran on the mat")]


def pair_examples(pairs):
    return [Example(f"p{i}", pair, float(i % 2), i + 2) for i, pair in enumerate(pairs)]


def decode(tok: Tokenizer, ids: torch.Tensor) -> str:
    return tok.backend.decode([i for i in ids.tolist() if i])


def test_a_position_past_the_examples_is_the_same_example_the_other_way_round(tiny_model_dir):
    tok = Tokenizer.from_pretrained(tiny_model_dir)
    data = TaskData("quora", pair_examples(PAIRS), tok, max_length=64, both_orders=True)
    assert len(data) == 3 and data.both_orders and not data.random_order and len(data.row_lengths) == 6
    given, other = data.collate([0, 1, 2]), data.collate(data.other_order([0, 1, 2]))
    assert other.positions == [0, 1, 2] and other.rows == [3, 4, 5]  # the examples named, the rows kept
    assert torch.equal(given.labels, other.labels)
    for (a, b), row, swapped in zip(PAIRS, given.inputs["input_ids"], other.inputs["input_ids"], strict=True):
        assert decode(tok, row).split() == f"{a} {b}".split()
        assert decode(tok, swapped).split() == f"{b} {a}".split()
        assert int(row.ne(0).sum()) == int(swapped.ne(0).sum())  # one length either way: bucketing holds
    plain = TaskData("quora", pair_examples(PAIRS), tok, max_length=64)
    assert len(plain.row_lengths) == 3 and not plain.both_orders


def test_each_epoch_draws_every_example_once_in_one_of_its_orders(tiny_model_dir):
    tok = Tokenizer.from_pretrained(tiny_model_dir)
    pairs = [(f"the dog {'very ' * i}sat", "a film") for i in range(40)]
    data = TaskData("quora", pair_examples(pairs), tok, max_length=64, random_order=True)
    assert not data.both_orders  # training order only: predictions keep the given order
    assert np.array_equal(TaskData("quora", pair_examples(pairs), tok, 64, both_orders=True).epoch_positions(
        "all", np.random.default_rng(0)), np.arange(40))  # predicting in both orders draws no training order
    draws = [data.epoch_positions("all", np.random.default_rng(seed)) for seed in (0, 1)]
    for positions in draws:
        assert sorted(positions % len(data)) == list(range(40))  # each example once, nothing lost or repeated
        assert 0 < (positions >= len(data)).sum() < 40  # both orders occur
        batches = data.batches(8, shuffle=True, bucketing=True, rng=np.random.default_rng(2), positions=positions)
        assert sorted(p for b in batches for p in b) == sorted(positions.tolist())
    assert not np.array_equal(*draws)  # drawn afresh
    assert np.array_equal(draws[0], data.epoch_positions("all", np.random.default_rng(0)))  # reproducible


def test_predictions_are_the_mean_of_both_orders_and_do_not_depend_on_the_order(tmp_path, tiny_model_dir,
                                                                                tiny_data_dir):
    tasks = THREE_TASKS.replace('data = "quora"\n', 'data = "quora"\npredict_order = "both"\n')
    config = load_config(write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=tasks,
                                           train='precision = "fp32"'))
    experiment = build_experiment(config, str(tiny_data_dir))
    model, tok = experiment.model.eval(), experiment.tokenizer
    dev = experiment.data["quora"]["dev"]
    assert dev.both_orders and not experiment.data["quora"]["train"].random_order
    assert not experiment.data["sst"]["dev"].both_orders and not experiment.data["sts"]["dev"].both_orders
    examples = dev.examples
    swapped = [Example(e.id, e.texts[::-1], e.label, e.line) for e in examples]
    one_way = [TaskData("quora", ex, tok, 32) for ex in (examples, swapped)]
    logits = [predict_both(model, data, experiment.inference)[1] for data in one_way]  # sigmoid of each order's
    logits = [np.log(p / (1 - p)) for p in logits]
    assert not np.allclose(logits[0], logits[1], atol=1e-4)  # the random model is not symmetric by itself
    hard, soft = predict_both(model, dev, experiment.inference)
    expected = 1 / (1 + np.exp(-(logits[0] + logits[1]) / 2))
    np.testing.assert_allclose(soft, expected, rtol=1e-4, atol=1e-5)
    assert np.array_equal(hard, (expected > 0.5).astype(np.int64))
    hard_swapped, soft_swapped = predict_both(model, TaskData("quora", swapped, tok, 32, both_orders=True),
                                              experiment.inference)
    np.testing.assert_allclose(soft_swapped, soft, rtol=1e-4, atol=1e-5)
    assert np.array_equal(hard_swapped, hard)


def test_a_trained_run_predicts_in_both_orders(tmp_path, tiny_model_dir, tiny_data_dir):
    from minbert.cli import main

    tasks = '[tasks.quora]\ndata = "quora"\npredict_order = "both"\ntrain_order = "random"\n'
    config = write_tiny_config(tmp_path / "q.toml", tmp_path, tiny_model_dir, tasks=tasks)
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    assert load_config(tmp_path / "q" / "config.toml").tasks["quora"].train_order == "random"
    run = MultitaskBERT.load(tmp_path / "q")
    pairs = [("the dog sat on the mat", "how do i learn python"), ("fun film", "a great plot")]
    forward = run.outputs("quora", pair_examples(pairs))
    backward = run.outputs("quora", pair_examples([(b, a) for a, b in pairs]))
    np.testing.assert_allclose(forward, backward, rtol=1e-4, atol=1e-5)


def test_other_orders_need_a_symmetric_cross_encoded_pair_task(tmp_path, tiny_model_dir):
    def config(tasks: str):
        return load_config(write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=tasks))

    entailment = ('[tasks.nli]\npredict_order = "both"\n[tasks.nli.data]\ntrain = "t.tsv"\ndev = "d.tsv"\n'
                  'text = ["premise", "hypothesis"]\nlabel = "label"\nclasses = ["no", "yes"]\n')
    with pytest.raises(ConfigError, match=r"tasks\.nli\.predict_order = 'both'.*not declared symmetric"):
        config(entailment)
    with pytest.raises(ConfigError, match=r"tasks\.nli\.train_order = 'random'.*not declared symmetric"):
        config(entailment.replace('predict_order = "both"', 'train_order = "random"'))
    assert config(entailment.replace('classes', 'symmetric = true\nclasses')).tasks["nli"].predict_order == "both"
    with pytest.raises(ConfigError, match=r"tasks\.sts\.predict_order = 'both' is for cross-encoded pairs"):
        config(SIAMESE_STS + 'predict_order = "both"\n')
    with pytest.raises(ConfigError, match=r"tasks\.quora\.predict_order = 'sideways' .*given.*both"):
        config('[tasks.quora]\ndata = "quora"\npredict_order = "sideways"\n')
    with pytest.raises(ConfigError, match=r"x\.symmetric: only a pair"):
        check_spec(DataSpec(train="t", dev="d", text=["sentence"], label="l", classes=[0, 1], symmetric=True), "x")
