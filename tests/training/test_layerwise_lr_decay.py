"""Layer-wise learning-rate decay: each encoder layer's rate is decay times the rate of the layer above; the heads
keep theirs; every trainable parameter is in exactly one group; a run with it trains and resumes exactly."""

from __future__ import annotations

import pytest

from minbert import BertModel
from minbert.errors import ConfigError
from minbert.tasks.model import MultitaskModel
from minbert.training.config import load_config
from minbert.training.experiment import build_optimizer
from minbert.training.layerwise_lr_decay import LayerwiseLRDecay
from tests.conftest import tiny_config


class FakeTrainer:  # what the hook reads: the model
    def __init__(self, model):
        self.model = model


def build(*overrides):
    config = load_config(None, ["tasks.sst.data=sst", "train.lr=1e-4", "train.head_lr=1e-3", *overrides])
    return config, MultitaskModel(BertModel(tiny_config(num_hidden_layers=3)), config.tasks, config.model)


def rate_of(optimizer, parameter) -> float:
    (lr,) = {g["lr"] for g in optimizer.param_groups if any(p is parameter for p in g["params"])}
    return lr


@pytest.mark.parametrize("frozen_layers", [0, 1])
def test_each_layer_learns_at_decay_times_the_layer_above(frozen_layers):
    config, model = build("train.techniques.layerwise_lr_decay={decay=0.5}", f"model.frozen_layers={frozen_layers}")
    (options,) = config.train.techniques.values()
    parts = LayerwiseLRDecay(options).encoder_parts(FakeTrainer(model))
    optimizer = build_optimizer(config, model, encoder_parts=parts)
    encoder = model.encoder
    expected = {0: 1e-4 * 0.25, 1: 1e-4 * 0.5, 2: 1e-4}  # three layers: the top at lr
    for index, layer in enumerate(encoder.layers):
        for p in layer.parameters():
            if index < frozen_layers:  # frozen layers are in no group
                assert not any(p is q for g in optimizer.param_groups for q in g["params"])
            else:
                assert rate_of(optimizer, p) == pytest.approx(expected[index])
    if not frozen_layers:
        assert rate_of(optimizer, encoder.embeddings.word_embeddings.weight) == pytest.approx(1e-4 * 0.125)
    assert rate_of(optimizer, encoder.pooler.dense.weight) == pytest.approx(1e-4)
    for p in model.heads.parameters():
        assert rate_of(optimizer, p) == pytest.approx(1e-3)
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len({id(p) for p in grouped}) == len(trainable)


def test_decay_must_be_in_zero_one():
    with pytest.raises(ConfigError, match=r"train.techniques.layerwise_lr_decay.decay = 1.5 must be in \(0, 1\]"):
        load_config(None, ["tasks.sst.data=sst", "train.techniques.layerwise_lr_decay={decay=1.5}"])


def test_a_run_with_decay_trains_and_resumes_exactly(tiny_model_dir, tiny_data_dir, tmp_path):
    from minbert.cli import main
    from tests.faults import run_with_fault
    from tests.runs.test_resume import assert_same_run, write_config

    config = write_config(tmp_path / "run.toml", tmp_path, tiny_model_dir, epochs=2,
                          extra="techniques.layerwise_lr_decay = { decay = 0.7 }")
    args = ["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]
    assert main([*args, "name=uninterrupted"]) == 0
    result = run_with_fault("checkpoint-before-rename@9", *args, "name=torn")
    assert result.returncode == 137
    assert main(["train", "--resume", str(tmp_path / "torn"), "--data-dir", str(tiny_data_dir)]) == 0
    assert assert_same_run(tmp_path / "uninterrupted", tmp_path / "torn") <= 1e-6
