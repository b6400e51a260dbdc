"""A choice task's report: the confusion of gold and predicted choice positions and the wrong dev questions whose gold
choice was least probable, with their stem and choices (ChoiceKind.report_view through the kind's template), every
stem and choice shown as text, in a real browser too (Debian's Chromium through Playwright)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minbert.reporting.report import load_run, task_sections, write_report
from tests.choices import BOLD, SCRIPT, choice_kind, train_choice_run, write_choice_data


@pytest.fixture(scope="module")
def choice_run(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("choice-report")
    return train_choice_run(out, tiny_model_dir, write_choice_data(out / "data"), train="report = true")


def row(id_: str, gold: str, predicted: str, probabilities: list[float]) -> dict:
    labels = "ABCDE"[:len(probabilities)]
    choices = [{"label": label, "text": f"text {label}"} for label in labels]
    return {"id": id_, "stem": f"stem {id_}", "choices": choices, "gold": gold, "predicted": predicted,
            "probabilities": probabilities}


def test_the_worst_questions_are_the_wrong_ones_with_the_least_probable_gold_choice():
    rows = [row("right", "A", "A", [0.7, 0.2, 0.1]),
            row("close", "B", "A", [0.5, 0.4, 0.1]),
            row("far", "C", "A", [0.6, 0.3, 0.05, 0.05]),
            row("unlabelled", None, "A", [0.9, 0.1])]
    result = {"choice_confusion": [[1, 0, 0], [1, 0, 0], [1, 0, 0]]}
    view = choice_kind().report_view(result, rows, limit=5)
    assert view["confusion"] == result["choice_confusion"] and view["positions"] == [1, 2, 3]
    assert (view["wrong"], view["questions"]) == (2, 4)  # right and unlabelled questions are not listed
    assert [w["id"] for w in view["worst"]] == ["far", "close"]  # the least probable gold first
    far = view["worst"][0]
    assert far["stem"] == "stem far" and far["gold_probability"] == 0.05
    assert far["choices"][0] == {"label": "A", "text": "text A", "probability": 0.6, "gold": False, "predicted": True}
    assert far["choices"][2] == {"label": "C", "text": "text C", "probability": 0.05, "gold": True,
                                 "predicted": False}
    assert [w["id"] for w in choice_kind().report_view(result, rows, limit=1)["worst"]] == ["far"]
    assert choice_kind().report_view({}, None, 5) == {"confusion": [], "positions": [], "worst": [], "wrong": 0,
                                                      "questions": 0}


def test_a_choice_run_report_shows_the_confusion_and_the_worst_questions_as_text(choice_run):
    metrics = json.loads((choice_run / "metrics.json").read_text())["final_dev"]["arc"]
    section = next(s for s in task_sections(load_run(choice_run)) if s["task"] == "arc")
    assert section["view"]["confusion"] == metrics["choice_confusion"] and section["has_details"]
    assert "hostile" in [w["id"] for w in section["view"]["worst"]]  # its gold choice is unlike the learned one
    page = write_report([choice_run]).read_text(encoding="utf-8")
    assert "Gold against predicted choice position (dev)" in page and 'id="choice-confusion-arc"' in page
    assert "worst answered dev questions" in page and 'id="choices-arc"' in page
    assert SCRIPT not in page and BOLD not in page  # escaped, in the table and everywhere else
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page and "cat dog &lt;b&gt;bold&lt;/b&gt;" in page


def test_the_choice_report_renders_hostile_stems_and_choices_as_text_in_chromium(choice_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.serving.test_browser import Watched, chromium_path, visible_rows

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            watched = Watched(browser)
            page = watched.page
            page.goto((choice_run / "report.html").as_uri())
            page.wait_for_load_state("load")
            page.locator("#choices-arc").wait_for()
            assert watched.errors == []
            assert page.evaluate("window.pwned") is None  # the choice's script never ran
            assert page.locator("#choices-arc b, #choices-arc script").count() == 0  # nor did markup render
            hostile = page.locator("#choices-arc tr", has_text=SCRIPT)
            assert hostile.count() == 1
            assert hostile.locator("td.question").inner_text() == f"cat dog {BOLD}"  # the stem, as text
            assert hostile.locator("mark.entity.missed").inner_text() == f"B. dog {SCRIPT}"  # the gold choice
            assert hostile.locator("mark.entity.wrong").inner_text() == "A. great cat"  # the chosen one
            confusion = page.locator("#choice-confusion-arc tbody td")
            assert sum(int(confusion.nth(i).inner_text()) for i in range(confusion.count())) == 15
            page.fill("input[data-filter=choices-arc]", "pwned")
            assert visible_rows(page, "choices-arc") == [hostile.inner_text()]
        finally:
            browser.close()
