"""`minbert soup`: the mean of runs' weights as one run. A soup of one run's copies is that run; greedy never keeps
a member that lowers the dev selection score; members must share architecture and start."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from minbert.cli import main
from minbert.runs.soup import mean_state
from tests.conftest import THREE_TASKS, write_tiny_config


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    out = tmp_path_factory.mktemp("soup-seeds")
    config = write_tiny_config(out / "c.toml", out, tiny_model_dir, tasks=THREE_TASKS, train="epochs = 2")
    for seed in (1, 2, 3):
        assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), f"seed={seed}",
                     f"name=s{seed}"]) == 0
    return [out / f"s{seed}" for seed in (1, 2, 3)]


def weights(run):
    return load_file(run / "best" / "model.safetensors")


def test_mean_state_is_the_element_wise_mean():
    a, b = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 6.0])}
    assert torch.equal(mean_state([a, b])["w"], torch.tensor([2.0, 4.0]))


def test_mean_state_does_not_depend_on_the_members_order():
    generator = torch.Generator().manual_seed(0)
    scales = 10.0 ** torch.randint(-3, 3, (10_000,), generator=generator)
    states = [{"w": torch.randn(10_000, generator=generator) * scales} for _ in range(3)]
    in_fp32 = sum(s["w"] for s in states) / 3
    assert not torch.equal(in_fp32, sum(s["w"] for s in states[::-1]) / 3)  # fp32 sums do depend on it
    assert torch.equal(mean_state(states)["w"], mean_state(states[::-1])["w"])


def test_a_soup_of_one_runs_copies_is_that_run(seeds, tiny_data_dir, tmp_path, caplog):
    copy = tmp_path / "copy"
    shutil.copytree(seeds[0], copy)
    assert main(["soup", str(seeds[0]), str(copy), "--name", "same", "--output-dir", str(tmp_path), "--data-dir",
                 str(tiny_data_dir)]) == 0
    # a copy is another directory, so it is allowed, but its identical weights count twice: said once
    assert f"{seeds[0]} and {copy} have identical best/model.safetensors" in caplog.text
    soup, original = weights(tmp_path / "same"), weights(seeds[0])
    assert set(soup) == set(original) and all(torch.equal(soup[k], original[k]) for k in soup)
    soup_dev = json.loads((tmp_path / "same" / "metrics.json").read_text())["final_dev"]
    run_dev = json.loads((seeds[0] / "metrics.json").read_text())["final_dev"]
    assert {t: r["score"] for t, r in soup_dev.items()} == {t: r["score"] for t, r in run_dev.items()}
    assert main(["predict", "--run", str(tmp_path / "same"), "--task", "sst", "a good film"]) == 0
    assert "Every member started from one point: init seed 1." in (tmp_path / "same" / "soup.md").read_text()


def test_uniform_soup_is_the_mean_and_greedy_never_keeps_a_member_that_lowers_its_score(seeds, tiny_data_dir,
                                                                                       tmp_path):
    assert main(["soup", *map(str, seeds), "--name", "uniform", "--output-dir", str(tmp_path), "--data-dir",
                 str(tiny_data_dir)]) == 0
    expected = mean_state([weights(r) for r in seeds])
    got = weights(tmp_path / "uniform")
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in got)
    assert main(["soup", *map(str, seeds), "--name", "greedy", "--greedy", "--output-dir", str(tmp_path),
                 "--data-dir", str(tiny_data_dir)]) == 0
    soup = json.loads((tmp_path / "greedy" / "metrics.json").read_text())["soup"]
    recorded = {str(r): json.loads((r / "metrics.json").read_text())["best"]["selection_score"] for r in seeds}
    assert [s["run"] for s in soup["steps"]] == sorted(recorded, key=recorded.get, reverse=True)
    best_so_far = float("-inf")
    for step in soup["steps"]:  # kept exactly when the score did not fall
        assert step["kept"] == (step["selection_score"] >= best_so_far)
        if step["kept"]:
            best_so_far = step["selection_score"]
    kept_mean = mean_state([weights(p) for p in map(type(seeds[0]), soup["kept"])])
    got = weights(tmp_path / "greedy")
    assert all(torch.allclose(got[k], kept_mean[k], atol=1e-6) for k in got)
    table = (tmp_path / "greedy" / "soup.md").read_text()
    assert soup["chosen_on"] == "dev" and "optimistic" in table and "init seed 1; init seed 2; init seed 3" in table


def test_members_must_share_architecture_and_start(seeds, tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS,
                               model="max_length = 24")
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=other"]) == 0
    assert main(["soup", str(seeds[0]), str(tmp_path / "other"), "--name", "x", "--output-dir", str(tmp_path)]) == 2
    assert "is not shaped like" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["soup", str(seeds[0]), "--name", "x", "--output-dir", str(tmp_path)]) == 2
    assert "at least two member runs" in capsys.readouterr().err
    assert main(["soup", str(seeds[0]), str(seeds[1]), "--name", seeds[0].name, "--output-dir",
                 str(seeds[0].parent), "--overwrite"]) == 2  # its own member: refused, nothing touched
    assert "which this command reads" in capsys.readouterr().err and (seeds[0] / "best").is_dir()


def test_a_run_listed_twice_is_refused_before_any_work(seeds, tmp_path, capsys):
    """The same run by the same path or through a symbolic link would count twice in the mean."""
    link = tmp_path / "link"
    link.symlink_to(seeds[0], target_is_directory=True)
    for second in (seeds[0], link):
        assert main(["soup", str(seeds[0]), str(seeds[1]), str(second), "--name", "x", "--output-dir",
                     str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"{seeds[0]} and {second} are one run" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()
