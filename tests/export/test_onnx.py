"""`minbert export RUN --format onnx DIR` run by onnxruntime: every task's outputs equal the PyTorch run's (fp32),
and `predict`, `evaluate`, the Python API and `serve` give the same answers with `--backend onnx`."""

from __future__ import annotations

import json

import httpx
import numpy as np
import onnx
import pytest

from minbert.cli import main
from minbert.data.files import Example
from minbert.predictor import MultitaskBERT
from tests.conftest import write_tiny_config
from tests.serving.conftest import running_server

# every kind of graph: 5 classes (cls pooling, MLP head), a binary pair (cross-encoded, mean_max), siamese cosine,
# a siamese feature head over pair features, and cross-encoded regression
TASKS = """
[tasks.sst]
data = "sst"
pooling = "cls"
head = { name = "mlp", hidden_layers = 2 }
[tasks.quora]
data = "quora"
pooling = "mean_max"
[tasks.sts]
data = "sts"
pair_encoding = "siamese"
pooling = "mean"
head = "cosine"
loss = "cosine_mse"
[tasks.sts_features]
data = "sts"
pair_encoding = "siamese"
pooling = "max"
pair_features = ["u", "v", "abs_diff", "product"]
[tasks.sts_cross]
data = "sts"
pooling = "cls_raw"
"""
SENTENCES = ["the film was very good .", "a cat sat on the mat", "how do i learn python fast ?", "bad bad plot",
             "this movie is not fun but the actor was great and the plot was not boring at all", "why"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    out = tmp_path_factory.mktemp("onnx-run")
    # in fp32, so that the default backend (the run's precision) and ONNX Runtime compute the same thing
    config = write_tiny_config(out / "five.toml", out, tiny_model_dir, tasks=TASKS, train='precision = "fp32"')
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=five"]) == 0
    run = out / "five"
    assert main(["export", str(run), "--format", "onnx"]) == 0  # into RUN/onnx
    return run


def rows_for(kind) -> list[tuple[str, ...]]:
    if len(kind.format.text_columns) == 1:
        return [(s,) for s in SENTENCES]
    return [(a, b) for a in SENTENCES for b in SENTENCES[::-1]]


def test_the_graphs_pass_the_checker_and_name_every_task(exported):
    manifest = json.loads((exported / "onnx" / "manifest.json").read_text())
    assert set(manifest["tasks"]) == {"sst", "quora", "sts", "sts_features", "sts_cross"}
    for graph in ["encoder.onnx", *(t["graph"] for t in manifest["tasks"].values())]:
        model = onnx.load(str(exported / "onnx" / graph))
        onnx.checker.check_model(model, full_check=True)
        for value in model.graph.input:  # every axis dynamic: named, not a number
            assert all(d.dim_param for d in value.type.tensor_type.shape.dim[:1]), (graph, value.name)
    assert manifest["tasks"]["sst"]["classes"] and manifest["tasks"]["sts"]["score_range"] == [0.0, 5.0]


def test_every_tasks_outputs_equal_the_pytorch_runs(exported):
    torch_run = MultitaskBERT.load(exported)
    onnx_run = MultitaskBERT.load(exported, backend="onnx")
    for task in torch_run.config.tasks:
        kind = torch_run.model.heads[task].kind
        examples = [Example(str(i), row, None, i + 1) for i, row in enumerate(rows_for(kind))]
        for soft in (True, False):
            np.testing.assert_allclose(onnx_run.outputs(task, examples, soft=soft),
                                       torch_run.outputs(task, examples, soft=soft), atol=1e-4, rtol=0, err_msg=task)
        np.testing.assert_allclose(onnx_run.embed(SENTENCES, task), torch_run.embed(SENTENCES, task), atol=1e-4,
                                   rtol=0, err_msg=task)


def test_predict_and_evaluate_with_the_onnx_backend(exported, tiny_data_dir, tmp_path, capsys):
    for backend in ("torch", "onnx"):
        assert main(["predict", "--run", str(exported), "--task", "sst", "--input",
                     str(tiny_data_dir / "ids-sst-dev.csv"), "--output", str(tmp_path / f"sst-{backend}.csv"),
                     "--backend", backend]) == 0
        assert main(["predict", "--run", str(exported), "--task", "sts_cross", "--input",
                     str(tiny_data_dir / "sts-dev.csv"), "--output", str(tmp_path / f"sts-{backend}.csv"),
                     "--backend", backend]) == 0
    assert (tmp_path / "sst-onnx.csv").read_bytes() == (tmp_path / "sst-torch.csv").read_bytes()
    scores = {b: [line.split(",")[-1] for line in (tmp_path / f"sts-{b}.csv").read_text().splitlines()[1:]]
              for b in ("torch", "onnx")}
    np.testing.assert_allclose(np.array(scores["onnx"], float), np.array(scores["torch"], float), atol=1.01e-4)
    printed = {}
    for backend in ("torch", "onnx"):
        capsys.readouterr()
        assert main(["evaluate", "--run", str(exported), "--data-dir", str(tiny_data_dir), "--backend", backend]) == 0
        printed[backend] = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert len(printed["onnx"]) == 5
    for got, want in zip(printed["onnx"], printed["torch"], strict=True):  # task, "dev", metric, value, ...
        assert got[:3] == want[:3] and float(got[3]) == pytest.approx(float(want[3]), abs=1e-3)


def test_serve_answers_the_same_with_either_backend(exported):
    answers = {}
    for backend in ("torch", "onnx"):
        loaded = MultitaskBERT.load(exported, backend=backend)
        with running_server(loaded) as url:
            answers[backend] = [
                httpx.post(f"{url}/predict/sst", json={"texts": SENTENCES[:3]}).json(),
                httpx.post(f"{url}/predict/sts", json={"pairs": [SENTENCES[:2], SENTENCES[2:4]]}).json(),
                httpx.post(f"{url}/embedding", json={"texts": SENTENCES[:2]}).json(),
            ]
    torch_answers, onnx_answers = answers["torch"], answers["onnx"]
    assert [a["label"] for a in onnx_answers[0]["results"]] == [a["label"] for a in torch_answers[0]["results"]]
    np.testing.assert_allclose([a["probabilities"] for a in onnx_answers[0]["results"]],
                               [a["probabilities"] for a in torch_answers[0]["results"]], atol=1e-4)
    for got, want in zip(onnx_answers[1]["results"], torch_answers[1]["results"], strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
    np.testing.assert_allclose([e["embedding"] for e in onnx_answers[2]["results"]],
                               [e["embedding"] for e in torch_answers[2]["results"]], atol=1e-4)


def test_a_missing_or_stale_export_is_refused(exported, tmp_path, capsys):
    assert main(["predict", "--run", str(exported), "--task", "sst", "--backend", "onnx", "--onnx",
                 str(tmp_path / "nowhere"), "a film"]) == 2
    assert "no ONNX export here (no manifest.json); make one with `minbert export RUN --format onnx" in \
        capsys.readouterr().err
    stale = tmp_path / "stale"
    (stale / "onnx").mkdir(parents=True)
    import shutil

    for name in ("config.toml", "trained-with.json"):
        if (exported / name).exists():
            shutil.copy2(exported / name, stale / name)
    shutil.copytree(exported / "best", stale / "best")
    shutil.copytree(exported / "onnx", stale / "onnx", dirs_exist_ok=True)
    with open(stale / "best" / "model.safetensors", "ab") as weights:  # the run's best checkpoint changed since
        weights.write(b" ")
    assert main(["predict", "--run", str(stale), "--task", "sst", "--backend", "onnx", "a film"]) == 2
    assert "was exported from another state of" in capsys.readouterr().err
    assert main(["predict", "--run", str(exported), "--task", "sst", "--backend", "onnx", "--precision", "bf16",
                 "a film"]) == 2
    assert "the ONNX backend runs its fp32 graphs" in capsys.readouterr().err


def test_the_graphs_of_one_export_share_one_table_of_onnx_functions(monkeypatch):
    """torch.onnx builds its table of ONNX functions per graph (seconds each); within one export it is built once per
    opset, and torch's own builder is back afterwards."""
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    from minbert.export.onnx_export import one_torchlib_registry

    built = []
    monkeypatch.setattr(ONNXRegistry, "from_torchlib",
                        classmethod(lambda cls, opset_version=18: built.append(opset_version) or object()))
    with one_torchlib_registry():
        first = ONNXRegistry().from_torchlib(opset_version=18)  # as torch.onnx.export asks for it
        assert ONNXRegistry().from_torchlib(opset_version=18) is first
        assert ONNXRegistry.from_torchlib(opset_version=19) is not first
    assert built == [18, 19]
    assert ONNXRegistry.from_torchlib(opset_version=18) is not first and built == [18, 19, 18]
