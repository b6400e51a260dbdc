"""`minbert ablate`: runs variants (skipping finished ones), writes the table and the chart."""

from __future__ import annotations

import json

import pytest

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.runs.ablation import read_sweep, run_ablation
from tests.conftest import SIAMESE_STS, write_tiny_config

THREE_TASKS = f'[tasks.sst]\ndata = "sst"\n[tasks.quora]\ndata = "quora"\n{SIAMESE_STS}'


def write_base(tmp_path, model_dir):
    return write_tiny_config(tmp_path / "base.toml", tmp_path / "runs", model_dir, tasks=THREE_TASKS)


def test_sweep_runs_variants_and_writes_a_table(tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    write_base(tmp_path, tiny_model_dir)
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f"""
base = "base.toml"
output_dir = "{tmp_path / 'out'}"
overrides = ["train.batch_size=4"]
[variants]
baseline = []
cosent = ["tasks.sts.loss=cosent"]
""")
    assert main(["ablate", str(sweep), "--data-dir", str(tiny_data_dir), "--budget", "0.5"]) == 0
    table = (tmp_path / "out" / "ablation.md").read_text()
    assert "Budget: every variant trained on 50% of each task's training examples" in table
    assert "Every variant also sets `train.batch_size=4`." in table
    assert "batch_size = 4" in (tmp_path / "out" / "cosent" / "config.toml").read_text()
    assert "| baseline | (base) |" in table and "| cosent | `tasks.sts.loss=cosent` |" in table
    assert (tmp_path / "out" / "ablation.png").stat().st_size > 0
    assert "sst: train 24" in (tmp_path / "out" / "cosent" / "train.log").read_text()  # half of 48
    metrics = (tmp_path / "out" / "baseline" / "metrics.json").stat().st_mtime
    capsys.readouterr()
    assert main(["ablate", str(sweep), "--data-dir", str(tiny_data_dir), "--budget", "0.5"]) == 0
    assert (tmp_path / "out" / "baseline" / "metrics.json").stat().st_mtime == metrics  # finished: not re-run


def test_seeds_run_in_parallel_and_the_table_shows_their_spread(tmp_path, tiny_model_dir, tiny_data_dir):
    write_base(tmp_path, tiny_model_dir)
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f"""
base = "base.toml"
output_dir = "{tmp_path / 'out'}"
seeds = [3, 4]
overrides = ["train.report=true"]  # each run's own report, which the comparison page links
[variants]
baseline = []
cosent = ["tasks.sts.loss=cosent"]
""")
    # four runs, two processes at a time
    assert main(["ablate", str(sweep), "--data-dir", str(tiny_data_dir), "--jobs", "2"]) == 0
    out = tmp_path / "out"
    for variant in ("baseline", "cosent"):
        for seed in (3, 4):
            assert f"seed = {seed}\n" in (out / variant / f"seed-{seed}" / "config.toml").read_text()
    rows = {}
    for line in (out / "ablation.md").read_text().splitlines():
        if line.startswith("| baseline") or line.startswith("| cosent"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    assert "Every variant ran with seeds 3, 4" in (out / "ablation.md").read_text()
    comparison = (out / "report.html").read_text()  # the sweep's comparison page, linking each run's report
    assert "4 runs compared" in comparison and 'href="cosent/seed-4/report.html"' in comparison
    # the mean and spread are those of the two runs' own overall scores
    per_seed = [float(v) for v in rows["baseline"][-3].split(" / ")]
    mean, spread = (float(v) for v in rows["baseline"][2].split(" ± "))
    assert len(per_seed) == 2 and mean == pytest.approx(sum(per_seed) / 2, abs=1e-4)
    assert spread == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5, abs=1e-4)
    assert per_seed[0] != per_seed[1]  # different seeds, different runs
    # each task's cell is its mean ± standard error over the two runs' own dev scores
    header = next(line for line in (out / "ablation.md").read_text().splitlines() if line.startswith("| variant"))
    sts = [c.strip() for c in header.strip("|").split("|")].index("sts")
    runs = [json.loads((out / "baseline" / f"seed-{seed}" / "metrics.json").read_text())["final_dev"]["sts"]["score"]
            for seed in (3, 4)]
    sts_mean, sts_error = (float(v) for v in rows["baseline"][sts].split(" ± "))
    assert sts_mean == pytest.approx(sum(runs) / 2, abs=1e-4)
    assert sts_error == pytest.approx(abs(runs[0] - runs[1]) / 2, abs=1e-4)


@pytest.mark.parametrize(("sweep", "message"), [
    ('base = "x.toml"\nvariant = {}\n', "unknown key"),
    ('base = "x.toml"\noverrides = "train.epochs=1"\n[variants]\na = []\n', "overrides must be a list"),
    ('base = "x.toml"\n[variants]\na = "tasks.sst.dropout=0.1"\n', "variants.a must be a list"),
    ('[variants]\na = ["tasks.sst.dropout=0.1"]\n', "variants.a is an override list but the sweep has no `base`"),
    ("[variants]\na = { overrides = [] }\n", "a table with `config`"),
    ('base = "x.toml"\nseeds = [1, 1]\n[variants]\na = []\n', "seeds must be a list of distinct integers"),
    ('base = "x.toml"\n[variants]\na = []\n[ensemble]\nname = "e"\n', r"\[ensemble\] takes name"),
])
def test_bad_sweeps(tmp_path, sweep, message):
    path = tmp_path / "s.toml"
    path.write_text(sweep)
    with pytest.raises(ConfigError, match=message):
        read_sweep(path)


def test_bad_seeds_flag_is_refused_before_any_run(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('base = "x.toml"\n[variants]\na = []\n')
    with pytest.raises(ConfigError, match="--seeds: seeds must be a list of distinct integers"):
        run_ablation(sweep, seeds=[2, 2])


def test_seeds_flag_wants_integers(capsys):
    with pytest.raises(SystemExit):
        main(["ablate", "sweep.toml", "--seeds", "1,x"])
    assert "expected comma-separated integers, got '1,x'" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_every_run_at_a_step_boundary_without_a_traceback(tmp_path, tiny_model_dir, tiny_data_dir,
                                                                        jobs):
    """As at a terminal: SIGINT to the command's process group. With --jobs the runs' processes sit in groups of
    their own and stop once, when the parent passes the signal on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from minbert.training.checkpoint import list_checkpoints

    write_base(tmp_path, tiny_model_dir)
    sweep, out = tmp_path / "sweep.toml", tmp_path / "out"
    sweep.write_text(f'base = "base.toml"\noutput_dir = "{out}"\noverrides = ["train.epochs=400", '
                     f'"train.checkpoint_every=2"]\n[variants]\nbaseline = []\ncosent = ["tasks.sts.loss=cosent"]\n')
    command = subprocess.Popen([sys.executable, "-m", "minbert", "ablate", str(sweep), "--data-dir",
                                str(tiny_data_dir), "--jobs", str(jobs)], start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    running = [out / "baseline", out / "cosent"][:jobs]
    deadline = time.time() + 120
    while not all(list_checkpoints(run) for run in running):
        assert command.poll() is None and time.time() < deadline, command.stderr.read()[-3000:]
        time.sleep(0.05)
    os.killpg(command.pid, signal.SIGINT)
    _, stderr = command.communicate(timeout=120)
    assert command.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("minbert: stopped by SIGINT") and "0 of 2 runs of the sweep finished" in last, last
    assert f"rerun `minbert ablate {sweep}` to continue" in last
    for run in running:  # each stopped run kept a checkpoint to resume from
        assert list_checkpoints(run) and not list((run / "checkpoints").glob(".tmp-*"))
    if jobs == 1:
        assert not (out / "cosent").exists()  # never started
