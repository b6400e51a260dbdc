"""Metrics: accuracy, Pearson r (scipy), the reports' overall score, confusion matrices, STS error by bin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if len(predictions) != len(labels) or len(labels) == 0:
        raise ValueError(f"accuracy needs equal, non-empty inputs (got {len(predictions)} and {len(labels)})")
    return float((predictions == labels).mean())


def pearson(predictions: Sequence[float], labels: Sequence[float]) -> float:
    predictions, labels = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
    if len(predictions) != len(labels) or len(labels) < 2:
        raise ValueError(f"pearson needs two equal inputs of 2+ values (got {len(predictions)}, {len(labels)})")
    if predictions.std() == 0:
        return 0.0  # constant predictions carry no correlation (scipy would return nan)
    return float(stats.pearsonr(predictions, labels).statistic)


def overall_score(sst_accuracy: float, quora_accuracy: float, sts_pearson: float) -> float:
    """The reports' single number: (SST acc + Quora acc + (STS r + 1) / 2) / 3."""
    return (sst_accuracy + quora_accuracy + (sts_pearson + 1) / 2) / 3


def normalized(metric: str, value: float) -> float:
    """A metric on a 0..1 scale, so tasks can be averaged (Pearson r in [-1, 1] -> (r + 1) / 2)."""
    return (value + 1) / 2 if metric == "pearson" else value


def selection_score(task_metrics: Mapping[str, tuple[str, float]]) -> float:
    """Mean of the tasks' normalised primary metrics; equals overall_score for the three reports' tasks."""
    return float(np.mean([normalized(metric, value) for metric, value in task_metrics.values()]))


def confusion_matrix(predictions: Sequence[int], labels: Sequence[int], num_classes: int) -> np.ndarray:
    """counts[gold, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)), 1)
    return counts


def sts_bins(predictions: Sequence[float], labels: Sequence[float]) -> list[dict]:
    """Error analysis in 5 gold-score bins [0,1), [1,2), [2,3), [3,4), [4,5]."""
    predictions, labels = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
    bins = np.clip(np.floor(labels), 0, 4).astype(int)
    rows = []
    for b in range(5):
        chosen = bins == b
        errors = predictions[chosen] - labels[chosen]
        rows.append({"bin": f"{b}-{b + 1}", "count": int(chosen.sum()),
                     "mean_abs_error": float(np.abs(errors).mean()) if chosen.any() else None,
                     "mean_error": float(errors.mean()) if chosen.any() else None})
    return rows
