"""`span`: extractive question answering (SQuAD). A question and its context become windows of `model.max_length`
tokens, `[CLS] question [SEP] part of the context [SEP]`, overlapping by `doc_stride` context sub-words over a long
context; each window is a model row. The head reads every token's hidden state and gives two logits per token, a
start and an end; an answer is learned at its first and last sub-word in a window that holds all of it ([CLS]
elsewhere), and read back as the best start <= end pair over all of a question's windows, mapped to the context's
characters (minbert.tasks.alignment, as transformers' run_qa). SQuAD 2.0's null answer: the answer is "" where the
null score ([CLS]) beats the best span's by more than `null_threshold`; dev records the threshold that would score
best. The options (doc_stride, max_query_length, n_best, max_answer_length, null_threshold) are the format's table's
(minbert.data.formats.SpanOptions)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minbert.data.batching import Batch, TaskData
from minbert.data.formats import SpanExample
from minbert.data.formats.base import SpanOptions
from minbert.data.spec import DataSpec
from minbert.errors import ConfigError, DataError
from minbert.metrics import metric
from minbert.options import Chosen
from minbert.outputs import check_output_file, write_output_text
from minbert.tasks.alignment import SpanAnswer, best_null_threshold, decode_spans, span_windows
from minbert.tasks.kinds.base import KINDS, TaskKind
from minbert.tasks.losses import LOSSES, Loss, TaskOutput
from minbert.tasks.pooling import TokenStates

if TYPE_CHECKING:
    from minbert.tokenizer import Tokenizer


class SpanCrossEntropy(Loss):
    """The mean of the start and the end positions' cross-entropy over a window's tokens, from (B, T, 2) logits and
    (B, 2) targets (BertForQuestionAnswering's loss)."""

    def forward(self, output: TaskOutput, labels: Tensor) -> Tensor:
        logits = output.logits.float()
        labels = labels.long()
        return (F.cross_entropy(logits[..., 0], labels[:, 0]) + F.cross_entropy(logits[..., 1], labels[:, 1])) / 2


LOSSES.register("span_cross_entropy")(SpanCrossEntropy)


class SpanPrediction(str):
    """A question's predicted answer: its text (what metrics and the prediction file read) and the decoded answer it
    came from (offsets, score, null margin), which the dev analysis and details read."""

    answer: SpanAnswer

    def __new__(cls, answer: SpanAnswer) -> SpanPrediction:
        prediction = super().__new__(cls, answer.text)
        prediction.answer = answer
        return prediction

    def __getnewargs__(self) -> tuple[SpanAnswer]:  # pickling builds it from its answer
        return (self.answer,)


def gold_span(example: SpanExample) -> tuple[int, int] | None:
    """The answer training learns, as context characters [start, end): the first gold answer (run_qa's)."""
    if not example.answers:
        return None
    answer = example.answers[0]
    return answer.start, answer.start + len(answer.text)


def window_problem(options: SpanOptions, max_length: int) -> tuple[str, str] | None:
    """(key, why) where windows of `max_length` tokens cannot be made with these options; None where they can."""
    room = max_length - options.max_query_length - 3  # [CLS] question [SEP] context [SEP]
    if room < 1:
        return ("max_query_length", f"windows of model.max_length = {max_length} tokens leave no room for the "
                f"context after [CLS], [SEP], [SEP] and a question of up to {options.max_query_length} sub-words; "
                f"set it below {max_length - 3} (or raise model.max_length)")
    if options.doc_stride >= room:
        return ("doc_stride", f"windows of model.max_length = {max_length} tokens with questions of up to "
                f"max_query_length = {options.max_query_length} sub-words hold {room} context sub-words; the "
                f"overlap of two windows must be below that: set doc_stride below {room} (or raise "
                "model.max_length)")
    return None


class SpanData(TaskData):
    """One split of a span task: its questions (`examples`) as windows; a position is a window, so batches,
    samplers and the layer cache work on windows as they do on sentence rows. Labels: (windows, 2) start and end
    targets (0, 0: [CLS], where a window does not hold the whole answer or the question has none)."""

    def __init__(self, task: str, examples: list[SpanExample], tokenizer: Tokenizer, max_length: int,
                 options: SpanOptions):
        self.task = task
        self.examples = examples
        self.sources = []  # no extra files for spans
        self.tokenizer = tokenizer
        self.siamese = self.both_orders = self.random_order = self.swapped_rows = False
        self.cache = None
        self.teacher = None
        # a test file's questions have no answers and are not impossible; a dev or train file's have one or the other
        self.labelled = bool(examples) and all(e.answers or e.is_impossible for e in examples)
        self.windows = span_windows(tokenizer, [e.question for e in examples], [e.context for e in examples],
                                    [gold_span(e) for e in examples] if self.labelled else None, max_length,
                                    options.doc_stride, options.max_query_length)
        self.lengths = np.array([len(w.input_ids) for w in self.windows], dtype=np.int64)
        self.labels = (torch.tensor([[w.start, w.end] for w in self.windows], dtype=torch.long).reshape(-1, 2)
                       if self.labelled else None)

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def row_lengths(self) -> np.ndarray:
        return self.lengths

    def example_ids(self, positions: list[int]) -> list[str]:
        return [self.examples[self.windows[p].question].id for p in positions]

    def collate(self, positions: list[int]) -> Batch:
        inputs = self.tokenizer.pad([(self.windows[p].input_ids, self.windows[p].token_type_ids) for p in positions])
        labels = self.labels[positions] if self.labels is not None else None
        return Batch(self.task, inputs, labels, list(positions), None, list(positions), self.cache, None)


@KINDS.register("span")
class Span(TaskKind):
    default_loss = "span_cross_entropy"
    described = "span extraction"
    label_dtype = torch.long
    prediction_dtype = object  # a question's answer text (a SpanPrediction)
    row_details = False
    not_yet = frozenset({"ensembles", "distillation", "serve", "the ONNX export", "train.tune_split"})

    @classmethod
    def serves(cls, spec: DataSpec) -> bool:
        return spec.example_type is SpanExample

    @classmethod
    def outputs(cls, spec: DataSpec, loss: str) -> int:
        return 2  # a start and an end logit per token

    @classmethod
    def takes_loss(cls, loss: type[Loss]) -> bool:
        return loss is SpanCrossEntropy

    @property
    def span_options(self) -> SpanOptions:
        return self.spec.format.options

    @property
    def null_threshold(self) -> float | None:
        """SQuAD 2.0 (no_answer = true): the null score's margin over the best span above which the answer is "";
        None where every question has an answer."""
        options = self.span_options
        return options.null_threshold if getattr(options, "no_answer", False) else None

    def labels(self, examples: Sequence[SpanExample]) -> np.ndarray:
        """Each question's gold answer texts (a list; empty for a question without an answer)."""
        gold = np.empty(len(examples), dtype=object)
        gold[:] = [[a.text for a in e.answers] for e in examples]
        return gold

    # --- examples -> model inputs ---
    def check_inputs(self, max_length: int, where: str) -> None:
        if problem := window_problem(self.span_options, max_length):
            key, why = problem
            raise ConfigError(f"{where}.data.format.{key} = {getattr(self.span_options, key)}: {why}")

    def task_data(self, examples: list, tokenizer: Tokenizer, max_length: int, **options: object) -> TaskData:
        self.check_inputs(min(max_length, tokenizer.model_max_length), f"tasks.{self.name}")
        return SpanData(self.name, examples, tokenizer, max_length, self.span_options)

    def pooling(self, chosen: Chosen | str) -> nn.Module:
        return TokenStates()  # a start and an end per token: the head reads every token, whatever tasks.X.pooling says

    # --- outputs -> predictions ---
    def score(self, logits: Tensor, loss: Loss, head: nn.Module) -> Tensor:
        return logits

    def predict(self, output: TaskOutput) -> Tensor:
        return output.logits.float().argmax(dim=1)  # (B, 2) each window's best start and end, unpaired

    def soft(self, output: TaskOutput) -> Tensor:
        return output.logits.float()  # (B, T, 2) start and end logits: what decoding reads

    def decide(self, soft: np.ndarray) -> np.ndarray:
        raise ConfigError(f"tasks.{self.name}: ensembles do not take task kind {self.described!r} (span) yet")

    def buffers(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        return np.empty(count, dtype=object), np.empty(count, dtype=object)  # per window, then per question

    def store(self, hard: np.ndarray, soft: np.ndarray, batch: Batch, output: TaskOutput) -> None:
        """Each window's (2, its length) start and end logits over its own tokens (padding dropped)."""
        logits = self.soft(output).cpu().numpy()
        lengths = batch.inputs["attention_mask"].sum(dim=1).tolist()
        for row, (position, length) in enumerate(zip(batch.positions, lengths, strict=True)):
            soft[position] = logits[row, :length].T

    def collect(self, data: TaskData, hard: np.ndarray, soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per question: its answer decoded over all its windows, and its windows' logits as a (windows, 2, longest
        window) array (what an ensemble would average; a shorter window's padding is 0 and never read)."""
        options = self.span_options
        answers = decode_spans(data.windows, [s[0] for s in soft], [s[1] for s in soft],
                               [e.context for e in data.examples], options.n_best, options.max_answer_length,
                               self.null_threshold)
        predictions = np.empty(len(answers), dtype=object)
        predictions[:] = [SpanPrediction(a) for a in answers]
        by_question: list[list[np.ndarray]] = [[] for _ in data.examples]
        for window, logits in zip(data.windows, soft, strict=True):
            by_question[window.question].append(logits)
        per_question = np.empty(len(by_question), dtype=object)
        for question, windows in enumerate(by_question):
            stacked = np.zeros((len(windows), 2, max(w.shape[1] for w in windows)), dtype=np.float32)
            for i, logits in enumerate(windows):
                stacked[i, :, : logits.shape[1]] = logits
            per_question[question] = stacked
        return predictions, per_question

    # --- predictions for files and people ---
    def show(self, prediction: object) -> str:
        return str(prediction)

    def written(self, prediction: object) -> str:
        return str(prediction)

    def named(self, predictions: list) -> list:
        return [str(p) for p in predictions]

    def answer(self, decided: np.ndarray, soft: np.ndarray) -> dict:
        found = getattr(decided, "answer", None)
        if found is None:
            return {"answer": str(decided)}
        return {"answer": str(decided), "start": found.start, "end": found.end,
                "score": found.score if math.isfinite(found.score) else None}

    def prediction_name(self, split: str) -> str:
        return f"{self.file_prefix}-{split}-output.json"

    def write_predictions(self, path: Path, examples: Sequence, predictions: np.ndarray) -> None:
        """SQuAD's prediction file, which its official script scores: {"question id": "answer text"}."""
        path = check_output_file(path)
        answers = {e.id: str(p) for e, p in zip(examples, predictions, strict=True)}
        if len(answers) != len(examples):
            seen: set[str] = set()
            twice = next(e.id for e in examples if e.id in seen or seen.add(e.id))
            raise DataError(f"{path}: question id {twice!r} is given twice; a prediction file keys answers by id")
        write_output_text(path, json.dumps(answers, ensure_ascii=False, indent=2) + "\n")

    def detail(self, example: SpanExample, prediction: object, soft: np.ndarray | None) -> dict:
        row = {"id": example.id, "question": example.question, "context": example.context,
               "gold": [a.text for a in example.answers], "predicted": str(prediction)}
        found = getattr(prediction, "answer", None)
        if found is not None:
            row["score"] = round(found.score, 4) if math.isfinite(found.score) else None
            if self.null_threshold is not None:
                row["null_margin"] = round(found.null_margin, 4) if math.isfinite(found.null_margin) else None
        return row

    # --- training ---
    def divergence(self, a: TaskOutput, b: TaskOutput) -> Tensor:
        """Symmetric KL between the start (and the end) distributions over a window's tokens (padding included:
        both outputs pad alike); the mean of the two."""
        p = F.log_softmax(a.logits.float(), dim=1).transpose(1, 2).flatten(0, 1)  # (B * 2, T)
        q = F.log_softmax(b.logits.float(), dim=1).transpose(1, 2).flatten(0, 1)
        return (F.kl_div(p, q, log_target=True, reduction="batchmean")
                + F.kl_div(q, p, log_target=True, reduction="batchmean"))

    def distillation_target(self, gold: Tensor, teacher: Tensor, share: float, temperature: float) -> Tensor:
        raise ConfigError(f"tasks.{self.name}: distillation does not take task kind {self.described!r} (span) yet")

    def strata(self, labels: np.ndarray) -> np.ndarray:
        return np.zeros(len(labels), dtype=np.int64)  # one group: an answer text is no class

    # --- evaluation, ensembles, exports ---
    def analysis(self, predictions: np.ndarray, labels: np.ndarray) -> dict:
        """SQuAD 2.0: the null threshold the predictions used, and the one that would have scored best on these
        questions with its F1 and exact match (SQuAD 2.0's official `best_f1`): set `null_threshold` to it for the
        next run's predictions. Nothing for SQuAD 1.1."""
        if self.null_threshold is None or not len(predictions):
            return {}
        answers = [p.answer for p in predictions]
        threshold, f1 = best_null_threshold(answers, list(labels))
        at_best = ["" if a.null_margin > threshold else a.span_text for a in answers]
        return {"null_answer": {
            "threshold": self.null_threshold,
            "no_answer_share": float(np.mean([not str(p) for p in predictions])),
            # -inf (every question answering "" scores best) is no JSON number: None
            "best_threshold": threshold if math.isfinite(threshold) else None,
            "best_f1": f1,
            "best_exact_match": metric("exact_match", "spans")(at_best, list(labels)),
        }}

    def ensemble_loss(self, mean: np.ndarray, labels: np.ndarray) -> float:
        raise ConfigError(f"tasks.{self.name}: ensembles do not take task kind {self.described!r} (span) yet")

    def export_entry(self) -> dict:
        return {"classification": False, "span": True, "num_outputs": self.num_outputs}
