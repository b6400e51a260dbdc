"""Metrics against hand-computed values; prediction files round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minbert.errors import DataError
from minbert.evaluation.predictions import read_predictions, write_predictions
from minbert.metrics import (
    accuracy,
    confusion_matrix,
    cs224n_score,
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
