"""No command replaces what it reads: an ensemble's member, a teacher, the starting model, the data, or anything
above or below one, `--overwrite` or not, refused before anything is touched. Ensembles that contain themselves
and malformed ensemble.toml files are reported by path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.runs.ensemble import ENSEMBLE_FILE
from tests.conftest import THREE_TASKS, write_tiny_config


def fingerprint(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture()
def runs(tmp_path, three_task_run) -> Path:
    """runs/mt: a finished run (a copy of the shared tiny run), and runs/ens: an ensemble of it."""
    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(three_task_run, root / "mt", ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    return root


def ensemble(*args: str, data_dir: Path) -> int:
    return main(["ensemble", *args, "--data-dir", str(data_dir)])


def test_an_ensemble_may_not_replace_its_own_member(runs, tiny_data_dir, capsys):
    before = fingerprint(runs / "mt")
    assert ensemble(str(runs / "mt"), "--name", "mt", "--output-dir", str(runs), "--overwrite",
                    data_dir=tiny_data_dir) == 2
    err = capsys.readouterr().err
    assert "is a member" in err and "its own input" in err and "Traceback" not in err
    assert fingerprint(runs / "mt") == before and not (runs / "mt" / ENSEMBLE_FILE).exists()


def test_nor_lie_inside_a_member_nor_hold_one(runs, tiny_data_dir, capsys):
    before = fingerprint(runs / "mt")
    assert ensemble(str(runs / "mt"), "--name", "inside", "--output-dir", str(runs / "mt"),
                    data_dir=tiny_data_dir) == 2
    assert "lies inside a member" in capsys.readouterr().err
    nested = runs / "group" / "mt"  # a member one level down: an ensemble named "group" would hold it
    nested.parent.mkdir()
    shutil.copytree(runs / "mt", nested)
    assert ensemble(str(nested), "--name", "group", "--output-dir", str(runs), "--overwrite",
                    data_dir=tiny_data_dir) == 2
    assert "holds a member" in capsys.readouterr().err
    assert fingerprint(runs / "mt") == before and fingerprint(nested) == before


def test_a_member_reached_through_another_ensemble_is_protected_too(runs, tiny_data_dir, capsys):
    assert ensemble(str(runs / "mt"), "--name", "ens", "--output-dir", str(runs), data_dir=tiny_data_dir) == 0
    before = fingerprint(runs / "mt")
    assert ensemble(str(runs / "ens"), "--name", "mt", "--output-dir", str(runs), "--overwrite",
                    data_dir=tiny_data_dir) == 2
    assert "is a member" in capsys.readouterr().err and fingerprint(runs / "mt") == before
    # an ensemble may replace an ensemble that is not among its inputs
    assert ensemble(str(runs / "mt"), "--name", "ens", "--output-dir", str(runs), "--overwrite",
                    data_dir=tiny_data_dir) == 0


def test_training_may_not_replace_its_teacher_or_its_starting_model(runs, tmp_path, tiny_model_dir, tiny_data_dir,
                                                                    capsys):
    config = write_tiny_config(tmp_path / "t.toml", runs, tiny_model_dir, tasks=THREE_TASKS)
    before = fingerprint(runs / "mt")
    common = ["train", "--config", str(config), "name=mt", "--overwrite", "--data-dir", str(tiny_data_dir)]
    assert main([*common, f"train.distillation.teacher={runs / 'mt'}"]) == 2
    assert "is the teacher of tasks.sst" in capsys.readouterr().err
    assert main([*common, f"model.path={runs / 'mt' / 'best'}"]) == 2
    assert "holds model.path" in capsys.readouterr().err
    assert main(["train", "--config", str(config), f"name={tiny_data_dir.name}", f"output_dir={tiny_data_dir.parent}",
                 "--overwrite", "--data-dir", str(tiny_data_dir)]) == 2
    assert "is the data directory" in capsys.readouterr().err
    assert fingerprint(runs / "mt") == before and (tiny_data_dir / "ids-sst-train.csv").is_file()


def test_an_ensemble_that_contains_itself_is_reported_by_path(runs, tiny_data_dir, capsys):
    a, b = runs / "a", runs / "b"
    for directory, member in ((a, b), (b, a)):
        directory.mkdir()
        (directory / ENSEMBLE_FILE).write_text(f'members = ["{member}"]\n')
    (runs / "self").mkdir()
    (runs / "self" / ENSEMBLE_FILE).write_text(f'members = ["{runs / "self"}"]\n')
    for start in (a, runs / "self"):
        assert ensemble(str(start), "--name", "x", "--output-dir", str(runs), data_dir=tiny_data_dir) == 2
        err = capsys.readouterr().err
        assert "contains itself" in err and ENSEMBLE_FILE in err and "RecursionError" not in err
    assert not (runs / "x").exists()


@pytest.mark.parametrize(("content", "message"), [
    ("members = 5\n", "`members` must be a non-empty list"),
    ("members = []\n", "`members` must be a non-empty list"),
    ('members = [1, "x"]\n', "`members` must be a non-empty list"),
    ("name = 'no members'\n", "`members` must be a non-empty list"),
    ("members = [\n", "ensemble.toml"),
    ('members = ["/no/such/run"]\n', "not a finished run"),
])
def test_a_malformed_ensemble_file_is_reported_by_path(runs, tiny_data_dir, capsys, content, message):
    (runs / "bad").mkdir()
    (runs / "bad" / ENSEMBLE_FILE).write_text(content)
    assert ensemble(str(runs / "bad"), "--name", "x", "--output-dir", str(runs), data_dir=tiny_data_dir) == 2
    err = capsys.readouterr().err
    assert message in err and str(runs / "bad") in err and "Traceback" not in err and "TypeError" not in err
