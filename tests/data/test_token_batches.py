"""Token-budget batches (train.max_tokens_per_batch) for every task kind: each example once per epoch, no batch over
its budget as collate pads it, widths from the bucket set, the same batches for the same seed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from minbert.data.batching import BUCKET_MULTIPLE
from tests.choices import write_choice_data
from tests.conftest import SIAMESE_STS, write_tiny_config
from tests.spans import write_span_data
from tests.tagging import write_tag_data
from tests.tasks.test_choice_kind import ARC
from tests.tasks.test_span_kind import QA
from tests.tasks.test_tag_kind import NER

# sentence, cross-encoded pair (both orders: rows past the examples), siamese pair, tag, span windows, choice
KINDS = f'[tasks.sst]\ndata = "sst"\n[tasks.quora]\ndata = "quora"\ntrain_order = "random"\n{SIAMESE_STS}{NER}{QA}{ARC}'


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory, tiny_model_dir) -> dict:
    """Each kind's training data, padded to bucket widths as the trainer sets it under a token budget."""
    from minbert.training.config import load_config
    from minbert.training.experiment import build_experiment

    directory = tmp_path_factory.mktemp("kinds")
    data_dir = directory / "data"
    write_span_data(data_dir)
    write_choice_data(data_dir)
    write_tag_data(data_dir)
    config = load_config(write_tiny_config(directory / "kinds.toml", directory, tiny_model_dir, tasks=KINDS))
    data = {task: splits["train"] for task, splits in
            build_experiment(config, data_dir=str(data_dir), splits=("train",)).data.items()}
    for d in data.values():
        d.pad_multiple = BUCKET_MULTIPLE
    assert {type(d).__name__ for d in data.values()} == {"TaskData", "TagData", "SpanData", "ChoiceData"}
    return data


def epoch_positions(data):
    return data.epoch_positions("all", np.random.default_rng(5))  # quora: each example in a drawn order


@pytest.mark.parametrize("bucketing", [True, False])
@pytest.mark.parametrize("budget", [32, 64, 200])
def test_every_example_once_and_no_batch_over_its_budget(every_kind, budget, bucketing):
    for task, data in every_kind.items():
        positions = epoch_positions(data)
        batches = data.batches(8, shuffle=True, bucketing=bucketing, rng=np.random.default_rng(1),
                               positions=positions, max_tokens=budget)
        assert Counter(p for b in batches for p in b) == Counter(positions.tolist()), task
        longest = data.longest_row
        buckets = {*range(BUCKET_MULTIPLE, longest, BUCKET_MULTIPLE), longest}
        alone = 0
        for batch in batches:
            input_ids = data.collate(batch).inputs["input_ids"]  # what the model runs
            assert input_ids.shape[1] in buckets, (task, input_ids.shape)
            if input_ids.numel() > budget:  # only an example over the budget by itself (a question's choices)
                assert len(batch) == 1, (task, budget, input_ids.shape, batch)
                alone += 1
        if budget >= 200:
            assert alone == 0 and max(len(b) for b in batches) > 1, task  # batches do fill up
        if task == "arc" and budget == 32:
            assert alone == len(batches)  # 3 to 5 choices of 9 to 11 tokens: each question over 32 by itself


def test_bucketed_batches_repeat_a_few_full_shapes(every_kind):
    """With bucketing every batch holds one width; all but the last of each width are full, so the shapes an epoch
    makes are at most two per width, and the rows of a full batch fill the budget as far as one more would not."""
    budget = 200
    for task, data in every_kind.items():
        if task in ("sts", "arc"):  # rows per example vary (shared sentences, 3 to 5 choices)
            continue
        batches = data.batches(8, shuffle=True, bucketing=True, rng=np.random.default_rng(3),
                               positions=epoch_positions(data), max_tokens=budget)
        shapes = Counter(tuple(data.collate(b).inputs["input_ids"].shape) for b in batches)
        widths = {width for _, width in shapes}
        assert len(shapes) <= 2 * len(widths), (task, shapes)
        for (rows, width), count in shapes.items():
            full = budget // width
            assert rows == full or count == 1, (task, shapes)  # one partial batch per width at most


def test_siamese_budget_counts_each_distinct_sentence_once(every_kind):
    data = every_kind["sts"]
    batches = data.batches(8, shuffle=True, bucketing=True, rng=np.random.default_rng(0), max_tokens=64)
    for batch in batches:
        batch_rows = data.collate(batch).inputs["input_ids"].shape[0]
        assert batch_rows == len(np.unique(data.pair_rows[batch]))  # what the budget counted


def draw(data, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return data.batches(8, shuffle=True, bucketing=True, rng=rng, positions=data.epoch_positions("all", rng),
                        max_tokens=64)


def test_same_seed_same_batches_other_seed_other_batches(every_kind):
    for task, data in every_kind.items():
        assert draw(data, 7) == draw(data, 7), task
        assert draw(data, 7) != draw(data, 8), task


def test_without_a_bucket_multiple_collate_pads_to_the_longest(every_kind):
    data = every_kind["sst"]
    batch = [int(np.argmin(data.lengths))]
    data.pad_multiple = 1
    try:
        assert data.collate(batch).inputs["input_ids"].shape[1] == data.lengths[batch[0]]
    finally:
        data.pad_multiple = BUCKET_MULTIPLE
    assert data.collate(batch).inputs["input_ids"].shape[1] % BUCKET_MULTIPLE == 0
