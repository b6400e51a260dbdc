"""Extra training data: other files' columns and label scales mapped onto a task, balanced and capped."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from minbert import Tokenizer
from minbert.errors import ConfigError
from minbert.training.config import load_config
from minbert.training.experiment import load_task_data


@pytest.fixture()
def data_with_extras(tmp_path, tiny_data_dir):
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    reviews = ["review,rating"] + [f"good film {i},{1 + i % 5}" for i in range(23)] + ["bad row,0", "no number,abc"]
    (data / "reviews.csv").write_text("\n".join(reviews) + "\n")
    pairs = ["sentence_A\tsentence_B\trelatedness_score", "a dog sat\ta cat sat\t1.0", "a man\ta man\t5.0",
             "the plot\tthe actor\t3.0"]
    (data / "sick.tsv").write_text("\n".join(pairs) + "\n")
    return data


def load(data_dir, tiny_model_dir, *overrides):
    config = load_config(None, [f"model.path={tiny_model_dir}", *overrides])
    return load_task_data(config, Tokenizer.from_pretrained(tiny_model_dir), str(data_dir), splits=("train", "dev"))


def test_ratings_map_onto_sentiment_classes(data_with_extras, tiny_model_dir, caplog):
    extra = ('tasks.sst.extra=[{file = "reviews.csv", format = { name = "tsv", delimiter = ",", '
             'text_columns = ["review"], label_column = "rating", label_offset = -1.0 }}]')
    with caplog.at_level("WARNING", logger="minbert"):
        data = load(data_with_extras, tiny_model_dir, "tasks.sst.data=sst", extra)
    train = data["sst"]["train"].examples
    added = [e for e in train if e.id.startswith("reviews:")]
    assert len(train) == 48 + 23 and len(added) == 23
    assert added[0].texts == ("good film 0",) and added[0].label == 0 and added[4].label == 4
    assert "reviews.csv:25: skipped row: rating '0 (mapped to -1)' is not a class in 0..4" in caplog.text
    assert "rating 'abc' is not a number" in caplog.text


def test_class_balanced_and_capped(data_with_extras, tiny_model_dir):
    extra = ('tasks.sst.extra=[{file = "reviews.csv", format = { name = "tsv", delimiter = ",", '
             'text_columns = ["review"], label_column = "rating", label_offset = -1.0 }, class_balanced = true}]')
    added = [e for e in load(data_with_extras, tiny_model_dir, "tasks.sst.data=sst", extra)["sst"]["train"].examples
             if e.id.startswith("reviews:")]
    assert Counter(e.label for e in added) == {0: 4, 1: 4, 2: 4, 3: 4, 4: 4}  # 23 rows: the smallest class has 4
    capped = extra.replace("class_balanced = true", "max_examples = 7")
    assert sum(e.id.startswith("reviews:") for e in
               load(data_with_extras, tiny_model_dir, "tasks.sst.data=sst", capped)["sst"]["train"].examples) == 7


def test_relatedness_maps_onto_similarity(data_with_extras, tiny_model_dir):
    extra = ('tasks.sts.extra=[{file = "sick.tsv", format = { name = "tsv", text_columns = ["sentence_A", '
             '"sentence_B"], label_column = "relatedness_score", label_offset = -1.0, label_scale = 1.25 }}]')
    data = load(data_with_extras, tiny_model_dir, "tasks.sts.data=sts", "tasks.sts.pair_encoding=siamese", extra)
    added = [e for e in data["sts"]["train"].examples if e.id.startswith("sick:")]
    assert [(e.texts, e.label) for e in added] == [(("a dog sat", "a cat sat"), 0.0), (("a man", "a man"), 5.0),
                                                   (("the plot", "the actor"), 2.5)]


def test_extra_data_config_errors():
    with pytest.raises(ConfigError, match=r"tasks.sts.extra\[0\].format.text_columns: sts takes 2 text column\(s\)"):
        load_config(None, ["tasks.sts.data=sts", 'tasks.sts.extra=[{file = "x", text_columns = ["a"], '
                           'label_column = "y"}]'])
    with pytest.raises(ConfigError, match="class_balanced: sts is not a classification task"):
        load_config(None, ["tasks.sts.data=sts", 'tasks.sts.extra=[{file = "x", text_columns = ["a", "b"], '
                           'label_column = "y", class_balanced = true}]'])
    with pytest.raises(ConfigError, match=r"tasks.sts.extra\[0\].format.label_column is required"):
        load_config(None, ["tasks.sts.data=sts", 'tasks.sts.extra=[{file = "x", format = { name = "tsv", '
                           'text_columns = ["a", "b"] }}]'])
    with pytest.raises(ConfigError, match=r"tasks.sts.extra\[0\].format = 'xml' is not a extra-data format"):
        load_config(None, ["tasks.sts.data=sts", 'tasks.sts.extra=[{file = "x", format = "xml"}]'])
    with pytest.raises(ConfigError, match=r"unknown key 'tasks.sst.extra\[0\].format.label_column'"):
        load_config(None, ["tasks.sst.data=sst", 'tasks.sst.extra=[{file = "x", format = { name = "sst_trees", '
                           'label_column = "y" }}]'])


def test_flat_format_keys_of_old_configs_move_into_the_format_table(caplog, monkeypatch):
    import minbert.training.config

    monkeypatch.setattr(minbert.training.config, "_warned", set())  # each key warns once per process
    old = ('tasks.sts.extra=[{file = "sick.tsv", text_columns = ["sentence_A", "sentence_B"], '
           'label_column = "relatedness_score", label_offset = -1.0, label_scale = 1.25}]')
    new = ('tasks.sts.extra=[{file = "sick.tsv", format = { name = "tsv", text_columns = ["sentence_A", '
           '"sentence_B"], label_column = "relatedness_score", label_offset = -1.0, label_scale = 1.25 }}]')
    with caplog.at_level("WARNING", logger="minbert"):
        migrated = load_config(None, ["tasks.sts.data=sts", old])
    assert migrated.tasks["sts"].extra == load_config(None, ["tasks.sts.data=sts", new]).tasks["sts"].extra
    assert "tasks.sts.extra[0].label_column is now an option of its format" in caplog.text
    # an old run directory records every flat key: the other format's defaults are dropped, not errors
    recorded = ('tasks.sst.extra=[{file = "t", format = "sst_trees", min_tokens = 3, text_columns = [], '
                'label_column = "", id_column = "", delimiter = "\t", label_offset = 0.0, label_scale = 1.0}]')
    trees = load_config(None, ["tasks.sst.data=sst", recorded]).tasks["sst"].extra[0].format
    assert (trees.name, trees.options.min_tokens) == ("sst_trees", 3)
    # a key of the other format that was set had no effect then: now it is an error, not ignored
    with pytest.raises(ConfigError, match=r"extra\[0\].min_tokens = 3 has no effect on format 'tsv'"):
        load_config(None, ["tasks.sst.data=sst", 'tasks.sst.extra=[{file = "x", min_tokens = 3, '
                           'text_columns = ["a"], label_column = "y"}]'])


def test_the_resolved_config_writes_the_format_table(tmp_path):
    from minbert.options import to_table

    config = load_config(None, ["tasks.sst.data=sst", 'tasks.sst.extra=[{file = "t", format = { name = '
                                '"sst_trees", min_tokens = 2 }}]'])
    table = to_table(config.tasks["sst"].extra[0])
    assert table["format"] == {"name": "sst_trees", "min_tokens": 2, "include_roots": False, "dedup": True}


def test_a_tsv_with_quoting_none_keeps_quotes_as_text(data_with_extras, tiny_model_dir):
    (data_with_extras / "quotes.tsv").write_text('text\tstars\n"a "great" film\t5\nit is "fine\t3\n')
    extra = ('tasks.sst.extra=[{file = "quotes.tsv", format = { name = "tsv", text_columns = ["text"], '
             'label_column = "stars", label_offset = -1.0, quoting = "none" }}]')
    added = [e for e in load(data_with_extras, tiny_model_dir, "tasks.sst.data=sst", extra)["sst"]["train"].examples
             if e.id.startswith("quotes:")]
    assert [(e.texts, e.label) for e in added] == [(('"a "great" film',), 4), (('it is "fine',), 2)]
