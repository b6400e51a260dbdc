"""Tiny choice runs for the tests of what reads a choice run (serve, predict, ONNX, reports, ensembles, soups):
ARC-style JSON-lines files under arc/ (as tests/tasks/test_choice_kind.py writes them: 3, 4 and 5 choices, letters
and digits, a hostile question among dev's) and one short training of the tiny random model."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

from minbert.cli import main
from minbert.data.spec import DataSpec
from minbert.options import build
from minbert.tasks.kinds import kind_of
from minbert.tasks.kinds.choice import ChoiceKind
from tests.conftest import make_tiny_data_dir, write_tiny_config
from tests.tasks.test_choice_kind import ARC, RIGHT, questions, write_jsonl

# hostile text: markup that must show as text in a report or on the page, never run or render
SCRIPT, BOLD = "<script>window.pwned=1</script>", "<b>bold</b>"
# the hostile dev question: its stem holds markup and its right choice a script; a wrong choice starts with RIGHT (the
# word the tiny model learns to pick), so that the model gets it wrong and the report lists it
HOSTILE = {"id": "hostile", "question": {"stem": f"cat dog {BOLD}", "choices": [
    {"text": f"{RIGHT} cat", "label": "A"}, {"text": f"dog {SCRIPT}", "label": "B"}, {"text": "python", "label": "C"}]},
    "answerKey": "B"}


def write_choice_data(directory: Path, seed: int = 0, train: int = 60) -> Path:
    """arc/{train,dev,test}.jsonl (`train` questions, 15 dev ones with the hostile one, 7 unlabelled test ones) beside
    the tiny sentence files."""
    rng = random.Random(seed)
    make_tiny_data_dir(directory, n_train=24, n_dev=8)
    write_jsonl(directory / "arc" / "train.jsonl", questions(rng, "train-", train))
    write_jsonl(directory / "arc" / "dev.jsonl", [*questions(rng, "dev-", 14), HOSTILE])
    write_jsonl(directory / "arc" / "test.jsonl", questions(rng, "test-", 7, labelled=False))
    return directory


def train_choice_run(out: Path, model_dir: Path, data_dir: Path, name: str = "arc", seed: int = 0, train: str = "",
                     tasks: str = ARC) -> Path:
    """A finished tiny fp32 choice run (4 epochs; the heads' init seed 0 whatever `seed`, so runs can be souped)."""
    config = write_tiny_config(out / f"{name}.toml", out, model_dir, tasks=tasks,
                               train=f'epochs = 4\nlr = 3e-3\nprecision = "fp32"\n{train}')
    assert main(["train", "--config", str(config), "--data-dir", str(data_dir), f"name={name}", f"seed={seed}",
                 "init_seed=0"]) == 0
    return out / name


def choice_kind() -> ChoiceKind:
    """A choice task's kind for unit tests (no file is read)."""
    spec = build(DataSpec, {"format": {"name": "jsonl", "id": "id", "stem": "question.stem",
                                       "choices": "question.choices[].text",
                                       "choice_labels": "question.choices[].label", "answer": "answerKey"},
                            "train": "t.jsonl", "dev": "d.jsonl"}, "tasks.arc.data")
    return kind_of("arc", SimpleNamespace(data=spec, loss=""))
