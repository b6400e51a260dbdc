"""`minbert train --fork CHECKPOINT`: a new run from another run's checkpoint taken at an epoch's end. It carries
the parent's finished epochs and best weights, then draws from its own seed; forks of one checkpoint share their
training up to it (weight soups need that). Checkpoints that cannot give a fork its best weights are refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from minbert.cli import main
from minbert.model.loading import write_digests
from tests.conftest import THREE_TASKS, write_tiny_config


def metrics(run):
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def parent(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    """Three epochs with an EMA of the weights, every epoch-end checkpoint kept, and one taken inside an epoch."""
    out = tmp_path_factory.mktemp("fork-parent")
    config = write_tiny_config(out / "c.toml", out, tiny_model_dir, tasks=THREE_TASKS,
                               train="epochs = 3\nkeep_checkpoints = 10\ncheckpoint_every = 5\n"
                                     "techniques = { ema = { decay = 0.9 } }")
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "seed=1", "name=parent"]) == 0
    return out / "parent"


def epoch_end_checkpoint(run, epochs_done):
    """The checkpoint saved after `epochs_done` epochs (the first with that many epochs in its history, at step 0
    of the next)."""
    for path in sorted((run / "checkpoints").iterdir()):
        state = json.loads((path / "state.json").read_text())
        if len(state["history"]) == epochs_done and state["step_in_epoch"] == 0:
            return path
    raise AssertionError(f"no checkpoint after epoch {epochs_done}")


def learned(run_metrics):
    """What each epoch learned (its losses and dev scores; not its timings)."""
    return [(e["train_loss"], e["dev"], e["selection_score"]) for e in run_metrics["epochs"]]


def fork(checkpoint, name, *overrides, data_dir, expect=0):
    return main(["train", "--fork", str(checkpoint), "--data-dir", str(data_dir), f"name={name}", *overrides]) \
        == expect


def test_a_fork_carries_the_parents_epochs_then_goes_its_own_way_reproducibly(parent, tiny_data_dir, tmp_path):
    done = metrics(parent)["best"]["epoch"]
    checkpoint = epoch_end_checkpoint(parent, done)  # the best epoch's end: its weights are the best so far
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert fork(checkpoint, name, f"seed={seed}", f"train.epochs={done + 1}", f"output_dir={tmp_path}",
                    data_dir=tiny_data_dir)
    a, b, c = (metrics(tmp_path / name) for name in "abc")
    assert a["forked_from"] == {"checkpoint": str(checkpoint), "step": a["forked_from"]["step"], "epochs": done}
    assert a["epochs"][:done] == metrics(parent)["epochs"][:done]  # the parent's finished epochs, as they were
    assert len(a["epochs"]) == done + 1 and learned(a) == learned(b)  # the same seed forks the same way
    assert a["epochs"][done]["train_loss"] != c["epochs"][done]["train_loss"]  # another seed, another way
    assert "seed = 7" in (tmp_path / "a" / "config.toml").read_text()
    # a fork stopped part-way and resumed is still a fork, and goes on exactly as it would have
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "a", resumed)
    own = sorted((resumed / "checkpoints").iterdir())
    for later in own[1:]:
        shutil.rmtree(later)
    partial = metrics(resumed)
    del partial["final_dev"]
    (resumed / "metrics.json").write_text(json.dumps(partial))
    assert main(["train", "--resume", str(resumed), "--data-dir", str(tiny_data_dir)]) == 0
    assert metrics(resumed)["forked_from"] == a["forked_from"] and learned(metrics(resumed)) == learned(a)
    # soups of forks of one checkpoint say where their members started
    assert main(["soup", str(tmp_path / "a"), str(tmp_path / "c"), "--name", "soup", "--output-dir", str(tmp_path),
                 "--data-dir", str(tiny_data_dir)]) == 0
    assert f"Every member started from one point: forked from {checkpoint}." in (tmp_path / "soup" / "soup.md") \
        .read_text()


def test_a_fork_that_trains_no_further_has_the_checkpoints_weights_as_its_best(parent, tiny_data_dir, tmp_path):
    done = metrics(parent)["best"]["epoch"]
    assert fork(epoch_end_checkpoint(parent, done), "still", f"train.epochs={done}", f"output_dir={tmp_path}",
                data_dir=tiny_data_dir)
    best, parent_best = (load_file(run / "best" / "model.safetensors") for run in (tmp_path / "still", parent))
    assert set(best) == set(parent_best) and all(torch.equal(best[k], parent_best[k]) for k in best)
    assert metrics(tmp_path / "still")["final_dev"] == metrics(parent)["final_dev"]


def test_a_fork_from_an_epoch_whose_average_was_best_starts_with_that_average(parent, tiny_data_dir, tmp_path,
                                                                             capsys):
    chosen = tmp_path / "ema" / "checkpoints" / "step-00000099"
    shutil.copytree(epoch_end_checkpoint(parent, 3), chosen)
    shutil.copy(parent / "config.toml", tmp_path / "ema" / "config.toml")
    state = json.loads((chosen / "state.json").read_text())
    for record in state["history"]:  # as if epoch 3's EMA weights had been its best
        record["selection_score"] = record["epoch"] / 10
    state["history"][-1]["weights"] = "ema"
    (chosen / "state.json").write_text(json.dumps(state))
    write_digests(chosen, ["tensors.safetensors", "state.json"])  # as if written so
    assert fork(chosen, "from-ema", "train.epochs=3", f"output_dir={tmp_path}", data_dir=tiny_data_dir)
    best = load_file(tmp_path / "from-ema" / "best" / "model.safetensors")
    tensors = load_file(chosen / "tensors.safetensors")
    assert all(torch.equal(best[k], tensors[f"ema.{k}"]) for k in best)
    assert not all(torch.equal(best[k], tensors[f"model.{k}"]) for k in best)
    assert fork(chosen, "x", "train.epochs=3", "train.techniques={}", f"output_dir={tmp_path}",
                data_dir=tiny_data_dir, expect=2)
    assert "its ema average, which this config does not keep" in capsys.readouterr().err


def test_checkpoints_a_fork_cannot_start_from_are_refused(parent, tiny_data_dir, tmp_path, capsys):
    inside = next(p for p in sorted((parent / "checkpoints").iterdir())
                  if json.loads((p / "state.json").read_text())["step_in_epoch"])
    assert fork(inside, "x", f"output_dir={tmp_path}", data_dir=tiny_data_dir, expect=2)
    assert "taken at step" in capsys.readouterr().err and not (tmp_path / "x").exists()
    # a checkpoint whose weights are not the best so far: its history says an earlier epoch was better
    worse = tmp_path / "worse" / "checkpoints" / "step-00000099"
    shutil.copytree(epoch_end_checkpoint(parent, 2), worse)
    shutil.copy(parent / "config.toml", tmp_path / "worse" / "config.toml")
    state = json.loads((worse / "state.json").read_text())
    state["history"][0]["selection_score"] = state["history"][1]["selection_score"] + 1
    (worse / "state.json").write_text(json.dumps(state))
    write_digests(worse, ["tensors.safetensors", "state.json"])
    assert fork(worse, "x", f"output_dir={tmp_path}", data_dir=tiny_data_dir, expect=2)
    assert "not the best so far (epoch 1's are)" in capsys.readouterr().err
    checkpoint = epoch_end_checkpoint(parent, 1)
    assert fork(checkpoint, "x", "model.task_layers=1", f"output_dir={tmp_path}", data_dir=tiny_data_dir, expect=2)
    assert "written under another config" in capsys.readouterr().err and not (tmp_path / "x").exists()
    # the fork may never replace the run it reads
    assert fork(checkpoint, "parent", f"output_dir={parent.parent}", "--overwrite", data_dir=tiny_data_dir,
                expect=2)
    assert "which this command reads" in capsys.readouterr().err and checkpoint.is_dir()
    assert main(["train", "--fork", str(checkpoint), "--quick"]) == 2
    assert main(["train", "--resume", str(parent), "--fork", str(checkpoint)]) == 2


def test_a_fork_scores_its_parents_dev_sample_and_its_summary_is_its_metrics(tiny_model_dir, tiny_data_dir,
                                                                            tmp_path, capsys):
    """With `train.max_eval_examples`, parent and fork (another seed) score the same dev rows: the best epoch the
    fork carries over and its closing summary give metrics.json's figures for the same weights."""
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS,
                               train="epochs = 2\nmax_eval_examples = 10")
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "seed=1", "name=p"]) == 0
    done = metrics(tmp_path / "p")["best"]["epoch"]
    capsys.readouterr()
    assert fork(epoch_end_checkpoint(tmp_path / "p", done), "f", "seed=7", f"train.epochs={done}",
                f"output_dir={tmp_path}", data_dir=tiny_data_dir)
    summary = capsys.readouterr().out
    parent, child = metrics(tmp_path / "p"), metrics(tmp_path / "f")
    scores = {task: result["score"] for task, result in child["final_dev"].items()}
    assert scores == {task: result["score"] for task, result in child["best"]["dev"].items()}
    assert scores == {task: result["score"] for task, result in parent["final_dev"].items()}
    row = next(line for line in summary.splitlines() if "this run" in line)
    assert all(f"{score:.4f}" in row for score in scores.values())
