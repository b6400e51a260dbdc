"""bench/allocators.py: the table of the default job's peak memory and training rate under each malloc, read from
each run's metrics.json, and a variant whose allocator is missing reported in one line, not run."""

from __future__ import annotations

import json
import sys

import pytest

from bench.allocators import VARIANTS, main, result_of, run_variant, table
from minbert.allocator import Jemalloc


def write_run(directory, allocator: str, peak: float, epochs: list[tuple[str, int, float]]) -> None:
    directory.mkdir(parents=True)
    records = [{"stage": stage, "train_examples": n, "train_seconds": seconds,
                "train_examples_per_second": round(n / seconds, 2)} for stage, n, seconds in epochs]
    metrics = {"peak_rss_mb": peak, "environment": {"allocator": allocator, "cpu": "test CPU"},
               "epochs": records, "wall_seconds": 600.0}
    (directory / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


def test_the_table_reads_each_runs_peak_and_rate_against_glibc(tmp_path, capsys):
    write_run(tmp_path / "glibc", "glibc", 2164.0, [("multitask", 1000, 10.0), ("sts", 100, 1.0)])
    write_run(tmp_path / "mimalloc", "mimalloc", 1600.4, [("multitask", 1000, 9.0), ("sts", 100, 2.0)])
    assert result_of(tmp_path / "jemalloc") is None  # not run: no row
    glibc = result_of(tmp_path / "glibc")
    assert glibc["examples_per_s"] == 100.0 and glibc["allocator"] == "glibc"
    assert main(["--table-only", "--out", str(tmp_path), "--variants", "glibc", "mimalloc", "jemalloc"]) == 0
    text = (tmp_path / "allocators.md").read_text(encoding="utf-8")
    assert "| glibc | glibc | 2,164 MiB | 100.0 | 1.000 | multitask 100.0, sts 100.0 | 10.0 min |" in text
    assert "| mimalloc | mimalloc | 1,600 MiB | 100.0 | 1.000 | multitask 111.1, sts 50.0 |" in text
    assert "jemalloc" not in text and text in capsys.readouterr().out
    assert "| - |" in table({"mimalloc": result_of(tmp_path / "mimalloc")}, [])  # no glibc run: no ratio


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_a_variant_whose_allocator_is_missing_is_one_line_and_no_run(tmp_path):
    if Jemalloc().library() is not None:
        pytest.skip("jemalloc is installed here")
    why = run_variant("jemalloc", tmp_path, tmp_path / "unread.toml", None, [])
    assert why.startswith("jemalloc: did not run: minbert: error: MINBERT_ALLOCATOR=jemalloc: jemalloc is not "
                          "installed here")
    assert not (tmp_path / "jemalloc").exists()
    assert {allocator for allocator, _, _ in VARIANTS.values()} == {"glibc", "mimalloc", "jemalloc"}
