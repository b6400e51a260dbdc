"""Predicting and scoring: the one function that runs a model over a task's examples, and the task's metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minbert.data.batching import TaskData
from minbert.device import autocast
from minbert.metrics import metric
from minbert.tasks.kinds import TaskKind
from minbert.tasks.model import MultitaskModel


@dataclass(frozen=True)
class Inference:
    """Where and how a model predicts."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: fp32
    batch_size: int


def predict(model: MultitaskModel, data: TaskData, inference: Inference, soft: bool = False) -> np.ndarray:
    """Predictions for every example of `data`, in file order (batches are length-sorted, then put back); with
    `soft`, the task kind's soft outputs (class probabilities, paraphrase probability, score) instead."""
    return predict_both(model, data, inference)[1 if soft else 0]


@torch.no_grad()
def predict_both(model: MultitaskModel, data: TaskData, inference: Inference) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, soft outputs) from one pass: a run's report shows how sure each prediction was. A task
    predicted in both pair orders (predict_order = "both") gets the mean of the two orders' outputs."""
    model.eval()
    kind = model.heads[data.task].kind
    hard, soft = kind.buffers(len(data))
    for positions in data.batches(inference.batch_size, shuffle=False, bucketing=True):
        batch = data.collate(positions).to(inference.device)
        with autocast(inference.device, inference.autocast_dtype):
            outputs = model(batch)
            if data.both_orders:  # a symmetric task's answer should not depend on which text comes first
                other = model(data.collate(data.other_order(positions)).to(inference.device))
                outputs = outputs.mean_with(other)
        kind.store(hard, soft, batch, outputs)
    return kind.collect(data, hard, soft)


def score(kind: TaskKind, predictions: np.ndarray, labels: np.ndarray) -> dict:
    """{"metric": the primary metric's name, "score": its value, "metrics": {every metric: value}} for labelled
    predictions (a single-metric task's result is as it always was: metric and score only)."""
    values = {name: metric(name, kind.spec.metric_inputs)(predictions, labels, kind.positive)
              for name in kind.spec.metric_names}
    result = {"metric": kind.metric, "score": values[kind.metric]}
    if len(values) > 1:
        result["metrics"] = values
    return result


def evaluate_tasks(model: MultitaskModel, data: dict[str, dict[str, TaskData]], inference: Inference,
                   split: str = "dev") -> dict[str, dict]:
    """`score` of every task that has labelled `split` data: {task: {"metric", "score"[, "metrics"]}}."""
    results = {}
    for task, splits in data.items():
        if split in splits:
            predictions = predict(model, splits[split], inference)
            kind = model.heads[task].kind
            results[task] = score(kind, predictions, kind.labels(splits[split].examples))
    return results
