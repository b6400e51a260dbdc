"""`serve --timeline`: each answer says where its request's time went (a Server-Timing header), stage by stage."""

from __future__ import annotations

import time

import httpx
import pytest

from minbert.serving.loadtest import Level, ModeResult, table
from minbert.serving.timeline import HEADER, STAGES, Timeline, parse_header
from tests.serving.conftest import running_server


def test_a_recorded_request_has_every_stage_and_they_sum_to_its_server_time(tiny_model):
    with running_server(tiny_model, timeline=True) as url, httpx.Client(base_url=url, timeout=30) as http:
        http.post("/sentiment", json={"texts": ["warm up"]})
        started = time.perf_counter()
        response = http.post("/sentiment", json={"texts": ["the film was good"]})
        client_ms = 1000 * (time.perf_counter() - started)
        health = http.get("/health").json()
    assert response.status_code == 200 and health["timeline"] is True
    stages = parse_header(response.headers[HEADER])
    assert list(stages) == [*STAGES, "total"]
    assert all(ms >= 0 for ms in stages.values()), stages
    assert sum(stages[s] for s in STAGES) == pytest.approx(stages["total"], abs=0.01)  # 3 decimals each
    assert 0 < stages["total"] < client_ms  # the server's part of what the client waited
    assert stages["tokenize"] > 0 and stages["model"] > 0 and stages["parse"] > 0


def test_without_the_flag_no_answer_carries_a_timeline(client):
    response = client.post("/sentiment", json={"texts": ["the film was good"]})
    assert response.status_code == 200 and HEADER not in response.headers
    assert client.get("/health").json()["timeline"] is False


def test_a_stage_without_a_mark_takes_no_time_and_the_header_reads_back():
    timeline = Timeline()
    start = timeline.marks["start"]
    timeline.mark("parse", start + 2_000_000)
    timeline.mark("model", start + 5_000_000)  # queue .. tokenize not marked: their time is in "model"
    timeline.mark("json", start + 6_000_000)
    stages = parse_header(timeline.header())
    assert stages["parse"] == 2.0 and stages["queue"] == stages["tokenize"] == 0.0 and stages["model"] == 3.0
    assert stages["return"] == 0.0 and stages["json"] == 1.0 and stages["total"] == 6.0


def test_the_load_test_table_gives_each_levels_mean_stages_and_what_lies_outside_the_server():
    level = Level("batched", 1, answered=2, seconds=1.0, latencies_ms=[3.0, 5.0],
                  stages_ms=[{**dict.fromkeys(STAGES, 0.25), "total": 2.25}, {**dict.fromkeys(STAGES, 0.35),
                                                                               "total": 3.15}])
    text = table([ModeResult("batched", [level], 400, 400, {"texts": 2, "model_calls": 2, "largest_batch": 1})])
    row = next(line for line in text.splitlines() if line.startswith("| batched | 1 | 0.300"))
    assert row.endswith("| 2.700 | 1.300 | 4.000 |"), row  # server, outside = client - server, client
    assert f"| {' | '.join(STAGES)} | server | outside | client |" in text
