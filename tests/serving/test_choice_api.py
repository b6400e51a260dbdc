"""`POST /predict/{task}` for a multiple-choice task (issue 44): a stem and its choices in, the chosen choice's label
and index with every choice's probability out (the question's own labels, or A, B, C, ...); the body is the kind's
own (a wrong one is a 422 naming the field); choice and sentence requests batched together are each answered as
alone; the page offers the task in its form and shows the stem and the choices as text (Chromium)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from minbert.predictor import MultitaskBERT
from minbert.serving.app import Batching
from tests.choices import SCRIPT, train_choice_run, write_choice_data
from tests.serving.conftest import running_server
from tests.tasks.test_choice_kind import ARC, RIGHT

# (stem, choices): the tiny model learned that the right choice starts with RIGHT
QUESTIONS = [("cat dog film plot", ["dog sat", f"{RIGHT} mat", "python"]),
             ("the plot", ["film", "boring cat", "guitar", f"{RIGHT} dog", "cat"]),
             (f"which one {SCRIPT} ?", [f"{RIGHT} {SCRIPT}", "<b>bold</b>"])]


@pytest.fixture(scope="module")
def choice_run(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("choice-serve")
    return train_choice_run(out, tiny_model_dir, write_choice_data(out / "data"),
                            tasks='[tasks.sst]\ndata = "sst"\n' + ARC)


@pytest.fixture(scope="module")
def choice_model(choice_run) -> MultitaskBERT:
    return MultitaskBERT.load(choice_run)


@pytest.fixture(scope="module")
def choice_server(choice_model):
    with running_server(choice_model) as url:
        yield url


def post(url: str, task: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/predict/{task}", json=body, timeout=30)


def test_a_choice_comes_with_its_label_index_and_every_choice_s_probability(choice_server, choice_model):
    body = {"questions": [{"question": q, "choices": c} for q, c in QUESTIONS]}
    response = post(choice_server, "arc", body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results == choice_model.answers("arc", [(q, *c) for q, c in QUESTIONS])
    for (_, choices), result in zip(QUESTIONS, results, strict=True):
        assert set(result) == {"choice", "index", "probabilities"}
        assert list(result["probabilities"]) == list("ABCDE"[:len(choices)])  # every choice, in order
        assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert result["choice"] == "ABCDE"[result["index"]]
        assert result["probabilities"][result["choice"]] == max(result["probabilities"].values())
        assert choices[result["index"]].startswith(RIGHT)  # what the tiny model learned
    one = post(choice_server, "arc", {"question": QUESTIONS[0][0], "choices": QUESTIONS[0][1]}).json()["results"]
    # one question alone is a smaller batch: the same answer, its probabilities within float rounding
    assert [r["choice"] for r in one] == [results[0]["choice"]]
    assert one[0]["probabilities"] == pytest.approx(results[0]["probabilities"], rel=1e-5)
    own = post(choice_server, "arc", {"question": QUESTIONS[0][0], "choices": QUESTIONS[0][1],
                                      "labels": ["1", "2", "x"]}).json()["results"][0]
    assert list(own["probabilities"]) == ["1", "2", "x"] and own["choice"] == "2"
    assert list(own["probabilities"].values()) == pytest.approx(list(results[0]["probabilities"].values()), abs=1e-6)


@pytest.mark.parametrize(("body", "named"), [
    ({"text": "which?"}, "text: Extra inputs are not permitted"),
    ({"question": 3, "choices": ["a", "b"]}, "question: Input should be a valid string"),
    ({"question": "which?"}, "give `choices` with `question`"),
    ({"choices": ["a", "b"]}, "give `question` with `choices`"),
    ({"question": "which?", "choices": ["a"]}, "choices: List should have at least 2 items"),
    ({"question": "which?", "choices": "a b"}, "choices: Input should be a valid list"),
    ({}, "not neither"),
    ({"question": "which?", "choices": ["a", "b"], "questions": []}, "not both"),
    ({"question": "which?", "choices": ["a", "b"], "labels": ["A"]}, "`labels` must name each of the 2 choices"),
    ({"question": "which?", "choices": ["a", "b"], "labels": ["A", "A"]}, "distinct non-empty labels"),
    ({"questions": [{"question": "which?"}]}, "questions.0.choices: Field required"),
    ({"questions": [{"question": "which?", "choices": ["a", "b"], "context": "c"}]},
     "questions.0.context: Extra inputs"),
    ({"questions": [{"question": "which?", "choices": ["a", "b"], "labels": ["A", ""]}]}, "distinct non-empty"),
    ({"questions": []}, "send at least one text"),
    ({"question": "which?", "choices": ["a", "  "]}, "text 0 is empty"),
])
def test_a_wrong_choice_body_is_a_422_naming_the_field(choice_server, body, named):
    response = post(choice_server, "arc", body)
    assert response.status_code == 422 and named in response.json()["error"], response.text


def test_a_sentence_task_keeps_its_own_body_beside_a_choice_task(choice_server, choice_model):
    answer = post(choice_server, "sst", {"texts": ["great film"]})
    assert answer.status_code == 200
    assert [r["label"] for r in answer.json()["results"]] == choice_model.predict("sst", ["great film"])
    assert post(choice_server, "sst", {"question": "which?", "choices": ["a", "b"]}).status_code == 422


def test_markup_in_a_choice_comes_back_as_json_text(choice_server):
    response = post(choice_server, "arc", {"question": QUESTIONS[2][0], "choices": QUESTIONS[2][1],
                                           "labels": [SCRIPT, "<i>"]})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert list(response.json()["results"][0]["probabilities"]) == [SCRIPT, "<i>"]
    assert "&lt;" not in response.text


def test_choice_and_sentence_requests_batched_together_are_each_answered_as_alone(choice_model):
    rows = [(q, *c) for q, c in QUESTIONS]
    alone = {"arc": choice_model.answers("arc", rows), "sst": choice_model.answers("sst", [(q,) for q, _ in QUESTIONS])}
    with running_server(choice_model, batching=Batching(max_batch=32, max_wait_ms=50)) as url:
        jobs = [("arc", i) for i in range(len(QUESTIONS))] * 3 + [("sst", i) for i in range(len(QUESTIONS))] * 3
        bodies = {"arc": lambda i: {"question": QUESTIONS[i][0], "choices": QUESTIONS[i][1]},
                  "sst": lambda i: {"texts": [QUESTIONS[i][0]]}}
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda job: post(url, job[0], bodies[job[0]](job[1])).json(), jobs))
    for (task, i), answer in zip(jobs, answers, strict=True):
        got, want = answer["results"][0], alone[task][i]
        if task == "arc":
            assert (got["choice"], got["index"]) == (want["choice"], want["index"])
            assert list(got["probabilities"].values()) == pytest.approx(list(want["probabilities"].values()),
                                                                        abs=1e-5)
        else:
            assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)


def test_the_page_and_the_docs_offer_the_choice_task_in_its_form(choice_server):
    page = httpx.get(choice_server, timeout=30).text
    own = json.loads(page.split("var OWN = ", 1)[1].split(";  //", 1)[0])
    assert [(task["name"], task["form"]) for task in own] == [("arc", "choice")]
    assert 'id="question"' in page and 'id="choices"' in page and 'id="context"' not in page
    schema = httpx.get(f"{choice_server}/openapi.json", timeout=30).json()
    body = schema["paths"]["/predict/{task}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [option["title"] for option in body["anyOf"]] == ["TaskRows", "ChoiceBody"]


def test_the_page_shows_the_stem_and_the_choices_with_probabilities_as_text(choice_model):
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.serving.test_browser import HOSTILE, assert_inert, chromium_path, open_watched

    question = f"which one {HOSTILE[1]} ?"
    choices = [f"{RIGHT} {HOSTILE[0]}", f"dog {HOSTILE[1]}", HOSTILE[4]]
    answer = choice_model.answers("arc", [(question, *choices)])[0]
    with sync_api.sync_playwright() as playwright, running_server(choice_model) as url:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            watched, dialogs = open_watched(browser, url)
            page = watched.page
            page.fill("#sentence-a", "great film")
            page.fill("#question", question)
            page.fill("#choices", "\n".join(choices))
            page.click("#submit")
            page.locator("#answers[data-done]").wait_for(state="attached")
            assert page.inner_text("#error") == ""
            box = page.locator("#task-0-choice")
            assert box.get_attribute("data-task") == "arc" and question in box.locator("h3").text_content()
            value = box.locator(".value")
            assert value.get_attribute("data-choice") == answer["choice"]
            assert value.text_content() == f"{answer['choice']}: {choices[answer['index']]}"
            bars = box.locator(".bar")
            assert bars.count() == 3
            for k, (label, probability) in enumerate(answer["probabilities"].items()):
                assert bars.nth(k).locator(".name").text_content() == f"{label}. {choices[k]}"  # as text
                assert float(bars.nth(k).locator("span").nth(2).text_content()) == pytest.approx(probability,
                                                                                                 abs=1e-3)
            assert page.locator("#answers script").count() == 0 and page.evaluate("window.pwned") is None
            assert_inert(page, dialogs)
            assert watched.errors == []
        finally:
            browser.close()
