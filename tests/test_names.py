"""Every name that becomes a file or directory name (a run's, a task's, a data spec's prediction_file, a tune study's,
an ensemble's or soup's --name, a sweep's variants and ensemble) follows one rule, checked when the config or flag is
read: a bad one is one line naming its key and the rule, before anything is written. A model path is a path: one
too long for the file system is one line too. Every shipped config still loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.names import MAX_NAME_LENGTH, check_name
from minbert.training.config import load_config
from tests.conftest import write_tiny_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RULE = "letters, digits"  # a phrase of the rule every refusal states
ABSOLUTE = "@ABS@"  # stands for an absolute path inside the test's directory
BAD = [ABSOLUTE, "../x", "", "<b>x</b>", "a" * 300, ".", "..", "a/b", "x y", "-x", ".hidden", "x\u00e9"]
GOOD = ["sst", "run", "sst2", "lr_1e-4", "default-x5", "Trial.0003", "a" * MAX_NAME_LENGTH]


def bad_value(bad: str, tmp_path: Path) -> str:
    return str(tmp_path / "abs" / "pwn") if bad == ABSOLUTE else bad


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def refused(argv: list[str], key: str, tmp_path: Path, capsys, rule: str = RULE) -> None:
    """The command exits 2 with one line naming `key` and the rule, and writes nothing under tmp_path."""
    capsys.readouterr()
    before = files_under(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("minbert: error: ") and key in err and rule in err, err
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name):
    assert check_name(name, "name") == name


@pytest.mark.parametrize("name", [*BAD, " x", "x\n"])
def test_bad_names_are_one_line_naming_the_key_and_the_rule(name):
    with pytest.raises(ConfigError) as error:
        check_name(name, "tasks.X")
    message = str(error.value)
    assert message.startswith("tasks.X") and RULE in message and "\n" not in message
    assert len(message) < 300  # a long name is shown shortened


def test_a_name_with_a_suffix_leaves_room_for_it():
    check_name("a" * (MAX_NAME_LENGTH - 5), "--study", suffix="-best")
    with pytest.raises(ConfigError, match="at most 59 characters"):
        check_name("a" * (MAX_NAME_LENGTH - 4), "--study", suffix="-best")


@pytest.fixture()
def project(tmp_path, tiny_model_dir):
    return write_tiny_config(tmp_path / "base.toml", tmp_path / "runs", tiny_model_dir)


@pytest.mark.parametrize("command", ["data", "train"])
@pytest.mark.parametrize("bad", BAD)
def test_a_bad_run_name_is_refused_by_data_and_train(command, bad, project, tmp_path, tiny_data_dir, capsys):
    refused([command, "--config", str(project), f"name={bad_value(bad, tmp_path)}", "--data-dir",
             str(tiny_data_dir)], "name = ", tmp_path, capsys)


@pytest.mark.parametrize("command", ["data", "train"])
@pytest.mark.parametrize("bad", BAD)
def test_a_bad_task_name_is_refused_by_data_and_train(command, bad, tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    value = bad_value(bad, tmp_path)
    config = write_tiny_config(tmp_path / "c.toml", tmp_path / "runs", tiny_model_dir,
                               tasks=f'[tasks.{json.dumps(value)}]\ndata = "sst"\n')
    refused([command, "--config", str(config), "--data-dir", str(tiny_data_dir)], "tasks.", tmp_path, capsys)


@pytest.mark.parametrize("command", ["data", "train"])
def test_a_task_name_has_no_dot(command, tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    """A dot is fine in a run's name, not in a task's: torch refuses it as a module name (a KeyError after the data
    loaded, before), and `tasks.sst.v2.dropout=...` could not name the task."""
    config = write_tiny_config(tmp_path / "c.toml", tmp_path / "runs", tiny_model_dir,
                               tasks='[tasks."sst.v2"]\ndata = "sst"\n')
    refused([command, "--config", str(config), "--data-dir", str(tiny_data_dir)], "tasks.NAME = 'sst.v2'",
            tmp_path, capsys, rule="has no '.'")


@pytest.mark.parametrize("bad", [b for b in BAD if b])  # "" is the default: the task's name
def test_a_bad_prediction_file_is_refused_by_data(bad, tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    spec = ('{ train = "ids-sst-train.csv", dev = "ids-sst-dev.csv", text = ["sentence"], label = "sentiment", '
            f'classes = [0, 1, 2, 3, 4], prediction_file = {json.dumps(bad_value(bad, tmp_path))} }}')
    config = write_tiny_config(tmp_path / "c.toml", tmp_path / "runs", tiny_model_dir,
                               tasks=f"[tasks.mine]\ndata = {spec}\n")
    refused(["data", "--config", str(config), "--data-dir", str(tiny_data_dir)], "tasks.mine.data.prediction_file",
            tmp_path, capsys)


def write_search(directory: Path, model_dir: Path) -> Path:
    write_tiny_config(directory / "base.toml", directory / "unused", model_dir)
    path = directory / "search.toml"
    path.write_text('base = "base.toml"\ntrials = 1\n[space]\n"train.lr" = { type = "float", low = 1e-4, '
                    'high = 1e-2 }\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_study_name_is_refused_before_the_study_is_made(bad, tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    search = write_search(tmp_path, tiny_model_dir)
    refused(["tune", str(search), f"--study={bad_value(bad, tmp_path)}", "--output-dir", str(tmp_path / "runs"),
             "--data-dir", str(tiny_data_dir)], "--study", tmp_path, capsys)


def test_a_study_name_leaves_room_for_its_best_config(tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    """best.toml's run is named STUDY-best: a study name too long for that is refused before any trial, not after."""
    search = write_search(tmp_path, tiny_model_dir)
    refused(["tune", str(search), "--study", "s" * MAX_NAME_LENGTH, "--output-dir", str(tmp_path / "runs"),
             "--data-dir", str(tiny_data_dir)], "--study", tmp_path, capsys, rule="at most 59 characters")


@pytest.mark.parametrize("command", ["ensemble", "soup"])
@pytest.mark.parametrize("bad", BAD)
def test_a_bad_ensemble_or_soup_name_is_refused(command, bad, tmp_path, capsys):
    refused([command, str(tmp_path / "member"), f"--name={bad_value(bad, tmp_path)}", "--output-dir",
             str(tmp_path / "runs")], "--name", tmp_path, capsys)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("where", ["variant", "ensemble"])
def test_a_bad_sweep_name_is_refused_before_any_run(where, bad, tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    write_tiny_config(tmp_path / "base.toml", tmp_path / "runs", tiny_model_dir)
    value = json.dumps(bad_value(bad, tmp_path))
    variants, ensemble = (f"{value} = []", "") if where == "variant" else (
        "a = []", f'[ensemble]\nname = {value}\nmembers = "all"\n')
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'base = "base.toml"\noutput_dir = "{tmp_path / "out"}"\n[variants]\n{variants}\n{ensemble}')
    refused(["ablate", str(sweep), "--data-dir", str(tiny_data_dir)],
            "variants." if where == "variant" else "ensemble.name", tmp_path, capsys)


def test_quick_on_a_name_with_no_room_for_its_suffix_is_refused(tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    """--quick names its run NAME-quick: a config name with no room for that is refused before anything runs."""
    config = write_tiny_config(tmp_path / f"{'q' * MAX_NAME_LENGTH}.toml", tmp_path / "runs", tiny_model_dir)
    refused(["train", "--config", str(config), "--quick", "--data-dir", str(tiny_data_dir)], "-quick'", tmp_path,
            capsys)


def test_a_model_path_too_long_for_the_file_system_is_one_line(tmp_path, tiny_data_dir, capsys):
    """A model path is a path, not a name: any length is taken, and one the file system refuses is one line."""
    for path in (str(tmp_path / ("m" * 500)), "m" * 500):
        capsys.readouterr()
        assert main(["info", "--model", path]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "too long" in err, err
        config = write_tiny_config(tmp_path / "c.toml", tmp_path / "runs", Path(path))
        refused(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)], "model path", tmp_path, capsys,
                rule="too long")


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.toml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_still_loads(path):
    """Run configs, sweeps (with each variant's run config) and search files: their names all follow the rule."""
    from minbert.runs.ablation import read_sweep
    from minbert.tuning.search import read_search

    kind = path.relative_to(CONFIGS).parts[0]
    if kind == "ablations":
        sweep = read_sweep(path)
        for name, variant in sweep["variants"].items():
            assert load_config(variant["config"], [*variant["overrides"], f"name={name}"]).name == name
    elif kind == "tune":
        read_search(path)
    else:
        load_config(path)
