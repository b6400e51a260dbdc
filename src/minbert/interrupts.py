"""Ctrl-C (SIGINT) and SIGTERM end a command cleanly: one line of what was kept, never a traceback.

The `minbert` command installs `STOP`'s handlers for the length of the command. Outside a stoppable section a
signal ends the command at once (`Interrupted`). Inside one (the training loop, a sweep waiting on its runs) the
first signal only asks for a stop: the loop finishes its step, writes a checkpoint and raises `Interrupted`
itself; a second signal stops at once. The command then exits 128 + the signal's number: 130 for SIGINT, 143 for
SIGTERM.

Runs trained in child processes (`ablate --jobs`, `tune --jobs`) start in their own process group, so that a
Ctrl-C at the terminal reaches the parent only, which passes each signal on to every child exactly once: the
children stop at their next step boundary too, or at once on a second signal.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from minbert.errors import MinbertError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A command ended by a signal. A KeyboardInterrupt, so that `except Exception` (a failed trial, a failed
    run of a sweep) lets it through; `detail` says what was kept and how to continue."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum)
        self.signum, self.detail = signum, detail
        self.outcomes: list[Outcome] = []  # run_in_processes: how each child ended

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"stopped by {self.name}" + (f": {self.detail}" if self.detail else "")


class StopSignals:
    """The process's SIGINT and SIGTERM handling (one instance, `STOP`)."""

    def __init__(self) -> None:
        self.requested: int | None = None  # the first signal seen inside a stoppable section
        self.depth = 0
        self.previous: dict[int, object] = {}

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Our handlers for the block (the main thread only: Python sets handlers nowhere else)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.previous = {s: signal.signal(s, self.handle) for s in SIGNALS}
        self.requested = None
        try:
            yield
        finally:
            for s, handler in self.previous.items():
                signal.signal(s, handler)
            self.requested = None

    def handle(self, signum: int, frame: object) -> None:
        if self.depth and self.requested is None:
            self.requested = signum
            name = signal.Signals(signum).name
            # os.write, not print: a handler may run in the middle of another write to stderr
            os.write(2, f"\nminbert: {name}: stopping at the next step boundary (send it again to stop at once)\n"
                     .encode())
            return
        raise Interrupted(signum)

    @contextmanager
    def stoppable(self) -> Iterator[None]:
        """Inside: a first signal sets `requested` for the code to act on at a safe point."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1


STOP = StopSignals()


# --- work in child processes that stop with their parent ---

@dataclass
class Outcome:
    """How a child's work ended: rc 0 (done), 2 (an error of the user's: message), 128 + signal (stopped), or
    anything else (a crash: message and traceback)."""

    label: str
    rc: int
    message: str = ""


def _child(work: Callable, args: tuple, pipe) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the parent only, which passes it on once
    with STOP.installed():  # SIGINT was ignored while this process started
        try:
            work(*args)
            pipe.send((0, ""))
        except Interrupted as exc:
            pipe.send((exc.exit_code, exc.detail))
        except MinbertError as exc:
            pipe.send((2, str(exc)))
        except Exception as exc:
            pipe.send((1, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """While a child starts: it inherits ignored signals, so none reaches it before its own handlers are in place
    (the parent's few milliseconds of deafness are the price)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_in_processes(work: Sequence[tuple[str, Callable, tuple]], jobs: int) -> list[Outcome]:
    """Run each (label, function, args) in its own spawned process, `jobs` at a time, and return how each ended.
    On a first signal no new one starts and the running ones are told to stop at their next step boundary; when
    they have, `Interrupted` is raised. A second signal is passed on too (they stop at once)."""
    context = multiprocessing.get_context("spawn")
    queue, running, outcomes, passed_on = list(work), {}, [], 0

    def pass_on(signum: int) -> None:
        for process, _ in running.values():
            with suppress(ProcessLookupError):
                os.kill(process.pid, signum)

    with STOP.stoppable():
        try:
            while queue or running:
                while queue and len(running) < jobs and STOP.requested is None:
                    label, function, args = queue.pop(0)
                    reader, writer = context.Pipe(duplex=False)
                    process = context.Process(target=_child, args=(function, args, writer), name=label)
                    with _signals_ignored():
                        process.start()
                    writer.close()
                    running[label] = (process, reader)
                if STOP.requested is not None and not passed_on:
                    pass_on(STOP.requested)
                    passed_on = 1
                    queue.clear()
                multiprocessing.connection.wait([p.sentinel for p, _ in running.values()], timeout=0.2)
                for label, (process, reader) in list(running.items()):
                    if process.is_alive():
                        continue
                    process.join()
                    rc, message = reader.recv() if reader.poll() else (process.exitcode, "")
                    if process.exitcode and process.exitcode < 0:
                        message = f"killed by {signal.Signals(-process.exitcode).name}"
                        rc = 128 - process.exitcode
                    outcomes.append(Outcome(label, rc, message))
                    del running[label]
        except Interrupted as exc:  # a second signal: the children stop at once
            pass_on(exc.signum)
            deadline = time.monotonic() + 30
            for process, _ in running.values():
                process.join(max(0.0, deadline - time.monotonic()))
            exc.outcomes = outcomes
            raise
    if STOP.requested is not None:
        stopped = Interrupted(STOP.requested)
        stopped.outcomes = outcomes
        raise stopped
    return outcomes
