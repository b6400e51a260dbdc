"""Ensembles average members' soft outputs; members may differ in config; single-task members make the trio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from minbert.cli import main
from minbert.data.batching import TaskData
from minbert.data.files import read_examples
from minbert.data.spec import FORMATS
from minbert.device import autocast
from minbert.evaluation.predictions import read_predictions
from minbert.predictor import MultitaskBERT
from minbert.runs.ablation import run_ablation
from minbert.runs.rundir import MARKER
from tests.conftest import SIAMESE_STS, write_tiny_config

CROSS_STS = '[tasks.sst]\ndata = "sst"\npooling = "mean"\n[tasks.quora]\ndata = "quora"\n[tasks.sts]\ndata = "sts"\n'


@pytest.fixture(scope="module")
def members(tmp_path_factory, three_task_run, tiny_model_dir, tiny_data_dir):
    out = tmp_path_factory.mktemp("members")
    b = write_tiny_config(out / "b.toml", out, tiny_model_dir, tasks=CROSS_STS)  # other heads, pooling, encoding
    assert main(["train", "--config", str(b), "--data-dir", str(tiny_data_dir), "seed=5"]) == 0
    return three_task_run, out / "b", tiny_data_dir


@torch.no_grad()
def raw_outputs(run_dir, task, examples):
    """A member's head outputs computed by hand: one batch, the model called directly."""
    member = MultitaskBERT.load(run_dir)
    head = member.model.heads[task]
    data = TaskData(task, examples, member.tokenizer, member.config.model.max_length, siamese=head.siamese)
    with autocast(member.inference.device, member.inference.autocast_dtype):  # the run's own precision
        output = member.model.eval()(data.collate(list(range(len(examples)))))
    if task == "sst":
        return torch.softmax(output.logits.float(), dim=-1).numpy()
    if task == "quora":
        return torch.sigmoid(output.logits.float().view(-1)).numpy()
    return output.score.float().view(-1).clamp(0, 5).numpy()


def test_an_ensemble_is_the_average_of_its_members(members, tmp_path, capsys):
    a, b, data_dir = members
    assert main(["ensemble", str(a), str(b), "--name", "ens", "--output-dir", str(tmp_path),
                 "--data-dir", str(data_dir)]) == 0
    run_dir = tmp_path / "ens"
    assert (run_dir / MARKER).is_file() and (run_dir / "ensemble.toml").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for task, prefix, fmt in (("sst", "sst", "sst"), ("quora", "para", "quora"), ("sts", "sts", "sts")):
        examples = read_examples(data_dir / {"sst": "ids-sst-dev.csv", "quora": "quora-dev.csv",
                                             "sts": "sts-dev.csv"}[task], FORMATS[fmt]).examples
        mean = (raw_outputs(a, task, examples) + raw_outputs(b, task, examples)) / 2
        _, rows = read_predictions(run_dir / "predictions" / f"{prefix}-dev-output.csv")
        assert [r[0] for r in rows] == [e.id for e in examples]
        got = np.array([float(r[1]) for r in rows])
        if task == "sst":
            assert (got == mean.argmax(-1)).all()
        elif task == "quora":
            assert (got == (mean > 0.5)).all()
        else:
            np.testing.assert_allclose(got, mean, atol=6e-5)  # written with 4 decimals
        labels = np.array([e.label for e in examples])
        if task != "sts":
            assert metrics["final_dev"][task]["score"] == pytest.approx((got == labels).mean())
    for member in (a, b):  # each member's own dev scores, as its own run recorded them
        recorded = json.loads((member / "metrics.json").read_text())["final_dev"]
        for task in ("sst", "quora", "sts"):
            assert metrics["member_dev"][member.name][task] == pytest.approx(recorded[task]["score"], abs=1e-6)
    assert "| ensemble |" in capsys.readouterr().out
    assert (run_dir / "predictions" / "sst-test-output.csv").is_file()
    assert (run_dir / "figures" / "sst-confusion.png").is_file()


def test_single_task_members_make_the_trio_through_a_sweep(tmp_path, tiny_model_dir, tiny_data_dir):
    configs = {}
    for task, table in (("sst", '[tasks.sst]\ndata = "sst"\n'), ("quora", '[tasks.quora]\ndata = "quora"\n'),
                        ("sts", SIAMESE_STS)):
        configs[task] = write_tiny_config(tmp_path / f"{task}-alone.toml", tmp_path, tiny_model_dir, tasks=table)
    sweep = tmp_path / "trio.toml"
    sweep.write_text(f'output_dir = "{tmp_path / "out"}"\nseeds = [1, 2]\n[variants]\n'
                     + "".join(f'{t} = {{ config = "{t}-alone.toml" }}\n' for t in configs)
                     + '[ensemble]\nname = "trio"\nmembers = "variants"\n')
    out = run_ablation(sweep, data_dir=str(tiny_data_dir))
    for seed in (1, 2):
        metrics = json.loads((out / "trio" / f"seed-{seed}" / "metrics.json").read_text())
        assert set(metrics["final_dev"]) == {"sst", "quora", "sts"}
        for task in ("sst", "quora", "sts"):  # one member per task: the trio's score is that member's
            alone = json.loads((out / task / f"seed-{seed}" / "metrics.json").read_text())["final_dev"][task]
            assert metrics["final_dev"][task]["score"] == pytest.approx(alone["score"], abs=1e-6)
    trio_row = next(line for line in (out / "ablation.md").read_text().splitlines() if line.startswith("| trio "))
    assert "ensemble of 3 runs per seed" in trio_row and " ± " in trio_row
    report = (out / "trio" / "seed-1" / "report.html").read_text()
    assert "an ensemble of 3 runs" in report and "worst dev errors" in report


def test_an_ensemble_needs_finished_runs(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    assert main(["ensemble", str(tmp_path / "half"), "--name", "e", "--output-dir", str(tmp_path)]) == 2
    assert "not a finished run" in capsys.readouterr().err


def test_a_run_listed_twice_is_refused_before_any_work(members, tmp_path, capsys):
    """The same run twice (by one path, a symbolic link, or inside an ensemble also listed) would count twice."""
    a, b, data_dir = members
    link = tmp_path / "link"
    link.symlink_to(a, target_is_directory=True)
    assert main(["ensemble", str(a), str(b), "--name", "ab", "--output-dir", str(tmp_path),
                 "--data-dir", str(data_dir)]) == 0
    for runs, named in (([a, b, a], f"{a} and {a} are one run"), ([a, link], f"{a} and {link} are one run"),
                        ([tmp_path / "ab", a], f"{tmp_path / 'ab'}'s member {a} and {a} are one run")):
        assert main(["ensemble", *map(str, runs), "--name", "x", "--output-dir", str(tmp_path),
                     "--data-dir", str(data_dir)]) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_a_task_subset_member_counts_only_for_its_tasks(members, tmp_path, tiny_model_dir):
    a, _, data_dir = members
    config = write_tiny_config(tmp_path / "sts-only.toml", tmp_path, tiny_model_dir, tasks=SIAMESE_STS)
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir), "seed=9"]) == 0
    sts_only = tmp_path / "sts-only"
    assert main(["ensemble", str(a), str(sts_only), "--name", "mixed", "--output-dir", str(tmp_path),
                 "--data-dir", str(data_dir)]) == 0
    metrics = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    assert set(metrics["member_dev"]["sts-only"]) == {"sts"}
    alone = json.loads((a / "metrics.json").read_text())["final_dev"]
    for task in ("sst", "quora"):  # from the one member that has them
        assert metrics["final_dev"][task]["score"] == pytest.approx(alone[task]["score"], abs=1e-6)
    assert metrics["weights"]["by_data"]["sst"] == {a.name: 1.0}
    examples = read_examples(data_dir / "sts-dev.csv", FORMATS["sts"]).examples
    mean = (raw_outputs(a, "sts", examples) + raw_outputs(sts_only, "sts", examples)) / 2
    _, rows = read_predictions(tmp_path / "mixed" / "predictions" / "sts-dev-output.csv")
    np.testing.assert_allclose([float(r[1]) for r in rows], mean, atol=6e-5)
