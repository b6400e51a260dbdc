"""Metrics against hand-computed values; prediction files round trip."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from minbert.errors import DataError
from minbert.evaluation.predictions import read_predictions, write_predictions
from minbert.metrics import (
    CS224N_LABEL,
    MEAN_LABEL,
    METRICS,
    TaskScore,
    accuracy,
    confusion_matrix,
    cs224n_score,
    metric,
    overall,
    pearson,
    score_bins,
    selection_score,
)


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    with pytest.raises(ValueError):
        accuracy([], [])


def test_pearson_by_hand():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]
    # means 2.5, 2.5; deviations (-1.5,-0.5,0.5,1.5) and (-0.5,-1.5,1.5,0.5): cov 0.75+0.75+0.75+0.75 = 3 -> /5 = 0.6
    assert math.isclose(pearson(x, y), 0.6)
    assert math.isclose(pearson(x, [-v for v in x]), -1.0)
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0


def test_overall_score_formula_and_selection():
    assert math.isclose(cs224n_score(0.5, 0.8, 0.6), (0.5 + 0.8 + 0.8) / 3)
    assert math.isclose(selection_score({"sst": ("accuracy", 0.5), "quora": ("accuracy", 0.8),
                                         "sts": ("pearson", 0.6)}), cs224n_score(0.5, 0.8, 0.6))
    assert selection_score({"sst": ("accuracy", 0.47)}) == 0.47


def test_confusion_matrix_is_gold_by_predicted():
    counts = confusion_matrix(predictions=[0, 1, 1, 2], labels=[0, 0, 1, 2], num_classes=3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_score_bins():
    rows = score_bins(predictions=[0.5, 1.0, 4.0, 5.0], labels=[0.0, 0.5, 4.5, 5.0])
    assert [r["count"] for r in rows] == [2, 0, 0, 0, 2]
    assert rows[0]["mean_abs_error"] == pytest.approx(0.5)
    assert rows[4]["mean_error"] == pytest.approx(-0.25)
    assert rows[1]["mean_abs_error"] is None


def test_prediction_file_round_trip_in_starter_format(tmp_path):
    path = tmp_path / "predictions" / "sst-dev-output.csv"
    write_predictions(path, "Predicted_Sentiment", ["a1", "b2"], np.array([3, 0]))
    assert path.read_text() == "id \t Predicted_Sentiment \na1 , 3 \nb2 , 0 \n"
    assert read_predictions(path) == ("Predicted_Sentiment", [("a1", "3"), ("b2", "0")])
    path.write_text("id , x\n")
    with pytest.raises(DataError, match="sst-dev-output.csv:1: expected the header"):
        read_predictions(path)


def by_hand(name: str, predictions: np.ndarray, labels: np.ndarray) -> float:
    """Each metric from its textbook formula, independent of the libraries minbert calls."""
    if name == "accuracy":
        return float(np.mean(predictions == labels))
    if name in ("f1", "macro_f1"):
        classes = [1] if name == "f1" else sorted(set(labels) | set(predictions))
        scores = []
        for c in classes:
            tp = np.sum((predictions == c) & (labels == c))
            fp, fn = np.sum((predictions == c) & (labels != c)), np.sum((predictions != c) & (labels == c))
            scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        return float(np.mean(scores))
    if name == "mcc":  # Gorodkin's multi-class form from the confusion matrix
        k = int(max(labels.max(), predictions.max())) + 1
        c = np.zeros((k, k))
        np.add.at(c, (labels, predictions), 1)
        t, p, s = c.sum(1), c.sum(0), c.sum()
        return float((np.trace(c) * s - t @ p) / np.sqrt((s**2 - p @ p) * (s**2 - t @ t)))
    if name == "spearman":
        predictions, labels = stats.rankdata(predictions), stats.rankdata(labels)
    return float(np.corrcoef(predictions, labels)[0, 1])


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("seed", range(5))
def test_every_metric_equals_its_formula_and_the_library(name, seed):
    rng = np.random.default_rng(seed)
    unit = metric(name)
    if unit.for_classification:
        k = 2 if unit.binary or seed % 2 else 4
        labels, predictions = rng.integers(0, k, 200), rng.integers(0, k, 200)
        predictions[:120] = labels[:120]  # better than chance
        library = {"accuracy": lambda: sk.accuracy_score(labels, predictions),
                   "f1": lambda: sk.f1_score(labels, predictions),
                   "macro_f1": lambda: sk.f1_score(labels, predictions, average="macro"),
                   "mcc": lambda: sk.matthews_corrcoef(labels, predictions)}[name]()
    else:
        labels = rng.uniform(0, 5, 200)
        predictions = labels + rng.normal(0, 1.5, 200)
        library = (stats.pearsonr if name == "pearson" else stats.spearmanr)(predictions, labels).statistic
    assert unit(predictions, labels) == pytest.approx(by_hand(name, predictions, labels), abs=1e-12)
    assert unit(predictions, labels) == pytest.approx(library, abs=1e-12)
    assert 0 <= unit.normalize(unit(predictions, labels)) <= 1


def test_f1_counts_the_declared_positive_class_and_correlations_normalise():
    labels, predictions = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    assert metric("f1")(predictions, labels, positive=1) == pytest.approx(0.8)
    assert metric("f1")(predictions, labels, positive=0) == pytest.approx(2 / 3)
    assert metric("mcc").normalize(-1.0) == 0.0 and metric("spearman").normalize(1.0) == 1.0
    assert metric("spearman")([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0  # constant predictions: no correlation


def test_overall_is_the_cs224n_formula_only_with_its_three_data_sets():
    three = [TaskScore("sst", "sst", "accuracy", 0.5), TaskScore("para", "quora", "accuracy", 0.8),
             TaskScore("sts", "sts", "pearson", 0.6)]
    assert overall(three) == (pytest.approx(cs224n_score(0.5, 0.8, 0.6)), CS224N_LABEL)
    extra = [*three, TaskScore("rte", "", "accuracy", 0.1)]  # beside them, another task is not counted
    assert overall(extra)[0] == pytest.approx(cs224n_score(0.5, 0.8, 0.6))
    glue = [TaskScore("rte", "", "accuracy", 0.6), TaskScore("stsb", "", "spearman", 0.8)]
    assert overall(glue) == (pytest.approx((0.6 + 0.9) / 2), MEAN_LABEL)
    assert overall([]) == (None, "")


def test_helper_tasks_are_left_out_of_selection_and_the_overall_score():
    rte, sick = TaskScore("rte", "", "accuracy", 0.6), TaskScore("sick", "", "accuracy", 0.9, helper=True)
    assert overall([rte, sick]) == (pytest.approx(0.6), MEAN_LABEL)
    assert selection_score({"rte": ("accuracy", 0.6), "sick": ("accuracy", 0.9)}, helpers={"sick"}) == 0.6
    # a job of helpers only still has a score to select its best epoch by
    assert selection_score({"sick": ("accuracy", 0.9)}, helpers={"sick"}) == 0.9
    # a CS224N task made a helper is not counted, so the CS224N formula no longer applies
    three = [TaskScore("sst", "sst", "accuracy", 0.5, helper=True), TaskScore("para", "quora", "accuracy", 0.8),
             TaskScore("sts", "sts", "pearson", 0.6)]
    assert overall(three) == (pytest.approx((0.8 + 0.8) / 2), MEAN_LABEL)


def test_metric_libraries_load_when_a_metric_is_computed():
    """Importing the registry (every train, predict and data process does) loads none of scikit-learn, scipy or
    seqeval; computing a metric of each loads it."""
    probe = ("import sys; import minbert.metrics as m; heavy = ('sklearn', 'scipy', 'seqeval');"
             "print([h for h in heavy if h in sys.modules]);"
             "m.metric('accuracy')([1, 0], [1, 1]); m.metric('pearson')([1.0, 2.0], [1.0, 3.0]);"
             "m.metric('entity_f1', 'tags')([['B-PER']], [['B-PER']]);"
             "print([h for h in heavy if h in sys.modules])")
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert lines[0] == "[]"
    assert lines[1] == "['sklearn', 'scipy', 'seqeval']"
