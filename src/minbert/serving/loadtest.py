"""A bounded load test of `minbert serve` on loopback: batched serving against one text at a time.

For each serving mode a server process is started on a free port, warmed up, and then hit by 1, 8, 32, ...
concurrent clients, each sending one sentence per request until the level's request count is reached or its time
limit passes. Reported per level: requests answered, failures, requests per second, p50 and p99 latency; per mode:
the server's resident memory after warm-up and at the end. With `timeline`, the servers record where each
request's time goes (`serve --timeline`) and a second table gives each level's mean per stage.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from minbert.errors import ConfigError, MinbertError
from minbert.serving.timeline import HEADER, STAGES, parse_header

SENTENCES = [
    "A gripping, beautifully acted film.",
    "The plot is thin and the jokes fall flat.",
    "It's a charming, if slight, comedy.",
    "An ambitious failure that never finds its footing.",
    "One of the year's most satisfying movies.",
    "Too long, too loud and too pleased with itself.",
    "The performances are uniformly excellent.",
    "I kept checking my watch.",
]


@dataclass
class Level:
    mode: str
    clients: int
    answered: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    stages_ms: list[dict[str, float]] = field(default_factory=list)  # each answer's Server-Timing, with --timeline

    @property
    def rps(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


@dataclass
class ModeResult:
    mode: str
    levels: list[Level]
    rss_start_mb: float
    rss_end_mb: float
    served: dict


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise MinbertError(f"no VmRSS for process {pid}")


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        return json.load(response)


def start_server(run: Path, port: int, max_batch: int, max_wait_ms: float, log: Path,
                 backend: str = "torch", timeline: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-m", "minbert", "serve", "--run", str(run), "--port", str(port),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--backend", backend,
               *(["--timeline"] if timeline else [])]
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MinbertError(f"the server exited with {process.returncode}: {log.read_text(encoding='utf-8')}")
        try:
            health(f"http://127.0.0.1:{port}")
            return process
        except OSError:  # not listening yet
            time.sleep(0.2)
    process.kill()
    raise MinbertError(f"the server did not answer within 120 s: {log}")


async def run_level(url: str, mode: str, clients: int, requests: int, time_limit: float) -> Level:
    """`clients` concurrent clients, each sending one sentence per request and waiting for its answer, until
    `requests` have been sent or `time_limit` seconds have passed."""
    level = Level(mode, clients)
    issued = 0

    async def client(number: int, http: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < stop:
            issued += 1
            sentence = SENTENCES[(issued + number) % len(SENTENCES)]
            started = time.perf_counter()
            timing = None
            try:
                async with http.post(f"{url}/sentiment", json={"texts": [sentence]}) as response:
                    ok = response.status == 200 and len((await response.json())["results"]) == 1
                    timing = response.headers.get(HEADER)
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                level.answered += 1
                level.latencies_ms.append(1000 * (time.perf_counter() - started))
                if timing:
                    level.stages_ms.append(parse_header(timing))
            else:
                level.failed += 1

    # aiohttp: the load generator shares the server's cores, so the lightest well-kept client is used
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        begun = time.perf_counter()
        stop = begun + time_limit
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        level.seconds = time.perf_counter() - begun
    return level


def load_test(run: str | Path, clients: Sequence[int] = (1, 8, 32), requests: int = 300, time_limit: float = 60,
              modes: Sequence[str] = ("one-at-a-time", "batched"), max_batch: int = 64, max_wait_ms: float = 5,
              log_dir: str | Path | None = None, backends: Sequence[str] = ("torch",),
              timeline: bool = False) -> list[ModeResult]:
    """Every backend's and mode's server in turn (never two at once: they would share the cores), every level in
    turn. With more than one backend, each mode is named with its backend ("batched, onnx"). With `timeline`, the
    servers record where each request's time goes (`timeline_table`)."""
    # refused before any server starts: 0 or -3 clients would measure nothing and report nan
    if not clients or min(clients) < 1:
        raise ConfigError(f"clients must be whole numbers >= 1, got {list(clients)}")
    if requests < 1:
        raise ConfigError(f"requests must be >= 1, got {requests}")
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise ConfigError(f"time_limit must be a finite number > 0, got {time_limit}")
    run = Path(run)
    if not (run / "config.toml").exists():
        raise MinbertError(f"{run}: not a run directory (no config.toml)")
    log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="minbert-loadtest-"))
    results = []
    for backend, mode_of_server in ((b, m) for b in backends for m in modes):
        mode = mode_of_server if len(backends) == 1 else f"{mode_of_server}, {backend}"
        port = free_port()
        batch = 1 if mode_of_server == "one-at-a-time" else max_batch
        server = start_server(run, port, batch, 0 if batch == 1 else max_wait_ms,
                              log_dir / f"serve-{mode_of_server}-{backend}.log", backend, timeline)
        url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(run_level(url, mode, max(clients), 2 * max(clients), time_limit))  # warm-up
            start_rss = resident_mb(server.pid)
            levels = [asyncio.run(run_level(url, mode, c, requests, time_limit)) for c in clients]
            end_rss = resident_mb(server.pid)
            served = health(url)["served"]
        finally:
            server.terminate()
            server.wait(30)
        results.append(ModeResult(mode, levels, start_rss, end_rss, served))
    return results


def table(results: list[ModeResult]) -> str:
    lines = ["| serving | clients | answered | failed | requests/s | p50 ms | p99 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for result in results:
        for level in result.levels:
            lines.append(f"| {result.mode} | {level.clients} | {level.answered} | {level.failed} | {level.rps:.1f} | "
                         f"{level.percentile(50):.1f} | {level.percentile(99):.1f} |")
    lines.append("")
    for result in results:
        change = 100 * (result.rss_end_mb / result.rss_start_mb - 1)
        lines.append(f"- {result.mode}: server memory {result.rss_start_mb:.0f} MB after warm-up, "
                     f"{result.rss_end_mb:.0f} MB at the end ({change:+.1f}%); {result.served['texts']} texts in "
                     f"{result.served['model_calls']} model calls, largest batch {result.served['largest_batch']}")
    by_mode = {r.mode: {lv.clients: lv for lv in r.levels} for r in results}
    for suffix in sorted({r.mode.removeprefix("one-at-a-time").removeprefix("batched") for r in results}):
        batched, single_mode = f"batched{suffix}", f"one-at-a-time{suffix}"
        if {single_mode, batched} <= by_mode.keys():
            for clients in by_mode[batched]:
                single = by_mode[single_mode].get(clients)
                if single and single.rps:
                    ratio = by_mode[batched][clients].rps / single.rps
                    lines.append(f"- {clients} clients: {batched} serves {ratio:.2f}x the requests per second of "
                                 f"{single_mode}")
    if any(level.stages_ms for r in results for level in r.levels):
        lines += ["", timeline_table(results)]
    return "\n".join(lines) + "\n"


def timeline_table(results: list[ModeResult]) -> str:
    """Each level's mean milliseconds per stage of a request (`serve --timeline`; the stages sum to `server`),
    and `outside`: the client's mean latency less the server's, i.e. the wire, uvicorn's reading of the request
    line and headers, and the client itself."""
    lines = [f"| serving | clients | {' | '.join(STAGES)} | server | outside | client |",
             "| --- | ---: |" + " ---: |" * (len(STAGES) + 3)]
    for result in results:
        for level in result.levels:
            if not level.stages_ms:
                continue
            mean = {name: float(np.mean([s.get(name, 0.0) for s in level.stages_ms])) for name in [*STAGES, "total"]}
            client = float(np.mean(level.latencies_ms))
            cells = [f"{mean[name]:.3f}" for name in STAGES]
            lines.append(f"| {result.mode} | {level.clients} | {' | '.join(cells)} | {mean['total']:.3f} | "
                         f"{client - mean['total']:.3f} | {client:.3f} |")
    return "\n".join(lines)
