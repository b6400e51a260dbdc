"""`tag`: a sentence of words -> one tag per word (named entities, CoNLL-2003). A sentence is cut into overlapping
windows of `model.max_length` sub-words (never truncated; they share `window_overlap` of a window); each window is a
model row, a word's tag is learned at its first sub-word (`every_subword`: at each), and read back at its first
sub-word from the one window that predicts it (minbert.tasks.alignment; the options: data.formats.TagOptions). The
head reads every token's hidden state (token states, not a sentence vector): (B, T, tags) logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minbert.data.batching import Batch, TaskData, WindowData
from minbert.data.formats import TaggedExample
from minbert.data.formats.base import TagOptions
from minbert.data.spec import DataSpec
from minbert.errors import ConfigError, DataError
from minbert.metrics import entities, entity_scores
from minbert.options import Chosen
from minbert.outputs import check_output_file, write_output_text
from minbert.tasks.alignment import IGNORE, inside_tags, merge_tag_logits, tag_windows
from minbert.tasks.kinds.base import KINDS, TaskKind
from minbert.tasks.kinds.bodies import TextBody
from minbert.tasks.kinds.classify import EPS
from minbert.tasks.losses import LOSSES, Loss, TaskOutput
from minbert.tasks.pooling import TokenStates

if TYPE_CHECKING:
    from pydantic import BaseModel

    from minbert.tokenizer import Tokenizer


class TokenCrossEntropy(Loss):
    """Cross-entropy over the labelled sub-words of (B, T, tags) logits; positions labelled IGNORE (-100: [CLS],
    [SEP], padding, a word's later sub-words) learn nothing."""

    def forward(self, output: TaskOutput, labels: Tensor) -> Tensor:
        logits = output.logits.float()
        return F.cross_entropy(logits.flatten(0, 1), labels.long().flatten(), ignore_index=IGNORE)


LOSSES.register("token_cross_entropy")(TokenCrossEntropy)


class TagData(WindowData):
    """One split of a tagging task: its sentences (`examples`) as windows; labels (windows, longest window): each
    position's tag, IGNORE where none is learned."""

    def __init__(self, task: str, examples: list[TaggedExample], tokenizer: Tokenizer, max_length: int,
                 tags: Sequence[str], options: TagOptions | None = None):
        options = options or TagOptions()
        index = {tag: i for i, tag in enumerate(tags)}
        labelled = bool(examples) and all(e.tags is not None for e in examples)
        gold = [[index[t] for t in e.tags] for e in examples] if labelled else None
        width = min(max_length, tokenizer.model_max_length) - 2  # sub-words per window, as tag_windows cuts them
        windows = tag_windows(tokenizer, [e.words for e in examples], gold, max_length,
                              stride=int(width * options.window_overlap), every_subword=options.every_subword,
                              inside=inside_tags(tags) if options.every_subword else None)
        labels = None
        if labelled:
            labels = torch.full((len(windows), max((len(w.input_ids) for w in windows), default=0)), IGNORE,
                                dtype=torch.long)
            for i, window in enumerate(windows):
                labels[i, : len(window.labels)] = torch.from_numpy(window.labels)
        super().__init__(task, examples, tokenizer, windows, [w.sentence for w in windows], labels)

    def batch_labels(self, positions: list[int], width: int) -> Tensor | None:
        return self.labels[positions, :width] if self.labels is not None else None


@dataclass(frozen=True, slots=True)
class TextWords(TaggedExample):
    """A raw text (serve's body, predict's --text) as the words a tagger takes, with each word's characters in it."""

    text: str
    offsets: tuple[tuple[int, int], ...]  # text[start:end] is the word


@KINDS.register("tag")
class Tag(TaskKind):
    default_loss = "token_cross_entropy"
    described = "token tagging"
    label_dtype = torch.long
    prediction_dtype = object  # a sentence's tags
    row_details = False
    report_template = "tag"
    not_yet = frozenset({"distillation", "the sentence-transformers export"})
    gives = frozenset()  # token states only: TaskKind.check_config refuses what needs sentence vectors or rows
    has = "a state per token of its sentences of words, and no sentence vector"

    @classmethod
    def serves(cls, spec: DataSpec) -> bool:
        return spec.example_type is TaggedExample

    @classmethod
    def outputs(cls, spec: DataSpec, loss: str) -> int:
        return len(spec.tag_labels)  # 0 until the label set is read from the train file

    @classmethod
    def takes_loss(cls, loss: type[Loss]) -> bool:
        return loss is TokenCrossEntropy

    @property
    def tags(self) -> tuple[str, ...]:
        return self.spec.tag_labels

    @property
    def class_names(self) -> list[str]:
        return list(self.tags)

    def labels(self, examples: Sequence[TaggedExample]) -> np.ndarray:
        """Each sentence's gold tags (strings, as the tag metrics take them)."""
        gold = np.empty(len(examples), dtype=object)
        gold[:] = [list(e.tags) for e in examples]
        return gold

    # --- examples -> model inputs ---
    def task_data(self, examples: list, tokenizer: Tokenizer, max_length: int, **options: object) -> TaskData:
        if not self.tags:
            raise ConfigError(f"tasks.{self.name}.data.format.labels: the label set is not known (declare it, or "
                              "read the train file first)")
        return TagData(self.name, examples, tokenizer, max_length, self.tags, self.spec.format.options)

    def pooling(self, chosen: Chosen | str) -> nn.Module:
        return TokenStates()  # a tag per token: the head reads every token (a pooling is refused)

    # --- outputs -> predictions ---
    def score(self, logits: Tensor, loss: Loss, head: nn.Module) -> Tensor:
        return logits

    def predict(self, output: TaskOutput) -> Tensor:
        return output.logits.float().argmax(dim=-1)  # (B, T) a tag index per token

    def soft(self, output: TaskOutput) -> Tensor:
        return output.logits.float().softmax(dim=-1)  # (B, T, tags)

    def decide(self, soft: np.ndarray) -> np.ndarray:
        decided = np.empty(len(soft), dtype=object)
        decided[:] = [[self.tags[i] for i in probabilities.argmax(axis=-1)] for probabilities in soft]
        return decided

    def buffers(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        return np.empty(count, dtype=object), np.empty(count, dtype=object)  # per window, then per sentence

    def store(self, hard: np.ndarray, soft: np.ndarray, batch: Batch, output: TaskOutput) -> None:
        """Each window's tag probabilities over its own tokens (padding dropped)."""
        probabilities = self.soft(output).cpu().numpy()
        lengths = batch.inputs["attention_mask"].sum(dim=1).tolist()
        for row, (position, length) in enumerate(zip(batch.positions, lengths, strict=True)):
            soft[position] = probabilities[row, :length]

    def collect(self, data: TaskData, hard: np.ndarray, soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per sentence: its words' tags, and their (words, tags) probabilities from the windows that predict them."""
        merged = merge_tag_logits(data.windows, list(soft), [len(e.words) for e in data.examples])
        per_sentence = np.empty(len(merged), dtype=object)
        per_sentence[:] = merged
        return self.decide(per_sentence), per_sentence

    # --- predictions for files and people ---
    def show(self, prediction: object) -> str:
        return " ".join(prediction)

    def written(self, prediction: object) -> str:
        return self.show(prediction)

    def named(self, predictions: list) -> list:
        return predictions  # tags are their own names

    def answer(self, decided: np.ndarray, soft: np.ndarray) -> dict:
        return {"tags": list(decided)}

    # --- serve and predict's natural form: raw text -> entities with character offsets ---
    serve_form = "tag"

    def serve_body(self) -> type[BaseModel]:
        return TextBody

    def serve_rows(self, body: TextBody) -> list[tuple[str, ...]]:
        return body.rows()

    def predict_rows(self, given: dict[str, list[str]]) -> list[tuple[str, ...]]:
        self.check_flags(given)
        if not given.get("--text"):
            raise DataError("give the text(s) to tag, or --input FILE in the task's data format")
        for number, text in enumerate(given["--text"], start=1):
            if not text.strip():
                raise DataError(f"--text {number} is empty")
        return [(text,) for text in given["--text"]]

    def serve_examples(self, rows: Sequence[tuple[str, ...]], tokenizer: Tokenizer) -> list[TextWords]:
        """Each text split into words by the tokenizer's pre-tokenizer, each word's offsets kept."""
        examples = []
        for i, (text,) in enumerate(rows):
            words = tokenizer.words(text)
            examples.append(TextWords(str(i), tuple(w for w, _ in words), None, i + 1, text,
                                      tuple(tuple(o) for _, o in words)))
        return examples

    def serve_answers(self, examples: Sequence[TextWords], decided: np.ndarray, soft: np.ndarray) -> list[dict]:
        """The entities (read from the predicted tags as the metrics read them: metrics.entities) with their
        characters in the text and a score, the mean probability of their words' predicted tags; the words and
        their tags."""
        answers = []
        for example, tags, probabilities in zip(examples, decided, soft, strict=True):
            confidence = probabilities.max(axis=-1) if len(tags) else np.zeros(0)
            found = []
            for kind, first, end in entities(tags):
                start, stop = example.offsets[first][0], example.offsets[end - 1][1]
                found.append({"text": example.text[start:stop], "type": kind, "start": start, "end": stop,
                              "score": float(confidence[first:end].mean())})
            answers.append({"entities": found, "words": list(example.words), "tags": list(tags)})
        return answers

    def answer_lines(self, number: int, answer: dict) -> list[str]:
        """One line per entity: the example's number, type, start, end (characters, end exclusive), score, text."""
        return [f"{number}\t{e['type']}\t{e['start']}\t{e['end']}\t{e['score']:.4f}\t{e['text']}"
                for e in answer["entities"]]

    def prediction_name(self, split: str) -> str:
        return f"{self.file_prefix}-{split}-output.txt"

    def write_predictions(self, path: Path, examples: Sequence, predictions: np.ndarray) -> None:
        """CoNLL layout: `word predicted_tag` a line for each word of each sentence in file order, a blank line
        after each sentence."""
        path = check_output_file(path)
        text = "".join("".join(f"{word} {tag}\n" for word, tag in zip(e.words, tags, strict=True)) + "\n"
                       for e, tags in zip(examples, predictions, strict=True))
        write_output_text(path, text)

    def detail(self, example: TaggedExample, prediction: object, soft: np.ndarray | None) -> dict:
        row = {"id": example.id, "words": list(example.words), "gold": list(example.tags or ()),
               "predicted": list(prediction)}
        if soft is not None:
            row["confidence"] = [round(float(p), 4) for p in soft.max(axis=-1)]  # each word's predicted tag's
        return row

    # --- training ---
    def divergence(self, a: TaskOutput, b: TaskOutput) -> Tensor:
        """Symmetric KL between the token distributions (padding included: both outputs pad alike)."""
        p, q = F.log_softmax(a.logits.float(), dim=-1).flatten(0, 1), F.log_softmax(b.logits.float(), -1).flatten(0, 1)
        return (F.kl_div(p, q, log_target=True, reduction="batchmean")
                + F.kl_div(q, p, log_target=True, reduction="batchmean"))

    def distillation_target(self, gold: Tensor, teacher: Tensor, share: float, temperature: float) -> Tensor:
        raise ConfigError(f"tasks.{self.name}: distillation does not take task kind {self.described!r} (tag) yet")

    def strata(self, labels: np.ndarray) -> np.ndarray:
        return np.zeros(len(labels), dtype=np.int64)  # one group: a sentence has no single label

    # --- evaluation, ensembles, exports ---
    def analysis(self, predictions: np.ndarray, labels: np.ndarray) -> dict:
        return {"entity_scores": entity_scores(list(predictions), list(labels))}

    def average(self, outputs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
        """Per sentence, the (weighted) mean of the models' (words, tags) probabilities."""
        weights = [1 / len(outputs)] * len(outputs) if weights is None else list(weights)
        mean = np.empty(len(outputs[0]), dtype=object)
        for i in range(len(mean)):
            mean[i] = sum(w * member[i] for w, member in zip(weights, outputs, strict=True))
        return mean

    def ensemble_loss(self, mean: np.ndarray, labels: np.ndarray) -> float:
        """The mean negative log-likelihood of the gold tags, over every word of every sentence."""
        index = {tag: i for i, tag in enumerate(self.tags)}
        gold = np.concatenate([probabilities[np.arange(len(tags)), [index[t] for t in tags]]
                               for probabilities, tags in zip(mean, labels, strict=True)])
        return float(-np.log(np.clip(gold, EPS, 1)).mean())

    def export_entry(self) -> dict:
        return {"classification": False, "tagging": True, "num_outputs": self.num_outputs, "tags": list(self.tags)}

    graph_output_names = ("logits",)

    def graph_outputs(self, logits: Tensor, score: Tensor, vectors: Tensor) -> tuple[Tensor, ...]:
        return (logits,)  # (B, T, tags) per token: the windows' merge happens outside the graph

    def graph_task_output(self, outputs: dict[str, Tensor], batch: Batch, siamese: bool) -> TaskOutput:
        return TaskOutput(outputs["logits"], outputs["logits"])

    # --- the report ---
    def report_view(self, result: dict, rows: list[dict] | None, limit: int) -> dict:
        """Per entity type, precision, recall, F1 and gold count (metrics.json's entity_scores); the dev sentences
        with most entity errors (gold entities missed plus predicted entities that are not gold), the more confident
        first among equals, with their gold and their predicted entities marked (`marked`)."""
        ranked = []
        for row in rows or []:
            gold, predicted = set(entities(row["gold"])), set(entities(row["predicted"]))
            if errors := len(gold ^ predicted):
                confidence = row.get("confidence") or [0.0]
                ranked.append((errors, sum(confidence) / len(confidence), row, gold, predicted))
        ranked.sort(key=lambda item: (-item[0], -item[1]))
        worst = [{"id": row["id"], "errors": errors, "words": len(row["words"]),
                  "gold": marked(row["words"], gold, predicted), "predicted": marked(row["words"], predicted, gold),
                  "confidence": min(row["confidence"]) if row.get("confidence") else None}
                 for errors, _, row, gold, predicted in ranked[:limit]]
        return {"types": [{"type": name, **scores} for name, scores in result.get("entity_scores", {}).items()],
                "worst": worst, "with_errors": len(ranked), "sentences": len(rows or [])}


def marked(words: Sequence[str], found: set[tuple[str, int, int]], other: set[tuple[str, int, int]]) -> list[dict]:
    """A sentence as the report marks it: each entity of `found` ((type, first, end) as metrics.entities gives) one
    piece with its type and whether `other` has it too (found right, or missed / wrong), the words between entities
    plain pieces (type None)."""
    pieces, at = [], 0
    for kind, first, end in sorted(found, key=lambda entity: entity[1]):
        if first > at:
            pieces.append({"text": " ".join(words[at:first]), "type": None, "right": True})
        pieces.append({"text": " ".join(words[first:end]), "type": kind, "right": (kind, first, end) in other})
        at = end
    if at < len(words):
        pieces.append({"text": " ".join(words[at:]), "type": None, "right": True})
    return pieces
