"""minbert report: what a page shows, read from a run directory, and the errors for what is not one."""

from __future__ import annotations

import json
import shutil

import pytest

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.reporting.report import config_differences, flatten, load_run, worst_errors, write_report
from minbert.tasks.kinds import builtin_kind


def copy_run(run, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("checkpoints", "best", "tensorboard", "cache"))
    return target


def test_a_run_writes_every_dev_example_with_its_prediction_and_soft_output(three_task_run):
    rows = [json.loads(line) for line in (three_task_run / "predictions" / "sst-dev-details.jsonl").open()]
    assert len(rows) == 16
    predicted = {r["id"]: r["predicted"] for r in rows}
    lines = (three_task_run / "predictions" / "sst-dev-output.csv").read_text().splitlines()[1:]
    assert {line.split(" , ")[0]: int(line.split(" , ")[1]) for line in lines} == predicted
    for row in rows:
        assert len(row["soft"]) == 5 and row["predicted"] == max(range(5), key=row["soft"].__getitem__)
    sts = [json.loads(line) for line in (three_task_run / "predictions" / "sts-dev-details.jsonl").open()]
    assert all(len(r["texts"]) == 2 and isinstance(r["gold"], float) for r in sts)
    metrics = json.loads((three_task_run / "metrics.json").read_text())
    assert 50 < metrics["peak_rss_mb"] < 24 * 1024
    environment = metrics["environment"]
    assert environment["cpu_bf16"] in ("amx", "avx512_bf16", "none") and environment["precision"]


def test_the_worst_errors_come_first_and_correct_predictions_are_left_out():
    rows = [{"id": "a", "texts": ["x"], "gold": 0, "predicted": 4, "soft": [0, 0, 0, 0.1, 0.9]},
            {"id": "b", "texts": ["y"], "gold": 2, "predicted": 2, "soft": [0, 0, 1, 0, 0]},
            {"id": "c", "texts": ["z"], "gold": 1, "predicted": 2, "soft": [0.1, 0.3, 0.6, 0, 0]},
            {"id": "d", "texts": ["w"], "gold": 1, "predicted": 2, "soft": [0, 0.1, 0.9, 0, 0]}]
    worst = worst_errors(builtin_kind("sst").class_names, rows)
    assert [r["id"] for r in worst] == ["a", "d", "c"]  # furthest off first, then the more confident
    assert worst[0]["gold"] == "very negative" and worst[0]["predicted"] == "very positive"
    sts = [{"id": i, "texts": ["p", "q"], "gold": g, "predicted": p} for i, g, p in
           [("s1", 1.0, 1.2), ("s2", 0.0, 4.0), ("s3", 5.0, 3.0)]]
    assert [r["id"] for r in worst_errors(None, sts)] == ["s2", "s3", "s1"]


def test_config_differences_name_each_setting_against_the_default_job(three_task_run):
    differences = {d["key"]: d for d in config_differences(load_run(three_task_run).config)}
    assert differences["train.epochs"]["value"] == "1" and differences["train.epochs"]["default"] == "3"
    assert not any(key.startswith(("name", "output_dir")) for key in differences)
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}


def test_report_command_writes_one_page_per_run_and_a_comparison(three_task_run, tmp_path, capsys):
    run = copy_run(three_task_run, tmp_path)
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "Plotly.newPlot" in page and "<script src=" not in page and "<link rel=\"stylesheet\"" not in page
    assert "sst: accuracy" in page and "worst dev errors" in page and "train.epochs" in page
    assert "Peak resident memory" in page
    other = copy_run(three_task_run, tmp_path, "other")
    assert main(["report", str(run), str(other), "--output", str(tmp_path / "both.html")]) == 0
    both = (tmp_path / "both.html").read_text(encoding="utf-8")
    assert both.count('href="copy/report.html"') == 1 and "2 runs compared" in both


def test_a_report_names_runs_made_before_per_example_predictions(three_task_run, tmp_path):
    old = copy_run(three_task_run, tmp_path, "old")
    for details in (old / "predictions").glob("*-dev-details.jsonl"):
        details.unlink()
    text = write_report([old]).read_text(encoding="utf-8")
    assert "No per-example dev predictions" in text and "--write-outputs" in text


def test_what_is_not_a_finished_run_is_refused_with_its_path(three_task_run, tmp_path):
    with pytest.raises(ConfigError, match="not a finished run"):
        load_run(tmp_path)
    unfinished = copy_run(three_task_run, tmp_path, "unfinished")
    metrics = json.loads((unfinished / "metrics.json").read_text())
    del metrics["final_dev"]
    (unfinished / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ConfigError, match="metrics.json: no final_dev"):
        load_run(unfinished)
    broken = copy_run(three_task_run, tmp_path, "broken")
    with open(broken / "predictions" / "sst-dev-details.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(ConfigError, match=r"sst-dev-details.jsonl:17: not valid JSON"):
        load_run(broken)
