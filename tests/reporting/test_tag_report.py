"""A tag task's report: per entity type precision / recall / F1 and the worst tagged dev sentences with gold and
predicted entities marked (Tag.report_view through the kind's template), every word shown as text, in a real
browser too (Debian's Chromium through Playwright, as tests/serving/test_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minbert.reporting.report import load_run, task_sections, write_report
from tests.tagging import BOLD, SCRIPT, tag_kind, train_tag_run, write_tag_data

TAGS = ["O", "I-PER", "B-PER", "I-MISC"]


@pytest.fixture(scope="module")
def tag_run(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("tag-report")
    return train_tag_run(out, tiny_model_dir, write_tag_data(out / "data"), train="report = true")


def row(id_: str, words: str, gold: str, predicted: str, confidence: float = 0.9) -> dict:
    words = words.split()
    return {"id": id_, "words": words, "gold": gold.split(), "predicted": predicted.split(),
            "confidence": [confidence] * len(words)}


def test_the_worst_sentences_have_most_entity_errors_with_each_entity_marked():
    rows = [row("right", "cat sat", "I-PER O", "I-PER O"),
            row("one", "cat sat", "I-PER O", "O O"),
            row("three-unsure", "cat dog python", "I-PER B-PER I-MISC", "I-PER I-PER O", 0.5),
            row("three-sure", "cat dog python", "I-PER B-PER I-MISC", "I-PER I-PER O", 0.99)]
    result = {"entity_scores": {"PER": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 4}}}
    view = tag_kind(TAGS).report_view(result, rows, limit=2)
    assert view["types"] == [{"type": "PER", "precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 4}]
    assert (view["with_errors"], view["sentences"]) == (3, 4)  # a sentence without errors is not listed
    assert [w["id"] for w in view["worst"]] == ["three-sure", "three-unsure"]  # most errors; the surer first
    worst = view["worst"][0]
    # gold: cat (PER), dog (PER, touching: IOB1's B-), python (MISC); predicted: one PER "cat dog"
    assert worst["errors"] == 4 and worst["confidence"] == 0.99
    assert worst["gold"] == [{"text": "cat", "type": "PER", "right": False},
                             {"text": "dog", "type": "PER", "right": False},
                             {"text": "python", "type": "MISC", "right": False}]
    assert worst["predicted"] == [{"text": "cat dog", "type": "PER", "right": False},
                                  {"text": "python", "type": None, "right": True}]
    partly = tag_kind(TAGS).report_view({}, [row("r", "a cat b", "O I-PER O", "O I-PER I-PER")], 5)["worst"][0]
    assert partly["gold"] == [{"text": "a", "type": None, "right": True}, {"text": "cat", "type": "PER",
                                                                            "right": False},
                              {"text": "b", "type": None, "right": True}]
    assert tag_kind(TAGS).report_view({}, None, 5) == {"types": [], "worst": [], "with_errors": 0, "sentences": 0}


def test_a_tag_run_report_shows_per_type_scores_and_the_worst_sentences_as_text(tag_run):
    metrics = json.loads((tag_run / "metrics.json").read_text())["final_dev"]["ner"]
    section = next(s for s in task_sections(load_run(tag_run)) if s["task"] == "ner")
    assert [t["type"] for t in section["view"]["types"]] == sorted(metrics["entity_scores"])
    assert section["view"]["worst"] and section["has_details"]
    page = write_report([tag_run]).read_text(encoding="utf-8")
    assert "Entities per type (dev)" in page and 'id="types-ner"' in page and "worst tagged dev sentences" in page
    assert "No per-example dev predictions" not in page
    for kind in metrics["entity_scores"]:
        assert f"<td>{kind}</td>" in page
    assert SCRIPT not in page and BOLD not in page  # escaped, in the table and everywhere else
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert 'class="entity missed" data-type="PER"' in page  # the hostile sentence's gold PER entities, missed


def test_the_tag_report_renders_hostile_words_as_text_in_chromium(tag_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.serving.test_browser import Watched, chromium_path, visible_rows

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            watched = Watched(browser)
            page = watched.page
            page.goto((tag_run / "report.html").as_uri())
            page.wait_for_load_state("load")
            page.locator("div.chart .main-svg").first.wait_for()
            assert watched.errors == []
            assert page.evaluate("window.pwned") is None  # the word's script never ran
            assert page.locator("#errors-ner b").count() == 0  # nor did its markup render
            hostile = page.locator("#errors-ner tr", has_text=SCRIPT)
            assert hostile.count() == 1 and BOLD in hostile.inner_text()
            assert page.locator("#errors-ner td.gold mark.entity[data-type=PER]").count() >= 2
            assert len(visible_rows(page, "types-ner")) >= 1
            page.fill("input[data-filter=errors-ner]", "pwned")
            assert visible_rows(page, "errors-ner") == [hostile.inner_text()]
        finally:
            browser.close()
