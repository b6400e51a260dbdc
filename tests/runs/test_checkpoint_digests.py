"""A checkpoint damaged inside, at its full length (issue 43, finding 4): every file a checkpoint or best/ holds has
its digest recorded when written, and `--resume`, `--fork` and every load of best/ check it. A damaged newest
checkpoint is passed over as a truncated one is; a damaged best/ is one clean error. Runs written before digests
were recorded still load."""

from __future__ import annotations

import json
import shutil

import pytest

from minbert.cli import main
from minbert.errors import CheckpointError
from minbert.predictor import MultitaskBERT
from minbert.tokenizer import TOKENIZER_FILES
from minbert.training.checkpoint import list_checkpoints
from tests.runs import test_resume
from tests.runs.test_resume import assert_same_run

reference, stopped_at_9 = test_resume.reference, test_resume.stopped_at_9  # its runs, as fixtures of this module

DAMAGED = "does not match the digest recorded when it was written"


def overwrite_middle(path, byte):
    """4 KiB of `byte` in the middle of the file, its length unchanged (inside the tensors, past the header)."""
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size // 2)
        assert file.read(4096) != bytes([byte]) * 4096
        file.seek(size // 2)
        file.write(bytes([byte]) * 4096)
    assert path.stat().st_size == size


def resume(run_dir, data_dir):
    return main(["train", "--resume", str(run_dir), "--data-dir", str(data_dir)])


def one_line_error(err):
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("minbert: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("byte", [0xFF, 0x3F])  # 0xFF: NaNs in the weights; 0x3F: plausible floats
def test_a_newest_checkpoint_damaged_inside_resumes_from_the_previous_one(reference, stopped_at_9, tiny_data_dir,
                                                                          tmp_path, caplog, byte):
    reference_dir, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_at_9, run_dir)
    overwrite_middle(run_dir / "checkpoints" / "step-00000009" / "tensors.safetensors", byte)
    caplog.clear()
    assert resume(run_dir, tiny_data_dir) == 0
    err = caplog.text
    assert f"step-00000009: cannot resume from it (tensors.safetensors {DAMAGED}" in err, err
    assert "resuming from the previous complete checkpoint step-00000006 instead: 3 steps to train again" in err
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from"]["step"] == 6
    assert assert_same_run(reference_dir, run_dir) <= 1e-6


def test_a_damaged_state_json_is_passed_over_too(reference, stopped_at_9, tiny_data_dir, tmp_path, caplog):
    """Valid JSON with every key, one number changed: only its digest tells."""
    reference_dir, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_at_9, run_dir)
    state_file = run_dir / "checkpoints" / "step-00000009" / "state.json"
    state = json.loads(state_file.read_text())
    state["step_in_epoch"] += 1
    state_file.write_text(json.dumps(state) + "\n")
    caplog.clear()
    assert resume(run_dir, tiny_data_dir) == 0
    assert f"step-00000009: cannot resume from it (state.json {DAMAGED}" in caplog.text, caplog.text
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from"]["step"] == 6
    assert assert_same_run(reference_dir, run_dir) <= 1e-6


def test_a_damaged_only_checkpoint_is_one_clean_error(stopped_at_9, tiny_data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_at_9, run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step-00000006")
    overwrite_middle(run_dir / "checkpoints" / "step-00000009" / "tensors.safetensors", 0x3F)
    capsys.readouterr()
    assert resume(run_dir, tiny_data_dir) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"no checkpoint can be resumed from: step-00000009: tensors.safetensors {DAMAGED}" in line, line
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000009"]  # kept: nothing deletes it


def test_a_fork_from_a_damaged_checkpoint_is_refused(reference, tiny_data_dir, tmp_path, capsys):
    _, config = reference
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), f"output_dir={tmp_path}",
                 "name=parent", "train.epochs=1"]) == 0
    checkpoint = list_checkpoints(tmp_path / "parent")[-1]  # after the only epoch: a fork could start from it
    overwrite_middle(checkpoint / "tensors.safetensors", 0x3F)
    capsys.readouterr()
    assert main(["train", "--fork", str(checkpoint), "--data-dir", str(tiny_data_dir), "name=x",
                 f"output_dir={tmp_path}"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"--fork {checkpoint}: cannot start from it: tensors.safetensors {DAMAGED}" in line, line
    assert not (tmp_path / "x").exists()


def test_a_damaged_best_checkpoint_is_refused_when_loaded(reference, tiny_data_dir, tmp_path, capsys):
    reference_dir, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir)
    weights = run_dir / "best" / "model.safetensors"
    overwrite_middle(weights, 0x3F)
    with pytest.raises(CheckpointError, match=f"{weights}: {DAMAGED}"):
        MultitaskBERT.load(run_dir)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 2
    assert f"{weights}: {DAMAGED}" in one_line_error(capsys.readouterr().err)
    assert main(["predict", "--run", str(run_dir), "--task", "sst", "a fine film"]) == 2
    assert f"{weights}: {DAMAGED}" in one_line_error(capsys.readouterr().err)
    assert main(["soup", str(run_dir), str(reference_dir), "--name", "soup", "--output-dir", str(tmp_path)]) == 2
    assert f"{weights}: {DAMAGED}" in one_line_error(capsys.readouterr().err)


def test_a_damaged_best_config_is_refused_when_loaded(reference, tmp_path):
    reference_dir, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir)
    config = run_dir / "best" / "config.json"
    config.write_text(config.read_text().replace('"layer_norm_eps": 1e-12', '"layer_norm_eps": 0.1'))
    with pytest.raises(CheckpointError, match=f"{config}: {DAMAGED}"):
        MultitaskBERT.load(run_dir)


def test_a_damaged_best_tokenizer_file_is_refused_when_loaded(reference, tmp_path):
    """A changed vocabulary would map words to other ids: predictions from garbage, unless it is caught."""
    reference_dir, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir)
    vocab = run_dir / "best" / "vocab.txt"
    words = vocab.read_text().splitlines()
    vocab.write_text("\n".join([words[1], words[0], *words[2:]]) + "\n")  # same length, two ids swapped
    with pytest.raises(CheckpointError, match=f"{vocab}: {DAMAGED}"):
        MultitaskBERT.load(run_dir)


def test_runs_written_before_digests_still_load(reference, stopped_at_9, tiny_data_dir, tmp_path):
    reference_dir, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_at_9, run_dir)
    for checkpoint in list_checkpoints(run_dir):
        (checkpoint / "digests.json").unlink(missing_ok=True)
    assert resume(run_dir, tiny_data_dir) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from"]["step"] == 9
    assert assert_same_run(reference_dir, run_dir) <= 1e-6
    old = tmp_path / "old"
    shutil.copytree(reference_dir, old)
    (old / "best" / "digests.json").unlink(missing_ok=True)
    loaded = MultitaskBERT.load(old)
    assert loaded.predict("sst", ["a fine film"]) == MultitaskBERT.load(reference_dir).predict("sst", ["a fine film"])


def test_a_run_records_the_digests_of_what_it_writes(reference):
    reference_dir, _ = reference
    for checkpoint in list_checkpoints(reference_dir):
        recorded = json.loads((checkpoint / "digests.json").read_text())
        assert set(recorded["files"]) == {"tensors.safetensors", "state.json"}
    best = reference_dir / "best"
    tokenizer = {name for name in TOKENIZER_FILES if (best / name).is_file()}
    assert tokenizer and set(json.loads((best / "digests.json").read_text())["files"]) == {
        "config.json", "model.safetensors", *tokenizer}
