"""A tag task trained from a Parquet copy of its CoNLL files (integer ner_tags with their ClassLabel names, as HF
writes them) reaches the same dev figures, to the last digit, as from the CoNLL text: the reader gives the same
sentences, tags, order and label set, so nothing downstream can tell the two apart."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

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


def to_parquet(conll, path):
    """The conll file's sentences as HF's conll2003 rows: tokens, and ner_tags as indices of a ClassLabel."""
    options = DATA_FORMATS.options_of("conll")()
    sentences = DATA_FORMATS["conll"].read(conll, options, ReadContext()).examples
    names = list(tag_labels(sentences, "iob1"))[::-1]  # an order of their own: only the names must match
    features = {"tokens": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
                "ner_tags": {"feature": {"names": names, "_type": "ClassLabel"}, "_type": "Sequence"}}
    schema = pa.schema([("tokens", pa.list_(pa.string())), ("ner_tags", pa.list_(pa.int64()))],
                       metadata={b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    rows = [{"tokens": list(s.words), "ner_tags": [names.index(t) for t in s.tags]} for s in sentences]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=10)


def test_a_tag_task_from_parquet_trains_to_the_conll_figures(tmp_path, tiny_model_dir):
    from tests.tasks.test_tag_kind import NER

    data = write_tag_data(tmp_path / "data")
    for split in ("train", "dev"):
        to_parquet(data / "ner" / f"{split}.txt", data / "ner" / f"{split}.parquet")
    figures = {}
    for name, tasks in (("conll", NER.replace('test = "ner/test.txt"\n', "")), ("parquet", PARQUET)):
        config = write_tiny_config(tmp_path / f"{name}.toml", tmp_path / "runs", tiny_model_dir, tasks=tasks,
                                   train="epochs = 2\nlr = 3e-3")
        assert main(["train", "--config", str(config), "--data-dir", str(data), f"name={name}"]) == 0
        metrics = json.loads((tmp_path / "runs" / name / "metrics.json").read_text(encoding="utf-8"))
        figures[name] = metrics["final_dev"]["ner"]
    assert figures["parquet"] == figures["conll"]
    assert figures["conll"]["metrics"]["token_accuracy"] > 0
