"""train.tracking: the list of tracker units and their option tables, the one line of a missing package, and that
mlflow and wandb load only for a run that asks for them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from minbert.errors import ConfigError
from minbert.options import Chosen
from minbert.training.config import load_config
from minbert.training.tracking import MissingPackage, check_trackers, flat_params

SST = 'tasks.sst.data="sst"'


def tracking(value: str) -> list:
    return load_config(None, [SST, f"train.tracking={value}"]).train.tracking


def test_default_is_tensorboard_and_tables_carry_their_options():
    config = load_config(None, [SST])
    assert config.train.tracking == ["tensorboard"] and config.to_dict()["train"]["tracking"] == ["tensorboard"]
    chosen = tracking('["tensorboard", {name="mlflow", tracking_uri="http://h:5000", experiment="e"}, '
                      '{name="wandb", project="p", mode="offline"}]')
    assert [c.name for c in chosen] == ["tensorboard", "mlflow", "wandb"]
    assert (chosen[1].options.tracking_uri, chosen[1].options.experiment) == ("http://h:5000", "e")
    assert (chosen[2].options.project, chosen[2].options.mode, chosen[2].options.entity) == ("p", "offline", "")
    assert tracking('"mlflow"') == [Chosen("mlflow", chosen[1].options.__class__())]  # one name: a list of one


@pytest.mark.parametrize(("value", "message"), [
    ('["mlflw"]', "train.tracking[0] = 'mlflw' is not a tracker: one of tensorboard, mlflow, wandb"),
    ('["wandb", "wandb"]', "train.tracking: 'wandb' is listed twice"),
    ('[{name="wandb", mode="sometimes"}]', "train.tracking[0].mode = 'sometimes' is not one of auto, online"),
    ('[{name="mlflow", uri="x"}]', "unknown key 'train.tracking[0].uri'; valid keys: tracking_uri, experiment"),
    ("3", "train.tracking: expected a list of tracker names"),
])
def test_bad_tracking_is_one_line_naming_the_key(value, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        tracking(value)


def test_a_missing_package_names_pip_install(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    check_trackers(tracking('["tensorboard", "mlflow"]'))  # installed: no error
    with pytest.raises(MissingPackage, match=r"^train.tracking\[1\]: the wandb tracker needs its package: "
                                             r"pip install wandb"):
        check_trackers(tracking('["mlflow", "wandb"]'))


def test_a_missing_package_stops_train_before_any_work(monkeypatch, tmp_path, capsys):
    from minbert.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    assert main(["train", SST, "train.tracking=[\"mlflow\"]", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "pip install mlflow" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # no run directory


def test_mlflow_and_wandb_load_only_when_a_run_asks():
    code = ("import sys; import minbert.runs.run, minbert.runs.ablation, minbert.tuning.study; "
            "from minbert.training.config import load_config; "
            "load_config(None, ['tasks.sst.data=\"sst\"', 'train.tracking=[\"mlflow\", \"wandb\"]']); "
            "print(sorted(m for m in ('mlflow', 'wandb') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "[]", result.stderr


def test_params_are_the_config_under_dotted_keys():
    params = flat_params(load_config(None, [SST, "train.lr=2e-5"]).to_dict())
    assert params["train.lr"] == "2e-05" and params["tasks.sst.data"] == "sst"
    assert params["train.betas"] == "[0.9, 0.999]" and params["train.tracking"] == '["tensorboard"]'
