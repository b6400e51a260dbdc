"""The `tag` kind end to end on tiny CoNLL files the tests write (IOB1 with a B- tag where two entities of one type
touch, a 1,000-word sentence longer than the model's windows, -DOCSTART- lines): the spec needs no columns, train
-> best -> a CoNLL-layout prediction file with every token of the input in order, evaluate gives the recorded dev
entity F1 again, predict --input takes a CoNLL file, and a tag task trains beside a classification task."""

from __future__ import annotations

import json
import random
import tomllib
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.data.spec import DataSpec, check_spec
from minbert.errors import ConfigError
from minbert.options import build
from minbert.runs.run import evaluate_run
from minbert.tasks.kinds import kind_of
from minbert.tasks.kinds.tag import Tag
from minbert.training.config import load_config
from tests.conftest import WORDS, make_tiny_data_dir, write_tiny_config

ENTITY = {"cat": "PER", "dog": "PER", "python": "MISC", "guitar": "ORG"}  # a learnable signal: the word says it
NER = """
[tasks.ner]
[tasks.ner.data]
format = { name = "conll", scheme = "iob1" }
train = "ner/train.txt"
dev = "ner/dev.txt"
test = "ner/test.txt"
"""


def tagged(rng: random.Random, length: int) -> tuple[list[str], list[str]]:
    """IOB1: an entity word continues the entity before it (I-), and starts a new one with B- only when the word
    before is an entity of the same type (two entities of one type touching)."""
    words = [rng.choice(WORDS) for _ in range(length)]
    tags, previous = [], None
    for word in words:
        kind = ENTITY.get(word)
        tags.append("O" if kind is None else ("B-" if kind == previous else "I-") + kind)
        previous = kind
    return words, tags


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]], labelled: bool = True) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in sentences:
        lines += [f"{w} NN I-NP {t}" if labelled else f"{w} NN I-NP" for w, t in zip(words, tags, strict=True)]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def conll_words(path: Path) -> list[list[str]]:
    """The sentences of a CoNLL file (or a prediction file in its layout), first column only."""
    sentences: list[list[str]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if sentences[-1]:
                sentences.append([])
            continue
        sentences[-1].append(line.split()[0])
    return [s for s in sentences if s]


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory) -> Path:
    """The tiny CS224N files beside tiny CoNLL files under ner/."""
    rng = random.Random(0)
    directory = make_tiny_data_dir(tmp_path_factory.mktemp("ner-data"), n_train=24, n_dev=8)
    train = [tagged(rng, rng.randint(3, 9)) for _ in range(60)]
    train.append((["cat", "dog", "the"], ["I-PER", "B-PER", "O"]))  # IOB1's B-: two PER entities touch
    dev = [tagged(rng, rng.randint(3, 9)) for _ in range(10)]
    dev.insert(3, tagged(rng, 1000))  # far longer than max_length 32: windows, merged, never truncated
    write_conll(directory / "ner" / "train.txt", train)
    write_conll(directory / "ner" / "dev.txt", dev)
    write_conll(directory / "ner" / "test.txt", [tagged(rng, 5) for _ in range(4)], labelled=False)
    return directory


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, tiny_model_dir, ner_data) -> Path:
    out = tmp_path_factory.mktemp("ner-run")
    config = write_tiny_config(out / "ner.toml", out, tiny_model_dir, tasks=NER, train="epochs = 4\nlr = 3e-3")
    assert main(["train", "--config", str(config), "--data-dir", str(ner_data)]) == 0
    return out / "ner"


def test_a_conll_spec_needs_no_columns_and_takes_no_row_keys():
    table = {"format": {"name": "conll", "scheme": "iob1"}, "train": "t.txt", "dev": "d.txt"}
    spec = build(DataSpec, table, "tasks.ner.data")
    check_spec(spec, "tasks.ner.data")
    assert spec.primary_metric == "entity_f1"
    assert spec.metric_names == ["entity_f1", "entity_precision", "entity_recall", "token_accuracy"]
    with pytest.raises(ConfigError, match=r"^tasks\.ner\.data\.classes: a key of sentence rows; format 'conll'"):
        check_spec(build(DataSpec, {**table, "classes": ["O", "I-PER"]}, "tasks.ner.data"), "tasks.ner.data")
    with pytest.raises(ConfigError, match=r"^tasks\.ner\.data\.metrics = 'accuracy' is not a tagging metric"):
        check_spec(build(DataSpec, {**table, "metrics": ["accuracy"]}, "tasks.ner.data"), "tasks.ner.data")
    with pytest.raises(ConfigError, match=r"^tasks\.ner\.data\.format\.labels = \['I-PER'\]: the outside tag"):
        check_spec(build(DataSpec, {**table, "format": {"name": "conll", "labels": ["I-PER"]}}, "tasks.ner.data"),
                   "tasks.ner.data")


def test_data_check_reads_the_files_through_the_format_and_names_bad_lines(tmp_path, ner_data, capsys):
    """A dev tag outside the label set read from train is a bad row named by file and line."""
    data = tmp_path / "data"
    (data / "ner").mkdir(parents=True)
    (data / "ner" / "train.txt").write_text((ner_data / "ner" / "train.txt").read_text(encoding="utf-8"))
    (data / "ner" / "dev.txt").write_text("the NN O O\ncat NN O I-PER\n\nthe NN O O\nParis NN O I-LOC\n")
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tmp_path, tasks=NER)
    assert main(["data", "--config", str(config), "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "ner/dev.txt" in out and "1 rows loaded, 1 skipped" in out
    assert "line 5: tag 'I-LOC' is not in the label set read from the train file" in out


def test_a_tag_task_trains_and_writes_conll_predictions_of_every_token(ner_run, ner_data):
    assert (ner_run / "best" / "model.safetensors").is_file()
    assert isinstance(kind_of("ner", load_config(ner_run / "config.toml").tasks["ner"]), Tag)
    # the label set read from train is in the run's config: evaluate and predict read no train file
    labels = tomllib.loads((ner_run / "config.toml").read_text())["tasks"]["ner"]["data"]["format"]["labels"]
    assert labels == ["O", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    for split in ("dev", "test"):
        written = ner_run / "predictions" / f"ner-{split}-output.txt"
        assert conll_words(written) == conll_words(ner_data / "ner" / f"{split}.txt")  # every token, in order
        lines = written.read_text(encoding="utf-8").split("\n")
        tags = {line.split(" ")[1] for line in lines if line}
        assert all(len(line.split(" ")) == 2 for line in lines if line) and tags <= set(labels)
    assert max(len(s) for s in conll_words(ner_run / "predictions" / "ner-dev-output.txt")) == 1000
    final = json.loads((ner_run / "metrics.json").read_text())["final_dev"]["ner"]
    assert final["metric"] == "entity_f1"
    assert set(final["metrics"]) == {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}
    assert set(final["entity_scores"]) <= {"PER", "MISC", "ORG"} and final["entity_scores"]
    assert final["metrics"]["token_accuracy"] > 0.5


def test_evaluate_reproduces_the_recorded_dev_entity_f1(ner_run, ner_data):
    results = evaluate_run(ner_run, data_dir=str(ner_data), quiet=True)
    recorded = json.loads((ner_run / "metrics.json").read_text())["final_dev"]["ner"]
    assert results["ner"]["score"] == pytest.approx(recorded["score"], abs=1e-9)
    assert results["ner"]["metrics"] == pytest.approx(recorded["metrics"], abs=1e-9)


def test_predict_takes_a_conll_file_and_refuses_text(ner_run, ner_data, tmp_path, capsys):
    output = tmp_path / "tags.txt"
    source = ner_data / "ner" / "dev.txt"  # its tag column is not read
    assert main(["predict", "--run", str(ner_run), "--task", "ner", "--input", str(source), "--output",
                 str(output)]) == 0
    assert output.read_text() == (ner_run / "predictions" / "ner-dev-output.txt").read_text()
    assert main(["predict", "--run", str(ner_run), "--task", "ner", "--input", "-"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["minbert: error: task ner (token tagging) predicts a file in its data format 'conll': give "
                   "--input FILE (standard input is for sentence tasks), or --text"]  # --text: tests/test_cli_*


def test_a_tag_task_trains_beside_a_classification_task(tmp_path, tiny_model_dir, ner_data):
    tasks = '[tasks.sst]\ndata = "sst"\n' + NER
    config = write_tiny_config(tmp_path / "mix.toml", tmp_path, tiny_model_dir, tasks=tasks,
                               train='sampler = "proportional"')
    assert main(["train", "--config", str(config), "--data-dir", str(ner_data)]) == 0
    final = json.loads((tmp_path / "mix" / "metrics.json").read_text())["final_dev"]
    assert final["sst"]["metric"] == "accuracy" and final["ner"]["metric"] == "entity_f1"
    assert (tmp_path / "mix" / "predictions" / "ner-dev-output.txt").is_file()
    assert (tmp_path / "mix" / "predictions" / "sst-dev-output.csv").is_file()


def test_what_tag_does_not_take_yet_is_refused_with_one_line_before_any_work(ner_run):
    """Distillation refuses a tag task, naming it and its kind (ensembles take it: tests/runs/test_tag_ensemble.py;
    tune splits: tests/runs/test_tag_tune_split.py; serve and the ONNX export: tests/serving/test_tag_api.py,
    tests/export/test_onnx_tag.py)."""
    from minbert.runs.teachers import check_teachers

    line = r"^task ner is a token tagging task \(kind 'tag'\): {} cannot take it yet$"
    config = load_config(ner_run / "config.toml", [f'tasks.ner.teacher="{ner_run}"'])
    with pytest.raises(ConfigError, match=line.format("distillation")):
        check_teachers(config)


def test_the_shipped_conll2003_config_checks_the_real_files(data_dir, capsys):
    """configs/kinds/conll2003.toml: a tag task; every sentence of the release is read, none skipped."""
    from tests.conftest import REPO

    if not (data_dir / "conll2003" / "train.txt").is_file():
        pytest.skip("conll2003 is not in the data directory")
    config = REPO / "configs" / "kinds" / "conll2003.toml"
    assert isinstance(kind_of("ner", load_config(config).tasks["ner"]), Tag)
    assert main(["data", "--config", str(config), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    for name, rows in (("train", "14,041"), ("dev", "3,250"), ("test", "3,453")):
        assert f"conll2003/{name}.txt" in out and f"{rows} rows loaded, 0 skipped" in out
