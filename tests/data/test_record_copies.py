"""A slice of the shared CoNLL-2003 and SQuAD files, copied to JSONL, Parquet (as HF datasets writes them: integer
tags with their ClassLabel names in the file's metadata, SQuAD's flat layout) and CSV, reads back as the same
examples as the original through the conll and squad formats: the same words, tags, questions, contexts and answers
in the same order, and the same label set. And `minbert data --config` checks a Parquet task by counting its rows,
the dev file's tags checked against the label set of the counted train file."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.data_copies import hf_metadata
from minbert.cli import main
from minbert.data.formats import DATA_FORMATS, ReadContext, tag_labels
from tests.conftest import write_tiny_config


def read(fmt, path, **options):
    built = DATA_FORMATS.options_of(fmt)(**options)
    DATA_FORMATS.check(fmt, built, "data.format")
    return DATA_FORMATS[fmt].read(path, built, ReadContext())


def shared(data_dir, name):
    path = data_dir / name
    if not path.exists():
        pytest.skip(f"{name} is not in the data directory")
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def write_csv(path, rows):
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(list(rows[0]))
        for row in rows:
            writer.writerow([json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                             for v in row.values()])


def test_conll2003_as_jsonl_parquet_and_csv_reads_as_the_conll_text(data_dir, tmp_path):
    lines = shared(data_dir, "conll2003/train.txt").read_text(encoding="utf-8").splitlines(keepends=True)[:4000]
    while lines[-1].strip():  # end the slice at a sentence's end
        lines.pop()
    original = tmp_path / "train.txt"
    original.write_text("".join(lines), encoding="utf-8")
    conll = read("conll", original).examples
    assert len(conll) > 200 and not read("conll", original).skipped

    names = tag_labels(conll, "iob1")
    rows = [{"id": str(i), "tokens": list(e.words), "ner_tags": list(e.tags)} for i, e in enumerate(conll)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_csv(tmp_path / "train.csv", rows)
    features = {"id": {"dtype": "string", "_type": "Value"},
                "tokens": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
                "ner_tags": {"feature": {"names": list(names), "_type": "ClassLabel"}, "_type": "Sequence"}}
    schema = pa.schema([("id", pa.string()), ("tokens", pa.list_(pa.string())), ("ner_tags", pa.list_(pa.int64()))],
                       metadata=hf_metadata(features))
    table = pa.Table.from_pylist([{**row, "ner_tags": [names.index(t) for t in row["ner_tags"]]} for row in rows],
                                 schema=schema)
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=100)

    expected = [(e.words, e.tags) for e in conll]
    for name in ("train.jsonl", "train.parquet", "train.csv"):
        fmt = name.rpartition(".")[2]
        copy = read(fmt, tmp_path / name, id="id", words="tokens", tags="ner_tags", batch_size=64) \
            if fmt == "parquet" else read(fmt, tmp_path / name, id="id", words="tokens", tags="ner_tags")
        assert not copy.skipped, name
        assert [(e.words, e.tags) for e in copy.examples] == expected, name
        assert tag_labels(copy.examples, "iob1") == names


def flat_squad(document: dict) -> list[dict]:
    """SQuAD's nested JSON as HF's flat rows, in the file's order."""
    return [{"id": qa["id"], "title": article.get("title", ""), "context": paragraph["context"],
             "question": qa["question"], "answers": {"text": [a["text"] for a in qa["answers"]],
                                                     "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for article in document["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def test_squad_as_flat_parquet_and_jsonl_reads_as_the_squad_json(data_dir, tmp_path):
    document = json.loads(shared(data_dir, "squad/dev.json").read_text(encoding="utf-8"))
    document["data"] = document["data"][:6]
    original = tmp_path / "dev.json"
    original.write_text(json.dumps(document), encoding="utf-8")
    squad = read("squad", original)
    assert len(squad.examples) > 200 and not squad.skipped

    rows = flat_squad(document)
    write_jsonl(tmp_path / "dev.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "dev.parquet", row_group_size=50)
    options = {"id": "id", "question": "question", "context": "context", "answer_text": "answers.text",
               "answer_start": "answers.answer_start"}
    expected = [(e.id, e.question, e.context, e.answers, e.is_impossible) for e in squad.examples]
    for name in ("dev.jsonl", "dev.parquet"):
        copy = read(name.rpartition(".")[2], tmp_path / name, **options)
        assert not copy.skipped, name
        assert [(e.id, e.question, e.context, e.answers, e.is_impossible) for e in copy.examples] == expected, name


NLI = """
[tasks.nli]
[tasks.nli.data]
format = { name = "parquet", text = ["premise", "hypothesis"], label = "label", batch_size = 7 }
train = "nli/train.parquet"
dev = "nli/dev.parquet"
classes = [0, 1]

[tasks.ner]
[tasks.ner.data]
format = { name = "parquet", words = "tokens", tags = "ner_tags" }
train = "ner/train.parquet"
dev = "ner/dev.parquet"
"""


def test_minbert_data_counts_a_parquet_tasks_rows(tmp_path, capsys):
    data = tmp_path / "data"
    for task in ("nli", "ner"):
        (data / task).mkdir(parents=True)
    pairs = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 2 if i != 30 else 2} for i in range(50)]
    pq.write_table(pa.Table.from_pylist(pairs), data / "nli" / "train.parquet", row_group_size=8)
    pq.write_table(pa.Table.from_pylist(pairs[:10]), data / "nli" / "dev.parquet")
    sentences = [{"tokens": ["EU", "rejects"], "ner_tags": ["I-ORG", "O"]},
                 {"tokens": ["Peter"], "ner_tags": ["I-PER"]}]
    pq.write_table(pa.Table.from_pylist(sentences), data / "ner" / "train.parquet")
    pq.write_table(pa.Table.from_pylist([*sentences, {"tokens": ["Paris"], "ner_tags": ["I-LOC"]}]),
                   data / "ner" / "dev.parquet")
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tmp_path, tasks=NLI)
    assert main(["data", "--config", str(config), "--data-dir", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nli/train.parquet"] == {"rows": 49, "skipped": [
        {"line": 0, "where": "row 31", "reason": "label '2' is not a class in 0..1"}]}
    assert report["nli/dev.parquet"] == {"rows": 10, "skipped": []}
    # the dev tags are checked against the label set of the train file (counted, not kept)
    assert report["ner/dev.parquet"]["rows"] == 2
    assert report["ner/dev.parquet"]["skipped"][0]["reason"] == (
        "ner_tags: tag 0 'I-LOC' is not in the label set read from the train file (O, B-ORG, I-ORG, B-PER, I-PER)")
