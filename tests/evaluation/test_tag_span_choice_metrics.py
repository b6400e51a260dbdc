"""Tagging metrics (seqeval in conlleval's default reading, IOB1 included), SQuAD's answer metrics on hand-checked
answers, and the registries that keep a span task's `f1` apart from a classification task's."""

from __future__ import annotations

import random
import re
import string
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.scheme import IOB2, IOBES

from minbert.metrics import (
    CHOICE_METRICS,
    METRICS,
    REGISTRIES,
    SPAN_METRICS,
    TAG_METRICS,
    entities,
    entity_scores,
    iob1_to_iob2,
    iobes_to_iob2,
    metric,
    normalize_answer,
    normalized,
)

# --- tagging -------------------------------------------------------------------------------------------------------

# CoNLL-2003's own scheme: an entity opens with I-; B- only where two entities of one type touch.
GOLD_IOB1 = [
    "I-PER I-PER B-PER O I-LOC".split(),  # PER[0:2], PER[2:3], LOC[4:5]
    "O I-ORG I-ORG I-MISC O".split(),  # ORG[1:3], MISC[3:4] (a change of type opens an entity)
    "O O O".split(),
]
PRED_IOB1 = [
    "I-PER I-PER I-PER O I-LOC".split(),  # PER[0:3] (wrong: runs over two gold entities), LOC[4:5] right
    "O I-ORG I-ORG O I-MISC".split(),  # ORG[1:3] right, MISC[4:5] wrong
    "I-LOC O O".split(),  # LOC[0:1] wrong
]


def test_entities_are_read_as_conlleval_reads_iob1():
    assert entities("I-PER I-PER B-PER".split()) == [("PER", 0, 2), ("PER", 2, 3)]
    assert entities("O I-LOC".split()) == [("LOC", 1, 2)]
    assert entities("I-ORG I-MISC I-MISC".split()) == [("ORG", 0, 1), ("MISC", 1, 3)]


def test_iob1_figures_by_hand():
    # gold: 5 entities; predicted: 5; right: LOC[4:5], ORG[1:3] -> precision 2/5, recall 2/5
    gold, predicted = GOLD_IOB1, PRED_IOB1
    assert metric("entity_precision", "tags")(predicted, gold) == pytest.approx(2 / 5)
    assert metric("entity_recall", "tags")(predicted, gold) == pytest.approx(2 / 5)
    assert metric("entity_f1", "tags")(predicted, gold) == pytest.approx(2 / 5)
    # words: 13; wrong tags: sentence 0 word 2 (B-PER vs I-PER), sentence 1 words 3 and 4, sentence 2 word 0
    assert metric("token_accuracy", "tags")(predicted, gold) == pytest.approx(9 / 13)
    scores = entity_scores(predicted, gold)
    assert list(scores) == ["LOC", "MISC", "ORG", "PER"]
    assert scores["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert scores["LOC"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert scores["ORG"]["f1"] == 1.0 and scores["MISC"]["support"] == 1


def test_iob1_converted_to_iob2_gives_the_same_figures_in_seqeval_strict_mode():
    assert iob1_to_iob2("I-PER I-PER B-PER O I-LOC I-ORG I-ORG".split()) == \
        "B-PER I-PER B-PER O B-LOC B-ORG I-ORG".split()
    gold = [iob1_to_iob2(s) for s in GOLD_IOB1]
    predicted = [iob1_to_iob2(s) for s in PRED_IOB1]
    assert seqeval_f1(gold, predicted, mode="strict", scheme=IOB2) == pytest.approx(2 / 5)
    assert metric("entity_f1", "tags")(predicted, gold) == pytest.approx(2 / 5)


TYPES = ("PER", "LOC", "ORG")


def random_spans(rng: random.Random, length: int) -> list[tuple[str, int, int]]:
    """Non-overlapping entities, often touching and often of one type, so IOB1 needs its B- tags."""
    spans, position = [], rng.randint(0, 2)
    while position < length:
        end = min(length, position + rng.randint(1, 3))
        spans.append((rng.choice(TYPES[:2]), position, end))
        position = end + rng.choice((0, 0, 1, 2))
    return spans


def render(spans: list[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    tags = ["O"] * length
    previous_end, previous_type = -1, ""
    for kind, first, end in spans:
        for i in range(first, end):
            tags[i] = "I-" + kind
        if scheme == "iob2" or (scheme == "iob1" and previous_end == first and previous_type == kind):
            tags[first] = "B-" + kind
        if scheme == "iobes":
            if end - first == 1:
                tags[first] = "S-" + kind
            else:
                tags[first], tags[end - 1] = "B-" + kind, "E-" + kind
        previous_end, previous_type = end, kind
    return tags


@pytest.mark.parametrize("seed", range(20))
def test_every_scheme_reads_back_its_entities_and_conversions_agree(seed):
    rng = random.Random(seed)
    length = rng.randint(1, 30)
    spans = random_spans(rng, length)
    iob1, iob2, iobes = (render(spans, length, scheme) for scheme in ("iob1", "iob2", "iobes"))
    assert entities(iob1) == entities(iob2) == entities(iobes) == spans
    assert iob1_to_iob2(iob1) == iob2 == iobes_to_iob2(iobes)


@pytest.mark.parametrize("seed", range(5))
def test_default_mode_equals_strict_mode_on_well_formed_iob2_and_iobes(seed):
    rng = random.Random(seed)
    gold_spans = [random_spans(rng, 20) for _ in range(30)]
    # predictions: the gold entities with some dropped, retyped or shifted
    pred_spans = [[(rng.choice(TYPES) if rng.random() < 0.2 else k, f, e) for k, f, e in spans
                   if rng.random() > 0.2] for spans in gold_spans]
    for scheme, strict in (("iob2", IOB2), ("iobes", IOBES)):
        gold = [render(s, 20, scheme) for s in gold_spans]
        predicted = [render(s, 20, scheme) for s in pred_spans]
        ours = metric("entity_f1", "tags")(predicted, gold)
        assert 0 < ours < 1
        assert ours == pytest.approx(seqeval_f1(gold, predicted, mode="strict", scheme=strict))
    iob1 = metric("entity_f1", "tags")([render(s, 20, "iob1") for s in pred_spans],
                                       [render(s, 20, "iob1") for s in gold_spans])
    assert iob1 == pytest.approx(ours)


def test_tag_metrics_refuse_sentences_of_different_lengths_and_take_tuples():
    with pytest.raises(ValueError, match="sentence 1 has 2 gold tags but 1 predicted"):
        metric("entity_f1", "tags")([["O"], ["O"]], [["O"], ["O", "O"]])
    with pytest.raises(ValueError):
        metric("entity_f1", "tags")([["O"]], [["O"], ["O"]])
    # seqeval only flattens lists of lists: tuples and numpy arrays of tags must read the same
    assert metric("entity_f1", "tags")([("I-PER", "O")], (("I-PER", "O"),)) == 1.0
    assert entity_scores([["O"]], [["O"]]) == {}
    assert metric("entity_f1", "tags")([["O"]], [["O"]]) == 0.0  # no entities at all: 0, not a warning or nan


# --- extractive QA ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "normal"), [
    ("The Theory of Relativity", "theory of relativity"),  # "the" inside "theory" stays
    ("an anthem, a band and THE end.", "anthem band and end"),
    ("U.S.A. (1776)", "usa 1776"),
    ("  many\t spaces\n here ", "many spaces here"),
    ("a-ha", "aha"),  # punctuation goes first: "a-ha" is one word "aha", not the article a
    ("the", ""),
    ("café’s «best» — 1,000", "café’s «best» — 1000"),  # only ASCII punctuation goes, as in the official script
    ("Them thea Athens", "them thea athens"),
])
def test_normalize_answer_by_hand(text, normal):
    assert normalize_answer(text) == normal


def official_normalize(s: str) -> str:
    """evaluate-v1.1.py's normalize_answer as the script writes it: the oracle for the property test below."""
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


@given(st.text(alphabet=st.sampled_from(list("aAnNtThHeE .,-'’é\t")) | st.characters(), max_size=30))
def test_normalize_answer_equals_the_official_script(text):
    assert normalize_answer(text) == official_normalize(text)


def test_exact_match_and_f1_by_hand():
    em, f1 = metric("exact_match", "spans"), metric("f1", "spans")
    # pred [big, red, cat], gold [red, cat, sat]: 2 in common -> precision 2/3, recall 2/3
    assert f1(["the big red cat"], [["red cat sat"]]) == pytest.approx(2 / 3)
    # bags, not sets: [cat, cat, dog] vs [cat, dog, dog] share one cat and one dog
    assert f1(["cat cat dog"], [["cat dog dog"]]) == pytest.approx(2 / 3)
    assert em(["The Eiffel Tower."], [["Eiffel tower"]]) == 1.0
    # the best of several gold answers, per question; the mean over questions
    assert em(["Denver Broncos", "Paris"], [["Broncos", "Denver Broncos"], ["London"]]) == 0.5
    assert f1(["Denver Broncos"], [["Broncos", "the Carolina Panthers"]]) == pytest.approx(2 / 3)
    # an empty prediction scores 0 against an answer, 1 against a question without one (SQuAD v2.0)
    assert em([""], [["Denver"]]) == 0.0 and f1([""], [["Denver"]]) == 0.0
    assert em([""], [[]]) == 1.0 and f1([""], [[]]) == 1.0
    assert f1(["Denver"], [[]]) == 0.0
    assert f1(["no overlap"], [["something else"]]) == 0.0
    with pytest.raises(ValueError, match="list of gold answers"):
        em(["Paris"], ["Paris"])
    with pytest.raises(ValueError):
        em(["a", "b"], [["a"]])


def official_f1(prediction: str, gold: str) -> float:
    """evaluate-v1.1.py's f1_score, for answers that do not normalise to nothing."""
    p, g = official_normalize(prediction).split(), official_normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


@given(st.lists(st.sampled_from(["the", "cat", "dog", "a", "sat", "on", "mat", "Mat.", "an"]), min_size=1,
                max_size=8).map(" ".join),
       st.lists(st.lists(st.sampled_from(["cat", "dog", "sat", "the", "mat", "red"]), min_size=1, max_size=6)
                .map(" ".join), min_size=1, max_size=3))
def test_f1_equals_the_official_script_where_answers_have_words(prediction, golds):
    golds = [g for g in golds if official_normalize(g)]
    if not golds or not official_normalize(prediction):
        return
    assert metric("f1", "spans")([prediction], [golds]) == pytest.approx(max(official_f1(prediction, g)
                                                                                for g in golds))


# --- registries ------------------------------------------------------------------------------------------------------

def test_one_name_per_input_kind():
    assert metric("f1").binary and metric("f1").inputs == "labels"  # the classification F1, as before
    assert metric("f1", "spans").inputs == "spans" and not metric("f1", "spans").binary
    assert metric("f1", "spans")(["red cat"], [["red dog"]]) == 0.5  # token F1, not a class F1
    assert metric("accuracy", "choices")([0, 2, 1], [0, 2, 2]) == pytest.approx(2 / 3)
    assert set(TAG_METRICS) == {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}
    assert set(SPAN_METRICS) == {"exact_match", "f1"} and set(CHOICE_METRICS) == {"accuracy"}
    for registry in REGISTRIES.values():
        for unit in registry.values():
            assert REGISTRIES[unit.inputs] is registry
            assert unit.for_classification == (unit.inputs != "scores")
    assert metric("pearson", "scores").inputs == "scores" and METRICS["pearson"].for_classification is False


def test_a_name_in_several_registries_is_normalised_the_same_way():
    for name in {name for registry in REGISTRIES.values() for name in registry}:
        units = [registry[name]() for registry in REGISTRIES.values() if name in registry]
        assert len({unit.normalize(0.25) for unit in units}) == 1
        assert normalized(name, 0.25) == units[0].normalize(0.25)
    assert normalized("exact_match", 0.5) == 0.5 and normalized("pearson", 0.5) == 0.75
    with pytest.raises(KeyError):
        normalized("no_such_metric", 0.5)
