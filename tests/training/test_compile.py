"""`train.compile = true`: the compiled training step computes what the eager one does (same loss and gradients
within bf16 tolerance), across sequence lengths without a graph per length, and with no graph break."""

from __future__ import annotations

import json

import pytest
import torch

from minbert.training.config import load_config
from minbert.training.experiment import build_experiment
from minbert.training.loop import Trainer

# Dropout off: compiled code draws its masks from a different random stream than eager code.
NO_DROPOUT = ["model.hidden_dropout=0", "model.attention_dropout=0", "tasks.sst.dropout=0", "tasks.sst.data=sst",
              "train.precision=bf16", "train.batch_size=6", "train.fused_adamw=off"]


def one_step(tiny_model_dir, tiny_data_dir, tmp_path, compiled: bool, batches: list[list[int]]):
    config = load_config(None, [f"model.path={tiny_model_dir}", "model.max_length=64", f"output_dir={tmp_path}",
                                *NO_DROPOUT,
                                f"train.compile={str(compiled).lower()}"])
    torch.manual_seed(0)
    trainer = Trainer(build_experiment(config, data_dir=str(tiny_data_dir)))
    losses, grads = [], []
    for positions in batches:  # one step per batch, so that every length is compiled and checked
        trainer.model.zero_grad(set_to_none=True)
        batch = trainer.exp.data["sst"]["train"].collate(positions)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = trainer.loss_module(batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
    return trainer, losses, grads


def test_compiled_step_matches_eager_across_lengths(tiny_model_dir, tiny_data_dir, tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    batches = [[0, 1, 2, 3, 4, 5], [6, 7, 8], [9, 10, 11, 12]]
    _, eager_losses, eager_grads = one_step(tiny_model_dir, tiny_data_dir, tmp_path / "eager", False, batches)
    trainer, losses, grads = one_step(tiny_model_dir, tiny_data_dir, tmp_path / "compiled", True, batches)
    data_lengths = {trainer.exp.data["sst"]["train"].collate(b).inputs["input_ids"].shape for b in batches}
    assert len(data_lengths) == 3  # three shapes went through the compiled encoder
    for eager_loss, loss in zip(eager_losses, losses, strict=True):
        torch.testing.assert_close(loss, eager_loss, rtol=2e-2, atol=2e-3)
    for eager, compiled in zip(eager_grads, grads, strict=True):
        assert eager.keys() == compiled.keys() and any("encoder.layers" in name for name in eager)
        for name, grad in eager.items():
            # bf16 keeps 8 bits of mantissa: compare each gradient relative to its own scale
            scale = grad.abs().max().item() or 1.0
            assert (compiled[name] - grad).abs().max().item() <= 0.05 * scale, name
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] <= 2  # dynamic shapes: not one graph per sequence length


@pytest.mark.parametrize("compiled", [False, True])
def test_compiled_training_reports_its_graphs(tiny_model_dir, tiny_data_dir, tmp_path, compiled, caplog):
    from minbert.runs.run import train_run

    config = load_config(None, [f"model.path={tiny_model_dir}", "model.max_length=64", f"output_dir={tmp_path}",
                                *NO_DROPOUT,
                                f"train.compile={str(compiled).lower()}", "name=c", "train.epochs=2"])
    with caplog.at_level("INFO", logger="minbert"):
        run_dir = train_run(config, data_dir=str(tiny_data_dir))
    compile_lines = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    if compiled:
        assert compile_lines and "graphs" in compile_lines[-1] and "recompiles" in compile_lines[-1]
    else:
        assert not compile_lines
    history = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    assert len(history) == 2
    if compiled:
        assert all(r["compile"]["graph_breaks"] == 0 and r["compile"]["graphs"] >= 2 for r in history)
        assert history[0]["compile_seconds"] > 0  # the first epoch pays the compile, the second reuses it
        assert history[1]["compile_seconds"] < history[0]["compile_seconds"]
    else:
        assert all("compile" not in r for r in history)
