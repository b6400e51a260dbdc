"""`minbert train --quick` on the real embedded model and real data: the whole pipeline, with score floors that a
broken pipeline cannot reach (an untrained head is at chance on SST and Quora)."""

from __future__ import annotations

import json

from minbert.cli import main
from tests.conftest import REPO


def test_quick_multitask_run_learns_every_task(data_dir, embedded_dir, tmp_path):
    assert main(["train", "--quick", "--config", str(REPO / "configs" / "multitask.toml"), "--data-dir",
                 str(data_dir), f"output_dir={tmp_path}"]) == 0
    metrics = json.loads((tmp_path / "multitask-quick" / "metrics.json").read_text())
    dev = {task: result["score"] for task, result in metrics["final_dev"].items()}
    print(f"quick run dev scores: {dev}, wall {metrics['wall_seconds']} s")
    assert dev["sst"] > 0.29  # 5 classes: chance 0.2, the majority class ~0.26
    assert dev["quora"] > 0.66  # the majority class is ~0.64
    assert dev["sts"] > 0.75  # zero-shot mean-pooled cosine is ~0.84; a broken encoder or pairing falls far below
