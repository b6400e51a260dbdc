"""What a task's config asks of its kind's rows, refused in one line where the kind does not give it: each unit or key
declares what it needs (one sentence vector per example, a pooled vector, rows of texts) and each kind what it gives
(TaskKind.gives), so that one rule in TaskKind.check_config refuses mnrl, siamese pairs, a pooling or extra files on a
tag, span or choice task before any file is read; and the sentence-transformers export, which writes a task's sentence
vectors, refuses a task whose kind trains none."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from minbert.errors import ConfigError
from minbert.export.sbert import SentenceTransformersFolder
from minbert.tasks.kinds import KINDS
from minbert.training.config import load_config
from tests.choices import choice_kind
from tests.conftest import write_tiny_config
from tests.spans import span_kind
from tests.tagging import tag_kind
from tests.tasks.test_choice_kind import ARC
from tests.tasks.test_span_kind import QA
from tests.tasks.test_tag_kind import NER

TOKEN_KINDS = (("ner", NER, "token tagging"), ("qa", QA, "span extraction"))


def config_of(tmp_path: Path, tasks: str) -> Path:
    return write_tiny_config(tmp_path / "c.toml", tmp_path, tmp_path, tasks=tasks)


@pytest.mark.parametrize(("task", "tasks", "described"), TOKEN_KINDS)
@pytest.mark.parametrize(("override", "line"), [
    ("regularizers.mnrl={}", r"regularizers\.mnrl needs one sentence vector per example; a {d} task has "),
    ('pair_encoding="siamese"', r"pair_encoding = 'siamese' needs each text of a pair encoded alone; a {d} task "),
    ('pooling="mean"', r"pooling = 'mean' needs a pooled vector per row; a {d} task has "),
    ('extra=[{file="x.tsv"}]', r"extra needs rows of the spec's texts with a label; a {d} task has "),
])
def test_a_token_kind_refuses_what_needs_sentence_vectors_in_one_line(tmp_path, task, tasks, described, override,
                                                                      line):
    """Before: mnrl crashed in training on tensor sizes, siamese and pooling were ignored, extra crashed reading."""
    with pytest.raises(ConfigError, match=rf"^tasks\.{task}\." + line.format(d=described)):
        load_config(config_of(tmp_path, tasks), [f"tasks.{task}.{override}"])


@pytest.mark.parametrize(("task", "tasks", "described"), TOKEN_KINDS)
def test_what_a_token_kind_takes_still_loads(tmp_path, task, tasks, described):
    for override in ("regularizers.smart={}", "regularizers.fgsm={}", 'head="mlp"', 'pooling="cls"'):
        assert load_config(config_of(tmp_path, tasks), [f"tasks.{task}.{override}"]).tasks[task]


def test_choice_refuses_by_the_same_rule_and_keeps_its_pooling(tmp_path):
    config = config_of(tmp_path, ARC)
    with pytest.raises(ConfigError, match=r"^tasks\.arc\.regularizers\.mnrl needs one sentence vector per example; a "
                                          r"multiple choice task has one pooled vector per choice row"):
        load_config(config, ["tasks.arc.regularizers.mnrl={}"])
    assert load_config(config, ['tasks.arc.pooling="mean"']).tasks["arc"].pooling == "mean"  # pooled per choice


def test_every_kind_declares_only_known_needs():
    from minbert.tasks.kinds.base import NEEDS

    for name, unit in KINDS.items():
        assert unit.gives <= set(NEEDS), name
        assert unit.gives == set(NEEDS) or unit.has, f"{name} gives less than every need: say what it has"


@pytest.mark.parametrize("kind", [tag_kind(["O", "I-PER"]), span_kind(), choice_kind()],
                         ids=["tag", "span", "choice"])
def test_the_sentence_transformers_export_refuses_a_kind_without_sentence_vectors(tmp_path, kind):
    """Refused by name before anything is written (the unit is asked first; the source's model is not read)."""
    source = SimpleNamespace(model=SimpleNamespace(heads={kind.name: SimpleNamespace(kind=kind, siamese=False)}),
                             run_dir=tmp_path)
    options = SentenceTransformersFolder.Options()
    with pytest.raises(ConfigError, match=rf"^task {kind.name} is a {kind.described} task \(kind '\w+'\): the "
                                          "sentence-transformers export cannot take it yet$"):
        SentenceTransformersFolder().export(source, tmp_path / "out", options)
    assert not (tmp_path / "out").exists()
