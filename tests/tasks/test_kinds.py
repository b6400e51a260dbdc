"""Task kinds are units of one registry: the spec picks one, each answers what differs between kinds, and no caller
outside minbert.tasks.kinds asks which kind a task is."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import minbert
from minbert.data.files import Example
from minbert.errors import ConfigError
from minbert.tasks.kinds import KINDS, builtin_kind, kind_name
from minbert.tasks.kinds.classify import Classify
from minbert.tasks.kinds.regress import Regress
from minbert.tasks.losses import TaskOutput

PACKAGE = Path(minbert.__file__).parent


def test_the_spec_picks_the_kind():
    assert {name: type(builtin_kind(name)) for name in ("sst", "cfimdb", "quora", "sts")} == {
        "sst": Classify, "cfimdb": Classify, "quora": Classify, "sts": Regress}
    assert KINDS["classify"] is Classify and KINDS["regress"] is Regress
    assert builtin_kind("quora", "bce").num_outputs == 1  # a one-logit loss: one output
    assert builtin_kind("sst").num_outputs == 5 and builtin_kind("sts").num_outputs == 1


def test_a_spec_may_name_its_kind():
    """The hook for specs that name their kind (`kind = "tag"`): the name wins over what the labels suggest, and
    an unknown name or a spec no kind serves is one line naming the key."""
    spec = SimpleNamespace(kind="regress", classes=[0, 1], score_range=[])
    assert kind_name(spec, "tasks.x.data") == "regress"
    with pytest.raises(ConfigError, match=r"^tasks\.x\.data\.kind = 'tagging' is not a task kind: one of choice, "
                                          "classify, "):
        kind_name(SimpleNamespace(kind="tagging"), "tasks.x.data")
    with pytest.raises(ConfigError, match=r"tasks\.x\.data: no task kind serves this spec"):
        kind_name(SimpleNamespace(kind="", classes=[], score_range=[], example_type=Example), "tasks.x.data")


def test_each_kind_answers_in_its_own_terms():
    sst, quora, sts = builtin_kind("sst"), builtin_kind("quora", "bce"), builtin_kind("sts")
    logits = torch.tensor([[0.0, 3.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0, 0.0]])
    out = TaskOutput(logits, logits)
    assert sst.predict(out).tolist() == [1, 0] and sst.decide(sst.soft(out).numpy()).tolist() == [1, 0]
    assert [sst.written(p) for p in sst.predict(out).numpy()] == ["1", "0"]
    assert sst.named([1, 0]) == ["negative", "very negative"]
    one = TaskOutput(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 2.0]))
    assert quora.decide(quora.soft(one).numpy()).tolist() == [0, 1]  # p = 0.5 is not a paraphrase
    answer = {"label": 1, "name": "paraphrase", "probabilities": [0.25, 0.75]}  # one logit: two classes
    assert quora.answer(np.int64(1), np.float64(0.75)) == answer
    scores = TaskOutput(torch.tensor([7.0, -1.0]), torch.tensor([7.0, -1.0]))
    assert sts.predict(scores).tolist() == [5.0, 0.0]  # clamped to the score range
    assert [sts.written(p) for p in (1.23456, 2.0)] == ["1.2346", "2.0000"] and sts.named([1.5]) == [1.5]
    assert sts.answer(np.float64(2.5), np.float64(2.5)) == {"score": 2.5} and sts.class_names is None
    assert sst.labels([Example("a", ("x",), 3, 2)]).dtype == np.int64
    assert sts.labels([Example("a", ("x",), 3.5, 2)]).dtype == np.float32


def test_dev_rows_and_strata_follow_the_kind():
    same = [Example(str(i), ("x",), 2.0, i + 2) for i in range(3)]
    assert builtin_kind("sts").dev_problem(same) == "Pearson r needs at least 2 with different labels"
    assert builtin_kind("sst").dev_problem([Example("a", ("x",), 2, 2)]) is None  # accuracy scores one row
    labels = np.arange(100, dtype=float) / 20
    assert set(builtin_kind("sts").strata(labels).tolist()) == set(range(10))  # deciles
    assert builtin_kind("sst").strata(np.array([4.0, 0.0])).tolist() == [4.0, 0.0]  # per class


def test_ensemble_objectives():
    sst, sts = builtin_kind("sst"), builtin_kind("sts")
    sure = np.eye(5)[[0, 3]]
    assert sst.ensemble_loss(sure, np.array([0, 3])) == pytest.approx(0.0, abs=1e-6)
    assert sst.ensemble_loss(np.full((2, 5), 0.2), np.array([0, 3])) == pytest.approx(np.log(5))
    assert sts.ensemble_loss(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(0.0, abs=1e-6)


def kind_questions() -> list[str]:
    """`module:line attribute` for each place outside minbert.tasks.kinds that asks which kind a task is: a kind's
    `is_classification` (the spec's own, in data/, is the spec's business), or an isinstance check against a kind."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("tasks/kinds/", "data/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "is_classification":
                found.append(f"{relative}:{node.lineno} is_classification")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
                    and any(isinstance(a, ast.Name) and a.id in {"Classify", "Regress"} for a in ast.walk(node))):
                found.append(f"{relative}:{node.lineno} isinstance")
    return found


def test_no_caller_branches_on_the_kind():
    assert kind_questions() == []
