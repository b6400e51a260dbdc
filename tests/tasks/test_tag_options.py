"""A tagging format's window options, keys of its table (`format = { name = "conll", every_subword = true,
window_overlap = 0.25 }`, data.formats.TagOptions as span's SpanOptions): `every_subword` labels each sub-word of a
word (a later one B-X -> I-X) where the default labels its first only, predictions still read at each word's first
sub-word; `window_overlap` is the share of a window that two windows of a long sentence share (default half)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from minbert.cli import main
from minbert.data.formats import TaggedExample
from minbert.data.spec import DataSpec, check_spec
from minbert.errors import ConfigError
from minbert.options import build
from minbert.tasks.alignment import IGNORE
from minbert.tasks.kinds import kind_of
from minbert.tasks.kinds.tag import Tag
from tests.conftest import write_tiny_config
from tests.tasks.test_alignment import tokenizer, vocab_dir  # noqa: F401  (fixtures: a vocabulary with sub-words)
from tests.tasks.test_tag_kind import NER, conll_words, ner_data  # noqa: F401  (ner_data: a fixture)

TAGS = ["O", "B-PER", "I-PER"]


def tagger(**options: object) -> Tag:
    spec = build(DataSpec, {"format": {"name": "conll", "scheme": "iob1", "labels": TAGS, **options}, "train": "t.txt",
                            "dev": "d.txt"}, "tasks.ner.data")
    check_spec(spec, "tasks.ner.data")
    return kind_of("ner", SimpleNamespace(data=spec, loss=""))


def test_the_keys_are_the_format_s_with_their_rules():
    options = tagger().spec.format.options
    assert (options.every_subword, options.window_overlap) == (False, 0.5)  # run_ner's first sub-word; half a window
    options = tagger(every_subword=True, window_overlap=0.0).spec.format.options
    assert (options.every_subword, options.window_overlap) == (True, 0.0)
    with pytest.raises(ConfigError, match=r"^tasks\.ner\.data\.format\.window_overlap = 1\.0 must be in \[0, 1\)$"):
        tagger(window_overlap=1.0)


def test_every_subword_labels_later_sub_words_and_predictions_stay_at_the_first(tokenizer):  # noqa: F811
    sentence = TaggedExample("s", ("the", "playing", "cats"), ("O", "B-PER", "I-PER"), 1)
    tokens = [tokenizer.backend.id_to_token(i) for i in tagger().task_data([sentence], tokenizer, 32).windows[0]
              .input_ids.tolist()]
    assert tokens == ["[CLS]", "the", "play", "##ing", "cat", "##s", "[SEP]"]
    first = tagger().task_data([sentence], tokenizer, 32)
    every = tagger(every_subword=True).task_data([sentence], tokenizer, 32)
    assert first.labels[0].tolist() == [IGNORE, 0, 1, IGNORE, 2, IGNORE, IGNORE]
    assert every.labels[0].tolist() == [IGNORE, 0, 1, 2, 2, 2, IGNORE]  # B-PER's ##ing learns I-PER
    assert every.windows[0].predicts.tolist() == first.windows[0].predicts.tolist() == [
        False, True, True, False, True, False, False]


@pytest.mark.parametrize(("overlap", "windows"), [(0.0, 4), (0.5, 7), (0.75, 11)])
def test_window_overlap_sets_how_far_windows_step_and_each_word_is_predicted_once(tokenizer, overlap,  # noqa: F811
                                                                                   windows):
    """40 one-sub-word words in windows of 10 sub-words (max_length 12): steps of 10, 5 and 3 (7.5 shared
    sub-words rounded down to 7), the last window ending at the sentence's end."""
    sentence = TaggedExample("s", tuple(["the"] * 40), tuple(["O"] * 40), 1)
    data = tagger(window_overlap=overlap).task_data([sentence], tokenizer, 12)
    assert len(data.windows) == windows
    assert sum(int(w.predicts.sum()) for w in data.windows) == 40


def test_a_run_with_both_options_predicts_every_token(tmp_path, tiny_model_dir, ner_data):  # noqa: F811
    tasks = NER.replace('scheme = "iob1"', 'scheme = "iob1", every_subword = true, window_overlap = 0.25')
    config = write_tiny_config(tmp_path / "ner.toml", tmp_path, tiny_model_dir, tasks=tasks)
    assert main(["train", "--config", str(config), "--data-dir", str(ner_data)]) == 0
    for split in ("dev", "test"):
        written = conll_words(tmp_path / "ner" / "predictions" / f"ner-{split}-output.txt")
        assert written == conll_words(ner_data / "ner" / f"{split}.txt")  # the 1,000-word sentence whole too
