"""`minbert export RUN --format onnx` of a span task (issue 44): its head graph gives (B, T, 2) start and end logits
with dynamic batch and length, its manifest entry is the kind's, ONNX Runtime's logits equal PyTorch's within 1e-4
(over contexts of several windows, token types included), and `serve --backend onnx` answers span bodies as PyTorch
does."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from minbert.cli import main
from minbert.data.formats import SpanExample
from minbert.export.onnx_runtime import session
from minbert.predictor import MultitaskBERT
from tests.serving.conftest import running_server
from tests.spans import CONTEXTS, HOSTILE_CONTEXT, train_span_run, write_span_data

QUESTIONS = [("who plays ?", CONTEXTS[0]), ("what sat ?", CONTEXTS[1]), ("who plays ?", HOSTILE_CONTEXT)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("onnx-span")
    # fp32: both backends compute alike; one epoch: parity needs no good model
    run = train_span_run(out, tiny_model_dir, write_span_data(out / "data"), train="epochs = 1")
    assert main(["export", str(run), "--format", "onnx"]) == 0  # into RUN/onnx
    return run


def test_the_span_head_is_a_start_end_logits_graph_with_dynamic_axes(exported):
    manifest = json.loads((exported / "onnx" / "manifest.json").read_text())
    entry = manifest["tasks"]["qa"]
    assert entry["span"] is True and entry["num_outputs"] == 2 and entry["outputs"] == ["logits"]
    graph = onnx.load(str(exported / "onnx" / entry["graph"]))
    onnx.checker.check_model(graph, full_check=True)
    assert [o.name for o in graph.graph.output] == ["logits"]
    shape = graph.graph.output[0].type.tensor_type.shape.dim
    assert shape[0].dim_param and shape[1].dim_param and shape[2].dim_value == 2  # (batch, length, start/end)
    head = session(exported / "onnx" / entry["graph"])
    for batch, length in ((1, 5), (4, 23)):  # neither the traced shape
        rng = np.random.default_rng(batch)
        feeds = {"last_hidden_state": rng.standard_normal((batch, length, 64)).astype(np.float32),
                 "pooler_output": rng.standard_normal((batch, 64)).astype(np.float32),
                 "attention_mask": np.ones((batch, length), dtype=np.int64)}
        inputs = {i.name for i in head.get_inputs()}
        (logits,) = head.run(None, {k: v for k, v in feeds.items() if k in inputs})
        assert logits.shape == (batch, length, 2)


def test_onnx_runtime_gives_pytorch_s_start_and_end_logits_within_1e_4(exported):
    torch_run, onnx_run = MultitaskBERT.load(exported), MultitaskBERT.load(exported, backend="onnx")
    examples = [SpanExample(str(i), q, c, (), False, "") for i, (q, c) in enumerate(QUESTIONS)]
    long_context = " ".join([CONTEXTS[0]] * 6)  # many windows of 32 tokens
    examples.append(SpanExample("long", "who plays ?", long_context, (), False, ""))
    want, got = torch_run.outputs("qa", examples, soft=True), onnx_run.outputs("qa", examples, soft=True)
    assert len(want[-1].windows) > 3
    for a, b in zip(got, want, strict=True):
        assert a.logits.shape == b.logits.shape and a.same_windows(b)
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-4, rtol=0)
    assert [str(p) for p in onnx_run.outputs("qa", examples, soft=False)] == [
        str(p) for p in torch_run.outputs("qa", examples, soft=False)]


def test_serve_answers_span_bodies_alike_with_either_backend(exported):
    answers = {}
    body = {"questions": [{"question": q, "context": c} for q, c in QUESTIONS]}
    for backend in ("torch", "onnx"):
        with running_server(MultitaskBERT.load(exported, backend=backend)) as url:
            response = httpx.post(f"{url}/predict/qa", json=body, timeout=30)
            assert response.status_code == 200, response.text
            answers[backend] = response.json()["results"]
    for got, want in zip(answers["onnx"], answers["torch"], strict=True):
        assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"])
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
