"""`minbert export RUN --format onnx` of a tagging task (issue 44): its head graph gives (B, T, tags) token logits
with dynamic batch and length, its manifest entry is the kind's, ONNX Runtime's outputs equal PyTorch's within 1e-4
(a sentence longer than the model's windows too), and `serve --backend onnx` answers tag bodies as PyTorch does."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from minbert.cli import main
from minbert.data.formats import TaggedExample
from minbert.export.onnx_runtime import session
from minbert.predictor import MultitaskBERT
from tests.conftest import WORDS
from tests.serving.conftest import running_server, train_tag_run

TEXTS = ["The CAT sat, with  Dog and python .", "guitar cat dog", "nothing here at all"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir) -> Path:
    run = train_tag_run(tmp_path_factory.mktemp("onnx-tag"), tiny_model_dir)  # fp32: both backends compute alike
    assert main(["export", str(run), "--format", "onnx"]) == 0  # into RUN/onnx
    return run


def test_the_tag_head_is_a_token_logits_graph_with_dynamic_axes(exported):
    manifest = json.loads((exported / "onnx" / "manifest.json").read_text())
    entry = manifest["tasks"]["ner"]
    tags = ["O", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert entry["tagging"] is True and entry["tags"] == tags and entry["outputs"] == ["logits"]
    assert manifest["tasks"]["sst"]["outputs"] == ["logits", "score", "sentence_vectors"]  # sentence kinds: as before
    graph = onnx.load(str(exported / "onnx" / entry["graph"]))
    onnx.checker.check_model(graph, full_check=True)
    assert [o.name for o in graph.graph.output] == ["logits"]
    shape = graph.graph.output[0].type.tensor_type.shape.dim
    assert shape[0].dim_param and shape[1].dim_param and shape[2].dim_value == len(tags)  # (batch, length, tags)
    head = session(exported / "onnx" / entry["graph"])
    for batch, length in ((1, 5), (4, 23)):  # neither the traced shape (3, 7)
        rng = np.random.default_rng(batch)
        feeds = {"last_hidden_state": rng.standard_normal((batch, length, 64)).astype(np.float32),
                 "pooler_output": rng.standard_normal((batch, 64)).astype(np.float32),
                 "attention_mask": np.ones((batch, length), dtype=np.int64)}
        inputs = {i.name for i in head.get_inputs()}
        (logits,) = head.run(None, {k: v for k, v in feeds.items() if k in inputs})
        assert logits.shape == (batch, length, len(tags))


def test_onnx_runtime_tags_as_pytorch_does_within_1e_4(exported):
    torch_run, onnx_run = MultitaskBERT.load(exported), MultitaskBERT.load(exported, backend="onnx")
    rng = random.Random(3)
    sentences = [tuple(rng.choice(WORDS) for _ in range(n)) for n in (1, 4, 9, 300)]  # 300 words: many windows
    examples = [TaggedExample(str(i), words, None, i + 1) for i, words in enumerate(sentences)]
    want, got = torch_run.outputs("ner", examples, soft=True), onnx_run.outputs("ner", examples, soft=True)
    for words, a, b in zip(sentences, got, want, strict=True):
        assert a.shape == b.shape == (len(words), 7)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    assert [list(t) for t in onnx_run.outputs("ner", examples, soft=False)] == [
        list(t) for t in torch_run.outputs("ner", examples, soft=False)]


def test_serve_answers_tag_bodies_alike_with_either_backend(exported):
    answers = {}
    for backend in ("torch", "onnx"):
        with running_server(MultitaskBERT.load(exported, backend=backend)) as url:
            response = httpx.post(f"{url}/predict/ner", json={"texts": TEXTS}, timeout=30)
            assert response.status_code == 200, response.text
            answers[backend] = response.json()["results"]
    assert any(answer["entities"] for answer in answers["torch"])
    for got, want in zip(answers["onnx"], answers["torch"], strict=True):
        assert got["words"] == want["words"] and got["tags"] == want["tags"]
        assert [(e["text"], e["type"], e["start"], e["end"]) for e in got["entities"]] == [
            (e["text"], e["type"], e["start"], e["end"]) for e in want["entities"]]
        assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in want["entities"]],
                                                                      abs=1e-4)
