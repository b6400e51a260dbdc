"""The wandb tracker with the real wandb package in offline mode: the run's .wandb files (read back here: LevelDB
log records of wandb's protobuf Records) hold the config, no step twice across a SIGKILL and --resume, the epoch's
dev metrics at its step, and the run's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minbert.cli import main
from tests.runs.tracking_helpers import STEPS_PER_EPOCH, tracked_config, train_killed_at

pytest.importorskip("wandb")

BLOCK, HEADER = 32768, 7  # LevelDB log: 32 KiB blocks, records with a 7-byte header (crc, length, type)


def wandb_records(path: Path) -> list:
    """The protobuf Records of a .wandb file (after its 7-byte ':W&B' file header)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < HEADER or kind == 0:  # a block's zero-filled tail
            pos += left
            continue
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):  # FULL, LAST: a record ends
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def history(records: list) -> list[dict]:
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]


def test_offline_run_killed_and_resumed_holds_each_step_once(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb-dir"), "WANDB_SILENT": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "wandb-dir").mkdir()
    config = tracked_config(tmp_path, tiny_model_dir, '[{ name = "wandb", project = "tiny" }]')
    run_dir = tmp_path / "run"
    train_killed_at(18, config, tiny_data_dir, env)  # checkpoints at steps 5, 10, 12, 15: resumed from 15
    handed = json.loads((run_dir / "tracking.json").read_text())["wandb"]
    assert handed["logged_step"] > 15  # steps after the checkpoint the resume starts from were handed to wandb
    assert main(["train", "--resume", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 0

    run_id = handed["run_id"]
    files = sorted((tmp_path / "wandb-dir" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 2  # before the kill and after the resume: one W&B run id
    first, second = (wandb_records(f) for f in files)
    # the resumed process logs from the step after the last one handed to wandb before the kill, not from the
    # checkpoint: no step twice (what wandb's own service dropped at the kill, it drops: a killed process's
    # offline .wandb holds only what the service had written)
    total = 2 * STEPS_PER_EPOCH
    assert [row["_step"] for row in history(second)] == list(range(handed["logged_step"] + 1, total + 1))
    rows = history(first) + history(second)
    assert len({row["_step"] for row in rows}) == len(rows)
    assert all("lr" in row and "train_loss/sst" in row for row in rows)
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    dev = [(row["_step"], row["dev/sst_accuracy"]) for row in history(second) if "dev/sst_accuracy" in row]
    assert dev == [(total, pytest.approx(epochs[-1]["dev"]["sst"]["score"]))]
    run = next(r.run for r in second if r.WhichOneof("record_type") == "run")
    assert run.run_id == run_id and run.project == "tiny" and run.display_name == "run"
    params = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert params["train.epochs"] == "2" and params["train.lr"] == "0.001"
    saved = files[-1].parent / "files"
    for name in ("report.html", "metrics.json", "config.toml", "best/config.json"):
        assert (saved / name).read_bytes() == (run_dir / name).read_bytes()
