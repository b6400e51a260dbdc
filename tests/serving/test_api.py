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
