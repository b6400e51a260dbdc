"""Data specs: the built-ins read as they always were, GLUE's raw files, and every bad spec named by its key."""

from __future__ import annotations

import pytest

from minbert.data.files import FileFormat, parse_examples, read_examples
from minbert.data.spec import FORMATS, DataSpec, builtin_specs, check_spec, resolve_spec
from minbert.errors import ConfigError
from minbert.training.config import load_config


def test_the_builtins_are_the_formats_minbert_always_read():
    """builtin_tasks.toml reproduces the hand-written formats of before (columns, labels, ids, files)."""
    assert FORMATS["sst"] == FileFormat(("sentence",), "sentiment", num_classes=5)
    assert FORMATS["cfimdb"] == FileFormat(("sentence",), "sentiment", num_classes=2)
    assert FORMATS["quora"] == FileFormat(("sentence1", "sentence2"), "is_duplicate", num_classes=2)
    assert FORMATS["sts"] == FileFormat(("sentence1", "sentence2"), "similarity", score_range=(0.0, 5.0))
    specs = builtin_specs()
    assert [specs[n].train for n in specs] == ["ids-sst-train.csv", "ids-cfimdb-train.csv", "quora-train.csv",
                                              "sts-train.csv"]
    assert specs["quora"].prediction_path("para", "dev") == "para-dev-output.csv"
    assert specs["sts"].prediction_header() == "Predicted_Similiarity"


def test_a_data_table_in_a_config_is_a_spec(tmp_path):
    config = tmp_path / "rte.toml"
    config.write_text('[tasks.rte]\ndata = { train = "t.tsv", dev = "d.tsv", text = ["s1", "s2"], label = "label", '
                      'classes = ["not_entailment", "entailment"], metrics = ["accuracy", "f1"] }\n')
    loaded = load_config(config)
    spec = loaded.tasks["rte"].data
    assert isinstance(spec, DataSpec) and spec.is_pair and spec.positive_index == 1
    # and so is one set by overrides
    overridden = load_config(None, ['tasks.rte.data={train = "t.tsv", dev = "d.tsv", text = ["s1", "s2"], '
                                    'label = "label", classes = ["a", "b"]}', "tasks.rte.data.dev=other.tsv"])
    assert overridden.tasks["rte"].data.dev == "other.tsv"
    # the resolved config round-trips through its TOML
    (tmp_path / "again.toml").write_text(loaded.to_toml())
    assert load_config(tmp_path / "again.toml").tasks["rte"].data == spec


GOOD = {"train": "t.tsv", "dev": "d.tsv", "text": ["a"], "label": "y", "classes": ["x", "z"]}


@pytest.mark.parametrize(("change", "message"), [
    ({"classes": [], "score_range": []}, "declare either `classes`"),
    ({"score_range": [0, 1]}, "declare either `classes`"),
    ({"classes": ["x"]}, "at least two classes"),
    ({"classes": ["x", "x"]}, "declared twice"),
    ({"text": ["a", "b", "c"]}, "one column (single sentences) or two"),
    ({"label": ""}, "tasks.t.data.label: the label column is required"),
    ({"dev": ""}, "tasks.t.data.dev: name a dev file, or set dev_share"),
    ({"train": ""}, "tasks.t.data.train: a file is required"),
    ({"metrics": ["pearson"]}, "tasks.t.data.metrics: 'pearson' is a regression metric; this spec is classification"),
    ({"metrics": ["f1"], "classes": ["a", "b", "c"]}, "'f1' needs two classes; this spec has 3"),
    ({"metrics": ["bleu"]}, "tasks.t.data.metrics = 'bleu' is not a metric: one of accuracy, f1"),
    ({"positive": "q"}, "tasks.t.data.positive = 'q' is not one of the classes"),
    ({"class_names": ["one"]}, "1 names for 2 classes"),
    ({"delimiter": ";;"}, "one character"),
    ({"prediction_file": "../x"}, "tasks.t.data.prediction_file = '../x': a name is 1 to 64"),
    # a column has one role: the model must never read the label, and ids must name rows
    ({"text": ["y"]}, "tasks.t.data.text = ['y'] holds the label column 'y': the model would read its answer"),
    ({"text": ["a", "y"]}, "tasks.t.data.text = ['a', 'y'] holds the label column 'y'"),
    ({"text": ["a", "a"]}, "tasks.t.data.text = ['a', 'a'] names column 'a' twice"),
    ({"id": "y"}, "tasks.t.data.id = 'y' is the label column"),
    ({"id": "a"}, "tasks.t.data.id = 'a' is a text column"),
])
def test_every_bad_spec_is_named_by_its_key(change, message):
    spec = DataSpec(**{**GOOD, **change})
    with pytest.raises(ConfigError) as error:
        check_spec(spec, "tasks.t.data")
    assert message in str(error.value)


@pytest.mark.parametrize("command", ["data", "train"])
def test_a_label_read_as_text_is_refused_by_data_and_train(command, tmp_path, tiny_model_dir, tiny_data_dir,
                                                           capsys):
    """The pair's second text is the label column: one line before any file is read or written."""
    from minbert.cli import main

    config = tmp_path / "c.toml"
    config.write_text(f'output_dir = "{tmp_path / "runs"}"\n[model]\npath = "{tiny_model_dir}"\n'
                      '[tasks.para.data]\ntrain = "quora-train.csv"\n'
                      'dev = "quora-dev.csv"\ntext = ["sentence1", "is_duplicate"]\nlabel = "is_duplicate"\n'
                      "classes = [0, 1]\n")
    assert main([command, "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("minbert: error: tasks.para.data.text = ['sentence1', 'is_duplicate'] holds the label column "
                   "'is_duplicate': the model would read its answer")
    assert not (tmp_path / "runs").exists()


def test_regression_metrics_on_a_score_range_and_unknown_builtins():
    check_spec(DataSpec(train="t", dev="d", text=["a", "b"], label="y", score_range=[1, 5],
                        metrics=["spearman", "pearson"]), "w")
    with pytest.raises(ConfigError, match="tasks.x.data = 'imdb' is not one of sst, cfimdb, quora, sts"):
        resolve_spec("imdb", "tasks.x.data")
    with pytest.raises(ConfigError, match="'accuracy' is a classification metric; this spec is regression"):
        check_spec(DataSpec(train="t", dev="d", text=["a"], label="y", score_range=[0, 1], metrics=["accuracy"]),
                   "w")


def test_a_misspelt_spec_key_is_named_with_the_nearest(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[tasks.t.data]\ntrain = "t"\ndev = "d"\ntext = ["a"]\nlabel = "y"\nclases = ["a", "b"]\n')
    with pytest.raises(ConfigError, match="unknown key 'tasks.t.data.clases'; did you mean 'classes'"):
        load_config(config)


def test_string_classes_read_by_name_and_an_undeclared_label_is_a_bad_row(tmp_path):
    fmt = DataSpec(train="t", dev="d", text=["s"], label="y", classes=["no", "yes"], delimiter=";").file_format()
    raw = "\ufeffs;y\r\nfine film;yes\r\nbad film;no\r\nodd film;maybe\r\n".encode()
    loaded = parse_examples(raw, tmp_path / "f.csv", fmt)
    assert [(e.texts, e.label, e.id) for e in loaded.examples] == [(("fine film",), 1, "f:2"),
                                                                   (("bad film",), 0, "f:3")]
    assert [(s.line, s.reason) for s in loaded.skipped] == [(4, "y 'maybe' is not a declared class (no, yes)")]
    numbers = DataSpec(train="t", dev="d", text=["s"], label="y", classes=[1, 5]).file_format()
    loaded = parse_examples(b"s\ty\na\t5.0\nb\t1\nc\t3\n", tmp_path / "n.tsv", numbers)
    assert [e.label for e in loaded.examples] == [1, 0] and loaded.skipped[0].line == 4


def test_a_missing_column_names_the_file(tmp_path):
    fmt = DataSpec(train="t", dev="d", text=["s1", "s2"], label="y", classes=[0, 1]).file_format()
    (tmp_path / "x.tsv").write_text("s1\ty\na\t1\n")
    with pytest.raises(Exception, match=r"x.tsv:1: missing column 's2'"):
        read_examples(tmp_path / "x.tsv", fmt)


def test_mrpc_as_glue_ships_it(data_dir):
    """With quoting off every one of its 3,067 rows loads; with csv quoting the rows it cannot read are reported by
    line, and none is silently merged into another (every line is a row or a report)."""
    path = data_dir / "glue" / "mrpc-train.tsv"
    if not path.exists():
        pytest.skip("no glue/ in this data directory")
    spec = DataSpec(train="t", dev="d", text=["#1 String", "#2 String"], label="Quality", classes=[0, 1],
                    quoting="none")
    loaded = read_examples(path, spec.file_format())
    assert len(loaded.examples) == 3067 and not loaded.skipped
    lines = path.read_bytes().count(b"\n")
    with_csv = read_examples(path, DataSpec(**{**spec.__dict__, "quoting": "csv"}).file_format())
    assert with_csv.skipped and len(with_csv.examples) + len(with_csv.skipped) == lines - 1 == 3067
    # a quote that swallows the tabs after it leaves the second sentence empty: reported, not merged away
    assert all("quote" in s.reason or s.reason == "empty #2 String" for s in with_csv.skipped)
    by_line = {e.line: e for e in loaded.examples}
    for example in with_csv.examples:  # what csv quoting reads is what plain reading reads, line for line
        assert by_line[example.line].texts == example.texts or '"' in "".join(by_line[example.line].texts)
