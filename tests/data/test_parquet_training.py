"""A tag task trained from a Parquet copy of its CoNLL files (integer ner_tags with their ClassLabel names, as HF
writes them) reaches the same dev figures, to the last digit, as from the CoNLL text: the reader gives the same
sentences, tags, order and label set, so nothing downstream can tell the two apart."""

from __future__ import annotations

import json

from bench.data_copies import conll_to_parquet
from minbert.cli import main
from minbert.data.formats import DATA_FORMATS, ReadContext, tag_labels
from tests.conftest import write_tiny_config
from tests.tagging import write_tag_data

PARQUET = """
[tasks.ner]
[tasks.ner.data]
format = { name = "parquet", words = "tokens", tags = "ner_tags", batch_size = 16 }
train = "ner/train.parquet"
dev = "ner/dev.parquet"
"""


def reversed_label_set(conll):
    """The file's label set in an order of its own, for the copy's ClassLabel: only the names must match."""
    sentences = DATA_FORMATS["conll"].read(conll, DATA_FORMATS.options_of("conll")(), ReadContext()).examples
    return list(tag_labels(sentences, "iob1"))[::-1]


def test_a_tag_task_from_parquet_trains_to_the_conll_figures(tmp_path, tiny_model_dir):
    from tests.tasks.test_tag_kind import NER

    data = write_tag_data(tmp_path / "data")
    names = reversed_label_set(data / "ner" / "train.txt")
    for split in ("train", "dev"):
        conll_to_parquet(data / "ner" / f"{split}.txt", data / "ner" / f"{split}.parquet", names, row_group_size=10)
    figures = {}
    for name, tasks in (("conll", NER.replace('test = "ner/test.txt"\n', "")), ("parquet", PARQUET)):
        config = write_tiny_config(tmp_path / f"{name}.toml", tmp_path / "runs", tiny_model_dir, tasks=tasks,
                                   train="epochs = 2\nlr = 3e-3")
        assert main(["train", "--config", str(config), "--data-dir", str(data), f"name={name}"]) == 0
        metrics = json.loads((tmp_path / "runs" / name / "metrics.json").read_text(encoding="utf-8"))
        figures[name] = metrics["final_dev"]["ner"]
    assert figures["parquet"] == figures["conll"]
    assert figures["conll"]["metrics"]["token_accuracy"] > 0
