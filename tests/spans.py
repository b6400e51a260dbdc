"""Tiny span runs for the tests of what reads a span run (serve, predict, ONNX, reports, ensembles, soups): SQuAD files
under squad/ (as tests/tasks/test_span_kind.py writes them, a hostile question among dev's) and one short training of
the tiny random model."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

from minbert.cli import main
from minbert.data.spec import DataSpec
from minbert.options import build
from minbert.tasks.kinds import kind_of
from minbert.tasks.kinds.span import Span
from tests.conftest import make_tiny_data_dir, write_tiny_config
from tests.tasks.test_span_kind import QA, write_squad

# hostile text: markup that must show as text in a report or on the page, never run or render
SCRIPT, BOLD = "<script>window.pwned=1</script>", "<b>bold</b>"
HOSTILE_CONTEXT = f"the man plays {SCRIPT} and the dog sat on the mat"
HOSTILE_QUESTION = f"who plays {BOLD} ?"
# contexts whose answers the tiny model learns: the word before "plays" (who), before "sat" (what)
CONTEXTS = ["the film was good and the man plays guitar on the mat but the plot is boring",
            "it was not very fun and this dog sat on the mat while the movie was bad"]


def write_span_data(directory: Path, seed: int = 0) -> Path:
    """squad/{train,dev,test}.json (contexts of several 32-token windows in dev and test) beside the tiny sentence
    files; dev's last question is the hostile one, its gold answer the <script> text (never predicted exactly)."""
    rng = random.Random(seed)
    make_tiny_data_dir(directory, n_train=24, n_dev=8)
    write_squad(directory / "squad" / "train.json", rng, 30, (8, 20))
    write_squad(directory / "squad" / "dev.json", rng, 4, (40, 70), prefix="d")
    write_squad(directory / "squad" / "test.json", rng, 2, (40, 70), labelled=False, prefix="t")
    dev = json.loads((directory / "squad" / "dev.json").read_text(encoding="utf-8"))
    dev["data"].append({"title": "hostile", "paragraphs": [{"context": HOSTILE_CONTEXT, "qas": [{
        "id": "hostile", "question": HOSTILE_QUESTION,
        "answers": [{"text": SCRIPT, "answer_start": HOSTILE_CONTEXT.index(SCRIPT)}]}]}]})
    (directory / "squad" / "dev.json").write_text(json.dumps(dev), encoding="utf-8")
    return directory


def train_span_run(out: Path, model_dir: Path, data_dir: Path, name: str = "qa", seed: int = 0, train: str = "",
                   tasks: str = QA, model: str = "") -> Path:
    """A finished tiny fp32 span run (3 epochs; the heads' init seed 0 whatever `seed`, so runs can be souped)."""
    config = write_tiny_config(out / f"{name}.toml", out, model_dir, tasks=tasks, model=model,
                               train=f'epochs = 3\nlr = 3e-3\nprecision = "fp32"\n{train}')
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir), f"name={name}", f"seed={seed}",
                 "init_seed=0"]) == 0
    return out / name


def span_kind(**format_options: object) -> Span:
    """A span task's kind for unit tests (no file is read)."""
    spec = build(DataSpec, {"format": {"name": "squad", **format_options}, "train": "t.json", "dev": "d.json"},
                 "tasks.qa.data")
    return kind_of("qa", SimpleNamespace(data=spec, loss=""))
