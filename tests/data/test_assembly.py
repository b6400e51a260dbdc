"""A task's data assembled in one call (minbert.data.assembly): splits, samples, the tune split and extra rows, with
the kind's rules passed in as functions (data/ imports no task kind)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from minbert.data.assembly import Sampling, TaskSource, assemble_task_data
from minbert.data.extra import ExtraContext, ExtraDataConfig
from minbert.data.spec import DataSpec, builtin_specs
from minbert.errors import ConfigError, DataError
from minbert.options import build

SST_FILES = {"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"}


def per_class(rows: list) -> np.ndarray:
    return np.array([e.label for e in rows], dtype=np.int64)


def source(files=SST_FILES, dev_problem=lambda rows: None, extras=(), spec=None) -> TaskSource:
    return TaskSource("sst", spec or builtin_specs()["sst"], files, per_class, dev_problem, extras)


def test_splits_are_read_and_sampled_with_their_seeds(tiny_data_dir):
    rows = assemble_task_data(source(), tiny_data_dir, Sampling(seed=5, max_train_examples=20, max_eval_examples=8))
    assert [(s, len(r.examples)) for s, r in rows.items()] == [("train", 20), ("dev", 8), ("test", 8)]
    assert rows["train"].path == tiny_data_dir / SST_FILES["train"] and rows["train"].sources == []
    again = assemble_task_data(source(), tiny_data_dir, Sampling(seed=6, max_train_examples=20, max_eval_examples=8))
    assert [e.id for e in again["dev"].examples] == [e.id for e in rows["dev"].examples]  # eval sample: fixed seed
    assert [e.id for e in again["train"].examples] != [e.id for e in rows["train"].examples]  # train: the run's


def test_the_tune_split_stands_in_for_dev_and_test_is_not_read(tiny_data_dir):
    missing_dev = {**SST_FILES, "dev": "never-read.csv"}
    rows = assemble_task_data(source(missing_dev), tiny_data_dir, Sampling(seed=0, tune_split=0.25))
    assert list(rows) == ["train", "dev"]
    assert rows["dev"].path == tiny_data_dir / SST_FILES["train"]
    assert len(rows["dev"].examples) == 10 and len(rows["train"].examples) == 38  # a quarter of each of 5 classes
    assert {e.id for e in rows["dev"].examples}.isdisjoint(e.id for e in rows["train"].examples)


def test_the_tune_split_is_carved_alike_when_train_is_not_asked_for(tiny_data_dir):
    """evaluate and soup ask for dev (and test) only: dev is still the rows the run held out."""
    missing_dev = {**SST_FILES, "dev": "never-read.csv"}
    sampling = Sampling(seed=0, tune_split=0.25, tune_split_seed=4)
    alone = assemble_task_data(source(missing_dev), tiny_data_dir, sampling, ("dev", "test"))
    assert list(alone) == ["dev"] and len(alone["dev"].examples) == 10
    trained = assemble_task_data(source(missing_dev), tiny_data_dir, sampling)
    assert [e.id for e in alone["dev"].examples] == [e.id for e in trained["dev"].examples]


def test_extra_rows_follow_train_and_are_marked(tiny_data_dir):
    extra = build(ExtraDataConfig, {"file": SST_FILES["dev"], "share": 0.5,
                                    "format": {"name": "tsv", "text_columns": ["sentence"],
                                               "label_column": "sentiment"}}, "tasks.sst.extra[0]")
    context = ExtraContext("tasks.sst.extra[0]", "sst", builtin_specs()["sst"].file_format())
    rows = assemble_task_data(source(extras=[(extra, context)]), tiny_data_dir, Sampling(seed=0), ("train",))
    train = rows["train"]
    assert len(train.examples) == 48 + 16 and [(s.start, s.stop, s.share) for s in train.sources] == [(48, 64, 0.5)]
    assert {e.id for e in train.examples[:48]} == {f"id{i}" for i in range(48)}  # the task's own rows first
    assert {e.id.split(":")[0] for e in train.examples[48:]} == {"ids-sst-dev"}  # then the extra file's, by line


def test_the_kinds_dev_rule_refuses_before_training(tiny_data_dir):
    with pytest.raises(DataError, match=re.escape("ids-sst-dev.csv: 16 rows; too few to score")):
        assemble_task_data(source(dev_problem=lambda rows: "too few to score"), tiny_data_dir, Sampling(seed=0))
    with pytest.raises(ConfigError, match=re.escape("tasks.sst: no dev file (train and dev files are required)")):
        assemble_task_data(source({"train": SST_FILES["train"]}), tiny_data_dir, Sampling(seed=0), ("train", "dev"))


def test_a_tagging_spec_reads_its_label_set_from_train(tmp_path: Path):
    text = "EU I-ORG\nrejects O\n\nPeter I-PER\nBlackburn I-PER\n"
    for name in ("train.txt", "dev.txt"):
        (tmp_path / name).write_text(text, encoding="utf-8")
    spec = build(DataSpec, {"format": {"name": "conll", "scheme": "iob1"}, "train": "train.txt", "dev": "dev.txt"},
                 "tasks.ner.data")
    assert spec.tag_labels == ()
    rows = assemble_task_data(source({"train": "train.txt", "dev": "dev.txt"}, spec=spec), tmp_path,
                              Sampling(seed=0), ("train", "dev"))
    assert set(spec.tag_labels) == {"O", "B-ORG", "I-ORG", "B-PER", "I-PER"} and len(rows["dev"].examples) == 2
