"""A span task's report: the worst answered dev questions (lowest F1, then the more confident) with their question,
gold and predicted answers and the context with both marked (Span.report_view through the kind's template), every
text shown as text, in a real browser too (Debian's Chromium through Playwright, as tests/serving/test_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minbert.reporting.report import load_run, task_sections, write_report
from minbert.tasks.kinds.span import marked_context
from tests.spans import BOLD, SCRIPT, span_kind, train_span_run, write_span_data

CONTEXT = "the man plays guitar and the dog sat on the mat"


@pytest.fixture(scope="module")
def span_run(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("span-report")
    return train_span_run(out, tiny_model_dir, write_span_data(out / "data"), train="report = true")


def row(id_: str, gold: str, predicted: str, confidence: float = 0.9) -> dict:
    at, to = CONTEXT.index(predicted), CONTEXT.index(predicted) + len(predicted)
    return {"id": id_, "question": f"q {id_}", "context": CONTEXT, "gold": [gold],
            "gold_spans": [[CONTEXT.index(gold), CONTEXT.index(gold) + len(gold)]], "predicted": predicted,
            "span": [at, to], "confidence": confidence}


def test_the_worst_answers_have_the_lowest_f1_the_surer_first_with_the_context_marked():
    rows = [row("right", "man", "man"), row("half", "the man", "man plays"),
            row("wrong-unsure", "dog", "guitar", 0.2), row("wrong-sure", "dog", "guitar", 0.8)]
    view = span_kind().report_view({}, rows, limit=3)
    assert (view["wrong"], view["questions"]) == (3, 4)  # an exact answer is not listed
    assert [w["id"] for w in view["worst"]] == ["wrong-sure", "wrong-unsure", "half"]
    assert view["worst"][2]["f1"] == pytest.approx(2 / 3)  # gold "man" ("the" is dropped), predicted "man plays"
    assert view["worst"][0]["context"] == [
        {"text": "the man plays ", "gold": False, "predicted": False},
        {"text": "guitar", "gold": False, "predicted": True},
        {"text": " and the ", "gold": False, "predicted": False},
        {"text": "dog", "gold": True, "predicted": False},
        {"text": " sat on the mat", "gold": False, "predicted": False}]
    overlap = view["worst"][2]["context"]  # gold "the man", predicted "man plays": "man" is both
    assert [(p["text"], p["gold"], p["predicted"]) for p in overlap[:4]] == [
        ("the ", True, False), ("man", True, True), (" plays", False, True), (" guitar and the dog sat on the mat",
                                                                            False, False)]
    assert span_kind().report_view({}, None, 5) == {"worst": [], "wrong": 0, "questions": 0, "null_answer": None}


def test_a_long_context_is_cut_around_its_marks():
    context = "x" * 400 + " answer " + "y" * 400
    at = context.index("answer")
    pieces = marked_context(context, [(at, at + 6)], None, keep=10)
    assert [p["text"] for p in pieces] == ["\u2026" + "x" * 9 + " ", "answer", " " + "y" * 9 + "\u2026"]
    assert marked_context("short one", [], None, keep=10) == [{"text": "short one", "gold": False, "predicted": False}]


def test_a_span_run_report_shows_the_worst_answers_as_text(span_run):
    lines = (span_run / "predictions" / "qa-dev-details.jsonl").read_text(encoding="utf-8").splitlines()
    details = [json.loads(line) for line in lines]
    section = next(s for s in task_sections(load_run(span_run)) if s["task"] == "qa")
    assert section["has_details"] and section["view"]["questions"] == len(details)
    worst = section["view"]["worst"]
    assert "hostile" in [w["id"] for w in worst]  # its gold answer is the <script> text, never predicted exactly
    assert [w["f1"] for w in worst] == sorted(w["f1"] for w in worst)
    page = write_report([span_run]).read_text(encoding="utf-8")
    assert "worst answered dev questions" in page and 'id="answers-qa"' in page
    assert SCRIPT not in page and BOLD not in page  # escaped, in the table and everywhere else
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_the_span_report_renders_hostile_text_as_text_in_chromium(span_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.serving.test_browser import Watched, chromium_path, visible_rows

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            watched = Watched(browser)
            page = watched.page
            page.goto((span_run / "report.html").as_uri())
            page.wait_for_load_state("load")
            assert watched.errors == []
            assert page.evaluate("window.pwned") is None  # the context's script never ran
            assert page.locator("#answers-qa b").count() == 0 and page.locator("#answers-qa script").count() == 0
            hostile = page.locator("#answers-qa tr", has_text=SCRIPT)
            assert hostile.count() == 1 and BOLD in hostile.locator("td.question").inner_text()
            assert hostile.locator("td.context mark.entity.missed").inner_text() == SCRIPT  # gold, not predicted
            page.fill("input[data-filter=answers-qa]", "pwned")
            assert visible_rows(page, "answers-qa") == [hostile.inner_text()]
        finally:
            browser.close()
