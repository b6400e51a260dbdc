"""`minbert train --quick` on the real embedded model and real data: the whole pipeline, with score floors that a
broken pipeline cannot reach (an untrained head is at chance on SST and Quora), and its peak memory on glibc's
malloc, the allocator a fresh setup runs on (no system package): the run is conftest's `quick_default_metrics`,
in its own process, so the peak is this job's alone."""

from __future__ import annotations

import pytest

# One worker runs every test that reads the --quick run, so that it is made once (pytest-xdist)
pytestmark = pytest.mark.xdist_group("quick_default_run")

# the default job's goal is 2 GiB; --quick, on far less data, peaks well below it (results/README.md)
QUICK_PEAK_LIMIT_MB = 2048


def test_quick_multitask_run_learns_every_task_within_its_memory(quick_default_metrics):
    metrics = quick_default_metrics
    dev = {task: result["score"] for task, result in metrics["final_dev"].items()}
    peak = metrics["peak_rss_mb"]
    print(f"quick run dev scores: {dev}, wall {metrics['wall_seconds']} s, peak {peak:.0f} MiB on "
          f"{metrics['environment']['allocator']}")
    assert dev["sst"] > 0.29  # 5 classes: chance 0.2, the majority class ~0.26
    assert dev["quora"] > 0.66  # the majority class is ~0.64
    assert dev["sts"] > 0.75  # zero-shot mean-pooled cosine is ~0.84; a broken encoder or pairing falls far below
    assert metrics["environment"]["allocator"] == "glibc"
    assert peak < QUICK_PEAK_LIMIT_MB, f"peak {peak:.0f} MiB"
