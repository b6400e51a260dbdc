"""The `choice` kind end to end on tiny JSON-lines files the tests write (questions of 3, 4 and 5 choices in one
batch, choices labelled A-E or 1-5): rows and the (questions, choices) table, a masked choice that never wins and
gets probability 0, finite loss and gradients (bf16 too), train -> a prediction CSV of every id once with its own
label, evaluate, predict --input, what it refuses, and the shipped configs/kinds/arc-easy.toml on the real files."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from minbert.cli import main
from minbert.data.formats import ChoiceExample
from minbert.errors import ConfigError
from minbert.model.bert import BertModel
from minbert.runs.run import evaluate_run
from minbert.tasks.kinds import kind_of
from minbert.tasks.kinds.choice import ChoiceData, ChoiceKind
from minbert.tasks.losses import TaskOutput
from minbert.tasks.model import MultitaskModel
from minbert.tokenizer import Tokenizer
from minbert.training.config import load_config
from tests.conftest import REPO, WORDS, make_tiny_data_dir, write_tiny_config

FORMAT = ('{ name = "jsonl", id = "id", stem = "question.stem", choices = "question.choices[].text", '
          'choice_labels = "question.choices[].label", answer = "answerKey" }')
ARC = f"""
[tasks.arc]
[tasks.arc.data]
format = {FORMAT}
train = "arc/train.jsonl"
dev = "arc/dev.jsonl"
test = "arc/test.jsonl"
"""
RIGHT = "great"  # a learnable signal: the right choice starts with it, no wrong one has it


def question(rng: random.Random, qid: str, count: int, digits: bool, labelled: bool = True) -> dict:
    labels = [str(i + 1) if digits else "ABCDE"[i] for i in range(count)]
    words = [w for w in WORDS if w != RIGHT]
    answer = rng.randrange(count)
    texts = [" ".join(([RIGHT] if i == answer else []) + rng.sample(words, rng.randint(1, 3))) for i in range(count)]
    choices = [{"text": text, "label": label} for text, label in zip(texts, labels, strict=True)]
    row = {"id": qid, "question": {"stem": " ".join(rng.sample(words, 4)), "choices": choices}}
    return {**row, "answerKey": labels[answer]} if labelled else row


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def questions(rng: random.Random, prefix: str, n: int, labelled: bool = True) -> list[dict]:
    """3, 4 and 5 choices in turn (so every batch mixes them); every fourth question labelled by digits."""
    return [question(rng, f"{prefix}{i}", 3 + i % 3, i % 4 == 0, labelled) for i in range(n)]


@pytest.fixture(scope="module")
def arc_data(tmp_path_factory) -> Path:
    rng = random.Random(0)
    directory = make_tiny_data_dir(tmp_path_factory.mktemp("arc-data"), n_train=24, n_dev=8)
    write_jsonl(directory / "arc" / "train.jsonl", questions(rng, "train-", 60))
    write_jsonl(directory / "arc" / "dev.jsonl", questions(rng, "dev-", 15))
    write_jsonl(directory / "arc" / "test.jsonl", questions(rng, "test-", 7, labelled=False))
    return directory


@pytest.fixture(scope="module")
def arc_run(tmp_path_factory, tiny_model_dir, arc_data) -> Path:
    out = tmp_path_factory.mktemp("arc-run")
    config = write_tiny_config(out / "arc.toml", out, tiny_model_dir, tasks=ARC, train="epochs = 4\nlr = 3e-3")
    assert main(["train", "--config", str(config), "--data-dir", str(arc_data)]) == 0
    return out / "arc"


def choice_example(qid: str, count: int) -> ChoiceExample:
    return ChoiceExample(qid, "the cat sat", tuple(f"choice {'abcde'[i]}" for i in range(count)),
                         tuple("ABCDE"[:count]), 0, 1)


@pytest.fixture(scope="module")
def tiny_kind_and_model(tiny_model_dir, arc_data):
    config = load_config(write_tiny_config(arc_data / "c.toml", arc_data, tiny_model_dir, tasks=ARC))
    model = MultitaskModel(BertModel.from_pretrained(tiny_model_dir), config.tasks, config.model)
    return kind_of("arc", config.tasks["arc"]), model, Tokenizer.from_pretrained(tiny_model_dir)


def test_a_batch_of_3_4_and_5_choices_is_one_pair_row_per_choice_and_a_masked_table(tiny_kind_and_model):
    kind, _, tokenizer = tiny_kind_and_model
    data = kind.task_data([choice_example("q3", 3), choice_example("q5", 5), choice_example("q4", 4)], tokenizer, 32)
    batch = data.collate([0, 1, 2])
    assert batch.index.tolist() == [[0, 1, 2, -1, -1], [3, 4, 5, 6, 7], [8, 9, 10, 11, -1]]
    assert batch.rows == list(range(12)) and batch.positions == [0, 1, 2] and batch.labels.tolist() == [0, 0, 0]
    assert batch.inputs["input_ids"].shape[0] == 12  # every choice a row, none dropped
    ids, types = batch.inputs["input_ids"][4], batch.inputs["token_type_ids"][4]
    first, second = tokenizer.encode_ids(["the cat sat"], ["choice b"], 32)[0]
    assert ids[: len(first)].tolist() == first.tolist() and types[: len(second)].tolist() == second.tolist()
    assert set(types.tolist()) == {0, 1}  # [CLS] stem [SEP] (type 0), choice [SEP] (type 1)
    assert data.collate([2]).index.tolist() == [[0, 1, 2, 3]] and data.collate([2]).rows == [8, 9, 10, 11]
    assert data.lengths.tolist() == [max(data.rows.lengths[i:j]) for i, j in ((0, 3), (3, 8), (8, 12))]


def test_a_masked_choice_never_wins_and_gets_probability_zero(tiny_kind_and_model):
    kind, _, tokenizer = tiny_kind_and_model
    data = kind.task_data([choice_example("q3", 3), choice_example("q5", 5)], tokenizer, 32)
    batch = data.collate([0, 1])
    scores = torch.tensor([3e38, -5.0, -6.0, 1.0, 2.0, 0.5, -1.0, 0.0]).view(-1, 1)  # a missing cell reads row 0's
    logits = kind.arrange(scores, batch)
    assert logits.shape == (2, 5) and torch.isneginf(logits[0, 3:]).all()
    output = TaskOutput(logits, kind.score(logits, None, None))
    assert kind.predict(output).tolist() == [0, 1]
    soft = kind.soft(output)
    assert soft[0, 3:].tolist() == [0.0, 0.0] and torch.allclose(soft.sum(dim=1), torch.ones(2))
    flipped = kind.arrange(torch.tensor([-3e38, -5.0, -6.0, 1.0, 2.0, 0.5, -1.0, 0.0]).view(-1, 1), batch)
    assert kind.predict(TaskOutput(flipped, flipped)).tolist() == [1, 1]  # the best real choice, never a missing one
    hard, buffered = kind.buffers(2)
    kind.store(hard, buffered, batch, output)
    predictions, padded = kind.collect(data, hard, buffered)
    assert predictions.tolist() == [0, 1] and padded.shape == (2, 5) and padded[0, 3:].tolist() == [0.0, 0.0]
    assert kind.decide(padded).tolist() == [0, 1]


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_loss_and_gradients_are_finite_over_the_masked_table(tiny_kind_and_model, dtype):
    kind, model, tokenizer = tiny_kind_and_model
    data = kind.task_data([choice_example("q3", 3), choice_example("q5", 5), choice_example("q4", 4)], tokenizer, 32)
    batch = data.collate([0, 1, 2])
    batch.labels = torch.tensor([2, 4, 3])
    model.train()
    model.zero_grad()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        output = model(batch)
        loss = model.loss(batch, output)
        divergence = kind.divergence(output, TaskOutput(output.logits.detach() + 0.1, output.score))
    assert output.logits.shape == (3, 5) and torch.isfinite(loss) and torch.isfinite(divergence)
    (loss + divergence).backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    assert float(kind.divergence(output, output).detach()) == pytest.approx(0.0, abs=1e-6)


def test_a_choice_task_trains_and_writes_every_id_once_with_its_own_label(arc_run, arc_data):
    assert isinstance(kind_of("arc", load_config(arc_run / "config.toml").tasks["arc"]), ChoiceKind)
    for split in ("dev", "test"):
        source = [json.loads(line) for line in (arc_data / "arc" / f"{split}.jsonl").read_text().splitlines()]
        with (arc_run / "predictions" / f"arc-{split}-output.csv").open(newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
        assert rows[0] == ["id", "Predicted_answer"]
        assert [row[0] for row in rows[1:]] == [q["id"] for q in source]  # every id once, in file order
        for (_, label), q in zip(rows[1:], source, strict=True):
            assert label in [c["label"] for c in q["question"]["choices"]]  # its own labels: letters, or digits
        assert {label for _, label in rows[1:]} & set("12345") or split == "test"
    final = json.loads((arc_run / "metrics.json").read_text())["final_dev"]["arc"]
    assert final["metric"] == "accuracy" and final["score"] > 0.6  # chance is about 1/4
    confusion = np.array(final["choice_confusion"])
    assert confusion.shape[0] == confusion.shape[1] and confusion.sum() == 15
    assert np.trace(confusion) == round(final["score"] * 15)
    details = (arc_run / "predictions" / "arc-dev-details.jsonl").read_text().splitlines()
    details = [json.loads(line) for line in details]
    assert details[0]["id"] == "dev-0" and [c["label"] for c in details[0]["choices"]] == ["1", "2", "3"]
    assert all(len(row["probabilities"]) == len(row["choices"]) and abs(sum(row["probabilities"]) - 1) < 1e-3
               for row in details)
    assert all(row["gold"] in [c["label"] for c in row["choices"]] for row in details)


def test_evaluate_and_predict_input_reproduce_the_run(arc_run, arc_data, tmp_path, capsys):
    results = evaluate_run(arc_run, data_dir=str(arc_data), quiet=True)
    recorded = json.loads((arc_run / "metrics.json").read_text())["final_dev"]["arc"]
    assert results["arc"]["score"] == pytest.approx(recorded["score"], abs=1e-9)
    output = tmp_path / "choices.csv"
    assert main(["predict", "--run", str(arc_run), "--task", "arc", "--input",
                 str(arc_data / "arc" / "dev.jsonl"), "--output", str(output)]) == 0
    assert output.read_text() == (arc_run / "predictions" / "arc-dev-output.csv").read_text()
    assert main(["predict", "--run", str(arc_run), "--task", "arc", "--text", "which one?"]) == 2
    assert "does not take --text: give --question with --choice, or --input FILE" in capsys.readouterr().err


def test_what_choice_does_not_take_is_refused_with_one_line_before_any_work(arc_run):
    from minbert.tasks.kinds import refuse

    kind = kind_of("arc", load_config(arc_run / "config.toml").tasks["arc"])
    with pytest.raises(ConfigError, match=r"^task arc is a multiple choice task \(kind 'choice'\): distillation "
                                          r"cannot take it yet$"):
        refuse(kind, "distillation")
    for taken in ("ensembles", "serve", "the ONNX export", "train.tune_split"):
        refuse(kind, taken)  # built: no refusal
    for override, line in (('tasks.arc.pair_encoding="siamese"', r"tasks\.arc\.pair_encoding = 'siamese' needs each "
                                                                   "text of a pair encoded alone; a multiple choice"),
                           ('tasks.arc.extra=[{file="x"}]', r"tasks\.arc\.extra needs rows of the spec's texts"),
                           ("tasks.arc.regularizers.mnrl={}", r"tasks\.arc\.regularizers\.mnrl needs one sentence"),
                           ('tasks.arc.loss="mse"', r"tasks\.arc\.loss = 'mse' is a regression loss; tasks\.arc's "
                                                    "data is multiple choice")):
        with pytest.raises(ConfigError, match=f"^{line}"):
            load_config(arc_run / "config.toml", [override])


def test_the_shipped_arc_easy_config_checks_the_real_files(data_dir, capsys):
    """configs/kinds/arc-easy.toml: a choice task; every question is read, none skipped."""
    if not (data_dir / "arc-easy" / "train.jsonl").is_file():
        pytest.skip("arc-easy is not in the data directory")
    config = REPO / "configs" / "kinds" / "arc-easy.toml"
    assert isinstance(kind_of("arc", load_config(config).tasks["arc"]), ChoiceKind)
    assert main(["data", "--config", str(config), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    for name, rows in (("train", "2,251"), ("dev", "570"), ("test", "2,376")):
        assert f"arc-easy/{name}.jsonl" in out and f"{rows} rows loaded, 0 skipped" in out


def test_choice_data_keeps_an_unlabelled_split_unlabelled(tiny_kind_and_model):
    _, _, tokenizer = tiny_kind_and_model
    unlabelled = [ChoiceExample("t1", "a b", ("c", "d", "e"), ("A", "B", "C"), None, 1)]
    data = ChoiceData("arc", unlabelled, tokenizer, 32)
    assert not data.labelled and data.collate([0]).labels is None


def test_a_choice_task_trains_beside_a_sentence_task_over_cached_frozen_layers(tmp_path, tiny_model_dir, arc_data):
    """The sampler mixes question batches with sentence batches; the layer cache keeps choice rows (Batch.rows)."""
    tasks = '[tasks.sst]\ndata = "sst"\n' + ARC
    config = write_tiny_config(tmp_path / "mix.toml", tmp_path, tiny_model_dir, tasks=tasks,
                               train='sampler = "proportional"\nepochs = 2\nlr = 3e-3', model="frozen_layers = 1")
    assert main(["train", "--config", str(config), "--data-dir", str(arc_data)]) == 0
    final = json.loads((tmp_path / "mix" / "metrics.json").read_text())["final_dev"]
    assert final["sst"]["metric"] == "accuracy" and final["arc"]["score"] > 0.6
    assert (tmp_path / "mix" / "predictions" / "arc-test-output.csv").is_file()


def test_a_batch_s_row_lengths_are_its_questions_choice_rows_as_collate_pads_them(tiny_kind_and_model):
    """What bench.py's padding share reads (TaskData.batch_row_lengths): a question's every choice row, not the
    row at the question's position; a sentence task's rows are its examples, a siamese task's distinct sentences."""
    from minbert.data.batching import TaskData
    from minbert.data.files import Example

    kind, _, tokenizer = tiny_kind_and_model
    data = kind.task_data([choice_example("q3", 3), ChoiceExample("q2", "the cat sat on the mat", ("a", "b c d e f"),
                                                                  ("A", "B"), 0, 2), choice_example("q4", 4)],
                          tokenizer, 32)
    sentences = [Example(str(i), (text, other), 1, i) for i, (text, other) in
                 enumerate([("a cat", "the dog sat"), ("a cat", "cat"), ("the mat", "a cat")])]
    for task_data, positions in ((data, [1, 2]), (data, [0]), (TaskData("s", sentences, tokenizer, 32), [0, 2]),
                                 (TaskData("s", sentences, tokenizer, 32, siamese=True), [0, 1])):
        lengths = task_data.batch_row_lengths(positions)
        mask = task_data.collate(positions).inputs["attention_mask"]
        assert sorted(lengths.tolist()) == sorted(mask.sum(dim=1).tolist())  # one per padded row, its own tokens
        assert int(lengths.max()) == mask.shape[1]
    assert len(data.batch_row_lengths([1, 2])) == 6 and len(data.batch_row_lengths([0])) == 3
