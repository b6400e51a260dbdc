"""Issue 46: a lone request runs at once on a warm worker, concurrent ones still share model calls, and the weights
prepared for serving (cast once for bf16, laid out column-major for fp32) give the same outputs."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
import torch

from minbert.predictor import MultitaskBERT
from minbert.serving.app import Batching, Limits
from tests.serving.conftest import running_server
from tests.serving.test_api import SENTENCES


def test_a_lone_request_never_waits_for_company_even_after_a_batch(tiny_model):
    """max_wait_ms = 10 s: a lone request on a fresh server, and one after a batch of several texts (the old worker
    waited for company after any such batch), are each answered far sooner."""
    with running_server(tiny_model, Limits(timeout_seconds=30), Batching(max_batch=64, max_wait_ms=10_000)) as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        started = time.perf_counter()
        assert http.post("/sentiment", json={"texts": [SENTENCES[0]]}).status_code == 200
        fresh = time.perf_counter() - started
        assert http.post("/sentiment", json={"texts": SENTENCES * 3}).status_code == 200  # one batch of six
        assert http.get("/health").json()["served"]["largest_batch"] == 6
        time.sleep(1.0)  # longer than a model call: the wave is over, the worker idle
        started = time.perf_counter()
        assert http.post("/sentiment", json={"texts": [SENTENCES[1]]}).status_code == 200
        after_batch = time.perf_counter() - started
    assert fresh < 3 and after_batch < 3, (fresh, after_batch)


async def lone_then_together(url: str, n: int) -> tuple[list[dict], list[dict]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        lone = [(await http.post("/sentiment", json={"texts": [SENTENCES[i % 2]]})).json()["results"][0]
                for i in range(2)]
        together = await asyncio.gather(*(http.post("/sentiment", json={"texts": [SENTENCES[i % 2]]})
                                          for i in range(n)))
    return lone, [r.json()["results"][0] for r in together]


def test_concurrent_requests_share_model_calls_and_answer_as_lone_ones(tiny_model):
    with running_server(tiny_model, batching=Batching(max_batch=64, max_wait_ms=50)) as url:
        lone, together = asyncio.run(lone_then_together(url, 24))
        served = httpx.get(f"{url}/health").json()["served"]
    assert served["largest_batch"] > 1 and served["model_calls"] < 2 + 24
    for i, answer in enumerate(together):
        assert answer["label"] == lone[i % 2]["label"]
        assert answer["probabilities"] == pytest.approx(lone[i % 2]["probabilities"], abs=1e-5)


def test_weights_prepared_for_bf16_serving_give_the_outputs_of_autocast_bit_for_bit(three_task_run):
    model = MultitaskBERT.load(three_task_run, precision="bf16")
    rows = [(s,) for s in [*SENTENCES, "good", "a bad bad film with a good actor and a boring plot"]]
    kind = model.model.heads["sst"].kind
    before = model.outputs("sst", kind.serve_examples(rows, model.tokenizer))
    vectors_before = model.embed([r[0] for r in rows], task="sts")
    model.prepare_for_serving()
    assert model.model.encoder.layers[0].attention.qkv.weight.dtype == torch.bfloat16
    assert model.model.encoder.embeddings.word_embeddings.weight.dtype == torch.float32  # not a Linear
    after = model.outputs("sst", kind.serve_examples(rows, model.tokenizer))
    assert np.array_equal(before, after)
    assert np.array_equal(vectors_before, model.embed([r[0] for r in rows], task="sts"))


def test_fp32_weights_prepared_for_serving_are_column_major_and_answer_alike(three_task_run):
    """fp32 on a CPU: each Linear weight keeps its (out, in) shape but is held transposed in memory (MKL's fast
    layout for a lone request's few rows); every task's outputs and the vectors stay within float rounding."""
    model = MultitaskBERT.load(three_task_run, precision="fp32")
    rows = [(s,) for s in [*SENTENCES, "good", "a bad bad film with a good actor and a boring plot"]]
    pairs = [(a, b) for a, b in zip(SENTENCES, reversed(SENTENCES), strict=True)]
    before = {task: model.outputs(task, model.model.heads[task].kind.serve_examples(
        rows if task == "sst" else pairs, model.tokenizer)) for task in ("sst", "quora", "sts")}
    vectors_before = model.embed([r[0] for r in rows], task="sts")
    weight = model.model.encoder.layers[0].attention.qkv.weight
    assert weight.is_contiguous()
    model.prepare_for_serving()
    weight = model.model.encoder.layers[0].attention.qkv.weight
    assert model.inference.autocast_dtype is None and weight.dtype == torch.float32
    assert weight.stride() == (1, weight.shape[0]) and not weight.requires_grad
    linears = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.t().is_contiguous() for m in linears)
    for task, outputs in before.items():
        after = model.outputs(task, model.model.heads[task].kind.serve_examples(
            rows if task == "sst" else pairs, model.tokenizer))
        np.testing.assert_allclose(after, outputs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(model.embed([r[0] for r in rows], task="sts"), vectors_before, rtol=0, atol=1e-5)


def test_serve_runs_torch_ops_in_parallel_on_the_model_thread_only(three_task_run, monkeypatch):
    """libgomp makes every op of a second thread team wait for a wake-up once teams outnumber the cores: `serve`
    loads and runs the event loop on one intra-op thread and gives the process's count to the model thread."""
    import uvicorn
    from fastapi.testclient import TestClient

    from minbert.serving import app as app_module

    seen = {}
    answer = app_module.Batcher.answer

    def recording_answer(self, endpoint, items):
        seen["model thread"] = torch.get_num_threads()
        return answer(self, endpoint, items)

    def run(app, **kwargs):
        seen["loading thread"] = torch.get_num_threads()
        with TestClient(app) as client:
            assert client.post("/sentiment", json={"texts": [SENTENCES[0]]}).status_code == 200

    monkeypatch.setattr(app_module.Batcher, "answer", recording_answer)
    monkeypatch.setattr(uvicorn, "run", run)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        app_module.serve(three_task_run)
    finally:
        torch.set_num_threads(threads)
    assert seen == {"loading thread": 1, "model thread": 2}
