"""`train.max_eval_examples`: a sampled dev (and test) set is a function of the data and the limit, never of the
run's seed, so every run and every fork of a config scores the same rows."""

from __future__ import annotations

from minbert import Tokenizer
from minbert.training.config import load_config
from minbert.training.experiment import load_task_data


def sampled_ids(model_dir, data_dir, *overrides):
    config = load_config(None, [f"model.path={model_dir}", "tasks.sst.data=sst", *overrides])
    data = load_task_data(config, Tokenizer.from_pretrained(model_dir), str(data_dir))["sst"]
    return {split: [e.id for e in task_data.examples] for split, task_data in data.items()}


def test_the_dev_sample_does_not_depend_on_the_seed(tiny_model_dir, tiny_data_dir):
    one, other = (sampled_ids(tiny_model_dir, tiny_data_dir, "train.max_eval_examples=10", f"seed={seed}")
                  for seed in (1, 2))
    assert len(one["dev"]) == 10 and one["dev"] == other["dev"] and one["test"] == other["test"]
    all_dev = sampled_ids(tiny_model_dir, tiny_data_dir, "seed=1")["dev"]
    assert set(one["dev"]) < set(all_dev)  # a sample of dev's rows, in the file's order
    assert one["dev"] == [i for i in all_dev if i in set(one["dev"])]
