"""`choice`: a question's stem and its choices -> the right choice (multiple choice, ARC). Each choice is one model
row, `[CLS] stem [SEP] choice [SEP]` (a cross-encoded pair, token types 0 then 1); the task's pooling and head give
one score per row, which the kind arranges into a (questions, most choices) table whose missing cells are -inf, so
that questions of 3, 4 and 5 choices share a batch and a missing choice never wins nor gets probability
(minbert.tasks.alignment). The loss is cross-entropy over the table; predictions are the chosen index, written as
the choice's own label (`B`, or `2`). A question's soft output is its choices' probabilities, padded with 0 to the
split's most choices, so that an ensemble averages one (questions, choices) array; serve and predict take a stem and
its choices in their natural form (ChoiceBody, --question with --choice) and answer the chosen label with every
choice's probability; the ONNX head graph gives one score per row, arranged into the table outside it."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from minbert.data.batching import Batch, TaskData
from minbert.data.formats import ChoiceExample
from minbert.data.spec import DataSpec
from minbert.errors import ConfigError, DataError
from minbert.metrics import confusion_matrix
from minbert.outputs import check_output_file, write_output_text
from minbert.tasks.alignment import choice_probabilities, choice_rows, masked_choice_logits, predict_choices
from minbert.tasks.kinds.base import KINDS, TaskKind
from minbert.tasks.losses import LOSSES, Loss, TaskOutput

if TYPE_CHECKING:
    from torch import nn

    from minbert.tokenizer import Tokenizer

log = logging.getLogger("minbert")
EPS = 1e-7  # probabilities are kept this far from 0 in a log loss
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def default_labels(count: int) -> tuple[str, ...]:
    """The labels of choices given without their own: A, B, C, ... (1, 2, 3, ... past 26 choices)."""
    return tuple(LETTERS[:count]) if count <= len(LETTERS) else tuple(str(i + 1) for i in range(count))


def labels_problem(labels: list[str] | None, count: int) -> str | None:
    """Why `labels` cannot name `count` choices (None: they can, or none were given)."""
    if labels is None:
        return None
    if len(labels) != len(set(labels)) or len(labels) != count or not all(label.strip() for label in labels):
        return (f"`labels` must name each of the {count} choices once, with distinct non-empty labels; got "
                f"{labels!r}")
    return None


class Choices(BaseModel):
    """A question's stem and its choices (two or more), with their own labels if wanted (default A, B, C, ...)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="the question's stem", examples=["Which of these is a mammal?"])
    choices: list[str] = Field(min_length=2, description="its choices, two or more",
                               examples=[["a trout", "a whale", "a frog"]])
    labels: list[str] | None = Field(None, description="the choices' own labels (default A, B, C, ...)")

    @model_validator(mode="after")
    def labels_name_the_choices(self) -> Choices:
        if problem := labels_problem(self.labels, len(self.choices)):
            raise ValueError(problem)
        return self


class ChoiceBody(BaseModel):
    """What POST /predict/{task} takes for a multiple-choice task: one question (`question` with `choices`, and
    `labels` if wanted), or several (`questions`: a list of such), answered in order; any other key is refused by
    name."""

    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(None, description="one question's stem, with `choices`")
    choices: list[str] | None = Field(None, min_length=2, description="its choices, two or more")
    labels: list[str] | None = Field(None, description="the choices' own labels (default A, B, C, ...)")
    questions: list[Choices] | None = Field(None, description="several questions, each with its choices")

    @model_validator(mode="after")
    def one_question_or_several(self) -> ChoiceBody:
        one = self.question is not None or self.choices is not None or self.labels is not None
        if one == (self.questions is not None):
            raise ValueError("give `question` with `choices` (one question), or `questions` (a list of "
                             "{question, choices}), not " + ("both" if one else "neither"))
        if one and (self.question is None or self.choices is None):
            raise ValueError(f"give `{'choices' if self.choices is None else 'question'}` with "
                             f"`{'question' if self.choices is None else 'choices'}`")
        if one and (problem := labels_problem(self.labels, len(self.choices))):
            raise ValueError(problem)
        return self

    def rows(self) -> list[tuple[str, ...]]:
        found = [self] if self.questions is None else self.questions
        return [choice_row(q.question, q.choices, q.labels) for q in found]


class ChoiceRow(tuple):
    """A question in serve's natural form, a row of texts (stem, choice, ...) as every kind's rows are (serve's limits
    check each text), carrying its choices' own labels where the body gave them (None: A, B, C, ...)."""

    labels: tuple[str, ...] | None

    def __new__(cls, texts: Sequence[str], labels: Sequence[str] | None = None) -> ChoiceRow:
        row = super().__new__(cls, texts)
        row.labels = tuple(labels) if labels is not None else None
        return row


def choice_row(stem: str, choices: Sequence[str], labels: Sequence[str] | None = None) -> ChoiceRow:
    return ChoiceRow((stem, *choices), labels)


def split_row(row: Sequence[str]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """A row (stem, choice, ...) -> (stem, choices, labels): a ChoiceRow's own labels, else A, B, C, ..."""
    choices = tuple(row[1:])
    return row[0], choices, getattr(row, "labels", None) or default_labels(len(choices))


class ChoiceData(TaskData):
    """One split of a multiple-choice task: a position is a question, its rows are its choices. A batch holds every
    choice of its questions; `Batch.index` (questions, most choices) names each choice's row of the batch, -1 where
    a question has fewer choices, and `Batch.rows` the TaskData rows (so the layer cache keeps rows)."""

    def __init__(self, task: str, examples: list[ChoiceExample], tokenizer: Tokenizer, max_length: int):
        self.task = task
        self.examples = examples
        self.sources = []  # no extra files for choices (TaskKind.check_config refuses them)
        self.tokenizer = tokenizer
        self.siamese = self.both_orders = self.random_order = self.swapped_rows = False
        self.cache = None
        self.teacher = None
        firsts, seconds, counts = choice_rows([e.stem for e in examples], [e.choices for e in examples])
        self.rows = tokenizer.encode_ids(firsts, seconds, max_length=max_length)
        report_cut_rows(tokenizer, firsts, seconds, self.rows.lengths, max_length, task)
        self.counts = np.array(counts, dtype=np.int64)
        self.starts = np.cumsum(self.counts) - self.counts  # each question's first row
        # a question is as long as its longest choice row (bucketing sorts questions by it)
        self.lengths = (np.maximum.reduceat(self.rows.lengths, self.starts) if len(examples)
                        else np.zeros(0, dtype=np.int64))
        self.labelled = bool(examples) and all(e.answer is not None for e in examples)
        self.labels = torch.tensor([e.answer for e in examples], dtype=torch.long) if self.labelled else None

    def collate(self, positions: list[int]) -> Batch:
        counts = self.counts[positions]
        rows = [int(row) for p in positions for row in range(self.starts[p], self.starts[p] + self.counts[p])]
        inputs = self.pad([self.rows[r] for r in rows])
        real = np.arange(int(counts.max(initial=1)))[None, :] < counts[:, None]  # (B, C)
        index = np.full(real.shape, -1, dtype=np.int64)
        index[real] = np.arange(len(rows))  # row-major: question by question, choice by choice
        labels = self.labels[positions] if self.labels is not None else None
        return Batch(self.task, inputs, labels, list(positions), torch.from_numpy(index), rows, self.cache, None)

    def rows_per_example(self, positions: np.ndarray) -> np.ndarray:
        """Each question's choices: the rows collate pads for it (what a token budget counts)."""
        return self.counts[np.asarray(positions, dtype=np.int64)]

    def batch_row_lengths(self, positions: list[int]) -> np.ndarray:
        """Every choice row of the questions at `positions`: what collate pads together."""
        return np.concatenate([self.rows.lengths[self.starts[p]:self.starts[p] + self.counts[p]] for p in positions]
                              or [np.zeros(0, dtype=np.int64)])


def report_cut_rows(tokenizer: Tokenizer, firsts: Sequence[str], seconds: Sequence[str], lengths: np.ndarray,
                    max_length: int, task: str) -> None:
    """A warning naming how many choice rows were longer than `max_length` (cut longest-first, as run_swag does):
    only rows at the limit are encoded again, whole, to tell."""
    full = np.flatnonzero(lengths >= min(max_length, tokenizer.model_max_length))
    if not len(full):
        return
    whole = tokenizer.encode_ids([firsts[i] for i in full], [seconds[i] for i in full], max_length=1 << 30).lengths
    cut = int((whole > lengths[full]).sum())
    if cut:
        log.warning("%s: %d of %d choice rows are longer than model.max_length = %d sub-words (the longest %d): "
                    "cut longest-first", task, cut, len(lengths), max_length, int(whole.max()))


@KINDS.register("choice")
class ChoiceKind(TaskKind):
    default_loss = "cross_entropy"
    described = "multiple choice"
    label_dtype = torch.long
    prediction_dtype = np.int64  # the chosen choice's index in its question
    row_details = False  # its dev details are questions (stem, choices, probabilities), not sentence rows
    report_template = "choice"
    not_yet = frozenset({"distillation", "the sentence-transformers export"})
    gives = frozenset({"pooled rows"})  # TaskKind.check_config refuses mnrl, siamese pairs and extra files
    has = "one pooled vector per choice row ([CLS] stem [SEP] choice [SEP]), several rows per question"

    @classmethod
    def serves(cls, spec: DataSpec) -> bool:
        return spec.example_type is ChoiceExample

    @classmethod
    def outputs(cls, spec: DataSpec, loss: str) -> int:
        return 1  # one score per choice row

    @classmethod
    def takes_loss(cls, loss: type[Loss]) -> bool:
        # cross-entropy over the masked table reads the gold cell only; a loss that reads every cell (label
        # smoothing, soft targets) would meet the -inf of missing choices
        return loss is LOSSES["cross_entropy"]

    def labels(self, examples: Sequence[ChoiceExample]) -> np.ndarray:
        """The right choice's index per question."""
        return np.array([e.answer for e in examples], dtype=np.int64)

    # --- examples -> model inputs ---
    def task_data(self, examples: list, tokenizer: Tokenizer, max_length: int, **options: object) -> TaskData:
        return ChoiceData(self.name, examples, tokenizer, max_length)

    def arrange(self, logits: Tensor, batch: Batch) -> Tensor:
        """(rows, 1) scores -> (questions, most choices) logits, -inf where a question has no such choice."""
        index = batch.index
        return masked_choice_logits(logits.view(-1)[index.clamp_min(0)], index >= 0)

    # --- outputs -> predictions ---
    def score(self, logits: Tensor, loss: Loss, head: nn.Module) -> Tensor:
        return logits

    def predict(self, output: TaskOutput) -> Tensor:
        return predict_choices(output.logits, real_choices(output.logits))

    def soft(self, output: TaskOutput) -> Tensor:
        """(B, C) probabilities over each question's choices; 0 in its missing cells."""
        return choice_probabilities(output.logits, real_choices(output.logits))

    def decide(self, soft: np.ndarray) -> np.ndarray:
        return soft.argmax(axis=-1)  # a missing choice's 0 never beats a real one's share of 1

    def buffers(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(count, dtype=np.int64), np.empty(count, dtype=object)  # soft: per question, then padded

    def store(self, hard: np.ndarray, soft: np.ndarray, batch: Batch, output: TaskOutput) -> None:
        hard[batch.positions] = self.predict(output).cpu().numpy()
        probabilities = self.soft(output).cpu().numpy()
        counts = (batch.index >= 0).sum(dim=1).tolist()
        for row, (position, count) in enumerate(zip(batch.positions, counts, strict=True)):
            soft[position] = probabilities[row, :count]

    def collect(self, data: TaskData, hard: np.ndarray, soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Soft outputs as one (questions, the split's most choices) array, zero-padded: the same width for every
        model of a split, so that an ensemble can average them."""
        width = max((len(e.choices) for e in data.examples), default=0)
        padded = np.zeros((len(soft), width), dtype=np.float64)
        for i, probabilities in enumerate(soft):
            padded[i, : len(probabilities)] = probabilities
        return hard, padded

    # --- predictions for files and people ---
    @property
    def prediction_header(self) -> str:
        return self.spec.prediction_column or "Predicted_answer"

    def write_predictions(self, path: Path, examples: Sequence[ChoiceExample], predictions: np.ndarray) -> None:
        """`id,Predicted_answer`, then each question's id and its chosen choice's own label (`B`, or `2`)."""
        path = check_output_file(path)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["id", self.prediction_header])
        writer.writerows([e.id, e.choice_labels[int(p)]] for e, p in zip(examples, predictions, strict=True))
        write_output_text(path, text.getvalue())

    def detail(self, example: ChoiceExample, prediction: object, soft: np.ndarray | None) -> dict:
        labels = example.choice_labels
        row = {"id": example.id, "stem": example.stem,
               "choices": [{"label": label, "text": text} for label, text in zip(labels, example.choices, strict=True)],
               "gold": None if example.answer is None else labels[example.answer],
               "predicted": labels[int(prediction)]}
        if soft is not None:
            row["probabilities"] = [round(float(p), 4) for p in soft[: len(labels)]]
        return row

    def show(self, prediction: int | float) -> str:
        return f"choice {int(prediction)}"  # an index: the label is the question's (write_predictions writes it)

    def written(self, prediction: int | float) -> str:
        return str(int(prediction))

    def named(self, predictions: list) -> list:
        return [int(p) for p in predictions]

    def answer(self, decided: np.ndarray, soft: np.ndarray) -> dict:
        """An answer without the question's labels: the chosen index and every choice's probability by index
        (serve_answers names them by the question's own labels)."""
        return {"index": int(decided), "probabilities": [float(p) for p in soft]}

    # --- serve and predict's natural form: a stem and its choices -> the chosen label with every probability ---
    serve_form = "choice"
    predict_flags = ("--question", "--choice")

    def serve_body(self) -> type[BaseModel]:
        return ChoiceBody

    def serve_rows(self, body: ChoiceBody) -> list[tuple[str, ...]]:
        return body.rows()

    def predict_rows(self, given: dict[str, list[str]]) -> list[tuple[str, ...]]:
        """One --question with its --choice flags (two or more, in order), labelled A, B, C, ..."""
        self.check_flags(given)
        questions, choices = given.get("--question", []), given.get("--choice", [])
        if len(questions) != 1 or len(choices) < 2:
            raise DataError(f"give one --question with its --choice flags, two or more (got {len(questions)} "
                            f"--question and {len(choices)} --choice); several questions: --input FILE in the "
                            "task's data format")
        for flag, texts in (("--question", questions), ("--choice", choices)):
            for number, text in enumerate(texts, start=1):
                if not text.strip():
                    raise DataError(f"{flag} {number} is empty")
        return [(questions[0], *choices)]

    def serve_examples(self, rows: Sequence[tuple[str, ...]], tokenizer: Tokenizer) -> list[ChoiceExample]:
        examples = []
        for i, row in enumerate(rows):
            stem, choices, labels = split_row(row)
            examples.append(ChoiceExample(str(i), stem, choices, labels, None, i + 1))
        return examples

    def serve_answers(self, examples: Sequence[ChoiceExample], decided: np.ndarray, soft: np.ndarray) -> list[dict]:
        """The chosen choice's label and index, and each choice's probability by its label, in the question's
        order."""
        return [{"choice": e.choice_labels[int(d)], "index": int(d),
                 "probabilities": {label: float(p) for label, p in zip(e.choice_labels, s, strict=False)}}
                for e, d, s in zip(examples, decided, soft, strict=True)]

    def answer_lines(self, number: int, answer: dict) -> list[str]:
        """One line: the example's number, the chosen label, its index, then each choice's label=probability."""
        shown = "\t".join(f"{label}={p:.4f}" for label, p in answer["probabilities"].items())
        return [f"{number}\t{answer['choice']}\t{answer['index']}\t{shown}"]

    # --- training ---
    def divergence(self, a: TaskOutput, b: TaskOutput) -> Tensor:
        """Symmetric KL between the choice distributions, over each question's real choices."""
        real = real_choices(a.logits)
        p = F.log_softmax(a.logits.float(), dim=-1).masked_fill(~real, 0)
        q = F.log_softmax(b.logits.float(), dim=-1).masked_fill(~real, 0)
        both = (p.exp() - q.exp()) * (p - q)  # KL(p||q) + KL(q||p), cell by cell
        return both.masked_fill(~real, 0).sum(dim=-1).mean()

    def distillation_target(self, gold: Tensor, teacher: Tensor, share: float, temperature: float) -> Tensor:
        raise ConfigError(f"tasks.{self.name}: distillation does not take task kind {self.described!r} (choice) yet")

    def strata(self, labels: np.ndarray) -> np.ndarray:
        return labels.astype(np.int64)  # per gold choice position

    # --- evaluation, ensembles, exports ---
    def analysis(self, predictions: np.ndarray, labels: np.ndarray) -> dict:
        """counts[gold position, predicted position] (the report's choice confusion)."""
        width = int(max(np.max(predictions, initial=0), np.max(labels, initial=0))) + 1
        return {"choice_confusion": confusion_matrix(predictions, labels, width).tolist()}

    def average(self, outputs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
        """The (weighted) mean of the members' (questions, the split's most choices) probabilities: they must be of
        one shape (the same questions), else one line says so."""
        shapes = [np.shape(o) for o in outputs]
        if len(set(shapes)) > 1:
            raise ConfigError(f"task {self.name} ({self.described}): the members' choice probabilities are of "
                              f"shapes {', '.join(str(s) for s in shapes)}, so they were not computed over the same "
                              "questions and cannot be averaged")
        return super().average(outputs, weights)

    def ensemble_loss(self, mean: np.ndarray, labels: np.ndarray) -> float:
        """Log loss of the averaged probabilities at the gold choice."""
        labels = np.asarray(labels, dtype=np.int64)
        return float(-np.log(np.clip(mean[np.arange(len(labels)), labels], EPS, 1)).mean())

    def export_entry(self) -> dict:
        return {"classification": False, "choice": True, "num_outputs": self.num_outputs}

    graph_output_names = ("logits",)

    def graph_outputs(self, logits: Tensor, score: Tensor, vectors: Tensor) -> tuple[Tensor, ...]:
        return (logits,)  # (rows, 1): one score per choice row; the (questions, choices) table is made outside

    def graph_task_output(self, outputs: dict[str, Tensor], batch: Batch, siamese: bool) -> TaskOutput:
        arranged = self.arrange(outputs["logits"], batch)  # by the batch's (questions, choices) index, as forward
        return TaskOutput(arranged, arranged)

    # --- the report ---
    def report_view(self, result: dict, rows: list[dict] | None, limit: int) -> dict:
        """The confusion of gold and predicted choice positions (metrics.json's choice_confusion: counts[gold,
        predicted], positions counted from 1), and the wrong dev questions whose gold choice the model found least
        probable, each with its stem and its choices (label, text, probability, gold, predicted)."""
        confusion = result.get("choice_confusion") or []
        ranked = []
        for row in rows or []:
            if row.get("gold") is None or row["gold"] == row["predicted"]:
                continue
            labels = [c["label"] for c in row["choices"]]
            probabilities = row.get("probabilities") or [None] * len(labels)
            gold = probabilities[labels.index(row["gold"])]
            ranked.append((gold if gold is not None else 0.0, row, probabilities))
        ranked.sort(key=lambda item: item[0])
        worst = [{"id": row["id"], "stem": row["stem"], "gold_probability": gold,
                  "choices": [{"label": c["label"], "text": c["text"], "probability": p,
                               "gold": c["label"] == row["gold"], "predicted": c["label"] == row["predicted"]}
                              for c, p in zip(row["choices"], probabilities, strict=True)]}
                 for gold, row, probabilities in ranked[:limit]]
        return {"confusion": confusion, "positions": list(range(1, len(confusion) + 1)), "worst": worst,
                "wrong": len(ranked), "questions": len(rows or [])}


def real_choices(logits: Tensor) -> Tensor:
    """Which cells of an arranged (B, C) table are choices: every cell but the -inf of missing ones."""
    return ~torch.isneginf(logits)
