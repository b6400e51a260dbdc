"""train.max_tokens_per_batch in the trainer: its config checks, the size-weighted samplers under uneven batches, a
schedule whose step count is exact though an epoch's batches depend on its draw, and whole runs with the option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minbert.cli import main
from minbert.data.batching import BUCKET_MULTIPLE
from minbert.errors import ConfigError
from minbert.options import build
from minbert.training.config import load_config
from minbert.training.samplers import SAMPLERS
from tests.conftest import THREE_TASKS, write_tiny_config


def tiny(tmp_path, tiny_model_dir, *overrides: str):
    return load_config(write_tiny_config(tmp_path / "budget.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS),
                       list(overrides))


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.max_tokens_per_batch=-1"], "train.max_tokens_per_batch"),
    (["train.max_tokens_per_batch=16"],
     r"train.max_tokens_per_batch = 16 is below model.max_length = 32: a batch must hold one sequence"),
    (["train.max_tokens_per_batch=64", "tasks.sts.batch_size=4"],
     r"tasks.sts.batch_size = 4 with train.max_tokens_per_batch = 64: a token budget sizes every task's batches"),
])
def test_bad_budgets_are_refused_naming_the_key(tmp_path, tiny_model_dir, overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny(tmp_path, tiny_model_dir, *overrides)
    assert tiny(tmp_path, tiny_model_dir, "train.max_tokens_per_batch=32").train.max_tokens_per_batch == 32


@pytest.mark.parametrize("name", ["proportional", "annealed"])
def test_size_weighted_samplers_draw_examples_not_steps_in_proportion(name):
    """A task of short sentences fills 10 examples a batch, one of long pairs 2: drawn per batch, proportional
    sampling (alpha 1) draws both tasks' batches alike, so each task's examples are seen in proportion to its size."""
    batches = {"short": [list(range(i * 10, i * 10 + 10)) for i in range(10)],  # 100 examples
               "long": [list(range(i * 2, i * 2 + 2)) for i in range(10)]}  # 20 examples
    options = {"steps_per_epoch": 8000, **({"alpha": 1.0} if name == "proportional" else {})}  # annealed: 1 at first
    sampler = SAMPLERS[name](build(SAMPLERS.options_of(name), options))
    assert sampler.probabilities(batches, 0, 3).tolist() == pytest.approx([100 / 120, 20 / 120])  # fixed sizes
    sampler.uneven_batches = True  # what the trainer sets under a token budget
    assert sampler.probabilities(batches, 0, 3).tolist() == pytest.approx([0.5, 0.5])
    steps = sampler.plan(batches, 0, 3, np.random.default_rng(0))
    examples = {task: sum(len(b) for s in steps for t, b in s if t == task) for task in batches}
    assert examples["short"] / examples["long"] == pytest.approx(100 / 20, rel=0.05)


def test_the_schedule_counts_every_step_of_epochs_whose_batches_vary(tmp_path, tiny_model_dir, tiny_data_dir):
    """Without bucketing, how many batches an epoch's examples fill depends on their shuffle: the stage's step count
    (warm-up and decay) is still exact, also for a trainer that resumes in a later epoch; every example is seen once
    an epoch, in batches of bucket widths within the budget."""
    from minbert.training.experiment import build_experiment
    from minbert.training.hooks import Hook
    from minbert.training.loop import Trainer

    config = tiny(tmp_path, tiny_model_dir, "train.max_tokens_per_batch=48", "train.bucketing=false",
                  "train.sampler=mtdnn", "train.epochs=3", "train.decay=linear")
    starts, shapes = [], []

    class Record(Hook):
        def epoch_starting(self, trainer, epoch, plan):
            starts.append((trainer.step, trainer.epoch_rng_state, len(plan)))

        def before_step(self, trainer, step_batches):
            for task, positions in step_batches:
                data = trainer.exp.data[task]["train"]
                inputs = data.collate(positions).inputs["input_ids"]
                shapes.append((len(positions), *inputs.shape, data.longest_row))

    trainer = Trainer(build_experiment(config, data_dir=str(tiny_data_dir)), hooks=[Record()])
    history = trainer.fit()
    lengths = [n for _, _, n in starts]
    assert len(set(lengths)) > 1  # the epochs' plans differ in length: one probe times the epochs would be wrong
    assert trainer.step == trainer.total_steps == sum(lengths)
    assert [r["train_examples"] for r in history] == [3 * 48] * 3  # sst, quora, sts: 48 examples each, once
    for examples, rows, width, longest in shapes:
        assert width % BUCKET_MULTIPLE == 0 or width == longest
        assert rows * width <= 48 or examples == 1
    resumed = Trainer(build_experiment(config, data_dir=str(tiny_data_dir)))
    resumed.epoch, (resumed.step, resumed.epoch_rng_state, _) = 1, starts[1]
    assert resumed.count_total_steps() == trainer.total_steps


def test_a_run_with_a_token_budget_trains_end_to_end(tmp_path, tiny_model_dir, tiny_data_dir):
    config = write_tiny_config(tmp_path / "budget.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS,
                               train='max_tokens_per_batch = 64\nsampler = "proportional"\nepochs = 2')
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    metrics = json.loads((tmp_path / "budget" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for epoch in metrics["epochs"]:
        assert set(epoch["train_loss"]) == {"sst", "quora", "sts"}
        assert all(np.isfinite(loss) for loss in epoch["train_loss"].values())
    assert "max_tokens_per_batch = 64" in (tmp_path / "budget" / "config.toml").read_text()
