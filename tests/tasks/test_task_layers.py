"""`model.task_layers = k`: each task's own copy of the encoder's top k layers, initialised from the shared ones;
they change only with their own task's gradients, and save and load with the run."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from minbert import BertModel
from minbert.cli import main
from minbert.errors import ConfigError
from minbert.predictor import MultitaskBERT
from minbert.tasks.config import ModelConfig, TaskConfig
from minbert.training.config import load_config
from minbert.training.experiment import build_experiment, build_optimizer
from tests.conftest import THREE_TASKS, random_batch, tiny_config, write_tiny_config


def equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.fixture()
def experiment(tmp_path, tiny_model_dir, tiny_data_dir):
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS,
                               model="task_layers = 1", train="sampler = { name = \"round_robin\" }")
    return build_experiment(load_config(config), str(tiny_data_dir))


def test_they_start_equal_to_the_shared_layers_and_diverge_only_for_their_own_task(experiment):
    model = experiment.model
    shared_top = model.encoder.layers[-1]
    for layers in model.task_layers.values():
        assert len(layers) == 1 and equal(layers[0], shared_top)
    assert not any(p.requires_grad for p in shared_top.parameters())  # the tasks' copies train instead
    before = {task: [p.detach().clone() for p in layers.parameters()] for task, layers in model.task_layers.items()}
    shared_before = [p.detach().clone() for p in model.encoder.layers[0].parameters()]
    optimizer = build_optimizer(experiment.config, model)
    task_lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert task_lrs[id(next(model.task_layers["sst"].parameters()))] == experiment.config.train.lr  # encoder's lr
    data = experiment.data["sst"]["train"]
    batch = data.collate(list(range(8)))
    model.train()
    optimizer.zero_grad(set_to_none=True)
    model.loss(batch).backward()
    optimizer.step()
    for task, layers in model.task_layers.items():
        moved = any(not torch.equal(a, b) for a, b in zip(before[task], layers.parameters(), strict=True))
        assert moved == (task == "sst"), task
    assert any(not torch.equal(a, b) for a, b in zip(shared_before, model.encoder.layers[0].parameters(),
                                                     strict=True))
    assert equal(model.encoder.layers[-1], shared_top)


def test_a_trained_run_saves_and_loads_them(tmp_path, tiny_model_dir, tiny_data_dir):
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS,
                               model="task_layers = 2")
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=own"]) == 0
    loaded = MultitaskBERT.load(tmp_path / "own")
    assert not equal(loaded.model.task_layers["sst"], loaded.model.task_layers["quora"])
    texts = ["a good film", "the cat sat on the mat"]  # each task's vectors come through its own layers
    assert not (loaded.embed(texts, "sst") == loaded.embed(texts, "quora")).all()
    assert main(["evaluate", "--run", str(tmp_path / "own"), "--data-dir", str(tiny_data_dir)]) == 0
    # exports: each task's encoder is the shared bottom with its own top, one plain BERT of its own
    fp32 = MultitaskBERT.load(tmp_path / "own", precision="fp32")
    assert main(["export", str(tmp_path / "own"), "--format", "onnx", str(tmp_path / "onnx")]) == 0
    onnx_run = MultitaskBERT.load(tmp_path / "own", backend="onnx", onnx_dir=str(tmp_path / "onnx"))
    for task in fp32.config.tasks:
        np.testing.assert_allclose(onnx_run.embed(texts, task), fp32.embed(texts, task), atol=1e-5, rtol=0)
    assert not np.allclose(onnx_run.embed(texts, "sst"), onnx_run.embed(texts, "quora"), atol=1e-3)
    assert main(["export", str(tmp_path / "own"), "--format", "sentence-transformers", str(tmp_path / "st"),
                 "task=quora"]) == 0
    got = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(got, fp32.embed(texts, "quora"), atol=1e-5, rtol=0)


def test_impossible_combinations_are_refused():
    encoder = BertModel(tiny_config())
    tasks = {"sst": TaskConfig(data="sst")}
    from minbert.tasks.model import MultitaskModel

    with pytest.raises(ConfigError, match="the encoder has 2 layers"):
        MultitaskModel(encoder, tasks, ModelConfig(task_layers=3))
    with pytest.raises(ConfigError, match="frozen layers reach into the top 1"):
        MultitaskModel(encoder, tasks, ModelConfig(task_layers=1, frozen_layers=2))
    with pytest.raises(ConfigError, match="model.task_layer_tasks: 'sts' is not a task of this run"):
        MultitaskModel(encoder, tasks, ModelConfig(task_layers=1, task_layer_tasks=["sts"]))
    with pytest.raises(ConfigError, match="model.task_layers = 0 gives none"):
        MultitaskModel(encoder, tasks, ModelConfig(task_layer_tasks=["sst"]))


def test_the_config_refuses_unknown_task_layer_tasks_before_any_data_loads(tmp_path, tiny_model_dir):
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, model="task_layers = 1")
    with pytest.raises(ConfigError, match="model.task_layer_tasks: 'sst5' is not a task of this run"):
        load_config(config, ['model.task_layer_tasks=["sst5"]'])
    with pytest.raises(ConfigError, match="model.task_layers = 0 gives none"):
        load_config(config, ["model.task_layers=0", 'model.task_layer_tasks=["sst"]'])
    assert load_config(config, ['model.task_layer_tasks=["sst"]']).model.task_layer_tasks == ["sst"]


def test_only_the_named_tasks_get_copies_and_the_others_train_the_shared_top(tmp_path, tiny_model_dir,
                                                                              tiny_data_dir):
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS,
                               model="task_layers = 1\ntask_layer_tasks = [\"sts\"]")
    experiment = build_experiment(load_config(config), str(tiny_data_dir))
    model = experiment.model
    assert list(model.task_layers) == ["sts"]
    shared_top, own_top = model.encoder.layers[-1], model.task_layers["sts"]
    assert all(p.requires_grad for p in shared_top.parameters())  # sst and quora still go through it
    optimizer = build_optimizer(experiment.config, model)
    model.train()
    for task, moves_shared in (("sst", True), ("sts", False)):
        shared_before, own_before = copy.deepcopy(shared_top), copy.deepcopy(own_top)
        optimizer.zero_grad(set_to_none=True)
        model.loss(experiment.data[task]["train"].collate(list(range(8)))).backward()
        optimizer.step()
        shared_moved, own_moved = not equal(shared_before, shared_top), not equal(own_before, own_top)
        assert (shared_moved, own_moved) == (moves_shared, not moves_shared), task



def test_a_stage_that_keeps_the_shared_encoder_trains_only_its_tasks_own_layers(tmp_path, tiny_model_dir,
                                                                              tiny_data_dir):
    stages = ('[[stages]]\nname = "all"\n[[stages]]\nname = "sts"\ntasks = ["sts"]\ntrain_shared = false\n')
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS + stages,
                               model="task_layers = 1\ntask_layer_tasks = [\"sts\"]\ncommon_layers = 1")
    experiment = build_experiment(load_config(config), str(tiny_data_dir))
    model = experiment.model
    stage = experiment.config.stages[1]
    model.set_trainable(stage.train_encoder, stage.tasks, stage.train_shared)
    trainable = {name.split(".")[0] + "." + name.split(".")[1] for name, p in model.named_parameters()
                 if p.requires_grad}
    assert trainable == {"task_layers.sts"}  # the cosine head has no parameters; common layers are shared
    optimizer = build_optimizer(experiment.config, model)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in model.task_layers["sts"].parameters()}
    before = copy.deepcopy(model)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    model.loss(experiment.data["sts"]["train"].collate(list(range(8)))).backward()
    optimizer.step()
    assert equal(before.encoder, model.encoder) and equal(before.common, model.common)
    assert equal(before.heads, model.heads) and not equal(before.task_layers, model.task_layers)
    with pytest.raises(ConfigError, match=r"stages\[1\]\.train_shared = false: task sts has no top layers"):
        load_config(config, ['model.task_layer_tasks=["sst"]'])
    with pytest.raises(ConfigError, match="task sts has no top layers"):
        load_config(config, ["model.task_layers=0", "model.task_layer_tasks=[]"])


@pytest.mark.parametrize("frozen", [0, 1])
def test_fresh_copies_compute_what_the_shared_encoder_does(frozen):
    """Before training, the bottom (frozen or not), then the task's copy of the top, is the plain encoder."""
    from minbert.data.batching import Batch
    from minbert.tasks.model import MultitaskModel

    torch.manual_seed(0)
    model = MultitaskModel(BertModel(tiny_config()), {"sst": TaskConfig(data="sst")},
                           ModelConfig(task_layers=1, frozen_layers=frozen)).eval()
    inputs = random_batch(99)
    with torch.no_grad():
        got = model.encode(Batch("sst", inputs, None, list(range(5))))
        want = model.encoder(**inputs)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, rtol=0, atol=1e-6)
