"""Configs and run directories written before techniques had their own tables still load: each old key is read
as its new one with one warning, options of units a config does not use are dropped (they had no effect), and a
finished run whose config.toml has the old flat keys evaluates and predicts as before."""

from __future__ import annotations

import logging
import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w

from minbert.options import build
from minbert.training.config import ALIASES, RunConfig, load_config, migrate

# The [train]/[model]/[tasks.X] keys of a run directory's config.toml as minbert wrote them before (values of
# report 001's recipe: square-root sampling, FGSM + MNRL on SST, MNRL on Quora).
OLD = """
name = "old"
[model]
pal_size = 16
pal_heads = 4
pal_shared = false
[train]
sampler = "proportional"
update = "local"
alpha = 0.5
steps_per_epoch = 40
gradient_surgery = "none"
bregman_weight = 0.0
bregman_momentum = 0.99
teacher = ""
teacher_weight = 0.3
teacher_annealing = false
teacher_temperature = 2.0
[tasks.sst]
data = "sst"
regularizers = ["fgsm", "mnrl"]
fgsm_epsilon = 1e-4
mnrl_weight = 0.25
mnrl_scale = 20.0
smart_weight = 1.0
smart_noise = 1e-5
smart_step = 1e-3
[tasks.quora]
data = "quora"
pair_encoding = "siamese"
regularizers = ["mnrl"]
fgsm_epsilon = 1e-5
mnrl_weight = 0.5
"""

NEW = """
name = "old"
[model.pal]
size = 16
heads = 4
shared = false
[train.sampler]
name = "proportional"
alpha = 0.5
steps_per_epoch = 40
[train.distillation]
weight = 0.3
annealing = false
temperature = 2.0
[tasks.sst]
data = "sst"
regularizers.fgsm = { epsilon = 1e-4 }
regularizers.mnrl = { weight = 0.25, scale = 20.0 }
[tasks.quora]
data = "quora"
pair_encoding = "siamese"
regularizers.mnrl = { weight = 0.5 }
"""


def test_old_flat_keys_read_as_their_tables_with_one_warning_each(tmp_path, caplog):
    (tmp_path / "old.toml").write_text(OLD)
    (tmp_path / "new.toml").write_text(NEW)
    with caplog.at_level(logging.WARNING, logger="minbert"):
        old = load_config(tmp_path / "old.toml")
    assert old == load_config(tmp_path / "new.toml")
    warned = [r.getMessage() for r in caplog.records]
    assert any("tasks.sst.fgsm_epsilon is now tasks.sst.regularizers.fgsm.epsilon" in m for m in warned)
    assert any("train.alpha is now train.sampler.alpha" in m for m in warned)
    assert any("model.pal_size is now model.pal.size" in m for m in warned)
    assert len(warned) == len({m.split(":")[-1] for m in warned})  # no key warned twice
    assert list(old.tasks["sst"].regularizers) == ["fgsm", "mnrl"]  # their order is kept


def test_old_keys_in_overrides_and_off_values():
    config = load_config(None, ["tasks.sst.data=sst", "tasks.quora.data=quora", "train.sampler=round_robin",
                                "train.update=global", "train.alpha=0.9", "train.gradient_surgery=pcgrad",
                                "train.bregman_weight=0.5", 'tasks.sst.regularizers=["smart"]',
                                "tasks.sst.smart_step=0.01", "tasks.sst.mnrl_weight=3.0"])
    assert config.train.sampler.name == "round_robin" and config.train.sampler.options.update == "global"
    assert not hasattr(config.train.sampler.options, "alpha")  # a round robin has no alpha: it had no effect
    assert list(config.train.techniques) == ["pcgrad", "bregman"]
    assert config.train.techniques["bregman"].weight == 0.5
    assert config.tasks["sst"].regularizers["smart"].step == 0.01
    assert "mnrl" not in config.tasks["sst"].regularizers  # mnrl_weight without mnrl: no effect, not turned on
    off = load_config(None, ["tasks.sst.data=sst", "train.gradient_surgery=none", "train.bregman_weight=0",
                             "train.bregman_momentum=0.9"])
    assert off.train.techniques == {}  # weight 0 and "none" meant off


# a value each old key may take (one that is not "off"), and the sampler it needs to have an effect
ALIAS_VALUES = {"update": ("global", "round_robin"), "alpha": (0.25, "proportional"),
                "steps_per_epoch": (7, "proportional"), "gradient_surgery": ("pcgrad", "round_robin"),
                "bregman_weight": (0.5, None), "bregman_momentum": (0.5, None), "teacher": ("runs/x", None),
                "teacher_weight": (0.25, None), "teacher_annealing": (False, None), "teacher_temperature": (2.0, None),
                "pal_size": (24, None), "pal_heads": (6, None), "pal_shared": (False, None)}


@pytest.mark.parametrize("old", list(ALIASES))
def test_every_alias_lands_on_a_key_of_the_new_schema(old):
    section, key = old.split(".", 1)
    key = key.removeprefix("*.")
    value, sampler = ALIAS_VALUES.get(key, (0.25, None))
    values: dict = {"tasks": {"t": {"data": "sst", "regularizers": ["fgsm", "mnrl", "smart"]}}}
    table = values["tasks"]["t"] if section == "tasks" else values.setdefault(section, {})
    table[key] = value
    if sampler:
        values.setdefault("train", {})["sampler"] = sampler
    if key == "bregman_momentum":  # on its own it meant nothing: the old weight's default 0 was off
        table["bregman_weight"] = 1.0
    migrate(values)
    assert key not in table
    node = values
    for part in ALIASES[old].replace("tasks.*", "tasks.t").split("."):
        if part not in node:  # a technique switched on by name: pcgrad's table is empty
            assert part == "pcgrad" and value == "pcgrad"
            node = {}
            break
        node = node[part]
    assert node == value or node == {}
    build(RunConfig, values)  # the new key is one the schema knows, with a valid value


def test_a_run_directory_with_old_keys_evaluates_and_predicts(three_task_run, tiny_data_dir, tmp_path):
    from minbert import MultitaskBERT
    from minbert.cli import main

    run = tmp_path / "old-run"
    shutil.copytree(three_task_run, run)
    values = tomllib.loads((run / "config.toml").read_text())
    train, model = values["train"], values["model"]
    sampler = train.pop("sampler")
    sampler = sampler if isinstance(sampler, dict) else {"name": sampler}  # a unit without options: its name
    train.update(sampler=sampler.pop("name"), update=sampler.pop("update", "local"), alpha=0.5, steps_per_epoch=0,
                 gradient_surgery="none", bregman_weight=0.0, bregman_momentum=0.99, **{
                     f"teacher{'_' + k if k != 'teacher' else ''}": v
                     for k, v in train.pop("distillation").items()})
    del train["techniques"]
    model.update({f"pal_{k}": v for k, v in model.pop("pal").items()})
    for task in values["tasks"].values():
        task["regularizers"] = list(task["regularizers"])
        task.update(fgsm_epsilon=1e-5, mnrl_weight=0.5, mnrl_scale=20.0, smart_weight=1.0, smart_noise=1e-5,
                    smart_step=1e-3)
    (run / "config.toml").write_text(tomli_w.dumps(values))
    assert "pal_size" in (run / "config.toml").read_text()
    assert load_config(run / "config.toml") == load_config(three_task_run / "config.toml")
    assert main(["evaluate", "--run", str(run), "--data-dir", str(tiny_data_dir)]) == 0
    old, new = MultitaskBERT.load(run), MultitaskBERT.load(three_task_run)
    sentences = ["a good film", "a bad film"]
    assert old.predict_sentiment(sentences) == new.predict_sentiment(sentences)


@pytest.mark.parametrize("path", sorted(p for p in Path(__file__).resolve().parents[2].glob("configs/**/*.toml")
                                        if p.parent.name != "tune"),  # search files: tests/tuning
                         ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_shipped_configs_and_sweeps_are_valid_and_use_the_new_keys(path, caplog):
    from minbert.runs.ablation import read_sweep

    with caplog.at_level(logging.WARNING, logger="minbert"):
        if path.parent.name == "ablations":
            sweep = read_sweep(path)
            for variant in sweep["variants"].values():
                load_config(variant["config"], [*sweep.get("overrides", []), *variant["overrides"]])
        else:
            load_config(path)
    assert not [r for r in caplog.records if " is now " in r.getMessage()]
