"""The bounded load test: real server processes on loopback, a fixed number of requests, a time limit."""

from __future__ import annotations

import pytest

from minbert.errors import MinbertError
from minbert.serving.loadtest import load_test, table


def test_a_bounded_load_test_answers_every_request_and_holds_its_memory(three_task_run, tmp_path):
    results = load_test(three_task_run, clients=(1, 8), requests=40, time_limit=30, log_dir=tmp_path)
    assert [r.mode for r in results] == ["one-at-a-time", "batched"]
    for result in results:
        assert [level.clients for level in result.levels] == [1, 8]
        for level in result.levels:
            assert level.failed == 0 and level.answered == 40
            assert len(level.latencies_ms) == 40 and level.rps > 0
        assert abs(result.rss_end_mb / result.rss_start_mb - 1) <= 0.10
    assert results[0].served["largest_batch"] == 1
    text = table(results)
    assert "| batched | 8 | 40 | 0 |" in text and "8 clients: batched serves" in text


def test_a_load_test_of_something_that_is_not_a_run_stops_with_a_message(tmp_path):
    with pytest.raises(MinbertError, match="not a run directory"):
        load_test(tmp_path)
