"""Error-analysis figures written into a run directory (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from minbert.tasks.kinds import TaskKind


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend, loaded when a figure is first drawn: a command that draws none (a run
    without its report, predict) starts without it, half a second sooner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(counts: np.ndarray, title: str, path: str | Path, labels: Sequence[str] | None = None) -> None:
    plt = pyplot()
    k = counts.shape[0]
    labels = list(labels) if labels else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(1.2 * k + 2, 1.2 * k + 1.5))
    ax.imshow(counts, cmap="Blues")
    for gold in range(k):
        for pred in range(k):
            color = "white" if counts[gold, pred] > counts.max() / 2 else "black"
            ax.text(pred, gold, str(counts[gold, pred]), ha="center", va="center", color=color)
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_dev(figure_dir: Path, task: str, kind: TaskKind, result: dict, predictions: np.ndarray,
             labels: np.ndarray) -> None:
    """The figure of each view that a task's dev result holds (its kind's `analysis`): the confusion matrix, or
    the scores against gold with the error per bin. Views follow the result's keys, as the report's do."""
    title = f"{task} dev ({kind.metric} {result['score']:.3f})"
    if "bins" in result:
        plot_similarity(predictions, labels, result["bins"], title, figure_dir / f"{task}-scatter.png",
                        kind.score_range)
    if "confusion" in result:
        plot_confusion(np.array(result["confusion"]), title, figure_dir / f"{task}-confusion.png", kind.class_names)


def plot_learning_curves(history: list[dict], path: str | Path) -> None:
    """Per-epoch train loss and dev metric for every task."""
    plt = pyplot()
    tasks = sorted({t for epoch in history for t in epoch.get("dev", {})})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [e["epoch"] for e in history]
    for task in tasks:
        axes[0].plot(epochs, [e["train_loss"].get(task, np.nan) for e in history], marker="o", label=task)
        axes[1].plot(epochs, [e["dev"][task]["score"] for e in history], marker="o", label=task)
    axes[0].set_title("train loss")
    axes[1].set_title("dev primary metric")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_similarity(predictions: Sequence[float], labels: Sequence[float], bins: list[dict], title: str,
                    path: str | Path, score_range: tuple[float, float] = (0.0, 5.0)) -> None:
    """Predicted vs gold scatter, and the mean absolute error per gold-score bin."""
    plt = pyplot()
    fig, (scatter, per_bin) = plt.subplots(1, 2, figsize=(11, 4.5))
    scatter.scatter(labels, predictions, s=6, alpha=0.4)
    scatter.plot(score_range, score_range, color="gray", linewidth=1)
    scatter.set_xlabel("gold score")
    scatter.set_ylabel("predicted")
    scatter.set_title(title)
    names = [b["bin"] for b in bins]
    errors = [b["mean_abs_error"] or 0.0 for b in bins]
    per_bin.bar(names, errors)
    for i, b in enumerate(bins):
        per_bin.text(i, errors[i], f"n={b['count']}", ha="center", va="bottom", fontsize=8)
    per_bin.set_xlabel("gold bin")
    per_bin.set_ylabel("mean |error|")
    per_bin.set_title("error per gold-score bin")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ablation(names: Sequence[str], overall: Sequence[float], path: str | Path,
                  errors: Sequence[float] | None = None) -> None:
    """One bar per variant: the overall dev score (with its standard deviation over seeds, when given)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 4))
    bars = ax.bar(names, overall, yerr=errors, capsize=3 if errors else 0)
    for bar, value in zip(bars, overall, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    low = min(overall)
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(overall) + 0.03))
    ax.set_ylabel("overall dev score")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
