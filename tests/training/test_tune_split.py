"""The tune split: a seeded, stratified share of each training file replaces dev (which is then not read), and SST
trees of held-out sentences give no phrases to training."""

from __future__ import annotations

from collections import Counter

from minbert import Tokenizer
from minbert.data.assembly import carve_tune_split
from minbert.data.files import Example
from minbert.tasks.kinds import builtin_kind
from minbert.training.config import load_config
from minbert.training.experiment import load_task_data


def examples(labels):
    return [Example(f"id{i}", (f"sentence {i}",), label, i + 2) for i, label in enumerate(labels)]


def test_the_split_is_stratified_disjoint_and_seeded():
    data = examples([i % 5 for i in range(200)])
    per_class, deciles = builtin_kind("sst").row_strata, builtin_kind("sts").row_strata
    rest, held = carve_tune_split(data, 0.1, 0, per_class)
    assert len(held) == 20 and Counter(e.label for e in held) == Counter({c: 4 for c in range(5)})
    assert {e.id for e in rest}.isdisjoint({e.id for e in held}) and len(rest) + len(held) == 200
    assert [e.id for e in rest] == sorted((e.id for e in rest), key=lambda x: int(x[2:]))  # file order kept
    assert carve_tune_split(data, 0.1, 0, per_class)[1] == held
    assert carve_tune_split(data, 0.1, 1, per_class)[1] != held
    scores = examples([i / 40 for i in range(200)])  # regression: by tenths of the label range
    _, held_scores = carve_tune_split(scores, 0.1, 0, deciles)
    assert len(held_scores) == 20 and {int(e.label // 0.5) for e in held_scores} == set(range(10))


def test_dev_is_not_read_and_held_out_trees_give_no_phrases(tmp_path, tiny_model_dir, tiny_data_dir):
    rows = (tiny_data_dir / "ids-sst-train.csv").read_text().splitlines()[1:]
    sentences = [line.split("\t")[2] for line in rows]
    trees = tmp_path / "trees.txt"  # one tree per training sentence: (label (2 w1) (2 w2 ...))
    trees.write_text("\n".join(f"(3 {' '.join(f'(2 {w})' for w in s.split())} )".replace(" )", ")")
                               for s in sentences) + "\n", encoding="utf-8")
    config = load_config(None, [f"model.path={tiny_model_dir}", "tasks.sst.data=sst", "tasks.sst.dev=missing.csv",
                                "train.tune_split=0.25", "train.tune_split_seed=3",
                                f'tasks.sst.extra=[{{file = "{trees}", format = "sst_trees", min_tokens = 1, '
                                'dedup = false}]'])
    data = load_task_data(config, Tokenizer.from_pretrained(tiny_model_dir), str(tiny_data_dir))["sst"]
    held = data["dev"].examples
    per_class = Counter(int(line.split("\t")[3]) for line in rows)
    assert len(held) == sum(round(0.25 * n) for n in per_class.values())  # a quarter of each class
    assert "test" not in data  # no test predictions while tuning
    base = len(rows) - len(held)  # the training file's other sentences come first, then the phrases
    assert {e.id for e in held}.isdisjoint({e.id for e in data["train"].examples[:base]})
    phrase_lines = {e.line for e in data["train"].examples[base:]}  # tree line = the sentence's row - 1 (header)
    assert phrase_lines and phrase_lines.isdisjoint({e.line - 1 for e in held})

