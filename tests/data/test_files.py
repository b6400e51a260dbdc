"""Data readers: every defect is reported with file:line and reason, skipped (or fatal with strict)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.data.files import read_examples
from minbert.data.spec import FORMATS, KNOWN_FILES, resolve_data_dir
from minbert.errors import DataError
from tests.conftest import write_tsv

SST_HEADER = ["", "id", "sentence", "sentiment"]


def sst_file(tmp_path, rows):
    return write_tsv(tmp_path / "sst.csv", SST_HEADER, rows)


def test_reads_good_rows_with_line_numbers(tmp_path):
    loaded = read_examples(sst_file(tmp_path, [[0, "a", " Fine film . ", 3], [1, "b", "Bad", "0.0"]]), FORMATS["sst"])
    assert [(e.id, e.texts, e.label, e.line) for e in loaded.examples] == [("a", ("Fine film .",), 3, 2),
                                                                         ("b", ("Bad",), 0, 3)]
    assert loaded.skipped == []


@pytest.mark.parametrize(("row", "reason"), [
    ([0, "a", "", 3], "empty sentence"),
    ([0, "a", "text", 5], "sentiment '5' is not a class in 0..4"),
    ([0, "a", "text", "2.5"], "sentiment '2.5' is not a class in 0..4"),
    ([0, "a", "text", "great"], "sentiment 'great' is not a number"),
    ([0, "a", "text", ""], "empty sentiment (no label)"),
    ([0, "a", "text", "nan"], "sentiment 'nan' is not a finite number"),
    ([0, "", "text", 1], "empty id"),
    ([0, "a", "text", 1, "extra"], "5 fields, the header has 4"),
])
def test_each_row_defect_is_reported_and_skipped(tmp_path, caplog, row, reason):
    path = sst_file(tmp_path, [[9, "ok", "good", 4], row, [10, "ok2", "fine", 2]])
    with caplog.at_level(logging.WARNING, logger="minbert"):
        loaded = read_examples(path, FORMATS["sst"])
    assert [e.id for e in loaded.examples] == ["ok", "ok2"]  # the rest is kept, nothing invented
    assert [(s.line, s.reason) for s in loaded.skipped] == [(3, reason)]
    assert f"{path}:3: skipped row: {reason}" in caplog.text
    with pytest.raises(DataError, match=re.escape(f"{path}:3: {reason}")):
        read_examples(path, FORMATS["sst"], strict=True)


def test_score_range_and_pair_columns(tmp_path):
    path = write_tsv(tmp_path / "sts.csv", ["", "id", "sentence1", "sentence2", "similarity"],
                     [[0, "a", "x", "y", 4.6], [1, "b", "x", "", 1.0], [2, "c", "x", "y", 5.5]])
    loaded = read_examples(path, FORMATS["sts"])
    assert [e.label for e in loaded.examples] == [4.6]
    assert [(s.line, s.reason) for s in loaded.skipped] == [(3, "empty sentence2"),
                                                            (4, "similarity '5.5' is outside 0..5")]


def test_non_utf8_bytes_skip_only_their_row(tmp_path):
    path = tmp_path / "sst.csv"
    path.write_bytes(b"\tid\tsentence\tsentiment\n0\ta\tgood\t3\n1\tb\tcaf\xe9 \xff\t2\n2\tc\tfine\t1\n")
    loaded = read_examples(path, FORMATS["sst"])
    assert [e.id for e in loaded.examples] == ["a", "c"]
    assert [(s.line, s.reason) for s in loaded.skipped] == [(3, "non-UTF-8 bytes in sentence")]


def test_an_unbalanced_quote_costs_its_own_line_only(tmp_path):
    path = tmp_path / "sst.csv"
    path.write_text('\tid\tsentence\tsentiment\n0\ta\t"open quote\t3\n1\tb\tnext" row\t2\n2\tc\tfine\t1\n')
    loaded = read_examples(path, FORMATS["sst"])
    assert [(e.id, e.texts) for e in loaded.examples] == [("b", ('next" row',)), ("c", ("fine",))]  # a quote inside
    assert [(s.line, s.reason) for s in loaded.skipped] == [  # a field is text
        (2, "unbalanced quote (a quoted field must close on its own line)")]


def test_missing_column_and_empty_file(tmp_path):
    path = write_tsv(tmp_path / "sst.csv", ["", "id", "text", "sentiment"], [[0, "a", "x", 1]])
    with pytest.raises(DataError, match=r"sst.csv:1: missing column 'sentence' \(header has '', 'id', 'text'"):
        read_examples(path, FORMATS["sst"])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        read_examples(tmp_path / "empty.csv", FORMATS["sst"])
    with pytest.raises(DataError, match="nope.csv: cannot read"):
        read_examples(tmp_path / "nope.csv", FORMATS["sst"])


def test_test_files_need_no_label_and_find_columns_by_name(tmp_path):
    path = write_tsv(tmp_path / "t.csv", ["0", "", "id", "sentence"], [[1, "0.0", "x1", "A film ."]])
    loaded = read_examples(path, FORMATS["sst"], labelled=False)
    assert [(e.id, e.texts, e.label) for e in loaded.examples] == [("x1", ("A film .",), None)]


def test_real_quora_train_has_exactly_two_bad_rows(data_dir):
    loaded = read_examples(data_dir / "quora-train.csv", FORMATS["quora"])
    assert len(loaded.examples) == 15212
    assert [(s.line, s.reason) for s in loaded.skipped] == [(8325, "empty is_duplicate (no label)"),
                                                            (10648, "empty sentence2")]


def test_every_real_file_loads(data_dir):
    for (kind, split), name in KNOWN_FILES.items():
        loaded = read_examples(data_dir / name, FORMATS[kind], labelled=split != "test")
        assert loaded.examples, name
        assert name == "quora-train.csv" or not loaded.skipped, name


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    flag, env, local = tmp_path / "flag", tmp_path / "env", tmp_path / "cwd" / "data"
    for d in (flag, env, local):
        d.mkdir(parents=True)
    (local / "ids-sst-dev.csv").write_text("x")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("MINBERT_DATA", str(env))
    assert resolve_data_dir(flag) == flag
    assert resolve_data_dir() == env
    monkeypatch.delenv("MINBERT_DATA")
    assert resolve_data_dir().resolve() == local.resolve()
    with pytest.raises(DataError, match="--data-dir .*missing: no such directory"):
        resolve_data_dir(tmp_path / "missing")
    monkeypatch.setenv("MINBERT_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataError, match="MINBERT_DATA=.*gone: no such directory"):
        resolve_data_dir()


def test_no_data_directory_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINBERT_DATA", raising=False)
    monkeypatch.setattr("minbert.data.spec._repo_root", lambda: tmp_path / "repo")
    with pytest.raises(DataError, match=r"no data directory found; looked in: --data-dir \(not given\), "
                                        r"\$MINBERT_DATA \(not set\), data, ../shared/data"):
        resolve_data_dir()
    assert resolve_data_dir(needed=False) == Path()  # every task reads a Hub data set: nothing to look for


def test_data_command_json_report(tmp_path, capsys):
    write_tsv(tmp_path / "ids-sst-dev.csv", SST_HEADER, [[0, "a", "good", 3], [1, "b", "bad", 9]])
    assert main(["data", "--data-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"ids-sst-dev.csv": {"rows": 1, "skipped": [{"line": 3, "reason":
                                                                   "sentiment '9' is not a class in 0..4"}]}}
    assert main(["data", "--data-dir", str(tmp_path)]) == 0
    assert "line 3: sentiment '9' is not a class in 0..4" in capsys.readouterr().out


def test_blank_lines_keep_line_numbers_right(tmp_path):
    path = tmp_path / "sst.csv"
    path.write_text("\tid\tsentence\tsentiment\n0\ta\tgood\t3\n\n\n1\tb\t\t2\r\n2\tc\tfine\t1\n")
    loaded = read_examples(path, FORMATS["sst"])
    assert [(e.id, e.line) for e in loaded.examples] == [("a", 2), ("c", 6)]
    assert [(s.line, s.reason) for s in loaded.skipped] == [(5, "empty sentence")]
