"""Ctrl-C and SIGTERM outside training (predict, ensemble): one line, exit 128 + the signal, no traceback, and
nothing half-written left behind. Real signals, sent by the process to itself at a chosen call (tests/faults.py);
training, ablate and tune are covered beside their own tests."""

from __future__ import annotations

import shutil
import signal

import pytest

from tests.faults import run_with_fault


def assert_one_line_stop(result, signum):
    assert result.returncode == 128 + signum, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"minbert: stopped by {signal.Signals(signum).name}"), result.stderr[-3000:]
    return last


@pytest.mark.parametrize(("moment", "signum"), [
    ("minbert.predictor.MultitaskBERT.predict", signal.SIGINT),  # while the model predicts
    ("minbert.outputs.os.replace", signal.SIGTERM),  # the file is written in full, not yet renamed into place
])
def test_predict_stopped_writes_no_half_file(three_task_run, tmp_path, moment, signum):
    sentences = tmp_path / "in.txt"
    sentences.write_text("a fine film\nan awful film\n")
    out = tmp_path / "out.csv"
    result = run_with_fault(f"signal@call-{moment}:{signal.Signals(signum).name}", "predict", "--run",
                            str(three_task_run), "--task", "sst", "--input", str(sentences), "--output", str(out))
    assert_one_line_stop(result, signum)
    assert list(tmp_path.iterdir()) == [sentences]  # no output, no temporary file


def test_ensemble_stopped_while_writing_leaves_no_half_ensemble(three_task_run, tmp_path, tiny_data_dir):
    member = tmp_path / "member"
    shutil.copytree(three_task_run, member)
    result = run_with_fault("signal@call-minbert.runs.ensemble.write_task_outputs:SIGINT", "ensemble", str(member),
                            str(three_task_run), "--name", "pair", "--output-dir", str(tmp_path / "ensembles"),
                            "--data-dir", str(tiny_data_dir))
    last = assert_one_line_stop(result, signal.SIGINT)
    assert "was removed: run the same command again" in last
    assert not (tmp_path / "ensembles" / "pair").exists()
