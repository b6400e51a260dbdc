"""A live server on 127.0.0.1 for the API and browser tests: uvicorn in a thread, stopped after the test; a tiny run
with a tagging task beside a sentence task (`tag_run`)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from minbert.predictor import MultitaskBERT
from minbert.serving.app import Batching, Limits, create_app
from minbert.serving.loadtest import free_port
from tests.conftest import make_tiny_data_dir, write_tiny_config
from tests.tasks.test_tag_kind import NER, tagged, write_conll


@contextmanager
def running_server(model: MultitaskBERT, limits: Limits | None = None,
                   batching: Batching | None = None, timeline: bool = False) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(model, limits, batching, timeline), host="127.0.0.1",
                                           port=port, log_level="warning"))
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


def train_tag_run(root: Path, model_dir: Path) -> Path:
    """A tiny fp32 run of `sst` beside `ner`, a tagging task on tiny CoNLL files whose words say their entity (cat,
    dog: PER; python: MISC; guitar: ORG), trained until it tags them (a few seconds)."""
    from minbert.cli import main

    data = make_tiny_data_dir(root / "data", n_train=24, n_dev=8)
    rng = random.Random(0)
    write_conll(data / "ner" / "train.txt", [tagged(rng, rng.randint(3, 9)) for _ in range(60)])
    write_conll(data / "ner" / "dev.txt", [tagged(rng, rng.randint(3, 9)) for _ in range(10)])
    write_conll(data / "ner" / "test.txt", [tagged(rng, 5) for _ in range(4)], labelled=False)
    config = write_tiny_config(root / "tag.toml", root, model_dir, tasks='[tasks.sst]\ndata = "sst"\n' + NER,
                               train='epochs = 4\nlr = 3e-3\nprecision = "fp32"')
    assert main(["train", "--config", str(config), "--data-dir", str(data), "name=tag"]) == 0
    return root / "tag"


@pytest.fixture(scope="session")
def tag_run(tmp_path_factory, tiny_model_dir) -> Path:
    return train_tag_run(tmp_path_factory.mktemp("tag-run"), tiny_model_dir)
