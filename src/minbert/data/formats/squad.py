"""SQuAD's JSON: `data[].paragraphs[].context` and `.qas[] = {id, question, answers[] = {text, answer_start}}`,
v1.1 and v2.0 (`is_impossible`, empty `answers`).

A question is one row, named in messages by its place and id (`data[3].paragraphs[2].qas[5] (id 5733...)`). Every
gold answer must be the context's own text at its `answer_start`: one that is not makes its question a bad row,
never moved to where the text happens to occur (a wrong offset says the row is broken). A second question with an
id already seen is a bad row (predictions are keyed by id). Unlabelled (test) files are read without answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minbert.data.files import LoadedFile
from minbert.data.formats.base import (
    DATA_FORMATS,
    Answer,
    ReadContext,
    Rows,
    SpanExample,
    SpanOptions,
    describe,
    load_json,
    read_file,
)
from minbert.errors import ConfigError, DataError


@DATA_FORMATS.register("squad")
class SquadFormat:
    """Extractive question answering: questions over paragraphs, answers as character spans of the paragraph."""

    example = SpanExample

    @dataclass
    class Options(SpanOptions):
        # SQuAD 2.0: a question without an answer (`is_impossible`, or an empty `answers` list) is a row; without
        # it such a question in a labelled file is a bad row
        no_answer: bool = False
        # SQuAD 2.0: the answer is "" where the null score ([CLS]) beats the best span's by more than this
        # (run_qa's null_score_diff_threshold); a run's dev results record the threshold that would score best
        null_threshold: float = 0.0

    @classmethod
    def check(cls, options: Options, where: str) -> None:
        if options.null_threshold and not options.no_answer:
            raise ConfigError(f"{where}.null_threshold = {options.null_threshold}: a threshold for the null answer "
                              "needs no_answer = true (SQuAD 2.0)")

    @staticmethod
    def read(path: str | Path, options: Options, context: ReadContext) -> LoadedFile:
        path, raw = read_file(path, context.what)
        return parse_squad(load_json(raw, path), path, options, context)


def parse_squad(document: Any, path: Path, options: SquadFormat.Options, context: ReadContext) -> LoadedFile:
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(f"{path}: not a SQuAD file (expected an object with a `data` list of articles, got "
                        f"{describe(document)})")
    rows = Rows(path, context.strict)
    seen: dict[str, str] = {}  # id -> where it was first
    for a, article in enumerate(document["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            rows.skip("an article without a `paragraphs` list (skipped whole)", where=f"data[{a}]")
            continue
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                rows.skip("a paragraph without a `qas` list (skipped whole)", where=where)
                continue
            text = paragraph.get("context")
            if not isinstance(text, str) or not text.strip():
                rows.skip(f"no context text (got {describe(text)}): its {len(qas)} questions are skipped",
                          where=where)
                continue
            for q, qa in enumerate(qas):
                place = f"{where}.qas[{q}]"
                example, reason = question(qa, text, place, options, context.labelled)
                qid = question_id(qa)
                shown = f"{place} (id {qid})" if qid else place
                if qid and qid in seen and not reason:
                    reason = f"duplicate id {qid!r} (first at {seen[qid]})"
                if qid:
                    seen.setdefault(qid, place)
                if reason:
                    rows.skip(reason, where=shown)
                else:
                    rows.add(example)
    return rows.done()


def question_id(qa: Any) -> str:
    value = qa.get("id") if isinstance(qa, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def question(qa: Any, context: str, where: str, options: SquadFormat.Options,
             labelled: bool) -> tuple[SpanExample | None, str]:
    """One question's example, or (None, why it is a bad row)."""
    if not isinstance(qa, dict):
        return None, f"a question is an object, got {describe(qa)}"
    qid = question_id(qa)
    if not qid:
        return None, f"no id (got {describe(qa.get('id'))})"
    text = qa.get("question")
    if not isinstance(text, str) or not text.strip():
        return None, f"no question text (got {describe(text)})"
    if not labelled:
        return SpanExample(qid, text.strip(), context, (), False, where), ""
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        return None, f"is_impossible is {describe(impossible)}, not true or false"
    given = qa.get("answers")
    if not isinstance(given, list):
        return None, f"no answers list (got {describe(given)})"
    if impossible and given:
        return None, f"is_impossible, yet it has {len(given)} answers"
    answers = []
    for index, answer in enumerate(given):
        parsed, reason = check_answer(answer, context)
        if reason:
            return None, f"answers[{index}]: {reason}"
        answers.append(parsed)
    if not answers and not options.no_answer:
        what = "is_impossible" if impossible else "no answers"
        return None, f"{what}: a question without an answer needs no_answer = true (SQuAD 2.0)"
    return SpanExample(qid, text.strip(), context, tuple(answers), not answers, where), ""


def check_answer(answer: Any, context: str) -> tuple[Answer | None, str]:
    if not isinstance(answer, dict):
        return None, f"an answer is an object {{text, answer_start}}, got {describe(answer)}"
    text, start = answer.get("text"), answer.get("answer_start")
    if not isinstance(text, str) or not text:
        return None, f"no answer text (got {describe(text)})"
    if not isinstance(start, int) or isinstance(start, bool):
        return None, f"answer_start is {describe(start)}, not a character offset"
    if not 0 <= start <= len(context) - len(text):
        return None, f"{text!r} at answer_start {start} runs outside the context ({len(context)} characters)"
    found = context[start:start + len(text)]
    if found != text:
        return None, f"{text!r} is not the context's text at answer_start {start} (which reads {found!r})"
    return Answer(text, start), ""
