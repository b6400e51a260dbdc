"""Metrics, each a unit of one registry (chosen by name in a task's data spec), computed by scikit-learn and scipy;
the overall score; confusion matrices; regression error by bin.

A metric declares what it serves (`for_classification`: class indices, or scores), whether it needs exactly two
classes (`binary`), and how it is put on a 0..1 scale so that tasks can be averaged (`normalize`: a correlation r in
[-1, 1] becomes (r + 1) / 2). This module imports nothing of minbert's but the registry: data specs, the training
loop and every report read it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn import metrics as sk

from minbert.options import Registry

METRICS = Registry("metric")


def _check_inputs(name: str, predictions: Sequence, labels: Sequence, least: int = 1) -> None:
    if len(predictions) != len(labels) or len(labels) < least:
        raise ValueError(f"{name} needs two equal inputs of {least}+ values (got {len(predictions)} and "
                         f"{len(labels)})")


class Metric:
    """What every metric declares; the defaults suit a classification metric already on 0..1."""

    for_classification = True
    binary = False  # needs exactly two classes (the positive one is the spec's `positive` class)

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        raise NotImplementedError

    def normalize(self, value: float) -> float:
        return value


@METRICS.register("accuracy")
class Accuracy(Metric):
    """The share of exact matches."""

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        _check_inputs("accuracy", predictions, labels)
        return float(sk.accuracy_score(np.asarray(labels), np.asarray(predictions)))


@METRICS.register("f1")
class F1(Metric):
    """F1 of the positive class (binary tasks)."""

    binary = True

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        _check_inputs("f1", predictions, labels)
        return float(sk.f1_score(np.asarray(labels), np.asarray(predictions), pos_label=positive,
                                 average="binary", zero_division=0.0))


@METRICS.register("macro_f1")
class MacroF1(Metric):
    """The unweighted mean of every class's F1 (the classes seen in gold labels or predictions)."""

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        _check_inputs("macro_f1", predictions, labels)
        return float(sk.f1_score(np.asarray(labels), np.asarray(predictions), average="macro", zero_division=0.0))


class Correlation(Metric):
    """A correlation in [-1, 1]; 0 for constant predictions (which carry none; scipy would return nan)."""

    def normalize(self, value: float) -> float:
        return (value + 1) / 2


@METRICS.register("mcc")
class MatthewsCorrelation(Correlation):
    """Matthews correlation coefficient (multi-class too), as GLUE reports for CoLA."""

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        _check_inputs("mcc", predictions, labels)
        return float(sk.matthews_corrcoef(np.asarray(labels), np.asarray(predictions)))


@METRICS.register("pearson")
class Pearson(Correlation):
    """Pearson's r between predicted and gold scores."""

    for_classification = False

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        predictions, labels = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
        _check_inputs("pearson", predictions, labels, least=2)
        if predictions.std() == 0:
            return 0.0
        return float(stats.pearsonr(predictions, labels).statistic)


@METRICS.register("spearman")
class Spearman(Correlation):
    """Spearman's rank correlation between predicted and gold scores."""

    for_classification = False

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        predictions, labels = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
        _check_inputs("spearman", predictions, labels, least=2)
        if predictions.std() == 0:
            return 0.0
        return float(stats.spearmanr(predictions, labels).statistic)


def metric(name: str) -> Metric:
    return METRICS[name]()


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    return metric("accuracy")(predictions, labels)


def pearson(predictions: Sequence[float], labels: Sequence[float]) -> float:
    return metric("pearson")(predictions, labels)


def normalized(name: str, value: float) -> float:
    """A metric on a 0..1 scale, so tasks can be averaged (Pearson r in [-1, 1] -> (r + 1) / 2)."""
    return metric(name).normalize(value)


# The CS224N default project's single number is defined on its three data sets (built-in specs of these names).
CS224N_TASKS = ("sst", "quora", "sts")
CS224N_LABEL = "overall: (SST acc + Quora acc + (STS r + 1) / 2) / 3"
MEAN_LABEL = "overall: mean of normalised primary metrics"


def cs224n_score(sst_accuracy: float, quora_accuracy: float, sts_pearson: float) -> float:
    """The CS224N reports' single number: (SST acc + Quora acc + (STS r + 1) / 2) / 3."""
    return (sst_accuracy + quora_accuracy + (sts_pearson + 1) / 2) / 3


@dataclass(frozen=True)
class TaskScore:
    """One task's primary dev metric, with the data set it was measured on (a built-in spec's name, or "")."""

    task: str
    data: str
    metric: str
    value: float
    helper: bool = False  # a helper task (tasks.X.helper): trained and scored, never counted in the overall score


def overall(scores: Iterable[TaskScore]) -> tuple[float | None, str]:
    """(score, what it is): the CS224N formula when each of its three data sets is there once (other tasks beside
    them are not counted), else the mean of every task's normalised primary metric; helper tasks are left out;
    (None, "") for no tasks."""
    scores = list(scores)
    by_data = {}
    for item in scores:
        by_data.setdefault(item.data, []).append(item)
    if all(len(by_data.get(name, [])) == 1 and not by_data[name][0].helper for name in CS224N_TASKS):
        sst, quora, sts = (by_data[name][0].value for name in CS224N_TASKS)
        return cs224n_score(sst, quora, sts), CS224N_LABEL
    if not scores:
        return None, ""
    return selection_score({s.task: (s.metric, s.value) for s in scores}, {s.task for s in scores if s.helper}), \
        MEAN_LABEL


def selection_score(task_metrics: dict[str, tuple[str, float]], helpers: Collection[str] = ()) -> float:
    """Mean of the tasks' normalised primary metrics (what picks the best epoch), helper tasks left out unless
    every task is one; for the CS224N three it equals their formula."""
    counted = {task: m for task, m in task_metrics.items() if task not in helpers} or task_metrics
    return float(np.mean([normalized(name, value) for name, value in counted.values()]))


def dev_selection_score(dev: dict[str, dict], helpers: Collection[str] = ()) -> float:
    """`selection_score` of evaluation results ({task: {"metric", "score", ...}})."""
    return selection_score({task: (r["metric"], r["score"]) for task, r in dev.items()}, helpers)


def confusion_matrix(predictions: Sequence[int], labels: Sequence[int], num_classes: int) -> np.ndarray:
    """counts[gold, predicted]."""
    return sk.confusion_matrix(np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int),
                               labels=np.arange(num_classes))


def score_bins(predictions: Sequence[float], labels: Sequence[float], low: float = 0.0, high: float = 5.0,
               count: int = 5) -> list[dict]:
    """Error analysis in `count` equal bins of the gold score range (STS: [0,1), [1,2), [2,3), [3,4), [4,5])."""
    predictions, labels = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
    width = (high - low) / count
    bins = np.clip(np.floor((labels - low) / width), 0, count - 1).astype(int)
    rows = []
    for b in range(count):
        chosen = bins == b
        errors = predictions[chosen] - labels[chosen]
        rows.append({"bin": f"{low + b * width:g}-{low + (b + 1) * width:g}", "count": int(chosen.sum()),
                     "mean_abs_error": float(np.abs(errors).mean()) if chosen.any() else None,
                     "mean_error": float(errors.mean()) if chosen.any() else None})
    return rows
