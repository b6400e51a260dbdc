"""Where one request's time goes, stage by stage, when `minbert serve --timeline` asks for it.

Each request gets a `Timeline` of `time.perf_counter_ns` marks, one at the end of each stage, and its answer carries
them in a standard `Server-Timing` header (`parse;dur=0.214, queue;dur=0.031, ...`, milliseconds), which
`minbert loadtest --timeline` reads and averages. Without the flag no middleware is installed and the batcher finds
no timeline to mark: the cost is one context-variable read per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import ContextVar

# the stages in order, each ending at its mark; they tile the server's time from the request's arrival at the app
# (uvicorn has parsed its headers) to its response headers being sent
STAGES = {
    "parse": "body read, JSON decoded and validated, limits checked: the texts reach the batcher",
    "queue": "until the worker has taken the text (an idle worker's wake-up, or the batch ahead of it)",
    "batch": "waiting for company: until the batch is closed",
    "wake": "until the model thread starts on the batch",
    "tokenize": "the batch's texts to token ids, once per batch",
    "model": "the model call (forward pass, soft outputs)",
    "answer": "decisions and answer objects",
    "return": "until the request's handler resumes on the event loop",
    "json": "the answer encoded as JSON, until the response headers are sent",
}
HEADER = "server-timing"
CURRENT: ContextVar[Timeline | None] = ContextVar("minbert_timeline", default=None)


class Timeline:
    """One request's marks: {stage: ns at its end}, beside "start" (the request reached the app)."""

    __slots__ = ("marks",)

    def __init__(self) -> None:
        self.marks = {"start": time.perf_counter_ns()}

    def mark(self, stage: str, at: int | None = None) -> None:
        self.marks[stage] = time.perf_counter_ns() if at is None else at

    def durations_ms(self) -> dict[str, float]:
        """Each stage's milliseconds and their `total`. A stage without a mark (the embedding endpoint does not
        split tokenization from the model) took no time of its own: its time is in the next marked stage."""
        out, last = {}, self.marks["start"]
        for stage in STAGES:
            end = self.marks.get(stage, last)
            out[stage] = (end - last) / 1e6
            last = end
        out["total"] = (last - self.marks["start"]) / 1e6
        return out

    def header(self) -> str:
        return ", ".join(f"{stage};dur={ms:.3f}" for stage, ms in self.durations_ms().items())


def mark_all(timelines: Iterable[Timeline | None], stage: str) -> None:
    """One mark, the same instant, on every request of a batch that records a timeline."""
    now = time.perf_counter_ns()
    for timeline in timelines:
        if timeline is not None:
            timeline.mark(stage, now)


def parse_header(value: str) -> dict[str, float]:
    """`Server-Timing` back to {stage: ms} (what a client of `--timeline` reads)."""
    out = {}
    for part in value.split(","):
        name, _, rest = part.strip().partition(";dur=")
        if name and rest:
            out[name] = float(rest)
    return out


class TimelineRecorder:
    """ASGI middleware: a Timeline per HTTP request, current while the app handles it (the batcher and the handler
    mark it), sent back as a Server-Timing header when the response starts."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        timeline = Timeline()
        token = CURRENT.set(timeline)

        async def send_with_timing(message: dict) -> None:
            if message["type"] == "http.response.start":
                timeline.mark("json")
                message = {**message, "headers": [*message.get("headers", []),
                                                  (HEADER.encode(), timeline.header().encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            CURRENT.reset(token)
