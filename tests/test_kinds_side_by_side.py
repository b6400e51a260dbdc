"""bench/kinds_side_by_side.py's table, from run files of both sides written by the test (the runs themselves are
commands, not tests)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.kinds_side_by_side import main


def write_minbert_run(run_dir: Path, f1: float, seconds: float) -> None:
    run_dir.mkdir(parents=True)
    epochs = [{"train_examples": 100, "train_seconds": seconds / 2}] * 2
    metrics = {"final_dev": {"ner": {"metric": "entity_f1", "score": f1, "metrics": {
        "entity_f1": f1, "entity_precision": f1 - 0.01, "entity_recall": f1 + 0.01}}},
        "epochs": epochs, "environment": {"cpu": "Test CPU"}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


def test_table_gives_mean_and_standard_error_of_each_side(tmp_path, capsys):
    out = tmp_path / "kinds"
    for seed, f1 in ((1, 0.90), (2, 0.92)):
        write_minbert_run(out / "conll2003" / f"seed-{seed}", f1, seconds=120.0)
    (out / "hf").mkdir()
    hf = {"metrics": {"entity_f1": 0.88, "entity_precision": 0.87, "entity_recall": 0.89},
          "train_examples_per_s": 12.5, "train_minutes": 9.0, "machine": {"cpu": "Test CPU"}}
    (out / "hf" / "ner-seed-1.json").write_text(json.dumps(hf), encoding="utf-8")

    assert main(["--kinds", "ner", "--seeds", "1", "2", "--out", str(out), "--table-only"]) == 0

    text = (out / "side-by-side.md").read_text(encoding="utf-8")
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    # mean 0.91, standard error stdev(0.90, 0.92) / sqrt(2) = 0.01; one HF seed: no error given
    assert "| ner | entity_f1 | 0.9100 ± 0.0100 (n=2) | 0.8800 (n=1) |" in text
    assert "| ner | train examples/s (mean) | 1.7 | 12.5 |" in text  # 200 sentences / 120 s
    assert "| ner | train minutes (mean) | 2.0 | 9.0 |" in text
    assert "Machines: Test CPU " in text


def test_squad_figures_of_the_reference_are_put_on_minberts_scale(tmp_path):
    out = tmp_path / "kinds"
    (out / "hf").mkdir(parents=True)
    hf = {"metrics": {"exact_match": 50.0, "f1": 62.5}, "train_examples_per_s": 3.0, "train_minutes": 40.0,
          "machine": {"cpu": "Test CPU"}}
    (out / "hf" / "qa-seed-7.json").write_text(json.dumps(hf), encoding="utf-8")
    main(["--kinds", "qa", "--seeds", "7", "--out", str(out), "--table-only"])
    text = (out / "side-by-side.md").read_text(encoding="utf-8")
    assert "| qa | exact_match | - | 0.5000 (n=1) |" in text
    assert "| qa | f1 | - | 0.6250 (n=1) |" in text
    assert "minbert's qa examples/s counts windows" in text
