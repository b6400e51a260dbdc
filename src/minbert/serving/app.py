"""`minbert serve`: a trained run behind a JSON HTTP API (FastAPI on uvicorn), with a page to try it.

Concurrent requests are batched: every text waits in one queue, and a single worker thread takes what has gathered
(up to `max_batch` texts; while a wave of clients is coming back, waiting at most `max_wait_ms` for them), groups it
by task and runs each group through the model's length-sorted inference path in one call. Under load that turns
many one-sentence forward passes into a few large ones; `max_batch = 1` serves one text at a time, the baseline of
the load test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from jinja2 import Environment, PackageLoader
from pydantic import BaseModel, Field, ValidationError

from minbert.data.spec import builtin_name
from minbert.errors import ConfigError, MinbertError
from minbert.evaluation.predict import predict
from minbert.predictor import MultitaskBERT
from minbert.sentence_encoder import SentenceEncoder
from minbert.serving.timeline import CURRENT, Timeline, TimelineRecorder, mark_all
from minbert.tasks.kinds import refuse


def check_positive(owner: object, minimum: dict[str, float]) -> None:
    """Each named field at least its minimum (0 for an open bound: > 0), checked before a server starts."""
    for name, low in minimum.items():
        value = getattr(owner, name)
        flag = "--" + name.replace("_", "-").replace("-seconds", "")
        if low == 0 and not value > 0:
            raise ConfigError(f"{flag} = {value} must be > 0")
        if low and value < low:
            raise ConfigError(f"{flag} = {value} must be >= {low}")

log = logging.getLogger("minbert")


@dataclass(frozen=True)
class Limits:
    """What one request may ask; each is answered with a JSON 4xx that names it."""

    max_texts: int = 64  # texts (or pairs) per request
    max_chars: int = 2000  # characters per text
    timeout_seconds: float = 10.0  # from arrival to answer
    # bytes of a request body, refused (413) before it is read; 0 = room for max_texts pairs of max_chars
    # characters, each written as a six-byte JSON escape, plus the JSON around them
    max_body_bytes: int = 0

    def __post_init__(self) -> None:
        check_positive(self, {"max_texts": 1, "max_chars": 1, "timeout_seconds": 0})
        if self.max_body_bytes < 0:
            raise ConfigError(f"--max-body-bytes = {self.max_body_bytes} must be > 0 (or 0: from the other limits)")
        if not self.max_body_bytes:  # resolved here, so that what /health reports is the limit enforced
            object.__setattr__(self, "max_body_bytes", 2 * self.max_texts * self.max_chars * 6 + 64 * 1024)


@dataclass(frozen=True)
class Batching:
    max_batch: int = 64  # texts per model call; 1 serves one text at a time
    max_wait_ms: float = 5.0  # how long a batch waits for a wave of clients coming back (never a lone text)

    def __post_init__(self) -> None:
        check_positive(self, {"max_batch": 1})
        if not self.max_wait_ms >= 0:
            raise ConfigError(f"--max-wait-ms = {self.max_wait_ms} must be >= 0")


class LimitExceeded(Exception):
    def __init__(self, status: int, limit: str, value: float, message: str):
        super().__init__(message)
        self.status, self.limit, self.value = status, limit, value


# --- the model side: one call per task per batch ---

ENDPOINT_DATA = {"sentiment": ("sst", "cfimdb"), "paraphrase": ("quora",), "similarity": ("sts",)}


class Service:
    """The run's tasks by what the API calls them, and one batched call for each."""

    def __init__(self, model: MultitaskBERT):
        self.model = model
        self.tasks: dict[str, str] = {}  # endpoint -> the run's task
        for endpoint, data_sets in ENDPOINT_DATA.items():
            found = [t for t, c in model.config.tasks.items() if builtin_name(c.data) in data_sets]
            if found:
                self.tasks[endpoint] = found[0]
        self.kinds = {task: model.model.heads[task].kind for task in model.config.tasks}  # POST /predict/{task}
        for kind in self.kinds.values():
            refuse(kind, "serve")
        self.labels = {endpoint: self.kinds[task].class_names for endpoint, task in self.tasks.items()}
        # the tasks no named endpoint answers (a data spec of the run's own, a second sentiment task): the page
        # asks POST /predict/{task} for each
        self.by_name_only = [task for task in self.kinds if task not in self.tasks.values()]
        self.encoder = SentenceEncoder(model.model.encoder, model.tokenizer, str(model.inference.device))
        # the run's autocast, as SentenceEncoder names it ("bf16" becomes fp16 on a GPU without bf16)
        self.precision = {None: "fp32"}.get(model.inference.autocast_dtype, "bf16")
        self.max_length = model.config.model.max_length

    def run(self, endpoint: str, rows: Sequence[tuple[str, ...]],
            timelines: Sequence[Timeline | None] = ()) -> list[dict]:
        """Answers for rows of one text (sentiment, embedding) or two (paraphrase, similarity), in order; a task's
        rows are its kind's natural form (TaskKind.serve_rows), answered as its kind answers them. `timelines`: the
        rows' requests' timelines (None where not recorded), marked at the end of each stage."""
        mark_all(timelines, "wake")
        if endpoint == "embedding":
            vectors = self.encoder.encode([r[0] for r in rows], batch_size=self.model.inference.batch_size,
                                          precision=self.precision, max_length=self.max_length)
            mark_all(timelines, "model")
            return [{"embedding": v} for v in vectors.tolist()]
        if endpoint.startswith(TASK_PREFIX):
            answers = self.model.answers(endpoint.removeprefix(TASK_PREFIX), rows)
            mark_all(timelines, "model")
            return answers
        task = self.tasks[endpoint]
        data = self.model.task_data(task, self.kinds[task].serve_examples(rows, self.model.tokenizer))
        mark_all(timelines, "tokenize")
        soft = predict(self.model.model, data, self.model.inference, soft=True)
        mark_all(timelines, "model")
        decided = self.kinds[task].decide(soft)
        if endpoint == "sentiment":
            names = self.labels[endpoint]
            answers = [{"label": int(d), "name": names[int(d)], "probabilities": p.tolist()}
                       for d, p in zip(decided, soft, strict=True)]
        elif endpoint == "paraphrase":
            answers = [{"paraphrase": bool(d), "probability": float(p)} for d, p in zip(decided, soft, strict=True)]
        else:
            answers = [{"similarity": float(s)} for s in np.asarray(soft, dtype=float)]
        mark_all(timelines, "answer")
        return answers


TASK_PREFIX = "task:"  # the batcher's name for POST /predict/{task}


class Asked:
    """One HTTP request's texts, answered together once the last of them is."""

    __slots__ = ("answers", "future", "left", "timeline")

    def __init__(self, future: asyncio.Future, size: int, timeline: Timeline | None):
        self.future, self.answers, self.left, self.timeline = future, [None] * size, size, timeline


@dataclass
class Pending:
    endpoint: str
    row: tuple[str, ...]
    request: Asked
    index: int  # the text's place in its request
    arrived_ns: int  # time.perf_counter_ns when it was queued


class Batcher:
    """One queue, one warm worker thread: texts that arrive together are answered by one model call per task.

    The thread sleeps on the queue while idle and takes a text the moment it is queued, so a lone text runs at once,
    with no hop through the event loop on its way in and one on its way out (a batch's answers go back in one call).
    It waits for company (up to max_wait_ms) only when a wave is coming: the previous batch held several texts and
    was answered less than its model call's time before this text arrived (clients under load come back faster than
    that), and it stops waiting as soon as the batch is as large as the previous one. What is queued always joins.
    """

    def __init__(self, service: Service, batching: Batching, model_threads: int | None = None):
        self.service, self.batching, self.model_threads = service, batching, model_threads
        self.queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()  # None: stop
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.previous = (0, 0, 0)  # the last batch: texts, when it was answered, its model calls' time (ns)
        self.stopping = False
        self.stats = {"requests": 0, "texts": 0, "model_calls": 0, "largest_batch": 0}

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread = threading.Thread(target=self.work, name="minbert-model", daemon=True)
        self.thread.start()

    async def stop(self) -> None:
        self.queue.put(None)  # the thread ends after the batch in hand

    async def submit(self, endpoint: str, rows: Sequence[tuple[str, ...]]) -> list[dict]:
        timeline = CURRENT.get()
        if timeline is not None:
            timeline.mark("parse")
        request = Asked(self.loop.create_future(), len(rows), timeline)
        now = time.perf_counter_ns()
        for index, row in enumerate(rows):
            self.queue.put(Pending(endpoint, row, request, index, now))
        self.stats["requests"] += 1
        return await request.future

    def expected(self, arrived_ns: int) -> int:
        """How many texts to wait for: the previous batch's, while its wave is still coming back; else 1."""
        texts, answered_ns, call_ns = self.previous
        return min(texts, self.batching.max_batch) if texts > 1 and arrived_ns - answered_ns < call_ns else 1

    def gather_batch(self) -> list[Pending] | None:
        """What is queued, up to max_batch texts, and what comes within max_wait_ms while a wave is expected
        (`expected`). None once stopped."""
        first = self.queue.get()  # an idle worker sleeps here
        if first is None:
            return None
        batch = [first]
        mark_all([first.request.timeline], "queue")
        wanted = self.expected(first.arrived_ns)
        deadline = time.perf_counter_ns() + int(self.batching.max_wait_ms * 1e6)
        while len(batch) < self.batching.max_batch:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter_ns()
                if len(batch) >= wanted or remaining <= 0:
                    break
                try:
                    item = self.queue.get(timeout=remaining / 1e9)
                except queue.Empty:
                    break
            if item is None:
                self.stopping = True
                break
            batch.append(item)
            mark_all([item.request.timeline], "queue")
        mark_all([item.request.timeline for item in batch], "batch")
        return [item for item in batch if not item.request.future.done()]  # a timed-out request's texts are dropped

    def work(self) -> None:
        if self.model_threads:  # see `serve`: this thread is the only one whose torch ops run in parallel
            torch.set_num_threads(self.model_threads)
        while not self.stopping and (batch := self.gather_batch()) is not None:
            groups: dict[str, list[Pending]] = defaultdict(list)
            for item in batch:
                groups[item.endpoint].append(item)
            began = time.perf_counter_ns()
            for endpoint, items in groups.items():
                answered = self.answer(endpoint, items)
                try:
                    self.loop.call_soon_threadsafe(self.deliver, answered)
                except RuntimeError:  # the event loop has closed: the server is gone
                    return
            if batch:
                ended = time.perf_counter_ns()
                self.previous = (len(batch), ended, ended - began)

    def answer(self, endpoint: str, items: list[Pending]) -> list[tuple[Pending, dict | Exception]]:
        """One model call for the group; if it fails, each text alone, so that only the texts that fail get an
        error and the requests they shared the batch with are answered."""
        try:
            answers = self.service.run(endpoint, [item.row for item in items],
                                       [item.request.timeline for item in items])
        except Exception as exc:
            if len(items) > 1:
                return [answer for item in items for answer in self.answer(endpoint, [item])]
            log.warning("serve: %s failed on %r: %s: %s", endpoint, items[0].row, type(exc).__name__, exc)
            return [(items[0], LimitExceeded(500, "model", 0, f"the model could not process this text "
                                             f"({type(exc).__name__}: {exc})"))]
        self.stats["model_calls"] += 1
        self.stats["texts"] += len(items)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
        return list(zip(items, answers, strict=True))

    @staticmethod
    def deliver(answered: list[tuple[Pending, dict | Exception]]) -> None:
        """On the event loop: each request whose last text is answered gets its answers (or its text's error)."""
        for item, answer in answered:
            request = item.request
            if request.future.done():  # timed out, or failed by another of its texts
                continue
            if isinstance(answer, Exception):
                request.future.set_exception(answer)
                continue
            request.answers[item.index] = answer
            request.left -= 1
            if not request.left:
                request.future.set_result(request.answers)


# --- the HTTP side ---

class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused with 413 before it is read or parsed, by its
    Content-Length at once, or for a chunked body as soon as what has arrived passes the limit; the connection is
    then closed, so the rest of the body is never held in memory."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if int(length) > self.limit:  # the server has checked that it is a number
                return await self.refuse(send, f"{int(length):,} bytes")
            return await self.app(scope, receive, send)
        received, messages = 0, []
        while True:  # no length given: read up to the limit here, then hand the body on
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.limit:
                return await self.refuse(send, f"over {self.limit:,} bytes")
            if not message.get("more_body"):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def refuse(self, send, size: str) -> None:
        body = json.dumps({"error": f"the request body is {size}; the limit is {self.limit:,} (--max-body-bytes)",
                           "limit": "max_body_bytes", "value": self.limit}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class Texts(BaseModel):
    texts: list[str] = Field(description="sentences", examples=[["A gripping, beautifully acted film."]])


class Pairs(BaseModel):
    pairs: list[tuple[str, str]] = Field(description="pairs of sentences", examples=[
        [["How do I learn Python?", "What is the best way to learn Python?"]]])


def check_limits(rows: Sequence[tuple[str, ...]], limits: Limits) -> None:
    if not rows:
        raise LimitExceeded(422, "min_texts", 1, "send at least one text")
    if len(rows) > limits.max_texts:
        raise LimitExceeded(413, "max_texts", limits.max_texts,
                            f"{len(rows)} texts in one request; the limit is {limits.max_texts}")
    for number, row in enumerate(rows):
        for text in row:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") that JSON allows and UTF-8 does not
                raise LimitExceeded(422, "unicode", exc.start, f"text {number} is not valid Unicode: "
                                    f"{exc.object[exc.start]!r} at character {exc.start} is a lone surrogate"
                                    ) from None
            if len(text) > limits.max_chars:
                raise LimitExceeded(413, "max_chars", limits.max_chars,
                                    f"text {number}: {len(text)} characters; the limit is {limits.max_chars}")
            if not text.strip():
                raise LimitExceeded(422, "empty_text", 0, f"text {number} is empty")


def page_policy(nonce: str) -> str:
    """The try-it page runs its own script and style (by nonce) and talks to this server only."""
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def create_app(model: MultitaskBERT, limits: Limits | None = None, batching: Batching | None = None,
               timeline: bool = False, model_threads: int | None = None) -> FastAPI:
    """The API of one loaded run. Every endpoint takes a list, so clients may batch too. With `timeline`, each
    answer carries its request's stages in a Server-Timing header (minbert.serving.timeline). `model_threads`:
    torch's intra-op threads for the model thread (None: as the process has them)."""
    limits, batching = limits or Limits(), batching or Batching()
    service = Service(model)
    batcher = Batcher(service, batching, model_threads)

    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    # /docs: Swagger UI 5 (it reads the OpenAPI 3.1 document FastAPI writes), served from the package, not a CDN
    app = FastAPIOffline(docs_url="/docs", redoc_url=None, static_url="/docs-assets",
                         title=f"minbert: {model.config.name}", version="1", lifespan=lifespan,
                         description="Sentiment, paraphrase, similarity and sentence embeddings from a minbert "
                         "run, and any task of it by name. Every endpoint takes a list; concurrent requests are "
                         "batched together.")
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    if timeline:  # outermost: its clock starts before the body limit is checked
        app.add_middleware(TimelineRecorder)
    app.state.batcher, app.state.limits = batcher, limits
    pages = Environment(loader=PackageLoader("minbert.serving", "templates"), autoescape=True)

    @app.exception_handler(LimitExceeded)
    async def limit_exceeded(request: Request, exc: LimitExceeded) -> JSONResponse:
        return JSONResponse({"error": str(exc), "limit": exc.limit, "value": exc.value}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            where = next(e for e in errors if e["type"] == "json_invalid")
            reason = where.get("ctx", {}).get("error", where["msg"])
            return JSONResponse({"error": f"malformed JSON at character {where['loc'][-1]}: {reason}",
                                 "limit": "json"}, status_code=400)
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors]
        return JSONResponse({"error": "; ".join(problems), "limit": "schema"}, status_code=422)

    async def answer(endpoint: str, rows: list[tuple[str, ...]]) -> list[dict]:
        if endpoint != "embedding" and not endpoint.startswith(TASK_PREFIX) and endpoint not in service.tasks:
            raise LimitExceeded(404, "task", 0, f"this run has no {endpoint} task (it has "
                                f"{', '.join(model.config.tasks)})")
        check_limits(rows, limits)
        try:
            async with asyncio.timeout(limits.timeout_seconds):  # no task of its own, unlike wait_for
                answers = await batcher.submit(endpoint, rows)
            mark_all([CURRENT.get()], "return")
            return answers
        except TimeoutError:
            raise LimitExceeded(408, "timeout_seconds", limits.timeout_seconds,
                                f"no answer within {limits.timeout_seconds} s (the server is overloaded)") from None

    @app.post("/sentiment", summary="sentiment class of each text, with class probabilities")
    async def sentiment(body: Texts) -> dict:
        return {"results": await answer("sentiment", [(t,) for t in body.texts])}

    @app.post("/paraphrase", summary="whether each pair is a paraphrase, with its probability")
    async def paraphrase(body: Pairs) -> dict:
        return {"results": await answer("paraphrase", [tuple(p) for p in body.pairs])}

    @app.post("/similarity", summary="similarity of each pair, 0 (unrelated) to 5 (same meaning)")
    async def similarity(body: Pairs) -> dict:
        return {"results": await answer("similarity", [tuple(p) for p in body.pairs])}

    # each kind declares its body (TaskKind.serve_body): the task's own is validated once the task is known; the
    # docs show every body the run's tasks take
    bodies = list(dict.fromkeys(kind.serve_body() for kind in service.kinds.values()))
    documented = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "anyOf": [body.model_json_schema() for body in bodies]}}}}}

    @app.post("/predict/{task}", openapi_extra=documented,
              summary="any task of the run, in its kind's body: a class (with every class's probability), a score, "
              "tagged entities with their characters in the text")
    async def predict_task(task: str, body: Annotated[dict, Body()]) -> dict:
        if task not in service.kinds:
            raise LimitExceeded(404, "task", 0, f"this run has no task {task!r} (it has "
                                f"{', '.join(model.config.tasks)})")
        kind = service.kinds[task]
        try:
            rows = kind.serve_rows(kind.serve_body().model_validate(body))
        except ValidationError as exc:  # answered as FastAPI answers a wrong body: 422 naming the field
            raise RequestValidationError(exc.errors(include_url=False)) from None
        except MinbertError as exc:
            raise LimitExceeded(422, "schema", 0, str(exc)) from None
        return {"task": task, "results": await answer(TASK_PREFIX + task, rows)}

    @app.post("/embedding", summary="a sentence embedding of each text (mean pooling of the fine-tuned encoder)")
    async def embedding(body: Texts) -> dict:
        return {"results": await answer("embedding", [(t,) for t in body.texts])}

    @app.get("/health", summary="liveness, the run served, batching settings and counters")
    async def health() -> dict:
        return {"status": "ok", "run": model.config.name, "tasks": service.tasks,
                "task_endpoints": {task: f"/predict/{task}" for task in service.kinds}, "limits": limits.__dict__,
                "batching": batching.__dict__, "timeline": timeline, "queued": batcher.queue.qsize(),
                "served": batcher.stats}

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        own = [{"name": task, "pair": service.kinds[task].is_pair, "classes": service.kinds[task].class_names,
                "form": service.kinds[task].serve_form} for task in service.by_name_only]
        html = pages.get_template("try.html.j2").render(run=model.config.name, tasks=service.tasks, own=own,
                                                         labels=service.labels, limits=limits, nonce=nonce)
        return HTMLResponse(html, headers={"Content-Security-Policy": page_policy(nonce)})

    return app


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          batching: Batching | None = None, precision: str | None = None, backend: str = "torch",
          onnx_dir: str | Path | None = None, timeline: bool = False) -> None:
    """Load the run (a failure stops here, before any port is opened), then serve until interrupted. `backend`:
    torch (the run's checkpoint) or onnx (its ONNX export, run by ONNX Runtime); `timeline`: each answer says
    where its request's time went (a Server-Timing header)."""
    import uvicorn

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port number (1 to 65535)")
    # Only the model thread runs torch ops in parallel: libgomp keeps a thread team for each thread that has run a
    # parallel region, and once teams hold more threads than there are cores it stops spinning between regions,
    # so every op of a second team pays a futex wake-up (exp of 8x1536 floats: 7 us on the first team, 68 us on a
    # second; a lone request's model call took 16 ms instead of 9, issue 46). This thread loads the run and runs
    # the event loop on one intra-op thread, so it never builds a team; the model thread takes the process's
    # count. (ONNX Runtime keeps its own pool, sized by torch's count when the session is made.)
    model_threads = torch.get_num_threads() if backend == "torch" else None
    if model_threads:
        torch.set_num_threads(1)
    model = MultitaskBERT.load(run, precision, backend, onnx_dir)
    model.prepare_for_serving()
    uvicorn.run(create_app(model, limits, batching, timeline, model_threads), host=host, port=port,
                log_level="warning")
