"""The report and the serve page in a real browser: Playwright driving Debian's Chromium, launched by its path
(nothing downloaded). The pages must load with no console error and no network request, draw every chart, and
their tables and form must work."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from urllib.parse import quote

import httpx
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



# --- hostile text from data files and users shows literally and never runs ---

HOSTILE = ["<script>alert('script')</script>", "<img src=x onerror=alert('img')>",
           '<iframe src="about:blank" id="injected"></iframe>', "<!-- the rest is a comment",
           "<b>bold</b> & <a href='javascript:alert(1)'>link</a>"]
HOSTILE_NAME = "<img src=x onerror=alert('name')>"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    """A tiny run trained on dev files whose sentences are markup, under a run name that is markup too."""
    from minbert.cli import main
    from tests.conftest import THREE_TASKS, write_tiny_config

    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    shutil.copytree(tiny_data_dir, data)
    for name, column in (("ids-sst-dev.csv", 2), ("sts-dev.csv", 2)):
        lines = (data / name).read_text().splitlines()
        for i, text in enumerate(HOSTILE, start=1):
            cells = lines[i].split("\t")
            cells[column] = text.replace("\t", " ")
            lines[i] = "\t".join(cells)
        (data / name).write_text("\n".join(lines) + "\n")
    config = write_tiny_config(root / "hostile.toml", root / "runs", tiny_model_dir, tasks=THREE_TASKS,
                               train="report = true")
    assert main(["train", "--config", str(config), "name=hostile", "--data-dir", str(data)]) == 0
    # a run name follows minbert.names' rule, so markup gets in only by hand: a metrics.json edited after training
    run = root / "runs" / "hostile"
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    (run / "metrics.json").write_text(json.dumps({**metrics, "name": HOSTILE_NAME}), encoding="utf-8")
    write_report([run])
    return run


def open_watched(browser, url: str) -> tuple[Watched, list[str]]:
    watched, dialogs = Watched(browser), []
    watched.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    watched.page.goto(url)
    watched.page.wait_for_load_state("load")
    return watched, dialogs


def assert_inert(page, dialogs: list[str]) -> None:
    """No script ran, nothing was injected, and the page was not cut short by an open comment."""
    page.wait_for_timeout(300)
    assert dialogs == []
    assert page.locator("#injected").count() == 0 and page.locator("img[src=x]").count() == 0
    assert page.locator("a[href^=javascript]").count() == 0


def test_hostile_dev_rows_and_run_names_show_literally_in_the_report(browser, hostile_run):
    watched, dialogs = open_watched(browser, (hostile_run / "report.html").as_uri())
    page = watched.page
    assert_inert(page, dialogs)
    assert page.title() == f"minbert report: {HOSTILE_NAME}"
    assert page.inner_text("h1") == HOSTILE_NAME
    shown = page.inner_text("#errors-sts")
    for text in HOSTILE:
        assert text in shown  # as text, in full
    assert "Made by minbert report" in page.inner_text("body")  # the open comment hid nothing
    scatter = page.locator("div.chart").filter(has_text="predicted against gold")
    scatter.locator(".main-svg").first.wait_for()
    # hover each point: Plotly draws the sentences as text, never as markup
    hovered = page.evaluate("""div => { const texts = [];
        const n = div._fullData[0]._length;
        for (let i = 0; i < n; i++) { Plotly.Fx.hover(div, [{curveNumber: 0, pointNumber: i}]);
          const layer = div.querySelector('.hoverlayer'); texts.push(layer ? layer.textContent : ''); }
        return texts; }""", scatter.element_handle())
    assert any(HOSTILE[0] in text for text in hovered), hovered
    assert_inert(page, dialogs)
    assert watched.errors == []
    page.close()


def test_hostile_run_names_show_literally_in_a_comparison(browser, hostile_run, three_task_run, tmp_path):
    page_path = write_report([hostile_run, three_task_run], tmp_path / "comparison.html")
    watched, dialogs = open_watched(browser, page_path.as_uri())
    page = watched.page
    page.locator("div.chart .main-svg").first.wait_for()
    assert_inert(page, dialogs)
    assert HOSTILE_NAME in page.inner_text("#leaderboard")
    assert watched.errors == []
    page.close()


def test_the_serve_page_shows_a_hostile_run_name_literally_under_a_strict_policy(browser, hostile_run):
    from minbert.predictor import MultitaskBERT

    model = MultitaskBERT.load(hostile_run)
    model.config.name = HOSTILE_NAME  # a config.toml refuses it (minbert.names): the page must still escape it
    with running_server(model) as url:
        watched, dialogs = open_watched(browser, url)
        page = watched.page
        assert_inert(page, dialogs)
        assert page.title() == f"minbert: {HOSTILE_NAME}" and HOSTILE_NAME in page.inner_text("h1")
        policy = httpx_get(url).headers["content-security-policy"]
        assert "script-src 'nonce-" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
        page.fill("#sentence-a", HOSTILE[1])  # a hostile sentence typed in: the answer names it as text
        page.fill("#sentence-b", "")
        page.click("#submit")
        page.locator("#sentiment-a .value").wait_for()
        assert HOSTILE[1] in page.inner_text("#sentiment-a h3")
        assert_inert(page, dialogs)
        assert watched.errors == []
        page.close()


def httpx_get(url: str):
    import httpx

    return httpx.get(url, timeout=30)


# --- issue 43: the API docs render in a browser; the page tries every task of a run, its own tasks too ---

def test_the_api_docs_render_every_operation_offline(browser, tiny_model):
    """The OpenAPI document is 3.1: the Swagger UI served with it must read 3.1 (4.x shows "Unable to render")."""
    with running_server(tiny_model) as url:
        schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
        watched = Watched(browser)
        page = watched.page
        page.goto(f"{url}/docs")
        page.locator(".opblock-summary-path, .version-pragma").first.wait_for()
        assert "Unable to render" not in page.inner_text("body")
        shown = page.eval_on_selector_all(".opblock-summary-path", "paths => paths.map(p => p.dataset.path)")
        assert sorted(shown) == sorted(schema["paths"])
        assert watched.errors == []
        assert all(u.startswith(url) for u in watched.requests), watched.requests
        page.close()


OWN_TASK = "own-mood"  # a task name cannot be markup (minbert.names refuses it); its class names are
OWN_CLASSES = [HOSTILE[0], HOSTILE[1], "neutral", HOSTILE[4], "very positive"]


@pytest.fixture(scope="module")
def own_task_run(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    """A tiny run of its own data specs only (no sst, quora or sts): a classification task with class names in
    markup, and a pair task with a score."""
    from minbert.cli import main
    from tests.conftest import write_tiny_config

    root = tmp_path_factory.mktemp("own-tasks")
    tasks = (f'[tasks."{OWN_TASK}".data]\ntrain = "ids-sst-train.csv"\ndev = "ids-sst-dev.csv"\n'
             'text = ["sentence"]\nlabel = "sentiment"\nclasses = [0, 1, 2, 3, 4]\n'
             f'class_names = {json.dumps(OWN_CLASSES)}\nmetrics = ["accuracy"]\n'
             '[tasks.closeness.data]\ntrain = "sts-train.csv"\ndev = "sts-dev.csv"\n'
             'text = ["sentence1", "sentence2"]\nlabel = "similarity"\nscore_range = [0, 5]\nmetrics = ["pearson"]\n')
    config = write_tiny_config(root / "own.toml", root / "runs", tiny_model_dir, tasks=tasks)
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    return root / "runs" / "own"


def shown_answers(page) -> dict[tuple[str, str], dict]:
    """(task, sentence a/b/pair) -> what its answer box shows, read as text."""
    return {(box["task"], box["id"].rsplit("-", 1)[1]): box for box in page.eval_on_selector_all(
        "#answers .answer", """boxes => boxes.map(b => ({task: b.dataset.task, id: b.id,
            title: b.querySelector('h3').textContent, value: b.querySelector('.value').textContent,
            data: {...b.querySelector('.value').dataset}, bars: [...b.querySelectorAll('.bar .name')]
            .map(n => n.textContent)}))""")}


def test_the_serve_page_tries_every_task_of_a_run_with_only_its_own_tasks(browser, own_task_run):
    from minbert.predictor import MultitaskBERT

    a, b = "great great film", "a great film"
    with running_server(MultitaskBERT.load(own_task_run)) as url:
        classes = httpx.post(f"{url}/predict/{quote(OWN_TASK)}", json={"texts": [a, b]}, timeout=30).json()["results"]
        score = httpx.post(f"{url}/predict/closeness", json={"pairs": [[a, b]]}, timeout=30).json()["results"][0]
        watched, dialogs = open_watched(browser, url)
        page = watched.page
        page.fill("#sentence-a", a)
        page.fill("#sentence-b", b)
        page.click("#submit")
        page.locator("#answers[data-done]").wait_for(state="attached")
        assert page.inner_text("#error") == ""
        shown = shown_answers(page)
        assert set(shown) == {(OWN_TASK, "a"), (OWN_TASK, "b"), ("closeness", "pair")}
        for side, expected in zip("ab", classes, strict=True):
            box = shown[OWN_TASK, side]
            assert OWN_TASK in box["title"] and (a if side == "a" else b) in box["title"]
            assert box["value"] == expected["name"] == OWN_CLASSES[expected["label"]]
            assert int(box["data"]["label"]) == expected["label"] and box["bars"] == OWN_CLASSES
        assert float(shown["closeness", "pair"]["data"]["score"]) == pytest.approx(score["score"], abs=1e-3)

        page.fill("#sentence-b", "")  # one sentence: the single-sentence task only
        page.click("#submit")
        page.locator("#answers[data-done]").wait_for(state="attached")
        assert set(shown_answers(page)) == {(OWN_TASK, "a")}
        assert_inert(page, dialogs)
        assert watched.errors == []
        assert all(u.startswith(url) for u in watched.requests), watched.requests
        page.close()


# --- issue 44: a tagging task in its kind's form, hostile text shown as text ---

def test_the_serve_page_tags_text_and_shows_markup_in_it_as_text(browser, tag_run):
    """The page offers a tag task its own form: the typed text comes back with its entities marked, and markup in
    it (a <script> token, an <img>, a javascript: link) is shown as text, never run or inserted."""
    from minbert.predictor import MultitaskBERT

    text = f"{HOSTILE[0]} cat and dog {HOSTILE[1]} python {HOSTILE[4]}"
    model = MultitaskBERT.load(tag_run)
    answer = model.answers("ner", [(text,)])[0]
    assert answer["entities"], "the tiny model tags cat, dog and python"
    with running_server(model) as url:
        watched, dialogs = open_watched(browser, url)
        page = watched.page
        page.fill("#sentence-a", text)
        page.fill("#sentence-b", "")
        page.click("#submit")
        page.locator("#answers[data-done]").wait_for(state="attached")
        assert page.inner_text("#error") == ""
        box = page.locator("#task-0-a")
        assert box.get_attribute("data-task") == "ner" and text in box.locator("h3").text_content()
        marks = box.locator(".value mark").evaluate_all(
            "marks => marks.map(m => [m.firstChild.textContent, m.dataset.type])")
        assert marks == [[e["text"], e["type"]] for e in answer["entities"]]
        pieces = box.locator(".value").evaluate("v => [...v.childNodes].map(n => n.nodeType === 3 ? n.textContent "
                                                ": n.firstChild.textContent).join('')")
        assert pieces == text  # every character of the text, in order, as text
        assert page.locator("#answers script").count() == 0
        assert_inert(page, dialogs)
        assert watched.errors == []
        page.close()
