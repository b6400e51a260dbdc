"""A JSON-lines classification or regression spec names its field paths once, in its format's table (`format.text`,
`format.label`): the spec's own `text` and `label` follow from them, so its pair-ness, prediction header and rows are
those of the paths. A spec that repeats them (as earlier specs had to) still works; one whose repeat differs is refused
by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.data.spec import DataSpec, check_spec
from minbert.errors import ConfigError
from minbert.options import build
from minbert.runs.run import evaluate_run
from minbert.tasks.kinds import kind_of
from minbert.training.config import load_config
from tests.conftest import WORDS, write_tiny_config

FORMAT = {"name": "jsonl", "id": "pid", "text": ["pair.premise", "pair.hypothesis"], "label": "gold"}
TABLE = {"format": FORMAT, "train": "nli/train.jsonl", "dev": "nli/dev.jsonl", "classes": ["no", "yes"]}
NLI = """
[tasks.nli.data]
format = { name = "jsonl", id = "pid", text = ["pair.premise", "pair.hypothesis"], label = "gold" }
train = "nli/train.jsonl"
dev = "nli/dev.jsonl"
classes = ["no", "yes"]
"""


def spec_of(table: dict) -> DataSpec:
    spec = build(DataSpec, table, "tasks.nli.data")
    check_spec(spec, "tasks.nli.data")
    return spec


def write_nli(path: Path, count: int, start: int = 0) -> None:
    """Pairs whose label is whether the hypothesis repeats the premise (a signal the tiny model can learn)."""
    rows = []
    for i in range(start, start + count):
        premise = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(4))
        same = i % 2 == 0
        hypothesis = premise if same else " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(3))
        rows.append({"pid": i, "pair": {"premise": premise, "hypothesis": hypothesis}, "gold": "yes" if same else "no"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_the_format_s_paths_are_enough(tmp_path):
    spec = spec_of(TABLE)
    assert (spec.text, spec.label, spec.is_pair, spec.rows) == (["pair.premise", "pair.hypothesis"], "gold", True, True)
    assert spec.prediction_header() == "Predicted_gold"
    assert kind_of("nli", type("Task", (), {"data": spec, "loss": ""})()).num_outputs == 2
    write_nli(tmp_path / "nli" / "dev.jsonl", 4)
    loaded = spec.read(tmp_path / "nli" / "dev.jsonl")
    assert [(e.id, e.label) for e in loaded.examples] == [("0", 1), ("1", 0), ("2", 1), ("3", 0)]
    assert loaded.examples[0].texts[0] == loaded.examples[0].texts[1]


def test_a_spec_that_repeats_them_still_works_and_a_different_repeat_is_refused():
    assert spec_of({**TABLE, "text": FORMAT["text"], "label": "gold"}) == spec_of(TABLE)
    with pytest.raises(ConfigError, match=r"^tasks\.nli\.data\.text = \['premise'\] differs from the format's field "
                                          r"paths \(tasks\.nli\.data\.format\.text = \['pair\.premise', "
                                          r"'pair\.hypothesis'\]\): give them once, in the format's table$"):
        spec_of({**TABLE, "text": ["premise"]})
    with pytest.raises(ConfigError, match=r"^tasks\.nli\.data\.label = 'label' differs from the format's field paths "
                                          r"\(tasks\.nli\.data\.format\.label = 'gold'\)"):
        spec_of({**TABLE, "label": "label"})


def test_a_run_of_such_a_spec_trains_records_and_evaluates(tmp_path, tiny_model_dir):
    write_nli(tmp_path / "data" / "nli" / "train.jsonl", 24)
    write_nli(tmp_path / "data" / "nli" / "dev.jsonl", 8, start=100)
    config = write_tiny_config(tmp_path / "nli.toml", tmp_path, tiny_model_dir, tasks=NLI)
    assert main(["train", "--config", str(config), "--data-dir", str(tmp_path / "data")]) == 0
    run = tmp_path / "nli"
    recorded = load_config(run / "config.toml").tasks["nli"].data  # the run's own record loads as given
    assert (recorded.text, recorded.label) == (FORMAT["text"], "gold")
    dev = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["final_dev"]["nli"]
    assert evaluate_run(run, data_dir=str(tmp_path / "data"), quiet=True)["nli"]["score"] == pytest.approx(dev["score"])
