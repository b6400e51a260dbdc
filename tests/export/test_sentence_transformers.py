"""`minbert export RUN --format sentence-transformers DIR`, loaded by the real sentence-transformers package: its
sentence vectors are the run's (MultitaskBERT.embed) for every pooling, with the common layers, normalised or not,
and on the real model and real sentences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.predictor import MultitaskBERT
from tests.conftest import SIAMESE_STS, read_columns, write_tiny_config

TEXTS = ["the film was very good .", "a cat sat on the mat", "how do i learn python fast ?", "bad bad plot",
         "this movie is not fun but the actor was great and the plot was not boring at all"]


def trained(tmp_path, model_dir, data_dir, tasks: str, model: str = "", name: str = "run"):
    config = write_tiny_config(tmp_path / f"{name}.toml", tmp_path, model_dir, tasks=tasks, model=model)
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir), f"name={name}"]) == 0
    return tmp_path / name


@pytest.mark.parametrize(("pooling", "model", "options"), [
    ("mean", "", []),
    ("cls", "", []),  # the pooler: a Dense module with tanh
    ("cls_raw", "", []),
    ("max", "", []),
    ("mean_max", "", []),  # minbert's [mean; max] from sentence-transformers' [max; mean]
    ("mean", "common_layers = 2", ["normalize=true"]),  # Dense + GELU twice, then Normalize
])
def test_the_folder_gives_the_runs_sentence_vectors(tmp_path, tiny_model_dir, tiny_data_dir, pooling, model, options):
    tasks = f'[tasks.sst]\ndata = "sst"\npooling = "{pooling}"\n'
    run = trained(tmp_path, tiny_model_dir, tiny_data_dir, tasks, model)
    out = tmp_path / "st"
    assert main(["export", str(run), "--format", "sentence-transformers", str(out), *options]) == 0
    expected = MultitaskBERT.load(run, precision="fp32").embed(TEXTS)
    if options:
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    got = SentenceTransformer(str(out), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    modules = [m["type"].rsplit(".", 1)[1] for m in json.loads((out / "modules.json").read_text())]
    assert modules[:2] == ["Transformer", "Pooling"] and ("Normalize" in modules) == bool(options)


def test_the_real_model_on_real_sentences(tmp_path, embedded_dir, data_dir):
    """MiniLM fine-tuned for a few steps on STS (siamese, mean pooling), exported, and SST's dev sentences encoded
    both ways."""
    config = write_tiny_config(tmp_path / "sts.toml", tmp_path, embedded_dir, tasks=SIAMESE_STS,
                               model="max_length = 128",
                               train="epochs = 1\nbatch_size = 16\nlr = 2e-5\nmax_train_examples = 64\n"
                                     "max_eval_examples = 32\nprecision = \"fp32\"")
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir), "name=sts"]) == 0
    run = tmp_path / "sts"
    assert main(["export", str(run), "--format", "sentence-transformers", str(tmp_path / "st")]) == 0
    sentences = [row[0] for row in read_columns(data_dir / "ids-sst-dev.csv", "sentence")[:200]]
    expected = MultitaskBERT.load(run, precision="fp32").embed(sentences, task="sts")
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert model.max_seq_length == 128
    got = model.encode(sentences, convert_to_numpy=True, batch_size=64)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_which_task_and_what_cannot_be_exported(tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    tasks = '[tasks.sst]\ndata = "sst"\n[tasks.sst2]\ndata = "sst"\n'
    run = trained(tmp_path, tiny_model_dir, tiny_data_dir, tasks)
    assert main(["export", str(run), "--format", "sentence-transformers", str(tmp_path / "a")]) == 2
    assert "has tasks sst, sst2: name the one whose sentence vectors are meant (--task)" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "sentence-transformers", str(tmp_path / "a"), "--task", "nope"]) == 2
    assert "task 'nope' is not in" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "sentence-transformers", str(tmp_path / "a"), "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "parquet"]) == 2
    assert "--format = 'parquet' is not a export format: one of sentence-transformers, onnx" in capsys.readouterr().err
    pal = trained(tmp_path, tiny_model_dir, tiny_data_dir, tasks, "pal = { size = 8, heads = 2 }", name="pal")
    with pytest.raises(ConfigError, match="projected attention layers"):
        from minbert.export import EXPORT_FORMATS, ExportSource

        loaded = MultitaskBERT.load(pal, precision="fp32")
        EXPORT_FORMATS["sentence-transformers"]().export(
            ExportSource(pal, loaded.config, loaded.model, pal / "best"), tmp_path / "b",
            EXPORT_FORMATS.options_of("sentence-transformers")(task="sst"))


def test_a_failed_export_leaves_nothing_and_nothing_else_is_replaced(tmp_path, three_task_run, capsys):
    out = tmp_path / "st"
    assert main(["export", str(three_task_run), "--format", "sentence-transformers", str(out), "task=nope"]) == 2
    assert not out.exists()  # made by the failed export, removed again
    out.mkdir()
    assert main(["export", str(three_task_run), "--format", "sentence-transformers", str(out), "task=nope"]) == 2
    assert out.is_dir() and not any(out.iterdir())  # given empty, left empty
    assert main(["export", str(three_task_run), "--format", "sentence-transformers", str(out)]) == 0
    assert main(["export", str(three_task_run), "--format", "sentence-transformers", str(out)]) == 2
    assert "pass --overwrite to replace this earlier export" in capsys.readouterr().err
    assert main(["export", str(three_task_run), "--format", "sentence-transformers", str(out), "--overwrite"]) == 0
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert main(["export", str(three_task_run), "--format", "sentence-transformers", str(theirs), "--overwrite"]) == 2
    assert "not a sentence-transformers export made by minbert: it is never replaced" in capsys.readouterr().err
    assert (theirs / "notes.txt").read_text() == "mine"
