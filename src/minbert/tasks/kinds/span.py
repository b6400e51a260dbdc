"""`span`: extractive question answering (SQuAD). A question and its context become windows of `model.max_length`
tokens, `[CLS] question [SEP] part of the context [SEP]`, overlapping by `doc_stride` context sub-words over a long
context; each window is a model row. The head reads every token's hidden state and gives two logits per token, a
start and an end; an answer is learned at its first and last sub-word in a window that holds all of it ([CLS]
elsewhere), and read back as the best start <= end pair over all of a question's windows, mapped to the context's
characters (minbert.tasks.alignment, as transformers' run_qa). SQuAD 2.0's null answer: the answer is "" where the
null score ([CLS]) beats the best span's by more than `null_threshold`; dev records the threshold that would score
best. The options (doc_stride, max_query_length, n_best, max_answer_length, null_threshold) are the format's table's
(minbert.data.formats.SpanOptions).

A question's soft output (QuestionLogits) is its windows' start/end logits with the windows and the context they were
computed over, so that it decodes alone (`decide`): an ensemble averages its members' logits window by window, serve
and predict answer from it, and a report or serve score is the answer's probability in its window."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from minbert.data.batching import Batch, TaskData, WindowData
from minbert.data.formats import SpanExample
from minbert.data.formats.base import SpanOptions
from minbert.data.spec import DataSpec
from minbert.errors import ConfigError, DataError
from minbert.metrics import answer_f1, metric
from minbert.options import Chosen
from minbert.outputs import check_output_file, write_output_text
from minbert.tasks.alignment import SpanAnswer, SpanWindow, best_null_threshold, decode_spans, span_windows
from minbert.tasks.kinds.base import KINDS, TaskKind
from minbert.tasks.kinds.classify import EPS
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


class Question(BaseModel):
    """A question and the context it is answered from."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="the question", examples=["Who plays the guitar?"])
    context: str = Field(description="the passage the answer is taken from",
                         examples=["The man plays the guitar while the dog sleeps."])


class QuestionBody(BaseModel):
    """What POST /predict/{task} takes for a span task: one question over its context (`question` with `context`),
    or several (`questions`: a list of such), answered in order; any other key is refused by name."""

    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(None, description="one question, with `context`")
    context: str | None = Field(None, description="the passage `question` is answered from")
    questions: list[Question] | None = Field(None, description="several questions, each with its context")

    @model_validator(mode="after")
    def one_question_or_several(self) -> QuestionBody:
        one = self.question is not None or self.context is not None
        if one == (self.questions is not None):
            raise ValueError("give `question` with `context` (one question), or `questions` (a list of "
                             "{question, context}), not " + ("both" if one else "neither"))
        if one and (self.question is None or self.context is None):
            raise ValueError(f"give `{'context' if self.context is None else 'question'}` with "
                             f"`{'question' if self.context is None else 'context'}`")
        return self

    def rows(self) -> list[tuple[str, ...]]:
        if self.questions is None:
            return [(self.question, self.context)]
        return [(q.question, q.context) for q in self.questions]


@dataclass(frozen=True, eq=False)
class QuestionLogits:
    """A question's soft output: its windows' start and end logits, (windows, 2, longest window) float32 (float64
    once averaged; a shorter window's padding 0, never read), with the windows (input ids, offsets, training
    targets) and the context they were computed over: all that decoding, averaging and scoring read."""

    logits: np.ndarray
    windows: tuple[SpanWindow, ...]
    context: str

    def same_windows(self, other: QuestionLogits) -> bool:
        """Whether `other` was computed over the same windows (same tokens, same characters): only then can the two
        be averaged window by window."""
        return self.context == other.context and len(self.windows) == len(other.windows) and all(
            np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.offsets, b.offsets)
            for a, b in zip(self.windows, other.windows, strict=True))

    def log_probabilities(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each window's (start, end) log-probabilities over its own tokens (padding dropped)."""
        found = []
        for window, logits in zip(self.windows, self.logits, strict=True):
            own = logits[:, : len(window.input_ids)].astype(np.float64)
            own = own - own.max(axis=1, keepdims=True)
            own = own - np.log(np.exp(own).sum(axis=1, keepdims=True))
            found.append((own[0], own[1]))
        return found

    def probability(self, answer: SpanAnswer, null: bool) -> float:
        """How sure the model is of `answer`: with `null`, the null answer's probability (start and end at [CLS]) in
        the window whose null score decoding took (the smallest); else the span's start times end probability in
        the window that gives it most (each window's softmax over its own tokens)."""
        found = []
        for window, (starts, ends) in zip(self.windows, self.log_probabilities(), strict=True):
            if null:
                found.append(starts[0] + ends[0])
                continue
            first = np.flatnonzero(window.offsets[:, 0] == answer.start)
            last = np.flatnonzero(window.offsets[:, 1] == answer.end)
            if len(first) and len(last) and first[0] <= last[-1]:
                found.append(starts[first[0]] + ends[last[-1]])
        if not found:
            return 0.0
        return float(math.exp(min(found) if null else max(found)))


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


class SpanData(WindowData):
    """One split of a span task: its questions (`examples`) as windows over their contexts. Labels: (windows, 2)
    start and end targets (0, 0: [CLS], where a window does not hold the whole answer or the question has none)."""

    def __init__(self, task: str, examples: list[SpanExample], tokenizer: Tokenizer, max_length: int,
                 options: SpanOptions):
        # a test file's questions have no answers and are not impossible; a dev or train file's have one or the other
        labelled = bool(examples) and all(e.answers or e.is_impossible for e in examples)
        windows = span_windows(tokenizer, [e.question for e in examples], [e.context for e in examples],
                               [gold_span(e) for e in examples] if labelled else None, max_length,
                               options.doc_stride, options.max_query_length)
        labels = (torch.tensor([[w.start, w.end] for w in windows], dtype=torch.long).reshape(-1, 2)
                  if labelled else None)
        super().__init__(task, examples, tokenizer, windows, [w.question for w in windows], labels)


@KINDS.register("span")
class Span(TaskKind):
    default_loss = "span_cross_entropy"
    described = "span extraction"
    label_dtype = torch.long
    prediction_dtype = object  # a question's answer text (a SpanPrediction)
    row_details = False
    report_template = "span"
    not_yet = frozenset({"distillation", "the sentence-transformers export"})
    gives = frozenset()  # token states only: TaskKind.check_config refuses what needs sentence vectors or rows
    has = "a state per token of its windows of question and context, and no sentence vector"

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
        return TokenStates()  # a start and an end per token: the head reads every token (a pooling is refused)

    # --- outputs -> predictions ---
    def score(self, logits: Tensor, loss: Loss, head: nn.Module) -> Tensor:
        return logits

    def predict(self, output: TaskOutput) -> Tensor:
        return output.logits.float().argmax(dim=1)  # (B, 2) each window's best start and end, unpaired

    def soft(self, output: TaskOutput) -> Tensor:
        return output.logits.float()  # (B, T, 2) start and end logits: what decoding reads

    def decide(self, soft: np.ndarray) -> np.ndarray:
        """Each question's answer decoded from its QuestionLogits (its windows' own offsets and context): the best
        start <= end pair over all its windows (alignment.decode_spans), as a SpanPrediction."""
        options = self.span_options
        windows, starts, ends = [], [], []
        for question, found in enumerate(soft):
            for window, logits in zip(found.windows, found.logits, strict=True):
                windows.append(replace(window, question=question))  # its place in `soft`, whatever it was
                starts.append(logits[0])
                ends.append(logits[1])
        answers = decode_spans(windows, starts, ends, [found.context for found in soft], options.n_best,
                               options.max_answer_length, self.null_threshold) if len(soft) else []
        predictions = np.empty(len(answers), dtype=object)
        predictions[:] = [SpanPrediction(a) for a in answers]
        return predictions

    def buffers(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        return np.empty(count, dtype=object), np.empty(count, dtype=object)  # per window, then per question

    def store(self, hard: np.ndarray, soft: np.ndarray, batch: Batch, output: TaskOutput) -> None:
        """Each window's (2, its length) start and end logits over its own tokens (padding dropped)."""
        logits = self.soft(output).cpu().numpy()
        lengths = batch.inputs["attention_mask"].sum(dim=1).tolist()
        for row, (position, length) in enumerate(zip(batch.positions, lengths, strict=True)):
            soft[position] = logits[row, :length].T

    def collect(self, data: TaskData, hard: np.ndarray, soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per question: its answer decoded over all its windows, and its QuestionLogits (what an ensemble
        averages)."""
        by_question: list[list[int]] = [[] for _ in data.examples]
        for position, window in enumerate(data.windows):
            by_question[window.question].append(position)
        per_question = np.empty(len(by_question), dtype=object)
        for question, positions in enumerate(by_question):
            stacked = np.zeros((len(positions), 2, max(soft[p].shape[1] for p in positions)), dtype=np.float32)
            for i, position in enumerate(positions):
                stacked[i, :, : soft[position].shape[1]] = soft[position]
            per_question[question] = QuestionLogits(stacked, tuple(data.windows[p] for p in positions),
                                                    data.examples[question].context)
        return self.decide(per_question), per_question

    # --- predictions for files and people ---
    def show(self, prediction: object) -> str:
        return str(prediction)

    def written(self, prediction: object) -> str:
        return str(prediction)

    def named(self, predictions: list) -> list:
        return [str(p) for p in predictions]

    def answer(self, decided: SpanPrediction, soft: QuestionLogits) -> dict:
        """The answer, its probability (`score`: start times end probability in its window; the null answer's where
        it won) and its characters in the context [start, end) (None for no answer); SQuAD 2.0 says `no_answer`."""
        found = decided.answer
        null = self.null_threshold is not None and not str(decided)
        spanned = not null and math.isfinite(found.score)
        answer = {"answer": str(decided), "score": soft.probability(found, null),
                  "start": found.start if spanned else None, "end": found.end if spanned else None}
        if self.null_threshold is not None:
            answer["no_answer"] = null
        return answer

    # --- serve and predict's natural form: a question over a context -> the answer with its characters ---
    serve_form = "span"
    predict_flags = ("--question", "--context")

    def serve_body(self) -> type[BaseModel]:
        return QuestionBody

    def serve_rows(self, body: QuestionBody) -> list[tuple[str, ...]]:
        return body.rows()

    def predict_rows(self, given: dict[str, list[str]]) -> list[tuple[str, ...]]:
        """--question with --context, repeated in pairs: the n-th question is asked of the n-th context."""
        self.check_flags(given)
        questions, contexts = given.get("--question", []), given.get("--context", [])
        if not questions or len(questions) != len(contexts):
            raise DataError(f"give each --question with its --context (got {len(questions)} --question and "
                            f"{len(contexts)} --context), or --input FILE in the task's data format")
        for flag, texts in (("--question", questions), ("--context", contexts)):
            for number, text in enumerate(texts, start=1):
                if not text.strip():
                    raise DataError(f"{flag} {number} is empty")
        return list(zip(questions, contexts, strict=True))

    def serve_examples(self, rows: Sequence[tuple[str, ...]], tokenizer: Tokenizer) -> list[SpanExample]:
        return [SpanExample(str(i), question, context, (), False, f"example {i + 1}")
                for i, (question, context) in enumerate(rows)]

    def answer_lines(self, number: int, answer: dict) -> list[str]:
        """One line: the example's number, start, end (characters of the context, end exclusive; - for no answer),
        score, the answer's text."""
        where = ("-", "-") if answer["start"] is None else (answer["start"], answer["end"])
        return [f"{number}\t{where[0]}\t{where[1]}\t{answer['score']:.4f}\t{answer['answer']}"]

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

    def detail(self, example: SpanExample, prediction: object, soft: QuestionLogits | None) -> dict:
        """The question, its context, the gold answers with their characters, the predicted answer with its
        characters (`span`; None for no answer), its start + end logit (`score`) and, with soft outputs, its
        probability (`confidence`)."""
        row = {"id": example.id, "question": example.question, "context": example.context,
               "gold": [a.text for a in example.answers],
               "gold_spans": [[a.start, a.start + len(a.text)] for a in example.answers], "predicted": str(prediction)}
        found = getattr(prediction, "answer", None)
        if found is not None:
            row["span"] = [found.start, found.end] if str(prediction) else None
            row["score"] = round(found.score, 4) if math.isfinite(found.score) else None
            if self.null_threshold is not None:
                row["null_margin"] = round(found.null_margin, 4) if math.isfinite(found.null_margin) else None
            if soft is not None:
                row["confidence"] = round(soft.probability(found, not str(prediction)), 4)
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
        """Two groups: the questions with an answer and those without (SQuAD 2.0), so that a tune split keeps their
        shares. Held-out questions are whole questions; their contexts may also be read with questions trained on."""
        return np.array([len(gold) > 0 for gold in labels], dtype=np.int64)

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

    def average(self, outputs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
        """Per question, the (weighted) mean of the models' start and end logits, window by window: the members
        must have cut the same windows (model.max_length, doc_stride, max_query_length and tokenizer alike), else
        one line says so."""
        weights = [1 / len(outputs)] * len(outputs) if weights is None else list(weights)
        mean = np.empty(len(outputs[0]), dtype=object)
        for question in range(len(mean)):
            members = [member[question] for member in outputs]
            if not all(members[0].same_windows(other) for other in members[1:]):
                raise ConfigError(f"task {self.name} ({self.described}): the members cut question {question + 1}'s "
                                  "context into different windows, so their logits cannot be averaged; ensemble "
                                  "members of one model.max_length, doc_stride, max_query_length and tokenizer")
            # float64: fitting the weights differentiates this mean numerically, in steps float32 cannot see
            logits = sum(w * m.logits.astype(np.float64) for w, m in zip(weights, members, strict=True))
            mean[question] = replace(members[0], logits=logits)
        return mean

    def ensemble_loss(self, mean: np.ndarray, labels: np.ndarray) -> float:
        """The mean over windows of the gold start's and end's negative log-likelihood (the span loss; [CLS] where a
        window does not hold the answer), from the windows' training targets."""
        losses = [-(starts[window.start] + ends[window.end]) / 2 for found in mean
                  for window, (starts, ends) in zip(found.windows, found.log_probabilities(), strict=True)]
        return float(np.mean(losses)) if losses else -math.log(EPS)

    def ensemble_key(self, max_length: int, tokenizer: str) -> dict[str, object]:
        return {"model.max_length": max_length, "tokenizer": tokenizer}  # what cuts the windows, beside the spec

    def export_entry(self) -> dict:
        return {"classification": False, "span": True, "num_outputs": self.num_outputs}

    graph_output_names = ("logits",)

    def graph_outputs(self, logits: Tensor, score: Tensor, vectors: Tensor) -> tuple[Tensor, ...]:
        return (logits,)  # (B, T, 2) start and end logits per token: decoding over windows happens outside the graph

    def graph_task_output(self, outputs: dict[str, Tensor], batch: Batch, siamese: bool) -> TaskOutput:
        return TaskOutput(outputs["logits"], outputs["logits"])

    # --- the report ---
    def report_view(self, result: dict, rows: list[dict] | None, limit: int) -> dict:
        """The dev questions answered worst: lowest F1 against their gold answers first, the more confident first
        among equals, each with its question, gold and predicted answers and its context with both marked
        (`marked_context`)."""
        ranked = []
        for row in rows or []:
            f1 = max((answer_f1(row["predicted"], gold) for gold in (row["gold"] or [""])), default=0.0)
            if f1 < 1:
                ranked.append((f1, row.get("confidence") or 0.0, row))
        ranked.sort(key=lambda item: (item[0], -item[1]))
        worst = [{"id": row["id"], "f1": f1, "confidence": row.get("confidence"), "question": row["question"],
                  "gold": row["gold"], "predicted": row["predicted"],
                  "context": marked_context(row["context"], [tuple(s) for s in row.get("gold_spans", [])],
                                            tuple(row["span"]) if row.get("span") else None)}
                 for f1, _, row in ranked[:limit]]
        return {"worst": worst, "wrong": len(ranked), "questions": len(rows or []),
                "null_answer": result.get("null_answer")}


def marked_context(context: str, gold: Sequence[tuple[int, int]], predicted: tuple[int, int] | None,
                   keep: int = 150) -> list[dict]:
    """A context as the report marks it: pieces of text in order, each with whether a gold answer and whether the
    predicted answer cover it (both: right); unmarked stretches longer than `keep` characters on either side of a
    mark are cut to `keep` with an ellipsis, so that a long paragraph shows its answers' neighbourhood."""
    spans = [*gold, *([predicted] if predicted else [])]
    cuts = sorted({0, len(context), *(at for span in spans for at in span)})
    pieces = []
    for start, end in itertools.pairwise(cuts):
        in_gold = any(a <= start and end <= b for a, b in gold)
        in_predicted = predicted is not None and predicted[0] <= start and end <= predicted[1]
        text = context[start:end]
        if not (in_gold or in_predicted) and len(text) > 2 * keep + 1:
            head = "" if start == 0 and end < len(context) else text[:keep]
            tail = "" if end == len(context) else text[-keep:]
            text = f"{head}\u2026{tail}"
        pieces.append({"text": text, "gold": in_gold, "predicted": in_predicted})
    return pieces
