"""A checkpoint's digests.json: written with it, and what `damage` says when it or a file it records is wrong (runs
that resume from damaged checkpoints: tests/runs/test_checkpoint_digests.py)."""

from __future__ import annotations

import json

import torch

from minbert.model.loading import DIGESTS, file_digest
from minbert.training.checkpoint import STATE_KEYS, damage, save_checkpoint


def saved(tmp_path):
    state = {key: 0 for key in STATE_KEYS}
    return save_checkpoint(tmp_path, 3, {"model.w": torch.arange(4096, dtype=torch.float32)}, state, keep=2)


def test_a_checkpoint_records_the_digests_of_its_files(tmp_path):
    path = saved(tmp_path)
    record = json.loads((path / DIGESTS).read_text())
    assert record["files"] == {name: file_digest(path / name, record["algorithm"])
                               for name in ("tensors.safetensors", "state.json")}
    assert damage(path) is None


def test_damage_names_the_file_that_changed_or_the_unreadable_record(tmp_path):
    path = saved(tmp_path)
    state = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**state, "step": 4}) + "\n")
    assert damage(path).startswith("state.json does not match the digest recorded when it was written (xxh3_128")
    (path / DIGESTS).write_text('{"algorithm": "xxh3_128", "files": {"../../elsewhere": "00"}}')
    assert damage(path).startswith("digests.json is malformed")
    (path / DIGESTS).write_text('{"algorithm": "md4", "files": {}}')
    assert damage(path).startswith("digests.json names an unknown digest 'md4'")
    (path / DIGESTS).write_text("{")
    assert damage(path).startswith("digests.json is unreadable")
    (path / DIGESTS).unlink()  # as written before digests were recorded: not checked
    assert damage(path) is None
