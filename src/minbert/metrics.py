"""Metrics, each a unit of a registry (chosen by name in a task's data spec), computed by scikit-learn, scipy and
seqeval; the overall score; confusion matrices; regression error by bin.

A metric declares the input it scores (`inputs`): `labels` (class indices), `scores` (regression), `tags` (one tag
sequence per sentence), `spans` (answer texts) or `choices` (the chosen choice's index). Each kind of input has its
own registry (`REGISTRIES`), so a name means one thing per input: a span task's `f1` is SQuAD's token F1, a
classification task's `f1` the positive class's F1. `METRICS` is the sentence tasks' registry (labels and scores,
every spec before tagging, spans and choices). A metric also says whether it needs exactly two classes (`binary`),
and how it is put on a 0..1 scale so that tasks can be averaged (`normalize`: a correlation r in [-1, 1] becomes
(r + 1) / 2). This module imports nothing of minbert's but the registry: data specs, the training loop and every
report read it.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from minbert.options import Registry

# scikit-learn, scipy and seqeval load when a metric is first computed, not with the module: every process that
# trains, predicts or checks data imports this registry, and they take about a second to import.

INPUTS = ("labels", "scores", "tags", "spans", "choices")  # what a metric scores (see the module's docstring)
METRICS = Registry("metric")  # sentence tasks: class labels and scores
TAG_METRICS = Registry("tagging metric")
SPAN_METRICS = Registry("span metric")
CHOICE_METRICS = Registry("multiple-choice metric")
REGISTRIES = {"labels": METRICS, "scores": METRICS, "tags": TAG_METRICS, "spans": SPAN_METRICS,
              "choices": CHOICE_METRICS}


def _check_inputs(name: str, predictions: Sequence, labels: Sequence, least: int = 1) -> None:
    if len(predictions) != len(labels) or len(labels) < least:
        raise ValueError(f"{name} needs two equal inputs of {least}+ values (got {len(predictions)} and "
                         f"{len(labels)})")


class Metric:
    """What every metric declares; the defaults suit a classification metric already on 0..1."""

    inputs = "labels"  # one of INPUTS
    for_classification = True  # derived from `inputs`: anything but scores (what data specs check)
    binary = False  # needs exactly two classes (the positive one is the spec's `positive` class)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.inputs not in INPUTS:
            raise TypeError(f"{cls.__name__}.inputs = {cls.inputs!r}: one of {INPUTS}")
        cls.for_classification = cls.inputs != "scores"

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        raise NotImplementedError

    def normalize(self, value: float) -> float:
        return value


@METRICS.register("accuracy")
class Accuracy(Metric):
    """The share of exact matches."""

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        _check_inputs("accuracy", predictions, labels)
        from sklearn import metrics as sk

        return float(sk.accuracy_score(np.asarray(labels), np.asarray(predictions)))


@METRICS.register("f1")
class F1(Metric):
    """F1 of the positive class (binary tasks)."""

    binary = True

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        _check_inputs("f1", predictions, labels)
        from sklearn import metrics as sk

        return float(sk.f1_score(np.asarray(labels), np.asarray(predictions), pos_label=positive,
                                 average="binary", zero_division=0.0))


@METRICS.register("macro_f1")
class MacroF1(Metric):
    """The unweighted mean of every class's F1 (the classes seen in gold labels or predictions)."""

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        _check_inputs("macro_f1", predictions, labels)
        from sklearn import metrics as sk

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
        from sklearn import metrics as sk

        return float(sk.matthews_corrcoef(np.asarray(labels), np.asarray(predictions)))


class ScoreCorrelation(Correlation):
    """A correlation of predicted and gold scores, by one of scipy.stats' functions."""

    inputs = "scores"
    name = ""
    scipy_statistic = "pearsonr"  # the name of the function in scipy.stats

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        predictions, labels = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
        _check_inputs(self.name, predictions, labels, least=2)
        if predictions.std() == 0:
            return 0.0
        from scipy import stats

        return float(getattr(stats, self.scipy_statistic)(predictions, labels).statistic)


@METRICS.register("pearson")
class Pearson(ScoreCorrelation):
    """Pearson's r between predicted and gold scores."""

    name, scipy_statistic = "pearson", "pearsonr"


@METRICS.register("spearman")
class Spearman(ScoreCorrelation):
    """Spearman's rank correlation between predicted and gold scores."""

    name, scipy_statistic = "spearman", "spearmanr"


# Token tagging. Entities are read as conlleval reads them by default (seqeval's default mode is a port of it): an
# entity starts at B-, S-, or an I-/E- whose previous tag is O or of another type, and ends before O, B-, S-, a tag
# of another type, or after E-/S-. That one reading serves all three schemes: IOB1 (`I-PER I-PER B-PER` is two
# entities, `O I-LOC` one), IOB2 and IOBES.
TAG_SCHEMES = ("iob1", "iob2", "iobes")


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 (an entity opens with I-, B- only where two of one type touch) -> IOB2 (every entity opens with B-):
    an I-X after O or after a tag of another type opens an entity, so it becomes B-X."""
    converted, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        converted.append(tag)
        previous = tag
    return converted


def iobes_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOBES -> IOB2: S-X (a one-word entity) is B-X, E-X (an entity's last word) is I-X."""
    return [{"S-": "B-", "E-": "I-"}.get(tag[:2], tag[:2]) + tag[2:] for tag in tags]


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, end) of each entity of one sentence's tags, end exclusive (tags[first:end])."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, first, last + 1) for kind, first, last in get_entities(list(tags))]


def _tag_inputs(name: str, predictions: Sequence[Sequence[str]],
                labels: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) as seqeval reads them (lists of lists of str), after checking they match word for word."""
    _check_inputs(name, predictions, labels)
    for i, (predicted, gold) in enumerate(zip(predictions, labels, strict=True)):
        if len(predicted) != len(gold):
            raise ValueError(f"{name}: sentence {i} has {len(gold)} gold tags but {len(predicted)} predicted")
    return [[str(t) for t in gold] for gold in labels], [[str(t) for t in predicted] for predicted in predictions]


class TagMetric(Metric):
    """Scores tag sequences: `predictions` and `labels` are one list of tag strings per sentence."""

    inputs = "tags"


class EntityScore(TagMetric):
    """One of seqeval's entity-level scores (an entity counts when its type, first and last word all match)."""

    name = ""
    seqeval_score = "f1_score"  # the name of the function in seqeval.metrics

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        from seqeval import metrics as seqeval

        gold, predicted = _tag_inputs(self.name, predictions, labels)
        return float(getattr(seqeval, self.seqeval_score)(gold, predicted, zero_division=0))


@TAG_METRICS.register("entity_f1")
class EntityF1(EntityScore):
    """Micro F1 over entities, as conlleval."""

    name, seqeval_score = "entity_f1", "f1_score"


@TAG_METRICS.register("entity_precision")
class EntityPrecision(EntityScore):
    """The share of predicted entities that are gold entities."""

    name, seqeval_score = "entity_precision", "precision_score"


@TAG_METRICS.register("entity_recall")
class EntityRecall(EntityScore):
    """The share of gold entities predicted."""

    name, seqeval_score = "entity_recall", "recall_score"


@TAG_METRICS.register("token_accuracy")
class TokenAccuracy(TagMetric):
    """The share of words whose tag is right (O included)."""

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        gold, predicted = _tag_inputs("token_accuracy", predictions, labels)
        if not any(gold):
            raise ValueError("token_accuracy needs at least one word")
        from seqeval import metrics as seqeval

        return float(seqeval.accuracy_score(gold, predicted))


def entity_scores(predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]]) -> dict[str, dict]:
    """Per entity type (sorted), as conlleval's table: {type: {"precision", "recall", "f1", "support"}}; support is
    the number of gold entities of the type. Types that are only predicted are listed too (support 0)."""
    from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

    gold, predicted = _tag_inputs("entity_scores", predictions, labels)
    # seqeval orders its per-type arrays by the sorted union of gold and predicted types
    types = sorted({kind for kind, _, _ in get_entities(gold)} | {kind for kind, _, _ in get_entities(predicted)})
    if not types:
        return {}
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, average=None, zero_division=0)
    return {kind: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for kind, p, r, f, n in zip(types, precision, recall, f1, support, strict=True)}


# Extractive QA, as the official SQuAD v1.1 evaluation script (evaluate-v1.1.py) scores it, on 0..1 (the script
# prints 0..100) like every other metric here.
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's `normalize_answer`: lower case, drop string.punctuation (ASCII only, as the script: a curly
    quote or a dash beyond ASCII stays), drop the whole words a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def answer_f1(prediction: str, gold: str) -> float:
    """F1 of the normalised token bags. Where either side normalises to nothing, 1 if both do, else 0: SQuAD v2.0's
    rule (no-answer questions; v1.1's script gave 0 even to two empty answers, which no v1.1 gold answer is)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


class SpanMetric(Metric):
    """Scores answer texts: `predictions` one string per question, `labels` each question's gold answers (a list;
    empty for a question without an answer, which only the empty prediction matches, as SQuAD v2.0 scores it)."""

    inputs = "spans"
    per_answer = staticmethod(answer_exact_match)

    def __call__(self, predictions: Sequence, labels: Sequence, positive: int = 1) -> float:
        _check_inputs(type(self).__name__, predictions, labels)
        if any(isinstance(golds, str) for golds in labels):
            raise ValueError("span metrics take a list of gold answers per question, not one string")
        return float(np.mean([max(self.per_answer(predicted, gold) for gold in (list(golds) or [""]))
                              for predicted, golds in zip(predictions, labels, strict=True)]))


@SPAN_METRICS.register("exact_match")
class ExactMatch(SpanMetric):
    """The share of questions whose normalised answer equals a normalised gold answer."""


@SPAN_METRICS.register("f1")
class AnswerF1(SpanMetric):
    """The mean over questions of the best token F1 against any gold answer."""

    per_answer = staticmethod(answer_f1)


@CHOICE_METRICS.register("accuracy")
class ChoiceAccuracy(Accuracy):
    """The share of questions whose chosen choice (an index into its choices) is the gold one."""

    inputs = "choices"


def metric(name: str, inputs: str = "labels") -> Metric:
    """The metric `name` of the registry for `inputs` (labels and scores share the sentence tasks' `METRICS`)."""
    return REGISTRIES[inputs][name]()


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    return metric("accuracy")(predictions, labels)


def pearson(predictions: Sequence[float], labels: Sequence[float]) -> float:
    return metric("pearson")(predictions, labels)


def normalized(name: str, value: float, inputs: str | None = None) -> float:
    """A metric on a 0..1 scale, so tasks can be averaged (Pearson r in [-1, 1] -> (r + 1) / 2). Without `inputs`,
    the first registry that has the name: a name in several registries is put on 0..1 the same way in each (a
    test holds them to it), so a task's (metric, value) pair is enough."""
    if inputs is not None:
        return metric(name, inputs).normalize(value)
    for registry in REGISTRIES.values():  # METRICS first
        if name in registry:
            return registry[name]().normalize(value)
    raise KeyError(f"no metric is named {name!r}")


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
    from sklearn import metrics as sk

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
