"""bench/hf_reference.py, the HF example recipes minbert's task kinds are compared with: each kind end to end on a
tiny random BERT and tiny files in each format, its QA decoding, SQuAD metric, sub-word alignment, choice masking
and refusals. (The full-size reference is a command, not a test.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.hf_reference import (
    ChoiceCollator,
    best_answers,
    main,
    masked_choice_model,
    ner_features,
    normalize_answer,
    qa_eval_features,
    qa_train_features,
    read_arc,
    read_conll,
    read_squad,
    squad_scores,
)
from tests.conftest import WORDS

CONLL = """-DOCSTART- -X- -X- O

the DT I-NP O
dog NN I-NP I-PER
sat VB I-VP O
on IN I-PP O
python NN I-NP I-ORG
code NN I-NP I-ORG
python NN I-NP B-ORG

-DOCSTART- -X- -X- O

a DT I-NP O
cat NN I-NP I-LOC
ran VB I-VP O
"""


def write_kind_data(directory: Path) -> Path:
    """Tiny files in each format: CoNLL (IOB1, -DOCSTART-, CRLF), SQuAD with a context longer than one window,
    ARC with a 3-choice and a 5-choice question (labelled 1-5)."""
    (directory / "conll2003").mkdir(parents=True)
    (directory / "squad").mkdir()
    (directory / "arc-easy").mkdir()
    for split in ("train.txt", "dev.txt"):
        (directory / "conll2003" / split).write_bytes((CONLL * 2).replace("\n", "\r\n").encode())
    filler = " ".join(WORDS[i % len(WORDS)] for i in range(60))
    context = f"{filler} the dog sat on the mat. {filler}"
    start = context.index("the dog sat")
    questions = [{"id": f"q{i}", "question": question, "answers": [{"text": text, "answer_start": start + offset}]}
                 for i, (question, text, offset) in enumerate([("who sat?", "the dog", 0), ("on what?", "mat", 19),
                                                               ("what sat?", "dog", 4)])]
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": questions}]}]}
    for split in ("train.json", "dev.json"):
        (directory / "squad" / split).write_text(json.dumps(squad), encoding="utf-8")
    arc = [{"id": "a", "question": {"stem": "what sat on the mat", "choices": [
               {"text": text, "label": label} for text, label in (("dog", "A"), ("code", "B"), ("plot", "C"))]},
            "answerKey": "A"},
           {"id": "b", "question": {"stem": "who plays guitar", "choices": [
               {"text": text, "label": str(i + 1)} for i, text in enumerate(("cat", "man", "film", "mat", "code"))]},
            "answerKey": "2"}]
    for split in ("train.jsonl", "dev.jsonl"):
        (directory / "arc-easy" / split).write_text("\n".join(json.dumps(row) for row in arc) + "\n",
                                                    encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def kind_data(tmp_path_factory) -> Path:
    return write_kind_data(tmp_path_factory.mktemp("kind-data"))


def run_reference(kind: str, model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["--kind", kind, "--model", str(model), "--data-dir", str(data), "--epochs", "1",
                 "--max-length", "48", "--doc-stride", "16", "--out", str(out), *extra])


@pytest.mark.parametrize("kind", ["ner", "qa", "choice"])
def test_each_kind_trains_and_scores_dev_with_the_recipe(kind, tiny_model_dir, kind_data, tmp_path, capsys):
    out = tmp_path / f"{kind}.json"
    assert run_reference(kind, tiny_model_dir, kind_data, out) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert json.loads(capsys.readouterr().out) == result  # stdout is the JSON alone (no Trainer log lines)
    assert result["kind"] == kind and result["args"]["seed"] == 11711
    recipe = result["recipe"]
    assert (recipe["lr"], recipe["weight_decay"], recipe["lr_scheduler"], recipe["precision"]) == (
        5e-5, 0.01, "linear", "bf16")
    assert result["train_minutes"] > 0 and result["train_examples_per_s"] > 0
    assert result["machine"]["cpu"] and result["machine"]["precision"] == "bf16"
    assert {"torch", "transformers", "seqeval"} <= set(result["versions"])
    metrics = result["metrics"]
    if kind == "ner":
        assert result["train_examples"] == 4 and result["labels"] == ["B-ORG", "I-LOC", "I-ORG", "I-PER", "O"]
        assert result["dev_words_not_scored"] == 0
        assert set(metrics) == {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}
        assert all(0 <= value <= 1 for value in metrics.values())
    elif kind == "qa":
        # three questions, counted once each, over a context that needs several 48-token windows
        assert result["train_examples"] == 3 and result["train_features"] > 3 and result["eval_features"] > 3
        assert recipe["doc_stride"] == 16 and recipe["n_best"] == 20 and recipe["max_answer_length"] == 30
        assert set(metrics) == {"exact_match", "f1"} and all(0 <= value <= 100 for value in metrics.values())
    else:
        assert result["train_examples"] == result["train_features"] == 2
        assert result["choice_counts"] == {"3": 2, "5": 2}
        assert metrics["accuracy"] in (0.0, 0.5, 1.0)


def test_best_answers_take_the_best_valid_pair_over_all_windows():
    context = "alpha beta gamma delta"
    # two windows of one question, four tokens each: [CLS]-like token 0 outside the context (None)
    windows = [{"example_id": "q", "offset_mapping": [None, (0, 5), (6, 10), (11, 16)]},
               {"example_id": "q", "offset_mapping": [None, (6, 10), (11, 16), (17, 22)]}]
    start = np.array([[9.0, 0.0, 0.0, 3.0], [9.0, 2.0, 1.0, 0.0]])
    end = np.array([[9.0, 4.0, 0.0, 0.0], [9.0, 0.0, 0.0, 2.5]])
    # best raw sum is token 0 (outside the context), then (3, 1) in window 0 (end < start): both refused;
    # window 1's (1, 3) = 2 + 2.5 beats window 0's (1, 1) = 0 + 4
    examples = [{"id": "q", "context": context}]
    assert best_answers(examples, windows, start, end) == {"q": "beta gamma delta"}
    # at most max_answer_length tokens: (1, 3) is three tokens long, so window 0's one-token "alpha" wins
    assert best_answers(examples, windows, start, end, max_answer_length=2) == {"q": "alpha"}
    # no valid pair at all (only the outside token): utils_qa's "empty"
    windows_out = [{"example_id": "q", "offset_mapping": [None, None, None, None]}]
    assert best_answers(examples, windows_out, start[:1], end[:1]) == {"q": "empty"}


def test_qa_windows_label_the_answer_where_a_window_holds_it(tiny_model_dir, kind_data):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = read_squad(kind_data / "squad" / "train.json")
    features = qa_train_features(tokenizer, examples, max_length=48, stride=16, pad=True)
    windows_of_first = [f for f in features if f["input_ids"][1:4] == features[0]["input_ids"][1:4]]
    assert len(windows_of_first) > 2 and all(len(f["input_ids"]) == 48 for f in features)
    labelled = [f for f in windows_of_first if f["start_positions"] != 0]
    # the answer's window(s) point at its tokens; every other window at [CLS]
    assert labelled and len(labelled) < len(windows_of_first)
    for f in labelled:
        assert tokenizer.decode(f["input_ids"][f["start_positions"]:f["end_positions"] + 1]) == "the dog"
    assert all(f["end_positions"] == 0 for f in windows_of_first if f["start_positions"] == 0)
    inputs, windows = qa_eval_features(tokenizer, examples, max_length=48, stride=16, pad=True)
    assert len(inputs) == len(features) and {w["example_id"] for w in windows} == {"q0", "q1", "q2"}
    # only context tokens keep offsets: [CLS], the question and [SEP]s are None
    assert windows[0]["offset_mapping"][:3] == [None, None, None]


def test_squad_metric_on_hand_checked_answers():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    examples = [{"id": "a", "answers": {"text": ["Denver Broncos", "Denver, Colorado"]}},
                {"id": "b", "answers": {"text": ["Santa Clara, California"]}},
                {"id": "c", "answers": {"text": ["in 1990", "1990"]}}]
    predictions = {"a": "the Broncos", "b": "Santa Clara", "c": "An 1990."}
    scores = squad_scores(examples, predictions)
    # a: "broncos" against "denver broncos": precision 1, recall 1/2, F1 2/3; against "denver colorado" 0: EM 0.
    # b: "santa clara" against "santa clara california": F1 2 * 1 * (2/3) / (1 + 2/3) = 0.8, EM 0.
    # c: "An" is an article and "." punctuation: "1990" equals the second gold answer: EM 1, F1 1.
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 0.8 + 1) / 3)


def test_only_a_words_first_sub_word_is_labelled(tmp_path):
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "play",
                                                   "##ing", "##er", "dog"]) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(tmp_path)
    sentences = [(["the", "playinger", "dog"], ["O", "I-PER", "I-LOC"])]
    (feature,) = ner_features(tokenizer, sentences, {"O": 0, "I-PER": 1, "I-LOC": 2}, max_length=16)
    # [CLS] the play ##ing ##er dog [SEP]
    assert feature["input_ids"] == tokenizer.convert_tokens_to_ids(
        ["[CLS]", "the", "play", "##ing", "##er", "dog", "[SEP]"])
    assert feature["labels"] == [-100, 0, 1, -100, -100, 2, -100]


def test_padded_choices_never_take_probability(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    features = [{**tokenizer(["the dog"] * n, [WORDS[i] for i in range(n)]), "labels": n - 1} for n in (3, 5)]
    batch = ChoiceCollator(tokenizer)(features)
    assert batch["input_ids"].shape[:2] == (2, 5)
    assert batch["choice_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    model = masked_choice_model(str(tiny_model_dir)).eval()
    with torch.no_grad():
        output = model(**batch)
    probabilities = output.logits.float().softmax(-1)
    assert probabilities[0, 3:].tolist() == [0.0, 0.0] and probabilities[1].sum() == pytest.approx(1.0)
    assert torch.isfinite(output.loss)


def test_readers_keep_every_row_of_each_format(kind_data):
    sentences = read_conll(kind_data / "conll2003" / "train.txt")  # CRLF, -DOCSTART- lines between documents
    assert len(sentences) == 4
    assert sentences[0] == (["the", "dog", "sat", "on", "python", "code", "python"],
                            ["O", "I-PER", "O", "O", "I-ORG", "I-ORG", "B-ORG"])
    questions = read_arc(kind_data / "arc-easy" / "dev.jsonl")
    assert [(len(q["choices"]), q["answer"]) for q in questions] == [(3, 0), (5, 1)]


def test_bad_inputs_are_one_line_before_any_training(tiny_model_dir, kind_data, tmp_path, capsys):
    bad = tmp_path / "bad"
    (bad / "arc-easy").mkdir(parents=True)
    (bad / "arc-easy" / "train.jsonl").write_text(
        (kind_data / "arc-easy" / "train.jsonl").read_text(encoding="utf-8").replace('"answerKey": "2"',
                                                                                     '"answerKey": "E"'),
        encoding="utf-8")
    (bad / "arc-easy" / "dev.jsonl").write_text("{not json\n", encoding="utf-8")
    out = tmp_path / "r.json"
    assert run_reference("choice", tiny_model_dir, bad, out) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {bad / 'arc-easy' / 'train.jsonl'}:2: answerKey 'E' is none of the choices' labels "
        "['1', '2', '3', '4', '5']"]
    assert run_reference("qa", tiny_model_dir, bad, out) == 2
    assert capsys.readouterr().err.strip() == (f"error: {bad / 'squad' / 'train.json'}: no such file (--data-dir "
                                               "names the folder holding squad/)")
    out.write_text("keep me", encoding="utf-8")
    assert run_reference("ner", tiny_model_dir, kind_data, out) == 2
    assert "exists" in capsys.readouterr().err and out.read_text(encoding="utf-8") == "keep me"
    assert run_reference("ner", tiny_model_dir, kind_data, tmp_path / "s.json", "--max-length", "512") == 2
    assert "above the model's max_position_embeddings 64" in capsys.readouterr().err
