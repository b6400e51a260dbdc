"""Files that are not regular files (a FIFO, a character device, a directory) as inputs and outputs: refused at once
with one line naming the flag or key and the file, and never replaced. `-` is standard input or output.

Only nodes made here are used (never /dev/*: the tests may run as root). A regression would block on a FIFO or
read a device without end, so each test runs under an alarm that fails it instead of hanging."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.data.files import FileFormat, read_examples
from minbert.data.trees import read_sst_trees
from minbert.errors import MinbertError
from minbert.outputs import atomic_write_text, check_output_file
from tests.conftest import make_tiny_data_dir, write_tiny_config


class Blocked(BaseException):
    """Not an OSError, which the readers would turn into a message."""


@pytest.fixture(autouse=True)
def no_hang():
    def fail(signum, frame):
        raise Blocked("blocked: a FIFO or a device was opened")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture()
def fifo(tmp_path) -> Path:
    path = tmp_path / "a-fifo"
    os.mkfifo(path)
    return path


@pytest.fixture()
def char_device(tmp_path) -> Path:
    """A null device node of our own (major 1, minor 3)."""
    path = tmp_path / "a-device"
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod of a character device is not permitted here")
    return path


@pytest.fixture(params=["fifo", "char_device"])
def node(request) -> tuple[Path, str, callable]:
    """(path, how it is named in messages, the stat test it must still pass)."""
    if request.param == "fifo":
        return request.getfixturevalue("fifo"), "a FIFO", stat.S_ISFIFO
    return request.getfixturevalue("char_device"), "a character device", stat.S_ISCHR


def still(path: Path, is_kind) -> bool:
    return is_kind(os.lstat(path).st_mode)


# --- outputs ------------------------------------------------------------------------------------------------------

def test_an_output_onto_a_special_file_is_refused_and_the_node_kept(node):
    path, kind, is_kind = node
    with pytest.raises(MinbertError, match=f"--output {path}: {kind}, not a regular file"):
        check_output_file(path)
    with pytest.raises(MinbertError, match=f"{path}: {kind}, not a regular file"):
        atomic_write_text(path, "text")
    assert still(path, is_kind) and not list(path.parent.glob(".*.tmp"))


def test_an_output_through_a_symlink_writes_its_regular_target(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_text(check_output_file(link), "new")
    assert link.is_symlink() and target.read_text(encoding="utf-8") == "new"


@pytest.mark.parametrize("command", ["predict", "report", "loadtest"])
def test_commands_refuse_an_output_onto_a_special_file(three_task_run, node, command, capsys):
    path, kind, is_kind = node
    args = {"predict": ["predict", "--run", str(three_task_run), "--task", "sst", "a fine film"],
            "report": ["report", str(three_task_run)],
            "loadtest": ["loadtest", "--run", str(three_task_run)]}[command]
    assert main([*args, "--output", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"--output {path}: {kind}, not a regular file" in err, err
    assert still(path, is_kind)


def test_predict_output_dash_writes_the_predictions_to_standard_output(three_task_run, capsys):
    assert main(["predict", "--run", str(three_task_run), "--task", "sst", "a fine film", "--output", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("id \t Predicted_Sentiment \n1 , ") and not Path("-").exists(), out


def test_report_output_dash_writes_the_html_to_standard_output(three_task_run, capsys):
    assert main(["report", str(three_task_run), "--output", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out.lstrip().lower().startswith("<!doctype html>") and not Path("-").exists()


# --- inputs -------------------------------------------------------------------------------------------------------

SST = FileFormat(("sentence",), "sentiment", num_classes=5)


def test_readers_refuse_a_special_file_without_opening_it(node):
    path, kind, _ = node
    with pytest.raises(MinbertError, match=f"{path}: {kind}, not a regular file"):
        read_examples(path, SST)
    with pytest.raises(MinbertError, match=f"{path}: {kind}, not a regular file"):
        read_sst_trees(path)


def test_readers_refuse_a_directory_in_one_line(tmp_path):
    with pytest.raises(MinbertError, match=f"{tmp_path}: a directory, not a regular file"):
        read_examples(tmp_path, SST)


def test_a_reader_follows_a_symlink_to_a_regular_file(tmp_path):
    target = tmp_path / "dev.csv"
    target.write_text("id\tsentence\tsentiment\na\tgood\t1\n", encoding="utf-8")
    (tmp_path / "link.csv").symlink_to(target)
    assert len(read_examples(tmp_path / "link.csv", SST).examples) == 1


def test_predict_refuses_a_special_file_as_input(three_task_run, node, capsys):
    path, kind, _ = node
    assert main(["predict", "--run", str(three_task_run), "--task", "sst", "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"--input {path}: {kind}, not a regular file" in err, err


def test_predict_input_fifo_is_refused_in_a_real_process(three_task_run, fifo):
    """The CLI as a user runs it: it answers at once instead of waiting for a writer."""
    result = subprocess.run([sys.executable, "-m", "minbert", "predict", "--run", str(three_task_run), "--task",
                             "sst", "--input", str(fifo)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"--input {fifo}: a FIFO, not a regular file" in result.stderr


def test_predict_input_dash_reads_standard_input(three_task_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a fine film\na boring plot\n")))
    assert main(["predict", "--run", str(three_task_run), "--task", "sst", "--input", "-"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["a fine film", "a boring plot"], captured
    assert "2 predictions" in captured.err


def test_a_data_spec_file_that_is_a_special_file_stops_train_before_a_run(node, tmp_path, tiny_model_dir,
                                                                         tiny_data_dir, capsys):
    path, kind, _ = node
    config = write_tiny_config(tmp_path / "my.toml", tmp_path / "runs", tiny_model_dir,
                               tasks=f'[tasks.sst]\ndata = "sst"\ntrain = "{path}"\n')
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err
    assert f"tasks.sst.train: {path}: {kind}, not a regular file" in err, err
    assert not (tmp_path / "runs" / "my").exists()


def test_an_extra_data_file_that_is_a_fifo_is_refused(fifo, tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    config = write_tiny_config(tmp_path / "my.toml", tmp_path / "runs", tiny_model_dir,
                               tasks=f'[tasks.sst]\ndata = "sst"\n[[tasks.sst.extra]]\nfile = "{fifo}"\n'
                                     'format = "sst_trees"\n')
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err
    assert f"tasks.sst.extra[0].file: {fifo}: a FIFO, not a regular file" in err, err


@pytest.mark.parametrize("what", ["fifo", "directory"])
def test_data_reports_a_special_data_file_as_an_error_line(tmp_path, what, capsys):
    directory = make_tiny_data_dir(tmp_path / "data")
    dev = directory / "ids-sst-dev.csv"
    dev.unlink()
    os.mkfifo(dev) if what == "fifo" else dev.mkdir()
    assert main(["data", "--data-dir", str(directory)]) == 1
    out = capsys.readouterr().out
    kind = "a FIFO" if what == "fifo" else "a directory"
    assert "ids-sst-dev.csv" in out and f"<- error: {kind}, not a regular file" in out, out
    assert "ids-sst-train.csv" in out  # the other files are still checked


@pytest.mark.parametrize("what", ["fifo", "directory"])
def test_a_config_file_that_is_not_a_regular_file_is_refused(tmp_path, what, capsys):
    path = tmp_path / "config.toml"
    os.mkfifo(path) if what == "fifo" else path.mkdir()
    assert main(["train", "--config", str(path)]) == 2
    kind = "a FIFO" if what == "fifo" else "a directory"
    err = capsys.readouterr().err
    assert f"{path}: {kind}, not a regular file" in err, err
