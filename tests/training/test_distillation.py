"""Distillation: mixed targets per task kind, annealing, cached teacher outputs, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minbert.cli import main
from minbert.predictor import MultitaskBERT
from minbert.tasks.kinds import builtin_kind
from minbert.tasks.losses import CrossEntropy, TaskOutput
from minbert.training.distillation import Distillation
from tests.conftest import THREE_TASKS, write_tiny_config
from tests.faults import run_with_fault
from tests.runs.test_resume import assert_same_run


def test_targets_mix_gold_and_teacher_per_task_kind():
    distill = Distillation(weight=0.25, annealing=False, temperature=2.0)
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0]])
    tempered = probs.clamp_min(1e-12).sqrt()
    tempered = tempered / tempered.sum(-1, keepdim=True)
    expected = 0.75 * F.one_hot(torch.tensor([3, 0]), 5).float() + 0.25 * tempered
    got = distill.targets(builtin_kind("sst"), torch.tensor([3, 0]), probs, distill.share(0.3))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.sum(-1), torch.ones(2))
    quora = distill.targets(builtin_kind("quora"), torch.tensor([1.0, 0.0]), torch.tensor([0.2, 0.6]),
                            0.25)
    torch.testing.assert_close(quora, torch.tensor([0.8, 0.15]))
    sts = distill.targets(builtin_kind("sts"), torch.tensor([4.0, 1.0]), torch.tensor([2.0, 3.0]), 0.5)
    torch.testing.assert_close(sts, torch.tensor([3.0, 2.0]))
    annealed = Distillation(weight=0.25, annealing=True, temperature=1.0)
    assert [annealed.share(p) for p in (0.0, 0.25, 1.0, 1.5)] == [1.0, 0.75, 0.0, 0.0]


def test_cross_entropy_takes_soft_targets():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.softmax(torch.randn(4, 5, generator=torch.Generator().manual_seed(1)), -1)
    by_hand = -(targets * torch.log_softmax(logits, -1)).sum(-1).mean()
    output = TaskOutput(logits, logits)
    torch.testing.assert_close(CrossEntropy()(output, targets), by_hand)
    hard = torch.tensor([0, 4, 2, 2])
    torch.testing.assert_close(CrossEntropy()(output, hard), CrossEntropy()(output, F.one_hot(hard, 5).float()))


@pytest.fixture()
def teacher(three_task_run):
    return three_task_run


def student_config(path, out, model_dir, teacher, epochs=2, extra=""):
    return write_tiny_config(path, out, model_dir, tasks=THREE_TASKS,
                             train=f'epochs = {epochs}\nbatch_size = 4\ndistillation.teacher = "{teacher}"\n'
                                   f'checkpoint_every = 3\n{extra}')


def test_teacher_outputs_are_computed_once_and_cached(teacher, tiny_model_dir, tiny_data_dir, tmp_path, caplog):
    config = student_config(tmp_path / "student.toml", tmp_path, tiny_model_dir, teacher)
    with caplog.at_level("INFO", logger="minbert"):
        assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    run_dir = tmp_path / "student"
    cached = {task: np.load(run_dir / "teacher" / f"{task}.npy") for task in ("sst", "quora", "sts")}
    assert cached["sst"].shape == (48, 5) and cached["quora"].shape == (48,) and cached["sts"].shape == (48,)
    np.testing.assert_allclose(cached["sst"].sum(-1), 1, atol=1e-5)
    member = MultitaskBERT.load(teacher)
    from minbert.data.files import read_examples
    from minbert.data.spec import FORMATS

    train = read_examples(tiny_data_dir / "ids-sst-train.csv", FORMATS["sst"]).examples
    np.testing.assert_allclose(cached["sst"], member.outputs("sst", train), atol=1e-6)
    assert caplog.text.count("computing the teacher's outputs") == 3
    assert (run_dir / "metrics.json").is_file()


def test_a_distilled_run_resumes_exactly(teacher, tiny_model_dir, tiny_data_dir, tmp_path):
    config = student_config(tmp_path / "student.toml", tmp_path, tiny_model_dir, teacher, epochs=3,
                            extra="distillation.annealing = true\ndistillation.temperature = 2.0")
    args = ["--config", str(config), "--data-dir", str(tiny_data_dir)]
    assert main(["train", *args, "name=uninterrupted"]) == 0
    result = run_with_fault("checkpoint-before-rename@21", "train", *args, "name=torn")
    assert result.returncode == 137, result.stderr[-2000:]
    assert (tmp_path / "torn" / "teacher" / "sst.npy").is_file()
    assert main(["train", "--resume", str(tmp_path / "torn"), "--data-dir", str(tiny_data_dir)]) == 0
    log = (tmp_path / "torn" / "train.log").read_text()
    assert "teacher outputs read from" in log  # the resumed process did not recompute them
    assert assert_same_run(tmp_path / "uninterrupted", tmp_path / "torn") <= 1e-6


def test_distillation_changes_training(teacher, tiny_model_dir, tiny_data_dir, tmp_path):
    """The teacher's targets reach the loss: the same run without a teacher ends with other weights."""
    from safetensors.torch import load_file

    plain = write_tiny_config(tmp_path / "plain.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS,
                              train="epochs = 2\nbatch_size = 4")
    distilled = student_config(tmp_path / "distilled.toml", tmp_path, tiny_model_dir, teacher,
                               extra="distillation.annealing = false\ndistillation.weight = 1.0")
    for config in (plain, distilled):
        assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    a = load_file(tmp_path / "plain" / "best" / "model.safetensors")
    b = load_file(tmp_path / "distilled" / "best" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) > 1e-4


def test_a_teacher_without_the_task_fails_before_training(tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    sst_only = write_tiny_config(tmp_path / "sst-only.toml", tmp_path, tiny_model_dir)
    assert main(["train", "--config", str(sst_only), "--data-dir", str(tiny_data_dir)]) == 0
    config = student_config(tmp_path / "student.toml", tmp_path, tiny_model_dir, tmp_path / "sst-only")
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err
    assert "tasks.quora: the teacher" in err and "has no quora task" in err
    assert not (tmp_path / "student").exists()
    missing = student_config(tmp_path / "m.toml", tmp_path, tiny_model_dir, tmp_path / "nope")
    assert main(["train", "--config", str(missing), "--data-dir", str(tiny_data_dir)]) == 2
    assert "not a finished run" in capsys.readouterr().err
