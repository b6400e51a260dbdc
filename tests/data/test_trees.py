"""SST's phrase trees: a labelled example per node, spelled like the CS224N sentences; options; epoch shares."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from minbert import Tokenizer
from minbert.cli import main
from minbert.errors import ConfigError, DataError
from minbert.training.config import load_config
from minbert.training.experiment import load_task_data
from tests.conftest import write_tiny_config

TREES = [
    r"(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 great)) (2 .)))",
    "(1 (2 -LRB-) (1 (2 8\u00a01\\/2) (1 bad)))",  # PTB escapes and a no-break space inside one token
    r"(3 (2 The) (2 Rock))",  # "The Rock" again, as a root: labelled 3 here, 2 in tree 1
    r"(2 (2 broken) (3 tree)",  # one bracket short
    r"(9 (2 bad) (2 label))",
]


@pytest.fixture()
def trees(tmp_path):
    path = tmp_path / "trees.txt"
    path.write_text("\n".join(TREES) + "\n", encoding="utf-8")
    return path


def test_every_node_is_a_labelled_phrase(trees, caplog):
    from minbert.data.trees import read_sst_trees

    loaded, roots = read_sst_trees(trees, include_roots=True, dedup=False)
    assert roots == ["The Rock is great .", "-LRB- 8\u00a01\\/2 bad", "The Rock"]
    phrases = [(e.texts[0], e.label) for e in loaded.examples]
    assert phrases[:9] == [("The Rock is great .", 3), ("The Rock", 2), ("The", 2), ("Rock", 2), ("is great .", 4),
                           ("is great", 3), ("is", 2), ("great", 4), (".", 2)]
    assert ("8\u00a01\\/2 bad", 1) in phrases and ("8\u00a01\\/2", 2) in phrases  # the token was not split
    assert [e.line for e in loaded.examples].count(2) == 5
    assert [(s.line, s.reason.split(" (")[0]) for s in loaded.skipped] == [(4, "malformed tree"),
                                                                           (5, "malformed tree")]
    assert "label '9' is not a class in 0..4" in loaded.skipped[1].reason
    with pytest.raises(DataError, match=r"trees.txt:4: malformed tree"):
        read_sst_trees(trees, strict=True)


def test_roots_min_tokens_and_dedup(trees, caplog):
    from minbert.data.trees import read_sst_trees

    loaded, _ = read_sst_trees(trees, min_tokens=2)  # no roots, distinct phrases of 2+ tokens
    assert sorted((e.texts[0], e.label) for e in loaded.examples) == [
        ("8\u00a01\\/2 bad", 1), ("The Rock", 2), ("is great", 3), ("is great .", 4)]
    with caplog.at_level("INFO", logger="minbert"):
        loaded, _ = read_sst_trees(trees, min_tokens=2, include_roots=True)
    texts = Counter(e.texts[0] for e in loaded.examples)
    assert max(texts.values()) == 1 and "The Rock" not in texts  # 2 (tree 1) vs 3 (tree 3): a tie, dropped
    assert "1 seen with different labels (majority label kept), 1 of them tied (dropped)" in caplog.text


@pytest.fixture()
def data_with_trees(tmp_path, tiny_data_dir, trees):
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    shutil.copy(trees, data / "trees.txt")
    return data


def load(data_dir, model_dir, *overrides):
    config = load_config(None, [f"model.path={model_dir}", "tasks.sst.data=sst", *overrides])
    return load_task_data(config, Tokenizer.from_pretrained(model_dir), str(data_dir), splits=("train", "dev"))


def test_phrases_join_the_training_data_and_an_epoch_draws_their_share(data_with_trees, tiny_model_dir):
    extra = 'tasks.sst.extra=[{file = "trees.txt", format = "sst_trees", share = 0.2}]'
    train = load(data_with_trees, tiny_model_dir, extra)["sst"]["train"]
    assert len(train) == 48 + 12 and train.sources[0].start == 48  # 12 distinct non-root phrases
    rng = np.random.default_rng(0)
    everything = train.epoch_positions("all", rng)  # 20% of the epoch: 48 * 0.2 / 0.8 = 12, all of them
    assert list(everything) == list(range(60))
    assert list(train.epoch_positions("base", rng)) == list(range(48))
    assert list(train.epoch_positions("extra", rng)) == list(range(48, 60))
    small = load(data_with_trees, tiny_model_dir, extra.replace("share = 0.2", "share = 0.1"))["sst"]["train"]
    picks = [small.epoch_positions("all", np.random.default_rng(seed)) for seed in range(4)]
    assert all(list(p[:48]) == list(range(48)) for p in picks)
    assert all(len(p) == 48 + 5 and len(set(p[48:])) == 5 and min(p[48:]) >= 48 for p in picks)  # 48*0.1/0.9
    assert len({tuple(p[48:]) for p in picks}) > 1  # drawn afresh


def test_tree_options_are_checked():
    with pytest.raises(ConfigError, match=r"extra\[0\]: sst_trees hold 5-class sentiment phrases"):
        load_config(None, ["tasks.c.data=cfimdb", 'tasks.c.extra=[{file = "t", format = "sst_trees"}]'])
    with pytest.raises(ConfigError, match=r"share = 1.0 must be in \[0, 1\)"):
        load_config(None, ["tasks.s.data=sst", 'tasks.s.extra=[{file = "t", format = "sst_trees", share = 1.0}]'])
    with pytest.raises(ConfigError, match="train_data = 'extra' but task q has no extra data"):
        load_config(None, ["tasks.s.data=sst", "tasks.q.data=quora",
                           'tasks.s.extra=[{file = "t", format = "sst_trees"}]',
                           'stages=[{name = "phrases", train_data = "extra"}]'])


def test_a_missing_extra_file_fails_before_training(tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    config = write_tiny_config(tmp_path / "my.toml", tmp_path / "runs", tiny_model_dir,
                               tasks='[tasks.sst]\ndata = "sst"\n[[tasks.sst.extra]]\nfile = "nope.txt"\n'
                                     'format = "sst_trees"\n')
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 2
    assert "nope.txt: cannot read (No such file or directory)" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "my").exists()


def test_a_phrases_first_stage_trains_on_phrases_only(data_with_trees, tiny_model_dir, tmp_path):
    config = write_tiny_config(
        tmp_path / "staged.toml", tmp_path / "runs", tiny_model_dir,
        tasks='[tasks.sst]\ndata = "sst"\n[[tasks.sst.extra]]\nfile = "trees.txt"\nformat = "sst_trees"\n'
              '[[stages]]\nname = "phrases"\ntrain_data = "extra"\n[[stages]]\nname = "sentences"\n'
              'train_data = "base"\n')
    assert main(["train", "--config", str(config), "--data-dir", str(data_with_trees)]) == 0
    import json

    epochs = json.loads((tmp_path / "runs" / "staged" / "metrics.json").read_text())["epochs"]
    assert [(e["stage"], e["train_examples"]) for e in epochs] == [("phrases", 12), ("sentences", 48)]


def test_a_quick_look_caps_the_extra_data_and_every_stage(data_with_trees, tiny_model_dir):
    extra = 'tasks.sst.extra=[{file = "trees.txt", format = "sst_trees"}]'
    train = load(data_with_trees, tiny_model_dir, extra, "train.max_train_examples=5")["sst"]["train"]
    assert len(train) == 5 + 5 and train.sources[0].start == 5
    config = load_config(None, ["tasks.sst.data=sst", "train.stage_epoch_limit=1",
                                'stages=[{name = "a", epochs = 3}, {name = "b", epochs = 2}]'])
    assert [s.epochs for s in config.run_stages()] == [1, 1] and [s.epochs for s in config.stages] == [3, 2]
