"""`minbert export RUN --format onnx` of a multiple-choice task (issue 44): its head graph gives one score per choice
row with a dynamic batch, its manifest entry is the kind's, ONNX Runtime's choice probabilities equal PyTorch's within
1e-4 (questions of 2 to 5 choices in one batch, their missing choices masked), and `serve --backend onnx` answers
choice bodies as PyTorch does."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from minbert.cli import main
from minbert.data.formats import ChoiceExample
from minbert.export.onnx_runtime import session
from minbert.predictor import MultitaskBERT
from tests.choices import SCRIPT, train_choice_run, write_choice_data
from tests.serving.conftest import running_server
from tests.tasks.test_choice_kind import RIGHT

QUESTIONS = [("cat dog film plot", ["dog sat", f"{RIGHT} mat", "python"]),
             ("the plot", ["film", "boring cat", "guitar", f"{RIGHT} dog", "cat"]),
             (f"which one {SCRIPT} ?", [f"{RIGHT} {SCRIPT}", "dog"]),
             ("a b", ["python guitar", "mat", "sat", "film"])]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("onnx-choice")
    run = train_choice_run(out, tiny_model_dir, write_choice_data(out / "data"))  # fp32: both backends alike
    assert main(["export", str(run), "--format", "onnx"]) == 0  # into RUN/onnx
    return run


def test_the_choice_head_is_a_graph_of_one_score_per_row(exported):
    manifest = json.loads((exported / "onnx" / "manifest.json").read_text())
    entry = manifest["tasks"]["arc"]
    assert entry["choice"] is True and entry["num_outputs"] == 1 and entry["outputs"] == ["logits"]
    graph = onnx.load(str(exported / "onnx" / entry["graph"]))
    onnx.checker.check_model(graph, full_check=True)
    assert [o.name for o in graph.graph.output] == ["logits"]
    shape = graph.graph.output[0].type.tensor_type.shape.dim
    assert shape[0].dim_param and shape[1].dim_value == 1  # (rows, 1): a score per choice row
    head = session(exported / "onnx" / entry["graph"])
    for rows, length in ((2, 5), (13, 23)):  # neither the traced shape
        rng = np.random.default_rng(rows)
        feeds = {"last_hidden_state": rng.standard_normal((rows, length, 64)).astype(np.float32),
                 "pooler_output": rng.standard_normal((rows, 64)).astype(np.float32),
                 "attention_mask": np.ones((rows, length), dtype=np.int64)}
        inputs = {i.name for i in head.get_inputs()}
        (logits,) = head.run(None, {k: v for k, v in feeds.items() if k in inputs})
        assert logits.shape == (rows, 1)


def test_onnx_runtime_gives_pytorch_s_choice_probabilities_within_1e_4(exported):
    torch_run, onnx_run = MultitaskBERT.load(exported), MultitaskBERT.load(exported, backend="onnx")
    examples = [ChoiceExample(str(i), stem, tuple(choices), tuple("ABCDE"[:len(choices)]), None, i + 1)
                for i, (stem, choices) in enumerate(QUESTIONS)]
    want, got = torch_run.outputs("arc", examples, soft=True), onnx_run.outputs("arc", examples, soft=True)
    assert want.shape == got.shape == (4, 5)  # the most choices; missing ones 0
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert got[0, 3:].tolist() == [0, 0] and got[2, 2:].tolist() == [0, 0, 0]
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    assert onnx_run.outputs("arc", examples, soft=False).tolist() == torch_run.outputs("arc", examples,
                                                                                        soft=False).tolist()


def test_serve_answers_choice_bodies_alike_with_either_backend(exported):
    answers = {}
    body = {"questions": [{"question": q, "choices": c} for q, c in QUESTIONS]}
    for backend in ("torch", "onnx"):
        with running_server(MultitaskBERT.load(exported, backend=backend)) as url:
            response = httpx.post(f"{url}/predict/arc", json=body, timeout=30)
            assert response.status_code == 200, response.text
            answers[backend] = response.json()["results"]
    for got, want in zip(answers["onnx"], answers["torch"], strict=True):
        assert (got["choice"], got["index"]) == (want["choice"], want["index"])
        assert list(got["probabilities"]) == list(want["probabilities"])
        assert list(got["probabilities"].values()) == pytest.approx(list(want["probabilities"].values()), abs=1e-4)
