"""`POST /predict/{task}` for a span task (issue 44): a question over a context in, the answer with its characters in
the context and its probability out; the body is the kind's own (a wrong one is a 422 naming the field); span and
sentence requests batched together are each answered as alone; the page offers the task in its form and marks the
answer in the context, hostile markup shown as text (Chromium)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from minbert.predictor import MultitaskBERT
from minbert.serving.app import Batching
from tests.serving.conftest import running_server
from tests.spans import CONTEXTS, HOSTILE_CONTEXT, train_span_run, write_span_data
from tests.tasks.test_span_kind import QA

QUESTIONS = [("who plays ?", CONTEXTS[0]), ("what sat ?", CONTEXTS[1]), ("who plays ?", HOSTILE_CONTEXT)]


@pytest.fixture(scope="module")
def span_run(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("span-serve")
    return train_span_run(out, tiny_model_dir, write_span_data(out / "data"), tasks='[tasks.sst]\ndata = "sst"\n' + QA)


@pytest.fixture(scope="module")
def span_model(span_run) -> MultitaskBERT:
    return MultitaskBERT.load(span_run)


@pytest.fixture(scope="module")
def span_server(span_model):
    with running_server(span_model) as url:
        yield url


def post(url: str, task: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/predict/{task}", json=body, timeout=30)


def test_an_answer_comes_with_offsets_that_slice_its_context_and_a_probability(span_server, span_model):
    body = {"questions": [{"question": q, "context": c} for q, c in QUESTIONS]}
    response = post(span_server, "qa", body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results == span_model.answers("qa", QUESTIONS)  # the Python API's answer
    for (_, context), result in zip(QUESTIONS, results, strict=True):
        assert set(result) == {"answer", "score", "start", "end"}  # SQuAD 1.1: no no_answer
        assert result["answer"] and context[result["start"]:result["end"]] == result["answer"]
        assert 0 < result["score"] <= 1
    assert results[0]["answer"] == "man" and results[1]["answer"] == "dog"  # what the tiny model learned
    one = post(span_server, "qa", {"question": QUESTIONS[0][0], "context": QUESTIONS[0][1]}).json()["results"]
    assert one == results[:1]


@pytest.mark.parametrize(("body", "named"), [
    ({"text": "who?"}, "text: Extra inputs are not permitted"),
    ({"question": 3, "context": "a cat"}, "question: Input should be a valid string"),
    ({"question": "who?"}, "give `context` with `question`"),
    ({"context": "a cat"}, "give `question` with `context`"),
    ({}, "not neither"),
    ({"question": "who?", "context": "cat", "questions": []}, "not both"),
    ({"questions": [{"question": "who?"}]}, "questions.0.context: Field required"),
    ({"questions": [{"question": "who?", "context": "cat", "choices": ["a"]}]}, "questions.0.choices: Extra inputs"),
    ({"questions": []}, "send at least one text"),
    ({"question": "who?", "context": "   "}, "text 0 is empty"),
])
def test_a_wrong_span_body_is_a_422_naming_the_field(span_server, body, named):
    response = post(span_server, "qa", body)
    assert response.status_code == 422 and named in response.json()["error"], response.text


def test_a_sentence_task_keeps_its_own_body_beside_a_span_task(span_server, span_model):
    answer = post(span_server, "sst", {"texts": ["great film"]})
    assert answer.status_code == 200
    assert [r["label"] for r in answer.json()["results"]] == span_model.predict("sst", ["great film"])
    assert post(span_server, "sst", {"question": "who?", "context": "cat"}).status_code == 422


def test_markup_in_a_context_comes_back_as_json_text(span_server):
    response = post(span_server, "qa", {"question": "who plays ?", "context": HOSTILE_CONTEXT})
    assert response.headers["content-type"] == "application/json"
    result = response.json()["results"][0]
    assert HOSTILE_CONTEXT[result["start"]:result["end"]] == result["answer"]
    assert "&lt;" not in response.text


def test_span_and_sentence_requests_batched_together_are_each_answered_as_alone(span_model):
    alone = {"qa": span_model.answers("qa", QUESTIONS), "sst": span_model.answers("sst", [(q,) for q, _ in QUESTIONS])}
    with running_server(span_model, batching=Batching(max_batch=32, max_wait_ms=50)) as url:
        jobs = [("qa", i) for i in range(len(QUESTIONS))] * 3 + [("sst", i) for i in range(len(QUESTIONS))] * 3
        bodies = {"qa": lambda i: {"question": QUESTIONS[i][0], "context": QUESTIONS[i][1]},
                  "sst": lambda i: {"texts": [QUESTIONS[i][0]]}}
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda job: post(url, job[0], bodies[job[0]](job[1])).json(), jobs))
    for (task, i), answer in zip(jobs, answers, strict=True):
        got, want = answer["results"][0], alone[task][i]
        if task == "qa":
            assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"])
            assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        else:
            assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)


def test_the_page_and_the_docs_offer_the_span_task_in_its_form(span_server):
    page = httpx.get(span_server, timeout=30).text
    own = json.loads(page.split("var OWN = ", 1)[1].split(";  //", 1)[0])
    assert [(task["name"], task["form"]) for task in own] == [("qa", "span")]
    assert 'id="question"' in page and 'id="context"' in page
    schema = httpx.get(f"{span_server}/openapi.json", timeout=30).json()
    body = schema["paths"]["/predict/{task}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [option["title"] for option in body["anyOf"]] == ["TaskRows", "QuestionBody"]


def test_the_page_marks_the_answer_in_the_context_and_shows_markup_as_text(span_model):
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.serving.test_browser import HOSTILE, assert_inert, chromium_path, open_watched

    context = f"{HOSTILE[0]} the man plays guitar {HOSTILE[1]} on the mat {HOSTILE[4]}"
    question = f"who plays {HOSTILE[1]} ?"
    answer = span_model.answers("qa", [(question, context)])[0]
    with sync_api.sync_playwright() as playwright, running_server(span_model) as url:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            watched, dialogs = open_watched(browser, url)
            page = watched.page
            page.fill("#sentence-a", "great film")
            page.fill("#question", question)
            page.fill("#context", context)
            page.click("#submit")
            page.locator("#answers[data-done]").wait_for(state="attached")
            assert page.inner_text("#error") == ""
            box = page.locator("#task-0-span")
            assert box.get_attribute("data-task") == "qa" and question in box.locator("h3").text_content()
            assert box.locator(".value").text_content() == answer["answer"]
            assert box.locator(".context mark").text_content() == context[answer["start"]:answer["end"]]
            assert box.locator(".context").text_content() == context  # every character, in order, as text
            assert page.locator("#answers script").count() == 0 and page.evaluate("window.pwned") is None
            assert_inert(page, dialogs)
            assert watched.errors == []
        finally:
            browser.close()
