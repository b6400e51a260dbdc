"""What a run (or an ensemble) writes from its predictions: each split's prediction file and, for dev, its
metrics, confusion matrix or per-bin error, figure, and every example's details (what the report shows)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from minbert.data.batching import TaskData
from minbert.data.files import Example
from minbert.evaluation.plots import plot_dev
from minbert.evaluation.predict import Inference, predict_both, score
from minbert.outputs import atomic_write_text
from minbert.tasks.kinds import TaskKind
from minbert.tasks.model import MultitaskModel


def write_json(path: Path, value: dict) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def write_outputs(model: MultitaskModel, data: dict[str, dict[str, TaskData]], inference: Inference,
                  run_dir: Path, figures: bool = True) -> dict[str, dict]:
    """Predictions for dev and test, confusion matrices (and their figures); returns the dev metrics of the loaded
    checkpoint."""
    dev_metrics = {}
    for task, splits in data.items():
        for split in ("dev", "test"):
            if split in splits:
                predictions, soft = predict_both(model, splits[split], inference)
                result = write_task_outputs(run_dir, task, model.heads[task].kind, split, splits[split].examples,
                                            predictions, soft, figures)
                if result:
                    dev_metrics[task] = result
    return dev_metrics


def write_task_outputs(run_dir: Path, task: str, kind: TaskKind, split: str, examples: list[Example],
                       predictions: np.ndarray, soft: np.ndarray | None = None, figures: bool = True) -> dict | None:
    """One split's CS224N prediction file; for dev also its metric, its kind's analysis (confusion matrix or per-bin
    error) and figure, and every example's text, gold label, prediction and soft output (what the HTML report
    shows)."""
    kind.write_predictions(run_dir / "predictions" / kind.prediction_name(split), examples, predictions)
    if split != "dev":
        return None
    figure_dir = run_dir / "figures"
    if figures:
        figure_dir.mkdir(exist_ok=True)
    labels = kind.labels(examples)
    result = score(kind, predictions, labels)
    write_dev_details(run_dir / "predictions" / f"{task}-dev-details.jsonl", kind, examples, predictions, soft)
    result.update(kind.analysis(predictions, labels))
    if figures:
        plot_dev(figure_dir, task, kind, result, predictions, labels)
    return result


def write_dev_details(path: Path, kind: TaskKind, examples: list[Example], predictions: np.ndarray,
                      soft: np.ndarray | None) -> None:
    rows = [json.dumps(kind.detail(example, predictions[i], None if soft is None else soft[i]), ensure_ascii=False)
            for i, example in enumerate(examples)]
    atomic_write_text(path, "\n".join(rows) + "\n")
