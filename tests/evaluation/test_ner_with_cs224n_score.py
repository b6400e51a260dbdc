"""configs/kinds/ner-with-cs224n.toml's header says what its scores mean: the NER task's dev entity F1 counts in
best-epoch selection (the mean of the four tasks' normalised primary metrics) but not in the overall score, which stays
the CS224N formula over SST, Quora and STS."""

from __future__ import annotations

import pytest

from minbert.data.spec import builtin_name
from minbert.metrics import CS224N_LABEL, TaskScore, cs224n_score, dev_selection_score, overall
from minbert.tasks.kinds import kind_of
from minbert.training.config import load_config
from tests.conftest import REPO

DEV = {"sst": 0.5, "quora": 0.8, "sts": 0.6, "ner": 0.1}  # primary metrics: accuracy, accuracy, Pearson, entity F1


def test_ner_counts_in_best_epoch_selection_but_not_in_the_overall_score():
    path = REPO / "configs" / "kinds" / "ner-with-cs224n.toml"
    config = load_config(path)
    metrics = {task: kind_of(task, spec).metric for task, spec in config.tasks.items()}
    assert metrics == {"sst": "accuracy", "quora": "accuracy", "sts": "pearson", "ner": "entity_f1"}
    scores = [TaskScore(task, builtin_name(spec.data), metrics[task], DEV[task], spec.helper)
              for task, spec in config.tasks.items()]
    assert overall(scores) == (pytest.approx(cs224n_score(0.5, 0.8, 0.6)), CS224N_LABEL)
    selection = dev_selection_score({task: {"metric": metrics[task], "score": DEV[task]} for task in DEV})
    assert selection == pytest.approx((0.5 + 0.8 + (0.6 + 1) / 2 + 0.1) / 4)
    header = " ".join(line.removeprefix("# ") for line in path.read_text(encoding="utf-8").split("\nname =")[0]
                      .splitlines())
    assert "counts in best-epoch selection" in header and "not in the overall score" in header
