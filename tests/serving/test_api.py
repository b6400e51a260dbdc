"""`minbert serve`'s API over real HTTP on 127.0.0.1: every endpoint, every limit, malformed input, batching."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from minbert.cli import main
from minbert.serving.app import Batching, Limits
from tests.serving.conftest import running_server

SENTENCES = ["the film was good", "a boring plot and a bad actor"]
PAIRS = [["how do i learn python", "what is the way to learn python"], ["the dog sat on the mat", "a cat ran"]]


def test_each_endpoint_answers_what_the_python_api_predicts(client, tiny_model):
    sentiment = client.post("/sentiment", json={"texts": SENTENCES})
    assert sentiment.status_code == 200
    results = sentiment.json()["results"]
    assert [r["label"] for r in results] == tiny_model.predict_sentiment(SENTENCES)
    for r in results:
        assert len(r["probabilities"]) == 5 and sum(r["probabilities"]) == pytest.approx(1, abs=1e-4)
        assert r["name"] == ["very negative", "negative", "neutral", "positive", "very positive"][r["label"]]

    pairs = [tuple(p) for p in PAIRS]
    paraphrase = client.post("/paraphrase", json={"pairs": PAIRS}).json()["results"]
    assert [int(r["paraphrase"]) for r in paraphrase] == tiny_model.predict_paraphrase(pairs)
    assert all(0 <= r["probability"] <= 1 for r in paraphrase)
    similarity = client.post("/similarity", json={"pairs": PAIRS}).json()["results"]
    assert [r["similarity"] for r in similarity] == pytest.approx(tiny_model.predict_similarity(pairs), abs=1e-3)

    embedding = client.post("/embedding", json={"texts": SENTENCES}).json()["results"]
    assert [len(r["embedding"]) for r in embedding] == [tiny_model.model.encoder.config.hidden_size] * 2
    assert embedding[0]["embedding"] != embedding[1]["embedding"]


def test_health_and_generated_docs_are_served_without_a_network(client):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["tasks"] == {"sentiment": "sst", "paraphrase": "quora", "similarity": "sts"}
    assert health["limits"]["max_texts"] == 4
    schema = client.get("/openapi.json").json()
    assert {"/sentiment", "/paraphrase", "/similarity", "/embedding", "/health"} <= schema["paths"].keys()
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="sentence-a"' in page.text


@pytest.mark.parametrize(("body", "status", "limit"), [
    ({"texts": ["a"] * 5}, 413, "max_texts"),
    ({"texts": ["x" * 51]}, 413, "max_chars"),
    ({"texts": []}, 422, "min_texts"),
    ({"texts": ["   "]}, 422, "empty_text"),
    ({"texts": "the film"}, 422, "schema"),
    ({"sentences": ["the film"]}, 422, "schema"),
    ({"texts": [3]}, 422, "schema"),
])
def test_each_limit_and_bad_body_gets_a_json_4xx_naming_it(client, body, status, limit):
    response = client.post("/sentiment", json=body)
    assert response.status_code == status
    assert response.json()["limit"] == limit
    assert response.json()["error"]


def test_a_pair_that_is_not_two_texts_is_refused(client):
    response = client.post("/similarity", json={"pairs": [["only one"]]})
    assert response.status_code == 422 and "pairs.0" in response.json()["error"]


@pytest.mark.parametrize("raw", ['{"texts": ["the film"', "not json", ""])
def test_malformed_json_is_a_400_that_says_where(client, raw):
    response = client.post("/sentiment", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    assert response.json()["limit"] in ("json", "schema")
    if raw:
        assert response.status_code == 400 and "malformed JSON at character" in response.json()["error"]


def test_a_request_over_its_time_limit_gets_408_and_the_server_goes_on(tiny_model):
    with running_server(tiny_model, Limits(timeout_seconds=1e-6)) as url, httpx.Client(base_url=url) as http:
        response = http.post("/sentiment", json={"texts": SENTENCES})
        assert response.status_code == 408 and response.json()["limit"] == "timeout_seconds"
        assert http.get("/health").json()["status"] == "ok"


async def many_at_once(url: str, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        responses = await asyncio.gather(*(http.post("/sentiment", json={"texts": [SENTENCES[i % 2]]})
                                           for i in range(n)))
    return [r.json()["results"][0]["label"] for r in responses]


@pytest.mark.parametrize(("max_batch", "batched"), [(64, True), (1, False)])
def test_concurrent_requests_share_model_calls_only_when_batching(tiny_model, max_batch, batched):
    with running_server(tiny_model, batching=Batching(max_batch=max_batch, max_wait_ms=50)) as url:
        labels = asyncio.run(many_at_once(url, 24))
        served = httpx.get(f"{url}/health").json()["served"]
    assert labels == [tiny_model.predict_sentiment(SENTENCES[i % 2]) for i in range(24)]
    assert served["texts"] == 24
    if batched:
        assert served["largest_batch"] > 1 and served["model_calls"] < 24
    else:
        assert served["largest_batch"] == 1 and served["model_calls"] == 24


def test_serve_stops_at_start_up_when_the_model_cannot_load(tmp_path, three_task_run, capsys):
    assert main(["serve", "--run", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.toml").write_text((three_task_run / "config.toml").read_text(encoding="utf-8"))
    (broken / "best").mkdir()
    (broken / "best" / "config.json").write_text("{", encoding="utf-8")
    assert main(["serve", "--run", str(broken)]) == 2
    assert "config.json" in capsys.readouterr().err


# --- issue 24: one bad request fails alone; bodies are bounded before they are read; limits checked at start ---

async def good_and_bad_at_once(url: str, good: int, bad_every: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return await asyncio.gather(*(
            http.post("/sentiment", content=b'{"texts": ["\\ud800 a lone surrogate"]}',
                      headers={"content-type": "application/json"}) if i % bad_every == 0
            else http.post("/sentiment", json={"texts": [SENTENCES[i % 2]]}) for i in range(good)))


def test_a_lone_surrogate_fails_alone_among_concurrent_good_requests(tiny_model):
    with running_server(tiny_model, batching=Batching(max_batch=64, max_wait_ms=50)) as url:
        responses = asyncio.run(good_and_bad_at_once(url, 130, 13))
        served = httpx.get(f"{url}/health").json()["served"]
    bad = [r for i, r in enumerate(responses) if i % 13 == 0]
    good = [(i, r) for i, r in enumerate(responses) if i % 13]
    assert {r.status_code for r in bad} == {422}
    assert all(r.json()["limit"] == "unicode" and "text 0 is not valid Unicode" in r.json()["error"] for r in bad)
    assert {r.status_code for _, r in good} == {200}, [r.text for _, r in good if r.status_code != 200][:3]
    assert [r.json()["results"][0]["label"] for _, r in good] == [
        tiny_model.predict_sentiment(SENTENCES[i % 2]) for i, _ in good]
    assert served["largest_batch"] > 1  # the good ones still shared model calls


def rss_mb() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_an_oversized_body_is_refused_at_once_with_memory_and_health_unaffected(tiny_model):
    """50 MB announced by Content-Length: 413 before any of it is read. 50 MB chunked (no length): refused once
    the limit has arrived, the connection closed. The server's memory stays flat; /health answers meanwhile."""
    import socket
    import threading
    import time
    from urllib.parse import urlsplit

    size = 50 * 2**20
    with running_server(tiny_model) as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        before = rss_mb()
        started = time.perf_counter()
        with socket.create_connection((host, port)) as conn:
            conn.sendall(f"POST /sentiment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {size}\r\n\r\n".encode() + b'{"texts": ["' + b"x" * 65536)
            answer = b""
            while chunk := conn.recv(65536):  # the server closes the connection after its answer
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.1 413") and '"limit": "max_body_bytes"' in answer, answer
        assert time.perf_counter() - started < 2

        health_seconds: list[float] = []

        def chunked_upload() -> httpx.Response | Exception:
            def chunks():
                yield b'{"texts": ["'
                for _ in range(size // 2**20):
                    yield b"x" * 2**20

            try:
                return httpx.post(f"{url}/sentiment", content=chunks(), timeout=60,
                                  headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:  # the server may close while the client still writes
                return exc

        result: list = []
        upload = threading.Thread(target=lambda: result.append(chunked_upload()))
        upload.start()
        while upload.is_alive():
            asked = time.perf_counter()
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
            health_seconds.append(time.perf_counter() - asked)
            time.sleep(0.02)
        upload.join()
        grown = rss_mb() - before
    if isinstance(result[0], httpx.Response):
        assert result[0].status_code == 413 and result[0].json()["limit"] == "max_body_bytes"
    assert max(health_seconds) < 1.0, health_seconds
    assert grown < 30, f"the server's memory grew {grown:.0f} MB"  # never near the 50 MB sent


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "99999"], "--port 99999 is not a port number (1 to 65535)"),
    (["--port", "0"], "--port 0 is not a port number"),
    (["--max-texts", "-5"], "--max-texts = -5 must be >= 1"),
    (["--max-chars", "-1"], "--max-chars = -1 must be >= 1"),
    (["--timeout", "-1"], "--timeout = -1.0 must be > 0"),
    (["--max-body-bytes", "-3"], "--max-body-bytes = -3 must be > 0"),
])  # --max-batch and --max-wait-ms are refused when parsed: test_loadtest.py
def test_serve_refuses_impossible_limits_before_loading(tmp_path, args, message, capsys):
    assert main(["serve", "--run", str(tmp_path / "never-read"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "not a run directory" not in err, err


# --- issue 43: /health states the body limit that is enforced ---

def test_health_reports_the_body_limit_at_which_a_body_is_refused(client):
    figure = client.get("/health").json()["limits"]["max_body_bytes"]
    assert figure > 0

    def post(size: int) -> httpx.Response:
        head, tail = b'{"texts": ["', b'"]}'
        body = head + b"x" * (size - len(head) - len(tail)) + tail
        return client.post("/sentiment", content=body, headers={"content-type": "application/json"})

    at_limit, over = post(figure), post(figure + 1)
    assert at_limit.json()["limit"] != "max_body_bytes"  # read, then refused for its text's length
    assert over.status_code == 413 and over.json()["limit"] == "max_body_bytes" and over.json()["value"] == figure
