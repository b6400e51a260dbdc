"""A training step makes no host read of a device tensor between log intervals (issue 46): the default job's
features on the tiny model, every read traced, those inside steps counted by call site.

On a CPU every tensor is already on the host, so nothing here is slow; what the test guards is the code path that a
GPU runs, where each read (`.item()`, `bool(t)`, `float(t)`, `.tolist()`, `.cpu()`, a NaN check in an `if`)
stalls the device's queue until it drains.
"""

from __future__ import annotations

import json
import shutil
import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from minbert.cli import main
from minbert.data.batching import Batch
from minbert.model.bert import attention_mask_for
from minbert.training.checkpoint import list_checkpoints
from minbert.training.loop import Trainer
from tests.conftest import write_tiny_config

SRC = str(Path(__file__).resolve().parents[2] / "src" / "minbert")
# aten ops that wait for the device: a scalar copied out (item, bool, float, int, `if t`), and ops whose output size
# depends on values (boolean masks, nonzero), which read a count back before they can allocate
SYNCING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "allclose", "unique",
               "_unique", "_unique2", "unique_consecutive", "unique_dim", "repeat_interleave"}
# Python-level reads that copy a whole tensor out (no aten op to see on a CPU, where the tensor already is there)
COPYING_METHODS = ("tolist", "numpy", "cpu", "__array__")
# Reads that a GPU never makes: attention_mask_for and Batch.to check `attention_mask.is_cpu` before they look at
# the mask (test_the_mask_is_read_only_on_a_cpu below proves the skip). Batch.to reads the collated batch's mask on
# the host before the copy: on a GPU too, but a host tensor's read waits for nothing.
CPU_ONLY_SITES = {"model/bert.py:attention_mask_for", "data/batching.py:to"}
# What a step is: the step itself and the hook points around it (reading the figures and checkpoints are not)
STEP_POINTS = {"before_step", "after_backward", "before_update", "after_update", "after_step"}


def call_site() -> str:
    """The innermost minbert frame of the current stack, as 'path/in/minbert.py:function (line)'."""
    for frame in reversed(traceback.extract_stack()):
        if frame.filename.startswith(SRC):
            return f"{frame.filename[len(SRC) + 1:]}:{frame.name} ({frame.lineno})"
    return "outside minbert"


class HostReads(TorchDispatchMode):
    """Counts host reads by call site while `active` (inside a training step, outside reads of the figures)."""

    def __init__(self):
        super().__init__()
        self.sites: Counter[str] = Counter()
        self.active = False

    def record(self) -> None:
        if self.active:
            site = call_site()
            if site.split(" (")[0] not in CPU_ONLY_SITES:
                self.sites[site] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in SYNCING_OPS:
            self.record()
        return func(*args, **(kwargs or {}))


@pytest.fixture()
def host_reads(monkeypatch):
    reads = HostReads()

    def counting(name):
        original = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            reads.record()
            return original(self, *args, **kwargs)
        return method

    for name in COPYING_METHODS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))

    def within(function, active):
        def wrapped(*args, **kwargs):
            before, reads.active = reads.active, active(*args)
            try:
                return function(*args, **kwargs)
            finally:
                reads.active = before
        return wrapped

    monkeypatch.setattr(Trainer, "train_step", within(Trainer.train_step, lambda *a: True))
    monkeypatch.setattr(Trainer, "call", within(Trainer.call, lambda self, point, *a: point in STEP_POINTS
                                                or reads.active))
    for quiet in ("read_figures", "save_checkpoint"):  # a log interval, an epoch's end, a checkpoint
        if hasattr(Trainer, quiet):
            monkeypatch.setattr(Trainer, quiet, within(getattr(Trainer, quiet), lambda *a: False))
    with reads:
        yield reads


# configs/multitask.toml on the tiny model: its stages, tasks (poolings, heads, losses, loss weight, extra data),
# sampler, schedule and model switches
DEFAULT_JOB_TASKS = """
[[stages]]
name = "multitask"
epochs = 1
[[stages]]
name = "sts"
epochs = 1
tasks = ["sts"]
lr = 1e-4
[tasks.sst]
data = "sst"
pooling = "mean"
head = "linear"
dropout = 0.1
[[tasks.sst.extra]]
file = "extra/sst-train-trees.txt"
format = { name = "sst_trees", min_tokens = 2 }
share = 0.5
[tasks.quora]
data = "quora"
pair_encoding = "cross"
pooling = "mean"
head = "linear"
dropout = 0.1
[tasks.sts]
data = "sts"
pair_encoding = "siamese"
pooling = "mean"
head = "cosine"
loss = "cosine_mse"
loss_weight = 5.0
[[tasks.sts.extra]]
file = "extra/sick.tsv"
[tasks.sts.extra.format]
name = "tsv"
text_columns = ["sentence_A", "sentence_B"]
label_column = "relatedness_score"
id_column = "pair_ID"
label_offset = -1.0
label_scale = 1.25
"""
DEFAULT_JOB_TRAIN = """batch_size = 8
head_lr = 1e-3
weight_decay = 0.01
warmup_ratio = 0.05
decay = "linear"
sampler = { name = "round_robin", update = "local" }
eval_batch_size = 16
log_every = 5"""
DEFAULT_JOB_MODEL = "freeze_word_embeddings = true\nattention_dropout = 0.0\nfrozen_layers = 0"

TREES = ["(3 (2 (2 the) (2 film)) (4 (3 (2 is) (4 great)) (2 .)))", "(1 (2 the plot) (1 (2 was) (0 awful)))",
         "(4 (2 a) (4 (4 very) (4 fun) (2 movie)))", "(0 (2 it) (0 (2 was) (1 (1 boring) (2 and) (0 bad))))"] * 3
SICK = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score"] + [
    f"{i}\t{a}\t{b}\t{score}" for i, (a, b, score) in enumerate(
        [("a dog sat", "a cat sat", 3.5), ("a man plays guitar", "a man plays guitar", 5.0),
         ("the plot", "the actor", 2.0), ("a woman ran", "the dog ran", 2.5)] * 3)]


@pytest.fixture()
def default_job(tmp_path, tiny_model_dir, tiny_data_dir):
    """The tiny default job's config and data directory (the tiny fixtures plus the two extra files)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    (data / "extra").mkdir()
    (data / "extra" / "sst-train-trees.txt").write_text("\n".join(TREES) + "\n")
    (data / "extra" / "sick.tsv").write_text("\n".join(SICK) + "\n")

    def write(name: str, train: str = "") -> Path:
        return write_tiny_config(tmp_path / f"{name}.toml", tmp_path, tiny_model_dir, tasks=DEFAULT_JOB_TASKS,
                                 model=DEFAULT_JOB_MODEL, train=f"{DEFAULT_JOB_TRAIN}\n{train}")
    return write, data


def test_the_default_jobs_steps_make_no_host_read_between_log_intervals(default_job, host_reads):
    write, data = default_job
    config = write("job")
    assert main(["train", "--config", str(config), "--data-dir", str(data)]) == 0
    metrics = json.loads((config.parent / "job" / "metrics.json").read_text())
    assert [e["stage"] for e in metrics["epochs"]] == ["multitask", "sts"]
    assert set(metrics["epochs"][0]["train_loss"]) == {"sst", "quora", "sts"}
    assert dict(host_reads.sites) == {}, "host reads inside training steps, by call site"


def test_the_mask_is_read_only_on_a_cpu(host_reads):
    """The one read CPU_ONLY_SITES lets through is skipped for a tensor that is not on the CPU."""
    mask = torch.ones(2, 5, dtype=torch.long)
    host_reads.active = True
    reads = Counter()
    original = host_reads.record
    host_reads.record = lambda: reads.update([call_site().split(" (")[0]])
    try:
        assert attention_mask_for(mask) is None  # read on the CPU: nothing padded, no mask
        assert attention_mask_for(mask.to("meta")).shape == (2, 1, 1, 5)  # elsewhere: not read, always applied
        batch = Batch("sst", {"input_ids": mask, "attention_mask": mask}, None, [0, 1])
        assert batch.to(torch.device("meta")).unpadded  # read on the host, before the copy
        on_device = Batch("sst", {k: v.to("meta") for k, v in batch.inputs.items()}, None, [0, 1])
        assert not on_device.to(torch.device("meta")).unpadded  # already on a device: not read, mask applied
    finally:
        host_reads.record = original
    assert reads == {"model/bert.py:attention_mask_for": 1, "data/batching.py:to": 1}


def poison_loss_at(monkeypatch, step: int) -> None:
    """The loss of optimizer step `step` is NaN (tests/faults.py's nan-loss, here in the process)."""
    from minbert.training.loop import TaskLoss

    current = {"step": -1}
    train_step, forward = Trainer.train_step, TaskLoss.forward

    def counting_train_step(self, *args):
        current["step"] = self.step
        return train_step(self, *args)

    monkeypatch.setattr(Trainer, "train_step", counting_train_step)
    monkeypatch.setattr(TaskLoss, "forward", lambda self, batch: forward(self, batch) * (
        float("nan") if current["step"] == step else 1.0))


def test_a_nan_between_reads_stops_the_run_at_the_next_read(default_job, monkeypatch, capsys):
    """on_nan = "stop" checks at the reads: a NaN at step 7 is found at step 10's read (log_every = 5), named as
    before; the step-8 checkpoint would hold weights trained past it, so its read comes first and it is not written."""
    write, data = default_job
    config = write("nan", train="checkpoint_every = 4\nkeep_checkpoints = 5\nlog_every = 5")
    poison_loss_at(monkeypatch, 6)
    assert main(["train", "--config", str(config), "--data-dir", str(data)]) == 2
    error = capsys.readouterr().err
    assert "non-finite loss nan at step 6 (epoch 1), task sst; example ids: " in error
    assert "the last good checkpoint is kept (found at step 8)" in error
    assert [p.name for p in list_checkpoints(config.parent / "nan")] == ["step-00000004"]
    weights = load_file(list_checkpoints(config.parent / "nan")[0] / "tensors.safetensors")
    assert all(torch.isfinite(v).all() for k, v in weights.items() if v.is_floating_point())


def test_a_nan_between_reads_without_a_checkpoint_is_found_at_the_log_interval(default_job, monkeypatch, capsys):
    write, data = default_job
    config = write("nan", train="log_every = 5")
    poison_loss_at(monkeypatch, 6)
    assert main(["train", "--config", str(config), "--data-dir", str(data)]) == 2
    error = capsys.readouterr().err
    assert "non-finite loss nan at step 6 (epoch 1), task sst" in error and "(found at step 10)" in error


def test_the_progress_line_says_the_loss_is_not_read_yet_rather_than_nan(default_job, monkeypatch, caplog):
    """Before an epoch's first read (train.log_every steps) no loss is on the host: the line says so instead of
    printing a NaN that reads as a diverged run."""
    from minbert.training import hooks

    monkeypatch.setattr(hooks, "PROGRESS_LOG_SECONDS", -1.0)  # a line every step (stdout is not a terminal here)
    write, data = default_job
    config = write("progress", train="log_every = 3")
    with caplog.at_level("INFO", logger=hooks.log.name):
        assert main(["train", "--config", str(config), "--data-dir", str(data)]) == 0
    lines = [r.getMessage() for r in caplog.records if ", loss " in r.getMessage()]
    first_epoch = [line for line in lines if line.startswith("epoch multitask 1/1: step ")]
    assert first_epoch[0].startswith("epoch multitask 1/1: step 1/") and "loss not read yet," in first_epoch[0]
    assert "loss not read yet," in first_epoch[1]
    assert all("nan" not in line for line in lines), lines
    read = [line for line in first_epoch[2:] if "not read yet" not in line]
    assert read and all(float(line.split(", loss ")[1].split(",")[0]) > 0 for line in read)
