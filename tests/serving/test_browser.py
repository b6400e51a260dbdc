"""The report and the serve page in a real browser: Playwright driving Debian's Chromium, launched by its path
(nothing downloaded). The pages must load with no console error and no network request, draw every chart, and
their tables and form must work."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from minbert.reporting.report import write_report
from tests.conftest import _require
from tests.serving.conftest import running_server

sync_api = pytest.importorskip("playwright.sync_api")


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    _require("Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()


class Watched:
    """A page with its console errors and the network requests it made."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))


def visible_rows(page, table: str) -> list[str]:
    return page.eval_on_selector_all(f"#{table} tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.innerText)")


def test_a_run_report_renders_offline_and_its_tables_sort_and_filter(browser, three_task_run):
    report = three_task_run / "report.html"
    assert report.exists()  # written by `minbert train` itself
    watched = Watched(browser)
    page = watched.page
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    charts = page.locator("div.chart")
    assert charts.count() >= 6  # curves x2, two confusion matrices, STS scatter and per-bin error
    for i in range(charts.count()):
        charts.nth(i).locator(".main-svg").first.wait_for()
    assert watched.errors == []
    assert all(url.startswith("file:") for url in watched.requests), watched.requests
    assert page.locator("table.scores td.best").inner_text().startswith("0.")

    rows = visible_rows(page, "errors-sst")
    assert rows, "a one-epoch tiny model makes SST errors"
    word = next(w for w in rows[0].split("\t")[1].split() if len(w) > 2)
    page.fill("input[data-filter=errors-sst]", word)
    kept = visible_rows(page, "errors-sst")
    assert kept and all(word.lower() in row.lower() for row in kept)
    assert page.inner_text("#errors-sst-shown") == str(len(kept))
    page.fill("input[data-filter=errors-sst]", "zzzz-no-such-word")
    assert visible_rows(page, "errors-sst") == [] and page.inner_text("#errors-sst-shown") == "0"
    page.fill("input[data-filter=errors-sts]", "")

    page.click("#errors-sts th:has-text('error')")
    ascending = [float(v) for v in page.eval_on_selector_all("#errors-sts tbody tr td:nth-child(6)",
                                                               "cells => cells.map(c => c.innerText)")]
    assert ascending == sorted(ascending)
    page.click("#errors-sts th:has-text('error')")
    descending = [float(v) for v in page.eval_on_selector_all("#errors-sts tbody tr td:nth-child(6)",
                                                                "cells => cells.map(c => c.innerText)")]
    assert descending == sorted(ascending, reverse=True)
    page.close()


def test_a_comparison_page_ranks_runs_and_links_their_reports(browser, three_task_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(three_task_run, other, ignore=shutil.ignore_patterns("checkpoints", "best", "tensorboard"))
    page_path = write_report([three_task_run, other], tmp_path / "comparison.html")
    watched = Watched(browser)
    page = watched.page
    page.goto(page_path.as_uri())
    page.locator("div.chart .main-svg").first.wait_for()
    assert watched.errors == []
    assert len(visible_rows(page, "leaderboard")) == 2
    href = page.locator("#leaderboard a").first.get_attribute("href")
    assert (tmp_path / href).resolve().exists()
    page.close()


def test_the_serve_page_answers_as_the_python_api_does(browser, tiny_model):
    a, b = "the film was good and fun", "this movie is great"
    with running_server(tiny_model) as url:
        watched = Watched(browser)
        page = watched.page
        page.goto(url)
        page.fill("#sentence-a", a)
        page.fill("#sentence-b", b)
        page.click("#submit")
        page.locator("#similarity .value").wait_for()
        assert watched.errors == []
        assert all(u.startswith(url) for u in watched.requests), watched.requests
        label = int(page.get_attribute("#sentiment-a .value", "data-label"))
        assert label == tiny_model.predict_sentiment(a)
        assert int(page.get_attribute("#sentiment-b .value", "data-label")) == tiny_model.predict_sentiment(b)
        paraphrase = page.get_attribute("#paraphrase .value", "data-paraphrase") == "true"
        assert int(paraphrase) == tiny_model.predict_paraphrase((a, b))
        similarity = float(page.get_attribute("#similarity .value", "data-similarity"))
        assert similarity == pytest.approx(tiny_model.predict_similarity((a, b)), abs=1e-3)

        page.fill("#sentence-a", b)  # one sentence: its sentiment only
        page.fill("#sentence-b", "")
        page.click("#submit")
        page.locator("#sentiment-a .value").wait_for()
        assert page.locator("#paraphrase").count() == 0 and page.locator("#similarity").count() == 0
        assert int(page.get_attribute("#sentiment-a .value", "data-label")) == tiny_model.predict_sentiment(b)
        page.close()

