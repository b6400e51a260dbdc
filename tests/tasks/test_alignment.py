"""Sub-word alignment, windows and decoding for tagging, extractive QA and multiple choice, with a small WordPiece
vocabulary written by the test (words split into sub-words) and synthetic logits."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from minbert.tasks.alignment import (
    IGNORE,
    SpanAnswer,
    best_null_threshold,
    choice_probabilities,
    choice_rows,
    choice_table,
    decode_spans,
    inside_tags,
    masked_choice_logits,
    merge_tag_logits,
    predict_choices,
    span_windows,
    tag_windows,
)
from minbert.tokenizer import Tokenizer

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "who", "what", "where", "did", "play", "paris", "london", "is", "in",
         "a", "red", "big", "house", "river", "city"]
PIECES = ["##ing", "##s", "##ed", "##er"]


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vocab")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", *WORDS, *PIECES]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "config.json").write_text('{"max_position_embeddings": 512}', encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def tokenizer(vocab_dir) -> Tokenizer:
    return Tokenizer.from_pretrained(vocab_dir)


def words_of(rng: np.random.Generator, count: int) -> list[str]:
    """Words of one to three sub-words (playing = play ##ing; players = play ##er ##s)."""
    stems = np.array(WORDS)[rng.integers(0, len(WORDS), count)]
    endings = np.array(["", "", "ing", "s", "ers"])[rng.integers(0, 5, count)]
    return [stem + ending for stem, ending in zip(stems, endings, strict=True)]


# --- tagging ---------------------------------------------------------------------------------------------------------

def test_first_subword_carries_the_tag(tokenizer):
    (window,) = tag_windows(tokenizer, [["the", "playing", "cats", "\u200b", "sat"]], [[0, 1, 2, 3, 4]])
    tokens = [tokenizer.backend.id_to_token(int(i)) for i in window.input_ids]
    # the zero-width space gives no sub-word: [UNK] stands for it, so it is still predicted
    assert tokens == ["[CLS]", "the", "play", "##ing", "cat", "##s", "[UNK]", "sat", "[SEP]"]
    assert window.word_ids.tolist() == [-1, 0, 1, 1, 2, 2, 3, 4, -1]
    assert window.labels.tolist() == [IGNORE, 0, 1, IGNORE, 2, IGNORE, 3, 4, IGNORE]
    assert window.predicts.tolist() == [False, True, True, False, True, False, True, True, False]
    (every,) = tag_windows(tokenizer, [["the", "playing", "cats"]], [[0, 1, 2]], every_subword=True,
                           inside=inside_tags(["O", "B-PER", "I-PER"]))
    assert every.labels.tolist() == [IGNORE, 0, 1, 2, 2, 2, IGNORE]  # B-PER's later sub-word learns I-PER
    assert inside_tags(["O", "B-PER", "I-PER", "B-LOC"]) == [0, 2, 2, 3]  # no I-LOC: B-LOC stays


def test_windows_share_out_words_by_most_context(tokenizer):
    # ten one-piece words in windows of six (max_length 8) with an overlap of four: starts 0, 2, 4. A word goes to
    # the window where min(words before, words after) is largest, a sentence edge counting as full context:
    # word 3: window 0 has 2 after it (and the sentence start before), window 1 has 1 before -> window 0;
    # word 5: window 1 has 3 before, 2 after -> 2; window 2 has 1 before (and the sentence end) -> window 1.
    windows = tag_windows(tokenizer, [["cat"] * 10], max_length=8, stride=4)
    assert [len(w.input_ids) for w in windows] == [8, 8, 8]
    owners = {int(w.word_ids[i]): n for n, w in enumerate(windows) for i in np.flatnonzero(w.predicts)}
    assert [owners[word] for word in range(10)] == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="stride = 6"):
        tag_windows(tokenizer, [["cat"] * 10], max_length=8, stride=6)
    with pytest.raises(ValueError, match="sentence 0 has 2 words but 1 tags"):
        tag_windows(tokenizer, [["cat", "dog"]], [[0]])


def test_a_thousand_word_sentence_is_predicted_whole(tokenizer):
    rng = np.random.default_rng(0)
    sentence = words_of(rng, 1000)
    tags = rng.integers(0, 5, 1000)
    windows = tag_windows(tokenizer, [["cat", "sat"], sentence], [[1, 2], tags], max_length=32, stride=8)
    assert len(windows) > 60 and all(len(w.input_ids) <= 32 for w in windows)
    # logits that say each position's learned tag: merged, every word gets its own tag back, exactly once
    logits = [np.eye(5)[np.where(w.labels == IGNORE, 0, w.labels)] for w in windows]
    merged = merge_tag_logits(windows, logits, [2, 1000])
    assert merged[1].shape == (1000, 5)
    assert merged[0].argmax(-1).tolist() == [1, 2]
    assert merged[1].argmax(-1).tolist() == tags.tolist()
    # each word is read at one position of one window (its words have 1 to 3 sub-words: windows cut some)
    predicted = [int(w.word_ids[i]) for w in windows[1:] for i in np.flatnonzero(w.predicts)]
    assert sorted(predicted) == list(range(1000))
    assert sum(len(tokenizer.tokenize(word)) for word in sentence) > 1300


def local_model(ids: np.ndarray, reach: int, tags: int = 4) -> np.ndarray:
    """Synthetic logits that, like attention over a limited range, depend on the sub-words within `reach` of each
    position inside its window: sum over offsets d of table[d, id at p + d]."""
    table = np.random.default_rng(7).normal(size=(2 * reach + 1, 200, tags))
    out = np.zeros((len(ids), tags))
    for p in range(len(ids)):
        for d in range(-reach, reach + 1):
            if 0 <= p + d < len(ids):
                out[p] += table[d + reach, ids[p + d]]
    return out


@pytest.mark.parametrize("seed", range(3))
def test_merged_windows_equal_one_long_window_where_context_is_full(tokenizer, seed):
    rng = np.random.default_rng(seed)
    sentence = words_of(rng, 150)
    reach = 3
    (whole,) = tag_windows(tokenizer, [sentence], max_length=512)
    expected = merge_tag_logits([whole], [local_model(whole.input_ids, reach)], [150])[0]
    # an overlap of 2 * reach gives every position `reach` sub-words on both sides in the window that predicts it
    windows = tag_windows(tokenizer, [sentence], max_length=24, stride=2 * reach)
    assert len(windows) > 5
    merged = merge_tag_logits(windows, [local_model(w.input_ids, reach) for w in windows], [150])[0]
    np.testing.assert_allclose(merged, expected)
    # with no overlap, positions at window edges lose context and their logits differ: the test can see it
    cut = tag_windows(tokenizer, [sentence], max_length=24, stride=0)
    differs = merge_tag_logits(cut, [local_model(w.input_ids, reach) for w in cut], [150])[0]
    assert not np.allclose(differs, expected)


def test_merge_takes_padded_logits_and_refuses_windows_that_do_not_match(tokenizer):
    windows = tag_windows(tokenizer, [["cat", "sat"], ["dog"]])
    padded = torch.zeros(2, 10, 3)  # a batch padded to 10 positions
    padded[0, 1, 2] = padded[0, 2, 1] = padded[1, 1, 0] = 1.0
    merged = merge_tag_logits(windows, list(padded), [2, 1])
    assert [m.argmax(-1).tolist() for m in merged] == [[2, 1], [0]]
    with pytest.raises(ValueError, match="predicted 0 times"):
        merge_tag_logits(windows, list(padded), [3, 1])
    with pytest.raises(ValueError, match="2 windows"):
        merge_tag_logits(windows, list(padded[:1]), [2, 1])


# --- extractive QA ---------------------------------------------------------------------------------------------------

def long_context(rng: np.random.Generator, words: int) -> str:
    return " ".join(words_of(rng, words)) + "."


def test_windows_cover_the_context_and_targets_point_at_the_answer(tokenizer):
    rng = np.random.default_rng(1)
    context = long_context(rng, 120)
    first = context.index(" ", 300) + 1  # an answer of three words somewhere in the middle
    end = first
    for _ in range(3):
        end = context.index(" ", end + 1)
    answer = (first, end)
    windows = span_windows(tokenizer, ["who did play in the city?", "what?"], [context, "the cat sat."],
                           [answer, None], max_length=40, doc_stride=10, max_query_length=10)
    mine = [w for w in windows if w.question == 0]
    assert len(mine) > 4 and all(len(w.input_ids) <= 40 for w in windows)
    question = [tokenizer.backend.id_to_token(int(i)) for i in mine[0].input_ids[:9]]
    assert question == ["[CLS]", "who", "did", "play", "in", "the", "city", "?", "[SEP]"]
    # consecutive windows overlap by doc_stride context sub-words, and together cover every one
    spans = [w.offsets[w.context] for w in mine]
    for before, after in itertools.pairwise(spans):
        assert (before[-10:] == after[:10]).all()
    covered = np.unique(np.concatenate(spans), axis=0)
    assert len(covered) == len(tokenizer.tokenize(context))
    assert all((w.token_type_ids[w.context] == 1).all() for w in mine)
    holding = [w for w in mine if w.start]
    assert holding and len(holding) < len(mine)
    for w in holding:
        assert context[w.offsets[w.start, 0]:w.offsets[w.end, 1]] == context[first:end]
        assert w.context[w.start] and w.context[w.end]
    assert all(w.end == 0 for w in mine if not w.start)  # the others point at [CLS]
    assert [(w.start, w.end) for w in windows if w.question == 1] == [(0, 0)]


def one_hot_logits(windows, big: float = 10.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Logits that say each window's training target (the answer's sub-words, or [CLS])."""
    starts, ends = [], []
    for w in windows:
        s, e = np.zeros(len(w.input_ids)), np.zeros(len(w.input_ids))
        s[w.start] = e[w.end] = big
        starts.append(s)
        ends.append(e)
    return starts, ends


def test_one_hot_logits_recover_the_gold_answer_across_window_boundaries(tokenizer):
    rng = np.random.default_rng(2)
    contexts = [long_context(rng, 60) for _ in range(6)]
    answers = []
    for i, context in enumerate(contexts):
        spaces = [j for j, ch in enumerate(context) if ch == " "]
        first = spaces[5 + 7 * i] + 1
        answers.append((first, spaces[5 + 7 * i + 2]))  # two words
    windows = span_windows(tokenizer, ["where is the cat?"] * 6, contexts, answers, max_length=32, doc_stride=12,
                           max_query_length=8)
    assert max(w.question for w in windows) == 5 and len(windows) > 20
    # some answer straddles a window's edge: a window holds only part of it (and learns [CLS]), another all of it
    def partly(w):
        first, end = answers[w.question]
        inside = w.offsets[w.context]
        return inside[0, 0] <= first < inside[-1, 1] < end or first < inside[0, 0] < end <= inside[-1, 1]
    assert any(partly(w) and w.start == 0 for w in windows)
    starts, ends = one_hot_logits(windows)
    decoded = decode_spans(windows, starts, ends, contexts)
    for answer, (first, end), context in zip(decoded, answers, contexts, strict=True):
        assert (answer.start, answer.end) == (first, end)
        assert answer.text == context[first:end] == context[answer.start:answer.end]


def brute_force(windows, starts, ends, contexts, max_answer_length):
    """The best (score, start char, end char) over every valid pair of every window, per question."""
    best = {}
    for w, s, e in zip(windows, starts, ends, strict=True):
        for i in np.flatnonzero(w.context):
            for j in np.flatnonzero(w.context):
                if i <= j < i + max_answer_length and s[i] + e[j] > best.get(w.question, (-math.inf,))[0]:
                    best[w.question] = (s[i] + e[j], int(w.offsets[i, 0]), int(w.offsets[j, 1]))
    return [best[q] for q in range(len(contexts))]


@pytest.mark.parametrize("seed", range(4))
def test_decoding_is_the_best_valid_span_never_question_special_or_padding(tokenizer, seed):
    rng = np.random.default_rng(seed)
    contexts = [long_context(rng, int(rng.integers(5, 50))) for _ in range(4)]
    windows = span_windows(tokenizer, ["what did the big dog play?"] * 4, contexts, max_length=36, doc_stride=8,
                           max_query_length=10)
    starts, ends = [], []
    for w in windows:
        s, e = rng.normal(size=48), rng.normal(size=48)  # 48 > any window: the rest is padding
        outside = np.ones(48, dtype=bool)
        outside[np.flatnonzero(w.context)] = False
        s[outside] += 100.0  # the question, [CLS], [SEP] and padding have the largest logits of all
        e[outside] += 100.0
        starts.append(s)
        ends.append(e)
    decoded = decode_spans(windows, starts, ends, contexts, n_best=1000, max_answer_length=5)
    expected = brute_force(windows, starts, ends, contexts, max_answer_length=5)
    for answer, (score, first, end), context in zip(decoded, expected, contexts, strict=True):
        assert (answer.start, answer.end) == (first, end) and answer.score == pytest.approx(score)
        assert answer.start < answer.end and answer.text == context[first:end]
        assert len(tokenizer.tokenize(answer.text)) <= 5
    # with the default n_best (20 starts, 20 ends) every answer is still a span of context sub-words
    for question, (answer, context) in enumerate(zip(decode_spans(windows, starts, ends, contexts), contexts,
                                                     strict=True)):
        mine = [w for w in windows if w.question == question]
        assert answer.start in {int(w.offsets[i, 0]) for w in mine for i in np.flatnonzero(w.context)}
        assert answer.end in {int(w.offsets[i, 1]) for w in mine for i in np.flatnonzero(w.context)}
        assert answer.start < answer.end and answer.text == context[answer.start:answer.end]


def test_max_answer_length_and_the_window_with_the_best_score(tokenizer):
    context = "the cat sat on the mat in paris in the big red house by the river."
    windows = span_windows(tokenizer, ["where?"], [context], max_length=14, doc_stride=4, max_query_length=3)
    assert len(windows) >= 3
    starts, ends = [np.zeros(len(w.input_ids)) for w in windows], [np.zeros(len(w.input_ids)) for w in windows]
    # window 0: start on "cat", end on "mat" (5 sub-words) - too long for max_answer_length 3
    first = windows[0]
    tokens = [tokenizer.backend.id_to_token(int(i)) for i in first.input_ids]
    starts[0][tokens.index("cat")] = 9.0
    ends[0][tokens.index("mat")] = 9.0
    ends[0][tokens.index("sat")] = 1.0
    answer = decode_spans(windows, starts, ends, [context], max_answer_length=3)[0]
    assert answer.text == "cat sat"
    assert decode_spans(windows, starts, ends, [context], max_answer_length=5)[0].text == "cat sat on the mat"
    # the last window holds "river" with a higher score: it wins over window 0's span
    last = windows[-1]
    tokens = [tokenizer.backend.id_to_token(int(i)) for i in last.input_ids]
    starts[-1][tokens.index("river")] = ends[-1][tokens.index("river")] = 10.0
    assert decode_spans(windows, starts, ends, [context], max_answer_length=3)[0].text == "river"


def test_null_score_and_threshold(tokenizer):
    contexts = ["the cat sat on the mat.", "paris is a big city."]
    windows = span_windows(tokenizer, ["who sat?", "what is paris?"], contexts)
    starts, ends = one_hot_logits(windows, big=0.0)
    for s, e, w in zip(starts, ends, windows, strict=True):
        span = np.flatnonzero(w.context)[1]  # "cat", "is"
        s[span], e[span] = 3.0, 2.0
        s[0], e[0] = (4.0, 4.0) if w.question == 0 else (1.0, 1.0)  # question 0 looks unanswerable
    v1 = decode_spans(windows, starts, ends, contexts)
    assert [a.text for a in v1] == ["cat", "is"]  # no threshold (SQuAD v1.1): always a span
    assert [a.null_margin for a in v1] == [pytest.approx(3.0), pytest.approx(-3.0)]
    v2 = decode_spans(windows, starts, ends, contexts, null_threshold=0.0)
    assert [a.text for a in v2] == ["", "is"] and v2[0].span_text == "cat"
    assert [a.text for a in decode_spans(windows, starts, ends, contexts, null_threshold=5.0)] == ["cat", "is"]
    # chosen on dev: question 0 has no answer, question 1's answer is "is": any threshold in [-3, 3) is best
    threshold, f1 = best_null_threshold(v1, [[], ["is"]])
    assert -3.0 <= threshold < 3.0 and f1 == 1.0
    # with question 0 answerable as "cat", the best threshold keeps both spans
    threshold, f1 = best_null_threshold(v1, [["cat"], ["is"]])
    assert threshold >= 3.0 and f1 == 1.0


def test_the_null_score_is_the_smallest_over_windows_and_ties_share_a_threshold(tokenizer):
    context = "the cat sat on the mat in paris in the big red house by the river."
    windows = span_windows(tokenizer, ["where?"], [context], max_length=14, doc_stride=4, max_query_length=3)
    starts = [np.full(len(w.input_ids), 0.5) for w in windows]
    ends = [np.full(len(w.input_ids), 0.5) for w in windows]
    starts[1][0] = -2.0
    assert decode_spans(windows, starts, ends, [context])[0].null_score == pytest.approx(-1.5)
    # two questions of one margin: a threshold turns both or neither to their spans, never one of them (which
    # would score 1.0 here: question 0's span is right, question 1 has no answer)
    same = SpanAnswer("cat", 4, 7, 2.0, 3.0, "cat")
    assert best_null_threshold([same, same], [["cat"], []]) == (-math.inf, 0.5)


def test_questions_are_cut_and_impossible_windows_refused(tokenizer):
    long_question = " ".join(["what"] * 100) + "?"
    (window,) = span_windows(tokenizer, [long_question], ["the cat sat."], max_length=80, doc_stride=4,
                             max_query_length=10)
    assert (window.token_type_ids == 0).sum() == 12  # [CLS], ten question sub-words, [SEP]
    with pytest.raises(ValueError, match="doc_stride = 128"):
        span_windows(tokenizer, ["who?"], ["the cat."], max_length=128, doc_stride=128)
    with pytest.raises(ValueError, match="2 contexts"):
        span_windows(tokenizer, ["who?"], ["a", "b"])


# --- multiple choice -------------------------------------------------------------------------------------------------

def test_choice_rows_and_a_batch_of_three_and_five_choices():
    firsts, seconds, counts = choice_rows(["q1", "q2"], [["a", "b", "c"], ["v", "w", "x", "y", "z"]])
    assert firsts == ["q1"] * 3 + ["q2"] * 5 and seconds == ["a", "b", "c", "v", "w", "x", "y", "z"]
    assert counts == [3, 5]
    scores = torch.tensor([0.1, 2.0, -1.0, 0.3, 0.2, 1.5, -0.5, 0.0])
    logits, mask = choice_table(scores, counts)
    assert logits.shape == (2, 5) and mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    probabilities = choice_probabilities(logits, mask)
    # each question's probabilities are the softmax of its own choices alone
    torch.testing.assert_close(probabilities[0, :3], torch.softmax(scores[:3], 0))
    torch.testing.assert_close(probabilities[1], torch.softmax(scores[3:], 0))
    assert probabilities[0, 3:].tolist() == [0.0, 0.0]
    assert predict_choices(logits, mask).tolist() == [1, 2]
    with pytest.raises(ValueError, match="no choices"):
        choice_rows(["q"], [[]])


def test_a_masked_choice_never_wins_even_with_a_huge_logit():
    logits = torch.tensor([[0.0, 1.0, 1e30, 3e38], [-5.0, -6.0, 1e9, 1e9]])
    mask = torch.tensor([[True, True, False, False], [True, True, False, False]])
    assert predict_choices(logits, mask).tolist() == [1, 0]
    probabilities = choice_probabilities(logits, mask)
    assert probabilities[:, 2:].eq(0).all() and torch.allclose(probabilities.sum(-1), torch.ones(2))
    # training over masked logits: a finite loss and finite gradients, nothing flows to the masked cells
    logits.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(masked_choice_logits(logits, mask), torch.tensor([1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and logits.grad[:, 2:].eq(0).all()
    with pytest.raises(ValueError, match="without choices"):
        masked_choice_logits(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool))


def test_windows_equal_transformers_fast_tokenizer_overflow(tokenizer, vocab_dir):
    """run_qa's windows: BertTokenizerFast with truncation="only_second", stride and overflowing tokens."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertTokenizerFast.from_pretrained(str(vocab_dir))
    rng = np.random.default_rng(5)
    questions, contexts = ["who did play?", "where is the red house?"], [long_context(rng, 80), long_context(rng, 9)]
    ours = span_windows(tokenizer, questions, contexts, max_length=40, doc_stride=10, max_query_length=10)
    ref = hf(questions, contexts, truncation="only_second", max_length=40, stride=10,
             return_overflowing_tokens=True, return_offsets_mapping=True)
    assert [w.question for w in ours] == ref["overflow_to_sample_mapping"]
    for w, ids, offsets, i in zip(ours, ref["input_ids"], ref["offset_mapping"], range(len(ours)), strict=True):
        assert w.input_ids.tolist() == ids
        context = np.array(ref.sequence_ids(i)) == 1
        assert (w.context == context).all() and w.offsets[context].tolist() == np.array(offsets)[context].tolist()
