"""The default job's `--quick` run, made once for the tests that read it: its memory on glibc's malloc (the
allocator a fresh setup runs on), its score floors and its pinned figures all come from the same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def quick_default_metrics(data_dir, embedded_model_path, tmp_path_factory) -> dict:
    """metrics.json of `minbert train --quick --config configs/multitask.toml`, run in its own process (so its
    peak memory is this job's alone) with glibc's malloc even where jemalloc is installed."""
    out = tmp_path_factory.mktemp("quick-default")
    env = {**os.environ, "MINBERT_ALLOCATOR": "system"}
    result = subprocess.run([sys.executable, "-m", "minbert", "train", "--quick", "--config",
                             str(REPO / "configs" / "multitask.toml"), "--data-dir", str(data_dir),
                             f"output_dir={out}"], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((Path(out) / "multitask-quick" / "metrics.json").read_text())
