"""Tiny tag runs for the tests of what reads a tag run (reports, ensembles, soups): CoNLL files under ner/ (the tag
kind's own tests write them alike) and one short training of the tiny random model."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

from minbert.cli import main
from minbert.data.spec import DataSpec
from minbert.options import build
from minbert.tasks.kinds import kind_of
from minbert.tasks.kinds.tag import Tag
from tests.conftest import write_tiny_config
from tests.tasks.test_tag_kind import NER, tagged, write_conll

# hostile words: markup that must show as text in a report, never run or render
SCRIPT, BOLD = "<script>window.pwned=1</script>", "<b>bold</b>"
HOSTILE = (["the", SCRIPT, BOLD, "cat"], ["O", "I-PER", "B-PER", "I-PER"])  # IOB1: two PER entities touch


def write_tag_data(directory: Path, seed: int = 0) -> Path:
    """ner/{train,dev,test}.txt: 60 training sentences, 8 dev sentences (the hostile one among them), 3 test ones."""
    rng = random.Random(seed)
    write_conll(directory / "ner" / "train.txt", [tagged(rng, rng.randint(3, 8)) for _ in range(60)])
    dev = [tagged(rng, rng.randint(3, 8)) for _ in range(7)]
    dev.insert(2, HOSTILE)
    write_conll(directory / "ner" / "dev.txt", dev)
    write_conll(directory / "ner" / "test.txt", [tagged(rng, 5) for _ in range(3)], labelled=False)
    return directory


def train_tag_run(out: Path, model_dir: Path, data_dir: Path, name: str = "ner", seed: int = 0,
                  train: str = "") -> Path:
    """A finished tiny tag run (4 epochs, the heads' init seed 0 whatever `seed`, so runs can be souped)."""
    config = write_tiny_config(out / f"{name}.toml", out, model_dir, tasks=NER, train=f"epochs = 4\nlr = 3e-3\n{train}")
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir), f"name={name}", f"seed={seed}",
                 "init_seed=0"]) == 0
    return out / name


def tag_kind(tags: list[str]) -> Tag:
    """A tag task's kind for unit tests (tags declared; no file is read)."""
    spec = build(DataSpec, {"format": {"name": "conll", "scheme": "iob1", "labels": tags}, "train": "t.txt",
                            "dev": "d.txt"}, "tasks.ner.data")
    return kind_of("ner", SimpleNamespace(data=spec, loss=""))
