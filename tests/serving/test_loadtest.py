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


@pytest.mark.parametrize(("flags", "message"), [
    (["--clients", "0,-3"], "--clients: expected comma-separated whole numbers >= 1, got '0,-3'"),
    (["--clients", "8,0"], "--clients: expected comma-separated whole numbers >= 1, got '8,0'"),
    (["--requests", "0"], "--requests: expected a whole number >= 1, got '0'"),
    (["--time-limit", "-1"], "--time-limit: expected a finite number > 0, got '-1'"),
    (["--time-limit", "nan"], "--time-limit: expected a finite number > 0, got 'nan'"),
    (["--max-batch", "0"], "--max-batch: expected a whole number >= 1, got '0'"),
    (["--max-wait-ms", "-5"], "--max-wait-ms: expected a finite number >= 0, got '-5'"),
    (["--backends", "torch,tf"], "--backends: expected torch or onnx, comma-separated, got 'torch,tf'"),
    (["serve", "--max-batch", "0"], "--max-batch: expected a whole number >= 1, got '0'"),  # its batching flags
    (["serve", "--max-wait-ms", "-5"], "--max-wait-ms: expected a finite number >= 0, got '-5'"),
])
def test_loadtest_refuses_nonsense_numbers_when_parsing(flags, message, capsys):
    from minbert.cli import parse_args

    command, flags = (flags[:1], flags[1:]) if flags[0] == "serve" else (["loadtest"], flags)
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*command, "--run", "R", *flags])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clients": (0, -3)}, "clients must be whole numbers >= 1, got [0, -3]"),
    ({"requests": 0}, "requests must be >= 1, got 0"),
    ({"time_limit": float("nan")}, "time_limit must be a finite number > 0, got nan"),
])
def test_load_test_refuses_nonsense_numbers_before_starting_a_server(three_task_run, kwargs, message):
    with pytest.raises(MinbertError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_test(three_task_run, **kwargs)
