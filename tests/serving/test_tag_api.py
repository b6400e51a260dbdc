"""`POST /predict/{task}` for a tagging task (issue 44): raw text in, entities with their characters in the text out,
the words and their tags beside them; the body is the kind's own (a wrong one is a 422 naming the field); tag and
sentence requests batched together are each answered as alone; the page offers the task in its kind's form."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from minbert.metrics import entities
from minbert.predictor import MultitaskBERT
from minbert.serving.app import Batching
from tests.serving.conftest import running_server

TEXTS = ["The CAT sat, with  Dog and\tpython .", "guitar cat dog", "nothing here at all"]


@pytest.fixture(scope="module")
def tag_model(tag_run) -> MultitaskBERT:
    return MultitaskBERT.load(tag_run)


@pytest.fixture(scope="module")
def tag_server(tag_model):
    with running_server(tag_model) as url:
        yield url


def post(url: str, task: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/predict/{task}", json=body, timeout=30)


def test_entities_come_with_offsets_that_slice_the_text_to_their_words(tag_server, tag_model):
    response = post(tag_server, "ner", {"texts": TEXTS})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results == tag_model.answers("ner", [(t,) for t in TEXTS])  # the Python API's answer
    assert any(r["entities"] for r in results), "the tiny model tags the words that say their entity"
    for text, result in zip(TEXTS, results, strict=True):
        words = tag_model.tokenizer.words(text)
        assert result["words"] == [w for w, _ in words] and len(result["tags"]) == len(words)
        assert [(e["type"], e["start"], e["end"]) for e in result["entities"]] == [
            (kind, words[first][1][0], words[end - 1][1][1]) for kind, first, end in entities(result["tags"])]
        for entity, (_, first, end) in zip(result["entities"], entities(result["tags"]), strict=True):
            assert entity["text"] == text[entity["start"]:entity["end"]]
            assert [w for w, _ in tag_model.tokenizer.words(entity["text"])] == result["words"][first:end]
            assert 0 < entity["score"] <= 1
    first = results[0]
    assert ("CAT", "PER") in {(e["text"], e["type"]) for e in first["entities"]}  # original case, as typed
    one = post(tag_server, "ner", {"text": TEXTS[0]}).json()["results"]
    assert one == results[:1]


@pytest.mark.parametrize(("body", "named"), [
    ({"question": "who?", "context": "cat"}, "question: Extra inputs are not permitted"),
    ({"text": 3}, "text: Input should be a valid string"),
    ({"texts": "a cat"}, "texts: Input should be a valid list"),
    ({}, "give `text` (one text) or `texts` (a list of texts), not neither"),
    ({"text": "a cat", "texts": ["a dog"]}, "not both"),
    ({"texts": []}, "send at least one text"),
    ({"texts": ["cat", "   "]}, "text 1 is empty"),
])
def test_a_wrong_tag_body_is_a_422_naming_the_field(tag_server, body, named):
    response = post(tag_server, "ner", body)
    assert response.status_code == 422 and named in response.json()["error"], response.text


def test_a_sentence_task_keeps_its_own_body_beside_a_tag_task(tag_server, tag_model):
    texts = ["great great film", "bad plot"]
    answer = post(tag_server, "sst", {"texts": texts})
    assert answer.status_code == 200
    assert [r["label"] for r in answer.json()["results"]] == tag_model.predict("sst", texts)
    wrong = post(tag_server, "sst", {"text": "great film"})
    assert wrong.status_code == 422 and wrong.json()["error"] == "task sst takes `texts`"
    assert post(tag_server, "ner", ["cat"]).status_code == 422  # not an object
    assert post(tag_server, "nope", {"text": "cat"}).status_code == 404


def test_markup_in_a_token_comes_back_as_json_text(tag_server):
    text = "<script>alert(1)</script> cat &amp; dog"
    response = post(tag_server, "ner", {"text": text})
    assert response.headers["content-type"] == "application/json"
    result = response.json()["results"][0]
    assert "".join(result["words"]) == text.replace(" ", "")
    assert result["words"][:3] == ["<", "script", ">"]
    assert '"<","script",">"' in response.text and "&lt;" not in response.text  # JSON text, not HTML: the page
    # shows it as text (test_browser)
    for entity in result["entities"]:
        assert entity["text"] == text[entity["start"]:entity["end"]]


def test_tag_and_sentence_requests_batched_together_are_each_answered_as_alone(tag_model):
    alone = {"ner": tag_model.answers("ner", [(t,) for t in TEXTS]),
             "sst": tag_model.answers("sst", [(t,) for t in TEXTS])}
    with running_server(tag_model, batching=Batching(max_batch=32, max_wait_ms=50)) as url:
        jobs = [("ner", i) for i in range(len(TEXTS))] * 4 + [("sst", i) for i in range(len(TEXTS))] * 4
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda job: post(url, job[0], {"texts": [TEXTS[job[1]]]}).json(), jobs))
        served = httpx.get(f"{url}/health", timeout=30).json()["served"]
    for (task, i), answer in zip(jobs, answers, strict=True):
        got, want = answer["results"][0], alone[task][i]
        if task == "ner":
            assert got["tags"] == want["tags"] and [e["text"] for e in got["entities"]] == [
                e["text"] for e in want["entities"]]
            assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in want["entities"]],
                                                                          abs=1e-5)
        else:
            assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
    assert served["texts"] == len(jobs) and served["model_calls"] <= len(jobs)


def test_the_page_and_the_docs_offer_the_tag_task_in_its_form(tag_server):
    page = httpx.get(tag_server, timeout=30).text
    own = json.loads(page.split("var OWN = ", 1)[1].split(";  //", 1)[0])
    assert [(task["name"], task["form"]) for task in own] == [("ner", "tag")]  # sst answers at /sentiment
    schema = httpx.get(f"{tag_server}/openapi.json", timeout=30).json()
    body = schema["paths"]["/predict/{task}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [option["title"] for option in body["anyOf"]] == ["TaskRows", "TextBody"]
