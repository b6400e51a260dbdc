"""Configs: TOML + key=value overrides, unknown keys with the nearest valid one, types, impossible values."""

from __future__ import annotations

import pytest

from minbert.errors import ConfigError
from minbert.training.config import load_config, parse_override

BASE = """
[train]
lr = 1e-5
[tasks.sst]
data = "sst"
"""


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(BASE)
    return path


def test_defaults_name_and_overrides(config_file):
    config = load_config(config_file, ["train.lr=2e-5", "tasks.sst.dropout=0.1", "train.epochs=3",
                                       "tasks.sst.pooling=mean", "train.betas=[0.9, 0.98]"])
    assert config.name == "exp"
    assert config.train.lr == 2e-5 and config.train.epochs == 3 and config.train.betas == [0.9, 0.98]
    assert config.tasks["sst"].dropout == 0.1 and config.tasks["sst"].pooling == "mean"
    assert config.seed == 11711 and config.train.batch_size == 8


def test_int_is_accepted_for_float(config_file):
    assert load_config(config_file, ["train.lr=1"]).train.lr == 1.0


def test_override_adds_a_task(config_file):
    config = load_config(config_file, ["tasks.sts.data=sts"])
    assert list(config.tasks) == ["sst", "sts"]


def test_resolved_config_round_trips(config_file, tmp_path):
    config = load_config(config_file, ["train.lr=3e-5"])
    (tmp_path / "resolved.toml").write_text(config.to_toml())
    assert load_config(tmp_path / "resolved.toml") == config


@pytest.mark.parametrize("head", ["cosine", "relu_cosine"])
def test_a_task_with_nothing_to_train_is_refused(head):
    overrides = ["model.freeze=encoder", "tasks.sts.data=sts", "tasks.sts.pair_encoding=siamese",
                 f"tasks.sts.head={head}", "tasks.sts.loss=cosine_mse"]
    with pytest.raises(ConfigError, match=f"tasks.sts.head = '{head}' has no parameters"):
        load_config(None, overrides)
    load_config(None, [*overrides, "model.common_layers=1"])  # a shared dense layer trains


@pytest.mark.parametrize(("override", "message"), [
    ("train.lrr=1", "unknown key 'train.lrr'; did you mean 'lr'?"),
    ("trian.lr=1", "unknown key 'trian'; did you mean 'train'?"),
    ("tasks.sst.poolng=mean", "unknown key 'tasks.sst.poolng'; did you mean 'pooling'?"),
    ("train.lr=fast", "train.lr: expected float, got str 'fast'"),
    ("train.epochs=2.5", "train.epochs: expected int, got float 2.5"),
    ("train.lr=-1e-5", "train.lr = -1e-05 must be in [0, 1]"),
    ("train.batch_size=0", "train.batch_size = 0 must be > 0"),
    ("tasks.sst.pooling=median", "tasks.sst.pooling = 'median' is not a pooling: one of cls, cls_raw, mean, max"),
    ("tasks.sst.data=imdb", "tasks.sst.data = 'imdb' is not one of"),
    ("tasks.sst.dropout=1.5", "tasks.sst.dropout = 1.5 must be in [0, 1)"),
    ("train.precision=fp8", "train.precision = 'fp8' is not one of fp32, bf16, auto"),
    ("train.sampler=random", "train.sampler = 'random' is not a sampler: one of"),
    ("model.freeze=half", "model.freeze = 'half' is not one of"),
    ("train", "override 'train': expected key=value"),
])
def test_bad_values_give_one_clear_message(config_file, override, message):
    with pytest.raises(ConfigError) as info:
        load_config(config_file, [override])
    assert message in str(info.value)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[train]\nlr = = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: .*line 2"):
        load_config(tmp_path / "bad.toml")


def test_no_tasks_is_an_error(tmp_path):
    (tmp_path / "empty.toml").write_text("seed = 1\n")
    with pytest.raises(ConfigError, match="no tasks"):
        load_config(tmp_path / "empty.toml")


def test_parse_override_values():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=hello world") == (["a"], "hello world")
    assert parse_override('a="x=y"') == (["a"], "x=y")
