"""Using a finished run: reload its best checkpoint, re-evaluate it, predict with it."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from minbert.data.batching import TaskData
from minbert.data.files import Example
from minbert.device import INFERENCE_PRECISIONS, quantize_int8, resolve_device, resolve_precision
from minbert.errors import ConfigError, DataError
from minbert.model.bert import BertModel
from minbert.model.config import BertConfig
from minbert.tasks.model import MultitaskModel
from minbert.tokenizer import Tokenizer
from minbert.training.config import RunConfig, load_config
from minbert.training.experiment import Experiment, load_task_data
from minbert.training.loop import dev_result, predict
from minbert.training.rundir import RunLock

log = logging.getLogger("minbert")


class MultitaskBERT:
    """A trained run, ready to predict: `MultitaskBERT.load("runs/sst-finetune")`."""

    def __init__(self, config: RunConfig, model: MultitaskModel, tokenizer: Tokenizer, run_dir: Path):
        self.config, self.model, self.tokenizer, self.run_dir = config, model, tokenizer, run_dir
        device = resolve_device(config.device)
        self.experiment = Experiment(config, device, resolve_precision(config.train.precision, device), tokenizer,
                                     model.to(device).eval(), run_dir / "best", {})

    @classmethod
    def load(cls, run_dir: str | Path, precision: str | None = None) -> MultitaskBERT:
        """`precision` (fp32, bf16, auto, or int8: quantized encoder weights, CPU only) overrides the run's own."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.toml").exists():
            raise ConfigError(f"{run_dir}: not a run directory (no config.toml)")
        if precision is not None and precision not in INFERENCE_PRECISIONS:
            raise ConfigError(f"precision {precision!r} is not one of {', '.join(INFERENCE_PRECISIONS)}")
        autocast_precision = "fp32" if precision == "int8" else precision
        config = load_config(run_dir / "config.toml",
                             [f"train.precision={autocast_precision}"] if autocast_precision else [])
        best = run_dir / "best"
        model = MultitaskModel.from_config(config, BertModel(BertConfig.from_json(best / "config.json")))
        model.load_checkpoint(best)
        if precision == "int8":
            model.encoder = quantize_int8(model.encoder, resolve_device(config.device))
        return cls(config, model, Tokenizer.from_pretrained(best), run_dir)

    def resolve_task(self, task: str | None, sentiment: bool) -> str:
        if task is not None:
            if task not in self.config.tasks:
                raise ConfigError(f"task {task!r} is not in this run (it has {', '.join(self.config.tasks)})")
            return task
        chosen = [t for t, c in self.config.tasks.items() if c.data in ("sst", "cfimdb")] if sentiment else []
        if len(chosen) != 1:
            raise ConfigError(f"name a task with --task (this run has {', '.join(self.config.tasks)})")
        return chosen[0]

    def _predict(self, task: str, texts: Sequence[tuple[str, ...]]) -> list:
        for number, row in enumerate(texts, start=1):
            for text in row:
                if not isinstance(text, str):
                    raise DataError(f"example {number}: expected text, got {type(text).__name__}")
                if not text.strip():
                    raise DataError(f"example {number}: empty text")
        examples = [Example(str(i), tuple(t), None, i + 1) for i, t in enumerate(texts)]
        limit = self.config.model.max_length
        for number, row in enumerate(texts, start=1):
            tokens = sum(len(self.tokenizer.tokenize(text)) for text in row) + len(row) + 1  # + [CLS], [SEP]s
            if tokens > limit:
                log.warning("example %d: %d tokens, truncated to the model's %d", number, tokens, limit)
        return self.outputs(task, examples, soft=False).tolist()

    def outputs(self, task: str, examples: Sequence[Example], soft: bool = True) -> np.ndarray:
        """`task`'s soft outputs (class probabilities, paraphrase probability, score: what ensembles average and
        teachers pass on), or with soft=False its predictions, for examples (only their texts are read)."""
        data = TaskData(task, list(examples), self.tokenizer, self.config.model.max_length,
                        siamese=self.model.heads[task].siamese)
        return predict(self.model, data, self.experiment, soft=soft)

    def task_for(self, data: str, task: str | None = None) -> str:
        """The run's task for a data format (sst, cfimdb, quora, sts), or the named one."""
        if task is not None:
            return self.resolve_task(task, sentiment=False)
        chosen = [t for t, c in self.config.tasks.items() if c.data == data]
        if len(chosen) != 1:
            raise ConfigError(f"this run has no single {data} task (it has {', '.join(self.config.tasks)})")
        return chosen[0]

    def predict(self, task: str, texts: Sequence[Sequence[str]]) -> list:
        """Predictions of `task` for rows of one text (sentiment) or two (pairs)."""
        kind = self.model.heads[self.resolve_task(task, sentiment=False)].kind
        width = len(kind.format.text_columns)
        if isinstance(texts, str):
            raise DataError("expected a list of rows, got a str")
        for i, row in enumerate(texts):
            if isinstance(row, str):  # tuple("ab") would silently become the pair ("a", "b")
                what = "a pair of texts" if width == 2 else "a row of one text"
                raise DataError(f"example {i + 1}: expected {what}, got a str")
            if len(row) != width:
                raise DataError(f"example {i + 1}: task {task} takes {width} text(s) per example, got {len(row)}")
        return self._predict(task, [tuple(row) for row in texts])

    def predict_sentiment(self, texts: str | Sequence[str], task: str | None = None) -> int | list[int]:
        """Class indices (SST: 0 very negative .. 4 very positive; CFIMDB: 0 negative, 1 positive); one text
        gives one index, a list of texts a list."""
        task = self.resolve_task(task, sentiment=True)
        if isinstance(texts, str):
            return self.predict(task, [(texts,)])[0]
        return self.predict(task, [(t,) for t in texts])

    def predict_paraphrase(self, pairs: tuple[str, str] | Sequence[tuple[str, str]],
                           task: str | None = None) -> int | list[int]:
        """1 where the two questions are paraphrases, else 0; one pair gives one answer, a list of pairs a list."""
        return self._predict_pairs(self.task_for("quora", task), pairs)

    def predict_similarity(self, pairs: tuple[str, str] | Sequence[tuple[str, str]],
                           task: str | None = None) -> float | list[float]:
        """Similarity scores from 0 (unrelated) to 5 (same meaning); one pair gives one score."""
        return self._predict_pairs(self.task_for("sts", task), pairs)

    def _predict_pairs(self, task: str, pairs: tuple[str, str] | Sequence[tuple[str, str]]) -> list | int | float:
        if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(t, str) for t in pairs):
            return self.predict(task, [pairs])[0]
        return self.predict(task, pairs)


def evaluate_run(run_dir: str | Path, data_dir: str | None = None, precision: str | None = None,
                 quiet: bool = False) -> dict[str, dict]:
    """Re-compute the dev metrics of a run's best checkpoint and print them beside the recorded ones."""
    loaded = MultitaskBERT.load(run_dir, precision)
    data = load_task_data(loaded.config, loaded.tokenizer, data_dir, splits=("dev",))
    recorded = {}
    metrics_path = Path(run_dir) / "metrics.json"
    if metrics_path.exists():
        recorded = json.loads(metrics_path.read_text(encoding="utf-8")).get("final_dev", {})
    results = {}
    for task, splits in data.items():
        predictions = predict(loaded.model, splits["dev"], loaded.experiment)
        results[task] = dev_result(loaded.model, task, splits["dev"], predictions)
        before = recorded.get(task, {}).get("score")
        note = f" (recorded {before:.4f})" if before is not None else ""
        if not quiet:
            print(f"{task:<10} dev {results[task]['metric']:<9} {results[task]['score']:.4f}{note}")
    return results


def write_run_outputs(run_dir: str | Path, data_dir: str | None = None) -> dict[str, dict]:
    """(Re)write a run's predictions and figures from its best checkpoint, and its final dev metrics: for a run
    that was stopped before its last epoch."""
    from minbert.training.run import write_json, write_outputs

    run_dir = Path(run_dir)
    with RunLock(run_dir):  # never beside a training process writing the same run
        loaded = MultitaskBERT.load(run_dir)
        data = load_task_data(loaded.config, loaded.tokenizer, data_dir, splits=("dev", "test"))
        final_dev = write_outputs(dataclasses.replace(loaded.experiment, data=data), run_dir)
        metrics_path = run_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
        metrics["final_dev"] = final_dev
        write_json(metrics_path, metrics)
    return final_dev
