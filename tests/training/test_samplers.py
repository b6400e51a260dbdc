"""Schedules and balancing: statistics over many draws, annealing values, order, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from minbert.errors import ConfigError
from minbert.options import build
from minbert.training.samplers import SAMPLERS, Annealed, balance


def task_batches(counts: dict[str, int], size: int = 4) -> dict[str, list[list[int]]]:
    return {task: [list(range(i * size, (i + 1) * size)) for i in range(n)] for task, n in counts.items()}


def plan(name: str, counts: dict[str, int], epoch: int = 0, epochs: int = 3, seed: int = 0, **train):
    sampler = SAMPLERS[name](build(SAMPLERS.options_of(name), train))
    return sampler.plan(task_batches(counts), epoch, epochs, np.random.default_rng(seed))


def test_sequential_order():
    steps = plan("sequential", {"a": 2, "b": 1})
    assert [[(t, b[0]) for t, b in s] for s in steps] == [[("a", 0)], [("a", 4)], [("b", 0)]]


def test_round_robin_local_and_global():
    local = plan("round_robin", {"a": 3, "b": 1, "c": 2}, update="local")
    assert [s[0][0] for s in local] == ["a", "b", "c", "a", "c", "a"]
    assert all(len(s) == 1 for s in local)
    glob = plan("round_robin", {"a": 3, "b": 1, "c": 2}, update="global")
    assert [[t for t, _ in s] for s in glob] == [["a", "b", "c"], ["a", "c"], ["a"]]


def test_mtdnn_covers_every_batch_exactly_once():
    counts = {"a": 7, "b": 3, "c": 5}
    steps = plan("mtdnn", counts)
    seen = [(t, b[0]) for s in steps for t, b in s]
    assert sorted(seen) == sorted((t, i * 4) for t, n in counts.items() for i in range(n))
    assert [t for t, _ in seen] != sorted(t for t, _ in seen)  # shuffled, not grouped
    assert seen != [(t, b[0]) for s in plan("mtdnn", counts, seed=1) for t, b in s]


def test_square_root_sampling_proportions():
    counts = {"sst": 100, "quora": 400, "sts": 25}  # sizes 400, 1600, 100 examples
    steps = plan("proportional", counts, alpha=0.5, steps_per_epoch=60000)
    drawn = {t: sum(s[0][0] == t for s in steps) / len(steps) for t in counts}
    expected = {t: np.sqrt(n) / sum(np.sqrt(list(counts.values()))) for t, n in counts.items()}
    for task in counts:
        assert drawn[task] == pytest.approx(expected[task], abs=0.01)
    assert expected["quora"] == pytest.approx(20 / 35)  # sqrt(1600) / (sqrt(400) + sqrt(1600) + sqrt(100))


def test_proportional_cycles_through_each_tasks_batches():
    steps = plan("proportional", {"a": 3, "b": 3}, alpha=1.0, steps_per_epoch=60)
    firsts = [s[0][1][0] for s in steps if s[0][0] == "a"]
    for start in range(0, len(firsts) - 2, 3):  # every 3 draws of a task use each of its batches once
        assert sorted(firsts[start:start + 3]) == [0, 4, 8]
    assert len(plan("proportional", {"a": 3, "b": 5}, alpha=1.0)) == 8  # default: all batches' count


def test_annealed_alpha_per_epoch():
    sampler = Annealed(Annealed.Options())
    assert [round(sampler.alpha(e, 5), 3) for e in range(5)] == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert sampler.alpha(0, 1) == 1.0
    sizes = {"a": 100, "b": 25}
    first = sampler.probabilities(task_batches(sizes), 0, 5)
    last = sampler.probabilities(task_batches(sizes), 4, 5)
    assert first[0] == pytest.approx(0.8) and last[0] == pytest.approx(4**0.2 / (4**0.2 + 1))


def test_balancing_versions():
    rng = np.random.default_rng(0)
    sizes = {"sst": 100, "quora": 300, "sts": 50}
    full = balance(sizes, "full", rng)
    assert {t: len(p) for t, p in full.items()} == sizes
    trimmed = balance(sizes, "trimmed", rng)
    assert {t: len(p) for t, p in trimmed.items()} == {"sst": 50, "quora": 50, "sts": 50}
    assert all(len(set(p.tolist())) == len(p) for p in trimmed.values())
    assert not np.array_equal(trimmed["quora"], balance(sizes, "trimmed", rng)["quora"])  # re-drawn
    padded = balance(sizes, "padded", rng)
    assert {t: len(p) for t, p in padded.items()} == {"sst": 300, "quora": 300, "sts": 300}
    assert set(padded["sts"].tolist()) == set(range(50))  # every real example, plus re-samples
    ratios = balance(sizes, "1:2:1", rng)
    assert {t: len(p) for t, p in ratios.items()} == {"sst": 50, "quora": 100, "sts": 50}
    with pytest.raises(ConfigError, match="3 positive ratios"):
        balance(sizes, "1:2", rng)
