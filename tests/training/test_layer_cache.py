"""Frozen-bottom caching: hits equal fresh computation, frozen parts get no gradient, spilling to disk works."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from minbert import BertModel, Tokenizer
from minbert.data.batching import TaskData
from minbert.data.files import Example
from minbert.tasks.config import ModelConfig, TaskConfig
from minbert.tasks.model import MultitaskModel
from minbert.training.layer_cache import STORE_DTYPES, LayerCache
from tests.conftest import WORDS


def setup(tiny_model_dir, frozen_layers=1, freeze="none", budget=2**30, spill_dir=None, dtype="float32"):
    torch.manual_seed(0)
    encoder = BertModel.from_pretrained(tiny_model_dir)
    model = MultitaskModel(encoder, {"sst": TaskConfig(data="sst", pooling="mean", dropout=0.0)},
                           ModelConfig(freeze=freeze, frozen_layers=frozen_layers))
    tok = Tokenizer.from_pretrained(tiny_model_dir)
    texts = [" ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(2 + i % 9)) for i in range(20)]
    data = TaskData("sst", [Example(str(i), (t,), i % 5, i + 2) for i, t in enumerate(texts)], tok, 32)
    data.cache = LayerCache(data.row_lengths, encoder.config.hidden_size, budget, spill_dir, dtype=dtype)
    return model, data


@pytest.mark.parametrize(("frozen_layers", "freeze"), [(1, "none"), (2, "none"), (0, "encoder")])
def test_cache_hits_equal_fresh_computation(tiny_model_dir, frozen_layers, freeze):
    model, data = setup(tiny_model_dir, frozen_layers, freeze)
    model.eval()
    first = data.collate([3, 1, 7])  # fills rows 3, 1, 7 (padded to this batch's longest)
    with torch.no_grad():
        fresh = model(first).logits
    assert data.cache.filled[[1, 3, 7]].all() and data.cache.filled.sum() == 3
    calls = []
    original = model.frozen_bottom
    model.frozen_bottom = lambda inputs: calls.append(1) or original(inputs)
    regrouped = data.collate([7, 3])  # different batch, different padding: served from the cache
    with torch.no_grad():
        cached = model(regrouped).logits
    assert not calls
    torch.testing.assert_close(cached, fresh[[2, 0]], rtol=0, atol=1e-5)
    data.cache = None  # and the same without any cache
    with torch.no_grad():
        torch.testing.assert_close(model(data.collate([7, 3])).logits, cached, rtol=0, atol=1e-5)


def test_frozen_bottom_gets_no_gradient_and_stays_in_eval_mode(tiny_model_dir):
    model, data = setup(tiny_model_dir, frozen_layers=1)
    model.train()
    assert not model.encoder.embeddings.training and not model.encoder.layers[0].training
    assert model.encoder.layers[1].training
    model.loss(data.collate([0, 1, 2])).backward()
    assert all(p.grad is None for p in model.encoder.embeddings.parameters())
    assert all(p.grad is None for p in model.encoder.layers[0].parameters())
    assert all(p.grad is not None for p in model.encoder.layers[1].parameters())


def test_bf16_cache_hits_equal_the_rounded_fresh_computation(tiny_model_dir):
    model, data = setup(tiny_model_dir, dtype="bfloat16")
    model.eval()
    with torch.no_grad():
        fresh = model(data.collate([3, 1, 7])).logits  # computed, rounded to bf16, stored
        cached = model(data.collate([3, 1, 7])).logits  # read back
        data.cache = None
        unrounded = model(data.collate([3, 1, 7])).logits
    assert data.cache is None
    torch.testing.assert_close(cached, fresh, rtol=0, atol=1e-6)  # the same values, computed or read back
    torch.testing.assert_close(cached, unrounded, rtol=0, atol=0.05)  # and near the fp32 ones
    assert not torch.equal(cached, unrounded)  # (rounding did happen)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_memory_mapped_cache_returns_exactly_what_the_in_memory_one_did(tiny_model_dir, tmp_path, dtype):
    in_memory = LayerCache(np.array([3, 5, 2]), 8, budget_bytes=2**20, dtype=dtype)
    mapped = LayerCache(np.array([3, 5, 2]), 8, budget_bytes=0, spill_dir=tmp_path, dtype=dtype)
    assert in_memory.spill_path is None and isinstance(mapped.store, np.memmap)
    assert mapped.spill_path.suffix == f".{dtype}"
    assert mapped.spill_path.stat().st_size == 10 * 8 * mapped.store.itemsize  # 10 tokens of 8 values
    hidden = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    for cache in (in_memory, mapped):
        assert cache.get([0, 1], 5) is None  # nothing cached yet
        returned = cache.put([2, 0, 1], hidden)
        torch.testing.assert_close(returned, hidden, rtol=0, atol=0 if dtype == "float32" else 0.02)
    assert torch.equal(mapped.get([1, 2, 0], 6), in_memory.get([1, 2, 0], 6))
    got = mapped.get([0], 4)
    assert got.dtype == torch.float32 and torch.equal(got[0, 3:], torch.zeros(1, 8))  # row 0 has 3 tokens
    assert torch.equal(got[0, :3], hidden[1, :3].to(STORE_DTYPES[dtype][0]).float())
    path = mapped.spill_path
    mapped.close()
    assert not path.exists()


def test_spills_to_a_memory_mapped_file_beyond_the_budget(tiny_model_dir, tmp_path):
    model, data = setup(tiny_model_dir, budget=0, spill_dir=tmp_path)
    model.eval()
    assert isinstance(data.cache.store, np.memmap) and data.cache.spill_path.parent == tmp_path
    with torch.no_grad():
        fresh = model(data.collate([0, 5])).logits
        cached = model(data.collate([0, 5])).logits
    torch.testing.assert_close(cached, fresh, rtol=0, atol=1e-5)
    path = data.cache.spill_path
    data.cache.close()
    assert not path.exists()


def test_impossible_frozen_layer_count(tiny_model_dir):
    from minbert.errors import ConfigError

    with pytest.raises(ConfigError, match="model.frozen_layers = 3: the encoder has 2 layers"):
        setup(tiny_model_dir, frozen_layers=3)


def test_trainer_computes_the_frozen_encoder_once(tiny_model_dir, tiny_data_dir, tmp_path):
    from minbert.training.config import load_config
    from minbert.training.experiment import build_experiment
    from minbert.training.hooks import Hook
    from minbert.training.loop import Trainer

    config = load_config(None, [f"model.path={tiny_model_dir}", "model.max_length=32",
                                "model.freeze=encoder", "train.epochs=3",
                                "train.lr=1e-3", "tasks.sst.data=sst", f"output_dir={tmp_path}"])
    exp = build_experiment(config, data_dir=str(tiny_data_dir))
    calls_per_epoch = []
    counter = []
    head_before = [p.clone() for p in exp.model.heads.parameters()]
    encoder_before = [p.clone() for p in exp.model.encoder.parameters()]
    original = exp.model.frozen_bottom
    exp.model.frozen_bottom = lambda inputs: counter.append(1) or original(inputs)
    class CountCalls(Hook):
        def epoch_ended(self, trainer, record):
            calls_per_epoch.append(len(counter))

    trainer = Trainer(exp, [CountCalls()])
    trainer.fit()
    trainer.close()
    train_batches = -(-48 // 8)
    dev_batches = 1
    assert calls_per_epoch == [train_batches + dev_batches] * 3  # only the first epoch computed anything
    assert all(not torch.equal(a, b) for a, b in zip(head_before, exp.model.heads.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, exp.model.encoder.parameters(), strict=True))


def test_top_k_trainable_layers(tiny_model_dir):
    from minbert.training.config import load_config

    config = load_config(None, ["tasks.sst.data=sst", "model.trainable_layers=1"])
    model = MultitaskModel(BertModel.from_pretrained(tiny_model_dir), config.tasks, config.model)
    assert model.frozen_depth == 1  # 2 layers: the bottom one frozen, with the embeddings
    assert not any(p.requires_grad for p in model.encoder.layers[0].parameters())
    assert all(p.requires_grad for p in [*model.encoder.layers[1].parameters(), *model.encoder.pooler.parameters()])


def test_a_run_with_its_cache_over_budget_finishes_with_the_same_results(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                          caplog):
    from minbert.runs.run import train_run
    from minbert.training.config import load_config

    def run(name: str, budget_mb: int) -> tuple[list, list[str]]:
        config = load_config(None, [f"model.path={tiny_model_dir}", "model.max_length=32",
                                "model.frozen_layers=1", "train.epochs=2",
                                    "tasks.sst.data=sst", f"output_dir={tmp_path}", f"name={name}",
                                    f"train.cache_budget_mb={budget_mb}"])
        caplog.clear()
        with caplog.at_level("INFO", logger="minbert"):
            run_dir = train_run(config, data_dir=str(tiny_data_dir))
        epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
        return [(e["train_loss"], e["dev"]) for e in epochs], [r.getMessage() for r in caplog.records], run_dir

    in_memory, memory_log, _ = run("in-memory", 4096)
    mapped, mapped_log, run_dir = run("over-budget", 0)
    assert not any("memory-mapped" in line for line in memory_log)
    assert any("exceed the 0 MB budget: memory-mapped from " + str(run_dir / "cache") in line for line in mapped_log)
    assert mapped == in_memory  # the same bytes on disk as in memory: the same training, to the last digit
    assert not list((run_dir / "cache").glob("*.bfloat16"))  # the spill files go when the run ends
