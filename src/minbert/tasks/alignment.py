"""From words, questions and choices to model rows and back, for the tagging, span and choice kinds: the maths that
does not depend on a task, a model or a batch loop.

- Tagging: words -> sub-words; the first sub-word of each word carries its tag (option: every sub-word); a sentence
  longer than the model takes is cut into overlapping windows, never truncated; per-window logits merged back to one
  row per word.
- Extractive QA: question + context windows over long contexts (`doc_stride` tokens of overlap), training targets
  per window, and decoding of start/end logits back to the context's characters (as transformers' run_qa:
  `prepare_train_features` and `postprocess_qa_predictions`), with SQuAD v2.0's null score.
- Multiple choice: one (stem, choice) row per choice; the question's scores in a padded (questions, choices) table
  whose missing choices are masked, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from minbert.metrics import answer_f1
from minbert.tokenizer import Tokenizer

IGNORE = -100  # a position that learns no tag (cross-entropy's ignore_index)


# --- tagging ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TagWindow:
    """One model row of a sentence: `[CLS] sub-words [SEP]`, all token type 0."""

    sentence: int  # which sentence of the input
    input_ids: np.ndarray  # (T,) int32
    word_ids: np.ndarray  # (T,) int32: the word each position belongs to; -1 for [CLS] and [SEP]
    labels: np.ndarray  # (T,) int64: the tag to learn at each position, IGNORE elsewhere (all IGNORE without tags)
    predicts: np.ndarray  # (T,) bool: where a word's prediction is read; over a sentence's windows, once per word


def tag_windows(tokenizer: Tokenizer, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None = None,
                max_length: int = 512, stride: int | None = None, every_subword: bool = False,
                inside: Sequence[int] | None = None) -> list[TagWindow]:
    """Each sentence's windows, in order. A sentence of more than `max_length - 2` sub-words is cut into windows of
    that many sub-words overlapping by `stride` (default: half a window), the last one ending at the sentence's end;
    a word whose sub-words straddle a window edge is still read at its first sub-word.

    `tags`: each word's tag index, learned at its first sub-word (`every_subword`: at each of them, a later one
    taking `inside[tag]` when given, e.g. B-PER -> I-PER, as run_ner's `label_all_tokens`). A word the tokenizer
    gives no sub-word (invisible characters only) is read as [UNK], so that every word gets a prediction.

    Each word is predicted in the window where it has the most context: the largest min(sub-words before it,
    sub-words after it) within the window, a side that reaches the sentence's start or end counting as complete;
    ties go to the earlier window."""
    if tags is not None and len(tags) != len(sentences):
        raise ValueError(f"got {len(sentences)} sentences but {len(tags)} tag sequences")
    width = min(max_length, tokenizer.model_max_length) - 2  # sub-words per window
    stride = width // 2 if stride is None else stride
    if width < 1 or not 0 <= stride < width:
        raise ValueError(f"stride = {stride}: windows of {width} sub-words need a stride in 0..{width - 1}")
    windows = []
    for index, encoding in enumerate(tokenizer.encode_words(sentences)):
        words = len(sentences[index])
        sentence_tags = None if tags is None else np.asarray(tags[index], dtype=np.int64)
        if sentence_tags is not None and len(sentence_tags) != words:
            raise ValueError(f"sentence {index} has {words} words but {len(sentence_tags)} tags")
        ids, word_ids = _every_word_has_a_subword(tokenizer, encoding.ids, encoding.word_ids, words, index)
        first = np.ones(len(ids), dtype=bool)
        first[1:] = word_ids[1:] != word_ids[:-1]
        labels = np.full(len(ids), IGNORE, dtype=np.int64)
        if sentence_tags is not None:
            learned = first | every_subword
            labels[learned] = sentence_tags[word_ids[learned]]
            if every_subword and inside is not None:
                later = ~first
                labels[later] = np.asarray(inside, dtype=np.int64)[labels[later]]
        for start, owned in _windows_and_owners(len(ids), width, stride, first):
            stop = start + width
            windows.append(TagWindow(
                sentence=index,
                input_ids=np.concatenate([[tokenizer.cls_id], ids[start:stop], [tokenizer.sep_id]]).astype(np.int32),
                word_ids=np.concatenate([[-1], word_ids[start:stop], [-1]]).astype(np.int32),
                labels=np.concatenate([[IGNORE], labels[start:stop], [IGNORE]]),
                predicts=np.concatenate([[False], owned, [False]])))
    return windows


def _every_word_has_a_subword(tokenizer: Tokenizer, ids: Sequence[int], word_ids: Sequence[int | None], words: int,
                              sentence: int) -> tuple[np.ndarray, np.ndarray]:
    """(sub-word ids, word ids) with [UNK] standing for each word the tokenizer gave nothing."""
    ids, word_ids = np.asarray(ids, dtype=np.int64), np.asarray(word_ids, dtype=np.int64)
    seen = np.zeros(words, dtype=bool)
    seen[word_ids] = True
    if seen.all():
        return ids, word_ids
    if tokenizer.unk_id is None:
        raise ValueError(f"sentence {sentence}: word {int(np.argmin(seen))} has no sub-words and the vocabulary no "
                         "[UNK] to stand for it")
    missing = np.flatnonzero(~seen)
    at = np.searchsorted(word_ids, missing)  # word ids ascend: the empty word's place among its neighbours
    return np.insert(ids, at, tokenizer.unk_id), np.insert(word_ids, at, missing)


def _windows_and_owners(length: int, width: int, stride: int, first: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """[(start, owned)]: each window's first sub-word and, per sub-word of it, whether the window predicts it."""
    if length <= width:
        return [(0, first.copy())]
    step = width - stride
    starts = [*range(0, length - width, step), length - width]
    best_context = np.full(length, -1.0)
    owner = np.zeros(length, dtype=np.int64)
    positions = np.arange(length)
    for w, start in enumerate(starts):
        span = positions[start:start + width]
        before = span - start if start > 0 else np.full(width, math.inf)
        after = start + width - 1 - span if start + width < length else np.full(width, math.inf)
        context = np.minimum(before, after)
        better = context > best_context[span]
        best_context[span[better]] = context[better]
        owner[span[better]] = w
    return [(start, first[start:start + width] & (owner[start:start + width] == w)) for w, start in enumerate(starts)]


def merge_tag_logits(windows: Sequence[TagWindow], logits: Sequence[np.ndarray | torch.Tensor],
                     words: Sequence[int]) -> list[np.ndarray]:
    """Per sentence, a (words, tags) array: each word's logits from the window that predicts it. `logits[i]` is
    window i's (T, tags) output, T at least its length (padding after it is never read); `words` the number of
    words of each sentence."""
    if len(logits) != len(windows):
        raise ValueError(f"got {len(logits)} logit rows for {len(windows)} windows")
    merged: list[np.ndarray | None] = [None] * len(words)
    filled = [np.zeros(n, dtype=np.int64) for n in words]
    for window, values in zip(windows, logits, strict=True):
        values = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if merged[window.sentence] is None:
            merged[window.sentence] = np.zeros((words[window.sentence], values.shape[-1]), dtype=values.dtype)
        at = np.flatnonzero(window.predicts)
        merged[window.sentence][window.word_ids[at]] = values[at]
        filled[window.sentence][window.word_ids[at]] += 1
    for sentence, counts in enumerate(filled):
        if merged[sentence] is None and words[sentence]:
            raise ValueError(f"sentence {sentence} has no window")
        if (counts != 1).any():
            raise ValueError(f"sentence {sentence}: word {int(np.flatnonzero(counts != 1)[0])} is predicted "
                             f"{int(counts[counts != 1][0])} times, not once (windows and sentences do not match)")
    return [np.zeros((0, 0)) if m is None else m for m in merged]


def inside_tags(tag_names: Sequence[str]) -> list[int]:
    """For `every_subword`: each tag's index for a word's later sub-words, B-X -> I-X where I-X is a tag (a word
    continues the entity its first sub-word began), every other tag itself."""
    index = {name: i for i, name in enumerate(tag_names)}
    return [index.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(tag_names)]


# --- extractive QA ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpanWindow:
    """One model row of a question: `[CLS] question [SEP] part of the context [SEP]` (token types 0, then 1)."""

    question: int  # which question of the input
    input_ids: np.ndarray  # (T,) int32
    token_type_ids: np.ndarray  # (T,) int8
    offsets: np.ndarray  # (T, 2) int64: each context sub-word's characters [start, end) in the context; -1 elsewhere
    start: int  # training targets: the answer's first and last sub-word, or 0 and 0 ([CLS]) when the window
    end: int  # does not hold the whole answer (or the question has none)

    @property
    def context(self) -> np.ndarray:
        """(T,) bool: the context's sub-words, the only positions an answer may start or end at."""
        return self.offsets[:, 0] >= 0


def span_windows(tokenizer: Tokenizer, questions: Sequence[str], contexts: Sequence[str],
                 answers: Sequence[tuple[int, int] | None] | None = None, max_length: int = 384,
                 doc_stride: int = 128, max_query_length: int = 64) -> list[SpanWindow]:
    """Each question's windows over its context, in order: windows of `max_length` tokens overlapping by
    `doc_stride` context sub-words. A question longer than `max_query_length` sub-words is cut there (as Google's
    BERT run_squad does), so that every window has room for context. `answers`: each question's gold answer as
    context characters [start, end), None for a question without one."""
    if len(questions) != len(contexts) or (answers is not None and len(answers) != len(questions)):
        raise ValueError(f"got {len(questions)} questions, {len(contexts)} contexts"
                         + ("" if answers is None else f" and {len(answers)} answers"))
    max_length = min(max_length, tokenizer.model_max_length)
    room = max_length - max_query_length - 3  # [CLS] question [SEP] context [SEP]
    if max_query_length < 1 or room < 1 or not 0 <= doc_stride < room:
        raise ValueError(f"doc_stride = {doc_stride}: windows of {max_length} tokens with questions of up to "
                         f"{max_query_length} leave {room} for the context; doc_stride must be below that")
    questions = [_cut_question(tokenizer, q, max_query_length) for q in questions]
    windows = []
    for index, encodings in enumerate(tokenizer.encode_pair_windows(questions, contexts, max_length, doc_stride)):
        answer = None if answers is None else answers[index]
        for encoding in encodings:
            sequence = np.array([-1 if s is None else s for s in encoding.sequence_ids])
            offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
            offsets[sequence != 1] = -1
            start, end = _answer_tokens(offsets, answer)
            windows.append(SpanWindow(index, np.asarray(encoding.ids, dtype=np.int32),
                                      np.asarray(encoding.type_ids, dtype=np.int8), offsets, start, end))
    return windows


def _cut_question(tokenizer: Tokenizer, question: str, max_query_length: int) -> str:
    """The question up to the end of its `max_query_length`-th sub-word (WordPiece is greedy from the left, so the
    cut text gives those same sub-words)."""
    offsets = tokenizer.backend.encode(question, add_special_tokens=False).offsets
    return question if len(offsets) <= max_query_length else question[:offsets[max_query_length - 1][1]]


def _answer_tokens(offsets: np.ndarray, answer: tuple[int, int] | None) -> tuple[int, int]:
    """(first, last) sub-word of the answer's characters in this window, or (0, 0) when the window does not hold
    all of it (run_qa's `prepare_train_features`)."""
    context = np.flatnonzero(offsets[:, 0] >= 0)
    if answer is None or not len(context):
        return 0, 0
    first_char, end_char = answer
    if not (offsets[context[0], 0] <= first_char and offsets[context[-1], 1] >= end_char):
        return 0, 0
    # the last sub-word starting at or before the answer's first character; the first ending at or after its end
    first = context[np.flatnonzero(offsets[context, 0] <= first_char)[-1]]
    last = context[np.flatnonzero(offsets[context, 1] >= end_char)[0]]
    return int(first), int(last)


@dataclass(frozen=True)
class SpanAnswer:
    """A question's decoded answer."""

    text: str  # the answer: context[start:end], or "" when the null score won (SQuAD v2.0)
    start: int  # context characters [start, end) of the best span (even when `text` is the null answer)
    end: int
    score: float  # the best span's start logit + end logit; -inf when no window had a valid span
    null_score: float  # start logit + end logit at [CLS], the smallest over the question's windows
    span_text: str  # the best span's text, whatever the null score

    @property
    def null_margin(self) -> float:
        """How far the null answer beats the best span: over a threshold, the answer is ""."""
        return self.null_score - self.score


def decode_spans(windows: Sequence[SpanWindow], start_logits: Sequence[np.ndarray | torch.Tensor],
                 end_logits: Sequence[np.ndarray | torch.Tensor], contexts: Sequence[str], n_best: int = 20,
                 max_answer_length: int = 30, null_threshold: float | None = None) -> list[SpanAnswer]:
    """Each question's answer: over all its windows, the best start <= end pair among each window's `n_best`
    starts and `n_best` ends, at most `max_answer_length` sub-words long, scored by start logit + end logit and
    mapped to the context's characters through the offsets (run_qa's `postprocess_qa_predictions`, except that
    the n-best are chosen among context sub-words only, so that a window whose best logits sit on the question
    still offers its best context span). With `null_threshold` (SQuAD v2.0), the answer is "" when the null score beats
    the best span's score by more than the threshold (see `best_null_threshold`). Logit rows may be longer than
    their window (padding is never read)."""
    if not len(windows) == len(start_logits) == len(end_logits):
        raise ValueError(f"got {len(start_logits)} start and {len(end_logits)} end logit rows for "
                         f"{len(windows)} windows")
    best: list[tuple[float, int, int]] = [(-math.inf, 0, 0)] * len(contexts)
    null = [math.inf] * len(contexts)
    seen = np.zeros(len(contexts), dtype=bool)
    for window, starts, ends in zip(windows, start_logits, end_logits, strict=True):
        length = len(window.input_ids)
        starts, ends = _numpy(starts)[:length], _numpy(ends)[:length]
        seen[window.question] = True
        null[window.question] = min(null[window.question], float(starts[0] + ends[0]))
        context = np.flatnonzero(window.context)
        if not len(context):
            continue
        top_starts = context[np.argsort(-starts[context], kind="stable")[:n_best]]  # (S,) positions
        top_ends = context[np.argsort(-ends[context], kind="stable")[:n_best]]  # (E,)
        scores = starts[top_starts][:, None] + ends[top_ends][None, :]  # (S, E)
        span = top_ends[None, :] - top_starts[:, None]
        scores = np.where((span >= 0) & (span < max_answer_length), scores, -np.inf)
        s, e = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[s, e] > best[window.question][0]:  # ties keep the earlier window
            best[window.question] = (float(scores[s, e]), int(window.offsets[top_starts[s], 0]),
                                     int(window.offsets[top_ends[e], 1]))
    if not seen.all():
        raise ValueError(f"question {int(np.argmin(seen))} has no window")
    answers = []
    for question, ((score, start, end), null_score) in enumerate(zip(best, null, strict=True)):
        span = contexts[question][start:end]
        is_null = null_threshold is not None and null_score - score > null_threshold
        answers.append(SpanAnswer("" if is_null else span, start, end, score, null_score, span))
    return answers


def _numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def best_null_threshold(answers: Sequence[SpanAnswer], golds: Sequence[Sequence[str]]) -> tuple[float, float]:
    """(threshold, mean F1) of the null threshold that scores best on these questions (dev), as SQuAD v2.0's
    official script chooses it: a question answers "" when its null margin is above the threshold. F1 per
    question is the best over its gold answers (none: only "" is right)."""
    if len(answers) != len(golds) or not answers:
        raise ValueError(f"got {len(answers)} answers for {len(golds)} questions")
    null_f1 = np.array([max(answer_f1("", g) for g in (list(gs) or [""])) for gs in golds])
    span_f1 = np.array([max(answer_f1(a.span_text, g) for g in (list(gs) or [""])) for a, gs in zip(answers, golds,
                                                                                                     strict=True)])
    margins = np.array([a.null_margin for a in answers])
    # Threshold t: a question answers "" when its margin is above t, else its span. Raising t to each margin in
    # turn (from below every margin: all answer "") turns the questions of that margin to their spans.
    order = np.argsort(margins, kind="stable")
    sorted_margins = margins[order]
    totals = null_f1.sum() + np.concatenate([[0.0], np.cumsum(span_f1[order] - null_f1[order])])
    candidates = np.concatenate([[-math.inf], sorted_margins])
    # only thresholds that turn every question of a margin (several may share one) are reachable
    reachable = np.concatenate([[True], np.append(sorted_margins[1:] != sorted_margins[:-1], True)])
    choice = int(np.flatnonzero(reachable)[np.argmax(totals[reachable])])
    return float(candidates[choice]), float(totals[choice] / len(answers))


# --- multiple choice -------------------------------------------------------------------------------------------------

def choice_rows(stems: Sequence[str], choices: Sequence[Sequence[str]]) -> tuple[list[str], list[str], list[int]]:
    """(firsts, seconds, counts): one (stem, choice) pair per choice, question by question, for the pair path
    (`[CLS] stem [SEP] choice [SEP]`), and how many choices each question has."""
    if len(stems) != len(choices):
        raise ValueError(f"got {len(stems)} stems but {len(choices)} choice lists")
    counts = [len(c) for c in choices]
    if min(counts, default=1) < 1:
        raise ValueError(f"question {counts.index(0)} has no choices")
    firsts = [stem for stem, count in zip(stems, counts, strict=True) for _ in range(count)]
    return firsts, [choice for question in choices for choice in question], counts


def choice_table(scores: torch.Tensor, counts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, mask): the flat per-choice scores of `choice_rows` as a (questions, most choices) table, and which
    cells are real choices. Missing cells hold -inf, so that they never win and get no probability."""
    counts_t = torch.as_tensor(list(counts), dtype=torch.long, device=scores.device)
    if scores.dim() != 1 or len(scores) != int(counts_t.sum()):
        raise ValueError(f"got {tuple(scores.shape)} scores for {int(counts_t.sum())} choices")
    if (counts_t < 1).any():
        raise ValueError("a question without choices has no answer")
    mask = torch.arange(int(counts_t.max()), device=scores.device)[None, :] < counts_t[:, None]  # (B, C)
    logits = torch.full(mask.shape, -math.inf, dtype=scores.dtype, device=scores.device)
    logits[mask] = scores  # row-major: question by question, choice by choice, as choice_rows lists them
    return logits, mask


def masked_choice_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C) logits with the cells that are no choice at -inf. Softmax, argmax and cross-entropy over the result
    see the real choices only (label smoothing would not: it reads every cell's log-probability)."""
    if logits.shape != mask.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and mask {tuple(mask.shape)} differ")
    if not mask.any(dim=-1).all():
        raise ValueError("a question without choices has no answer")
    return logits.masked_fill(~mask.bool(), -math.inf)


def choice_probabilities(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C) softmax over each question's real choices; exactly 0 for the rest."""
    return torch.softmax(masked_choice_logits(logits, mask).float(), dim=-1)


def predict_choices(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) the index of each question's best real choice."""
    return masked_choice_logits(logits, mask).argmax(dim=-1)
