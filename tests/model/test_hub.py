"""Hugging Face Hub names for `model.path`, offline, against a Hub cache built in a temporary directory in
huggingface_hub's own layout (models--org--name/{blobs,refs,snapshots}) from tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from minbert import BertModel
from minbert.cli import main
from minbert.errors import CheckpointError
from minbert.model_dir import is_hub_name, resolve_model_dir
from tests.conftest import REPO, make_tiny_model_dir, tiny_config, write_tiny_config
from tests.faults import run_with_fault
from tests.hub import add_snapshot, repo_folder, set_ref, use_cache

NAME = "minbert-test/tiny-bert"
MAIN = "a" * 40  # the commit refs/main points at
OLDER = "b" * 40  # an older commit, also tagged v1


def one_layer_model(directory: Path) -> Path:
    """The tiny model's vocabulary, one layer instead of two: another commit's weights do not fit a checkpoint."""
    make_tiny_model_dir(directory, seed=2)
    vocab = (directory / "vocab.txt").read_text().splitlines()
    BertModel(tiny_config(vocab_size=len(vocab), max_position_embeddings=64, num_hidden_layers=1)).save_pretrained(
        directory)
    return directory


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """HF_HUB_CACHE with NAME at two commits (main: seed 1, v1 / OLDER: seed 2), and HF_HUB_OFFLINE=1 (the library
    reads both at import: its constants are patched too). Returns (cache, {commit: model directory})."""
    cache = tmp_path / "hub"
    repo = repo_folder(cache, NAME)
    models = {MAIN: make_tiny_model_dir(tmp_path / "main", seed=1), OLDER: one_layer_model(tmp_path / "older")}
    for commit, directory in models.items():
        add_snapshot(repo, commit, directory)
    set_ref(repo, "main", MAIN)
    set_ref(repo, "v1", OLDER)
    use_cache(monkeypatch, cache)
    return cache, models


def same_weights(directory: Path, reference: Path) -> bool:
    a, b = BertModel.from_pretrained(directory).state_dict(), BertModel.from_pretrained(reference).state_dict()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_what_counts_as_a_hub_name(tmp_path):
    assert is_hub_name("bert-base-uncased") and is_hub_name("sentence-transformers/all-MiniLM-L6-v2")
    for local in ("./model", "/abs/model", "../x", "a/b/c", "~/model", str(tmp_path)):
        assert not is_hub_name(local), local


def test_a_hub_name_and_a_pinned_revision_load_from_the_cache(hub_cache):
    _, models = hub_cache
    assert resolve_model_dir(NAME).name == MAIN
    assert same_weights(resolve_model_dir(NAME), models[MAIN])
    for revision in (OLDER, "v1"):  # a commit, a tag
        directory = resolve_model_dir(NAME, revision)
        assert directory.name == OLDER and same_weights(directory, models[OLDER])


def test_an_unknown_name_and_a_missing_revision_say_what_to_do(hub_cache):
    cache, _ = hub_cache
    with pytest.raises(CheckpointError) as unknown:
        resolve_model_dir("minbert-test/no-such-model")
    message = str(unknown.value)
    assert message.startswith("minbert-test/no-such-model: not a local directory, and not in the Hugging Face cache")
    assert str(cache) in message and "HF_HUB_OFFLINE is set" in message and "hf download" in message
    with pytest.raises(CheckpointError, match=f"{NAME}: .* at revision {'c' * 40}; HF_HUB_OFFLINE is set"):
        resolve_model_dir(NAME, "c" * 40)
    with pytest.raises(CheckpointError, match="a local directory has no revisions"):
        resolve_model_dir(cache, "main")


def test_a_local_directory_of_that_name_wins(hub_cache, tmp_path, monkeypatch):
    local = make_tiny_model_dir(tmp_path / "here" / NAME, seed=3)
    monkeypatch.chdir(tmp_path / "here")
    assert resolve_model_dir(NAME).resolve() == local.resolve()


def test_the_cli_reports_an_uncached_model_in_one_line(hub_cache, capsys):
    assert main(["info", "--model", "minbert-test/no-such-model"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not in the Hugging Face cache" in err and "Traceback" not in err


def test_a_run_records_the_commit_and_resumes_with_the_network_disabled(hub_cache, tiny_data_dir, tmp_path):
    """Trained from `NAME` (main), stopped by SIGINT after step 5, then resumed after main has moved on to another
    commit (one layer: its weights would not fit the checkpoint), with no way to reach the Hub: the resumed run
    reads the commit it started from."""
    cache, _ = hub_cache
    config = write_tiny_config(tmp_path / "run.toml", tmp_path, Path(NAME),
                               train="epochs = 2\nbatch_size = 4\ncheckpoint_every = 3")
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    result = run_with_fault("signal@step-5:SIGINT", "train", "--config", str(config), "--data-dir",
                            str(tiny_data_dir), "name=from-hub", env=env)
    assert result.returncode == 130, result.stderr
    run_dir = tmp_path / "from-hub"
    recorded = tomllib.loads((run_dir / "config.toml").read_text())["model"]
    assert (recorded["path"], recorded["revision"]) == (NAME, MAIN)
    set_ref(repo_folder(cache, NAME), "main", OLDER)  # main moves on; the run must not follow it
    # the Hub unreachable (a closed port) and offline mode off: a cached commit needs no network at all
    blocked = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
               "OMP_NUM_THREADS": "1"}
    resumed = subprocess.run([sys.executable, "-m", "minbert", "train", "--resume", str(run_dir), "--data-dir",
                              str(tiny_data_dir)], env=blocked, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from"]["step"] == 5 and "final_dev" in metrics
    assert tomllib.loads((run_dir / "config.toml").read_text())["model"]["revision"] == MAIN
