"""Hub data sets in a data spec (`hub`, `subset`, `revision`; train/dev/test name splits), offline, against a Hub
cache built in a temporary directory in huggingface_hub's own layout (datasets--org--name/{blobs,refs,snapshots}):
GLUE's MRPC written as the Hub keeps it (Parquet files under mrpc/, a README card with `configs:`, the label a
ClassLabel) from shared/data's TSV files, read by name and by commit with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.data_copies import MRPC_NAMES, glue_files, mrpc_rows
from bench.data_copies import write_mrpc_parquet as write_parquet
from minbert.cli import main
from minbert.data.assembly import TaskSource, read_split
from minbert.data.spec import DataSpec, check_spec
from minbert.errors import ConfigError, DataError
from minbert.options import build
from minbert.runs.run import evaluate_run
from tests.conftest import REPO, write_tiny_config
from tests.faults import run_with_fault
from tests.hub import add_snapshot, repo_folder, set_ref, use_cache

NAME = "minbert-test/glue"
MAIN = "c" * 40  # refs/main: all of MRPC
OLDER = "d" * 40  # an older commit (tag v1): MRPC's first 10 train rows
CONVERTED = "e" * 40  # refs/convert/parquet of a data set whose own files are CSV
TEXT = {"text": ["sentence1", "sentence2"], "label": "label"}


@pytest.fixture()
def glue(data_dir, tmp_path, monkeypatch):
    """HF_HUB_CACHE holding NAME at MAIN (all of MRPC) and OLDER (tag v1), HF_HUB_OFFLINE=1. Returns the cache."""
    cache = tmp_path / "hub"
    repo = repo_folder(cache, NAME, "dataset")
    train, dev = mrpc_rows(data_dir / "glue" / "mrpc-train.tsv"), mrpc_rows(data_dir / "glue" / "mrpc-dev.tsv")
    add_snapshot(repo, MAIN, glue_files(tmp_path / "main", train, dev))
    add_snapshot(repo, OLDER, glue_files(tmp_path / "older", train[:10], dev[:5]))
    set_ref(repo, "main", MAIN)
    set_ref(repo, "v1", OLDER)
    use_cache(monkeypatch, cache)
    return cache


def hub_spec(**keys) -> DataSpec:
    """A Hub spec as a config's table builds it (checked: pinned to a commit)."""
    spec = build(DataSpec, {"hub": NAME, "subset": "mrpc", **TEXT, **keys}, "tasks.mrpc.data")
    check_spec(spec, "tasks.mrpc.data")
    return spec


def rows(spec: DataSpec, split: str, directory: Path = Path(".")) -> list[tuple]:
    """The split's rows through data.assembly (what a run reads): (texts, label index)."""
    source = TaskSource("mrpc", spec, {"train": spec.train, "dev": spec.dev, "test": spec.test},
                        lambda examples: np.zeros(len(examples)), lambda examples: None)
    return [(e.texts, e.label) for e in read_split(source, split, directory).examples]


def test_by_name_the_rows_are_the_tsv_specs(glue, data_dir):
    """Read by name at main, the Hub copy gives what the TSV spec of configs/glue/mrpc.toml gives: the same texts,
    labels and order; the ClassLabel's names are the classes, and the spec now names the commit it read."""
    spec = hub_spec()
    assert (spec.revision, spec.train, spec.dev, spec.format.name) == (MAIN, "train", "validation", "parquet")
    assert spec.classes == MRPC_NAMES and spec.num_classes == 2
    table = tomllib.loads((REPO / "configs" / "glue" / "mrpc.toml").read_text())["tasks"]["mrpc"]["data"]
    tsv = build(DataSpec, table, "mrpc")
    check_spec(tsv, "mrpc")
    for split in ("train", "dev"):
        expected = rows(tsv, split, data_dir)
        assert rows(spec, split) == expected and len(expected) == {"train": 3067, "dev": 398}[split]
    test = hub_spec(test="test")
    source = TaskSource("mrpc", test, {"test": "test"}, None, None)
    assert [e.label for e in read_split(source, "test", Path(".")).examples] == [None] * 398


def test_by_commit_and_by_tag(glue):
    """A commit or a tag reads its own snapshot; a spec pinned to a commit keeps reading it after main moves."""
    for revision in (OLDER, "v1"):
        spec = hub_spec(revision=revision)
        assert spec.revision == OLDER and len(rows(spec, "train")) == 10
    pinned = hub_spec()
    set_ref(repo_folder(glue, NAME, "dataset"), "main", OLDER)  # main moves on
    assert pinned.revision == MAIN and len(rows(pinned, "train")) == 3067


def test_the_conventional_layout_without_a_card(tmp_path, monkeypatch):
    """No card: data/{split}-* holds the splits; a split whose numbered shards are not all cached is refused."""
    files = tmp_path / "files"
    write_parquet(files / "data" / "train-00000-of-00002.parquet", [("a b", "c", 0), ("d", "e f", 1)])
    write_parquet(files / "data" / "train-00001-of-00002.parquet", [("g", "h", 1)])
    write_parquet(files / "data" / "validation-00000-of-00001.parquet", [("i", "j", 0), ("k", "l", 1)])
    cache = tmp_path / "hub"
    repo = repo_folder(cache, "minbert-test/plain", "dataset")
    add_snapshot(repo, MAIN, files)
    set_ref(repo, "main", MAIN)
    use_cache(monkeypatch, cache)
    spec = build(DataSpec, {"hub": "minbert-test/plain", **TEXT}, "tasks.p.data")
    check_spec(spec, "tasks.p.data")
    assert rows(spec, "train") == [(("a b", "c"), 0), (("d", "e f"), 1), (("g", "h"), 1)]
    assert spec.classes == MRPC_NAMES
    (repo / "snapshots" / MAIN / "data" / "train-00001-of-00002.parquet").unlink()
    spec = build(DataSpec, {"hub": "minbert-test/plain", "revision": MAIN, **TEXT}, "tasks.p.data")
    with pytest.raises(DataError, match=r"split 'train' has only 1 of its 2 shards in the Hugging Face cache"):
        check_spec(spec, "tasks.p.data")


def test_csv_files_are_read_from_the_parquet_conversion(tmp_path, monkeypatch):
    """A card whose files are CSV: the refs/convert/parquet branch's copy is read, and its commit recorded; without
    that branch, the split is refused as not Parquet."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                     "    path: train.csv\n  - split: validation\n    path: dev.csv\n---\n")
    (files / "train.csv").write_text("sentence1,sentence2,label\na,b,0\n")
    (files / "dev.csv").write_text("sentence1,sentence2,label\nc,d,1\n")
    cache = tmp_path / "hub"
    repo = repo_folder(cache, "minbert-test/csv", "dataset")
    add_snapshot(repo, MAIN, files)
    set_ref(repo, "main", MAIN)
    use_cache(monkeypatch, cache)
    table = {"hub": "minbert-test/csv", **TEXT}
    with pytest.raises(DataError, match=r"split 'train' is not Parquet \(train.csv\); minbert reads a Hub data "
                                        "set's Parquet files only"):
        check_spec(build(DataSpec, table, "tasks.c.data"), "tasks.c.data")
    converted = tmp_path / "converted"
    write_parquet(converted / "default" / "train" / "0000.parquet", [("a", "b", 0)])
    write_parquet(converted / "default" / "validation" / "0000.parquet", [("c", "d", 1)])
    add_snapshot(repo, CONVERTED, converted)
    set_ref(repo, "refs/convert/parquet", CONVERTED)
    spec = build(DataSpec, table, "tasks.c.data")
    check_spec(spec, "tasks.c.data")
    assert spec.revision == CONVERTED and rows(spec, "dev") == [(("c", "d"), 1)]
    again = build(DataSpec, {**table, "revision": CONVERTED}, "tasks.c.data")  # as a resumed run reads it
    check_spec(again, "tasks.c.data")
    assert rows(again, "train") == [(("a", "b"), 0)]


def test_tag_rows_take_their_tag_names_from_the_classlabel(tmp_path, monkeypatch):
    """CoNLL-2003 as the Hub keeps it (tokens, and ner_tags as integers of a list of ClassLabels): a tag spec of the
    parquet format's fields reads each sentence's tags by their names."""
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = {"tokens": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
                "ner_tags": {"feature": {"names": names, "_type": "ClassLabel"}, "_type": "Sequence"}}
    files = tmp_path / "files"
    splits = {"train": [(["Ann", "met", "Bob"], [2, 0, 2])], "validation": [(["in", "Rome"], [0, 4])]}
    for split, sentences in splits.items():
        table = pa.table({"tokens": [s[0] for s in sentences], "ner_tags": [s[1] for s in sentences]})
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
        (files / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, files / "data" / f"{split}-00000-of-00001.parquet")
    cache = tmp_path / "hub"
    repo = repo_folder(cache, "minbert-test/conll", "dataset")
    add_snapshot(repo, MAIN, files)
    set_ref(repo, "main", MAIN)
    use_cache(monkeypatch, cache)
    spec = build(DataSpec, {"hub": "minbert-test/conll", "format": {"name": "parquet", "words": "tokens",
                                                                    "tags": "ner_tags"}}, "tasks.ner.data")
    check_spec(spec, "tasks.ner.data")
    source = TaskSource("ner", spec, {"train": spec.train, "dev": spec.dev}, None, None)
    train = read_split(source, "train", Path(".")).examples
    assert [(e.words, e.tags) for e in train] == [(("Ann", "met", "Bob"), ("I-PER", "O", "I-PER"))]
    dev = read_split(source, "dev", Path(".")).examples
    assert [e.tags for e in dev] == [("O", "I-LOC")]


@pytest.mark.parametrize(("keys", "error", "message"), [
    ({"hub": "minbert-test/not-cached"}, DataError,
     "tasks.mrpc.data: minbert-test/not-cached: not in the Hugging Face cache ({cache}); HF_HUB_OFFLINE is set. "
     "Fetch it once where the Hub is reachable (`hf download minbert-test/not-cached --repo-type dataset`"),
    ({"revision": "f" * 40}, DataError, f"minbert-test/glue: not in the Hugging Face cache ({{cache}}) at revision "
                                        f"{'f' * 40}; HF_HUB_OFFLINE is set"),
    ({"subset": "cola"}, ConfigError, "tasks.mrpc.data.subset = 'cola': minbert-test/glue has no such subset; "
                                      "its subsets: mrpc, rte"),
    ({"subset": ""}, ConfigError, "tasks.mrpc.data.subset: minbert-test/glue has 2 subsets and none is its "
                                  "default: name one (mrpc, rte)"),
    ({"dev": "validatoin"}, ConfigError, f"tasks.mrpc.data: minbert-test/glue (subset mrpc) at commit {MAIN} has no "
                                         "split 'validatoin'; its splits: train, validation, test"),
    ({"hub": "", "revision": "main", "train": "a.tsv", "dev": "b.tsv"}, ConfigError,
     "tasks.mrpc.data.subset: a key of Hub data sets; name the data set with hub = \"org/name\""),
    ({"hub": "not a name"}, ConfigError, "tasks.mrpc.data.hub = 'not a name': not a Hub data set name"),
    ({"format": {"name": "conll"}}, ConfigError, "tasks.mrpc.data.format = 'conll': a Hub data set is read from "
                                                 "its Parquet files"),
])
def test_each_error_is_one_line_with_its_fix(glue, keys, error, message):
    table = {"hub": NAME, "subset": "mrpc", **TEXT, **keys}
    if "format" in keys:
        table = {k: v for k, v in table.items() if k not in TEXT}
    with pytest.raises(error) as raised:
        check_spec(build(DataSpec, table, "tasks.mrpc.data"), "tasks.mrpc.data")
    text = str(raised.value)
    assert message.format(cache=glue) in text and "\n" not in text


class FakeHub(BaseHTTPRequestHandler):
    """The Hub's answers to a missing repository, a missing revision and a gated one, by their error codes."""

    def do_GET(self):
        code = ("GatedRepo" if "gated" in self.path else "RevisionNotFound" if "no-such-branch" in self.path
                else "RepoNotFound")
        self.send_response(403 if code == "GatedRepo" else 404)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"error": code}).encode())

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_hub(glue, monkeypatch):
    """A Hub endpoint on loopback that answers with huggingface_hub's error codes, HF_HUB_OFFLINE off."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    use_cache(monkeypatch, glue, offline=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield
    server.shutdown()


@pytest.mark.parametrize(("keys", "message"), [
    ({"hub": "minbert-test/no-such-set"}, "tasks.mrpc.data: minbert-test/no-such-set: no such data set on the "
                                          "Hugging Face Hub (or it is private: log in with `hf auth login`, or set "
                                          "HF_TOKEN)"),
    ({"revision": "no-such-branch"}, "tasks.mrpc.data: minbert-test/glue: the Hugging Face Hub has no revision "
                                     "'no-such-branch' of it"),
    ({"hub": "minbert-test/gated"}, "tasks.mrpc.data: minbert-test/gated: a gated data set on the Hugging Face Hub: "
                                    "accept its terms on the Hub and log in (`hf auth login`, or set HF_TOKEN)"),
])
def test_the_hubs_refusals_are_one_line_each(fake_hub, keys, message):
    with pytest.raises(DataError) as raised:
        check_spec(build(DataSpec, {"hub": NAME, "subset": "mrpc", **TEXT, **keys}, "tasks.mrpc.data"),
                   "tasks.mrpc.data")
    assert str(raised.value) == message


def test_the_cli_says_an_unknown_split_in_one_line(glue, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'[tasks.mrpc.data]\nhub = "{NAME}"\nsubset = "mrpc"\ndev = "dev"\ntext = ["sentence1", '
                      '"sentence2"]\nlabel = "label"\n')
    assert main(["train", "--config", str(config)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no split 'dev'; its splits: train, validation, test" in err
    assert not (tmp_path / "runs").exists()


HUB_TASK = f"""[tasks.mrpc.data]
hub = "{NAME}"
subset = "mrpc"
text = ["sentence1", "sentence2"]
label = "label"
"""


def test_a_run_records_the_commit_and_resumes_and_evaluates_offline(glue, tiny_model_dir, tmp_path):
    """A run from the Hub spec, stopped by SIGINT after step 3, records the commit main was at; main then moves on
    to a commit of 10 rows, and the resumed run and `evaluate` still read the commit the run started from, offline."""
    config = write_tiny_config(tmp_path / "run.toml", tmp_path, tiny_model_dir, tasks=HUB_TASK,
                               train="epochs = 2\nbatch_size = 8\ncheckpoint_every = 2\nmax_train_examples = 48\n"
                                     "max_eval_examples = 32")
    env = {"HF_HUB_CACHE": str(glue), "HF_HUB_OFFLINE": "1"}
    data = tmp_path / "no-data"  # the rows come from the Hub cache; the data directory holds nothing
    data.mkdir()
    stopped = run_with_fault("signal@step-3:SIGINT", "train", "--config", str(config), "--data-dir", str(data),
                             "name=from-hub", env=env)
    assert stopped.returncode == 130, stopped.stderr
    run = tmp_path / "from-hub"
    recorded = tomllib.loads((run / "config.toml").read_text())["tasks"]["mrpc"]["data"]
    assert (recorded["hub"], recorded["revision"], recorded["classes"]) == (NAME, MAIN, MRPC_NAMES)
    set_ref(repo_folder(glue, NAME, "dataset"), "main", OLDER)  # main moves on; the run must not follow it
    resumed = subprocess.run([sys.executable, "-m", "minbert", "train", "--resume", str(run), "--data-dir", str(data)],
                             env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, cwd=REPO, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_from"]["step"] == 3 and metrics["final_dev"]["mrpc"]
    assert evaluate_run(run, data_dir=str(data), quiet=True)["mrpc"]["score"] == pytest.approx(
        metrics["final_dev"]["mrpc"]["score"])


def test_minbert_data_checks_the_hub_splits(glue, tmp_path, capsys, monkeypatch):
    """... with no data directory anywhere: a config whose tasks all read Hub data sets needs none."""
    config = tmp_path / "run.toml"
    config.write_text(HUB_TASK + 'test = "test"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINBERT_DATA", raising=False)
    monkeypatch.setattr("minbert.data.spec._repo_root", lambda: tmp_path / "repo")
    assert main(["data", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {name: entry["rows"] for name, entry in report.items()} == {
        f"{NAME}:train": 3067, f"{NAME}:validation": 398, f"{NAME}:test": 398}
