"""A live server on 127.0.0.1 for the API and browser tests: uvicorn in a thread, stopped after the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from minbert.predictor import MultitaskBERT
from minbert.serving.app import Batching, Limits, create_app
from minbert.serving.loadtest import free_port


@contextmanager
def running_server(model: MultitaskBERT, limits: Limits | None = None,
                   batching: Batching | None = None) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(model, limits, batching), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def tiny_model(three_task_run) -> MultitaskBERT:
    return MultitaskBERT.load(three_task_run)


@pytest.fixture(scope="module")
def server(tiny_model) -> Iterator[str]:
    with running_server(tiny_model, Limits(max_texts=4, max_chars=50, timeout_seconds=10)) as url:
        yield url


@pytest.fixture()
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as http:
        yield http
