"""Run directories are made, locked and removed here, and nowhere else.

- A run directory carries a marker file (`.minbert-run`) written when minbert creates it: `--overwrite` removes a
  directory only when it holds that marker, is not a symlink and sits directly in its runs root. Anything else is
  refused with a message; nothing minbert did not create is ever deleted.
- One process at a time writes a run: an OS-level lock (flock through `filelock`) beside the directory, held for
  the life of a train, resume or evaluate-with-writes. The kernel drops it when the holder dies, so a kill -9 leaves
  no stale lock; the holder's pid and command are written next to it so a refused process can name it.
- Inputs are never outputs: the directory a command writes may not be, hold or lie inside a run it reads (an
  ensemble's member, a teacher), nor be or hold a file or directory it reads (the model, the data): refused before
  anything is touched, `--overwrite` or not.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from minbert.errors import ConfigError
from minbert.interrupts import Interrupted

MARKER = ".minbert-run"


def lock_path(run_dir: Path) -> Path:
    """Beside the run directory, not in it: removing the directory must not remove the lock it is guarded by."""
    return run_dir.parent / f".{run_dir.name}.lock"


class RunLock:
    """`with RunLock(run_dir):` one process at a time; a second one stops at once, naming the holder."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = lock_path(self.run_dir)
        self.holder_path = self.path.with_name(self.path.name + ".holder")
        self.lock: FileLock | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.lock = FileLock(self.path, timeout=0)
            self.lock.acquire()
        except Timeout:
            raise ConfigError(f"{self.run_dir} is in use by {self.holder()}; wait for it to end, or stop it"
                              ) from None
        except OSError as exc:
            raise ConfigError(f"cannot write the run directory {self.run_dir}: its lock file {self.path}: "
                              f"{exc.strerror}") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv)}
        self.holder_path.write_text(json.dumps(holder) + "\n", encoding="utf-8")
        return self

    def holder(self) -> str:
        try:
            holder = json.loads(self.holder_path.read_text(encoding="utf-8"))
            return (f"pid {holder['pid']} on {holder['host']} (since {holder['since']}: "
                    f"{holder['command'] or 'python'})")
        except (OSError, ValueError, KeyError):
            return "another process"

    def __exit__(self, *exc_info: object) -> None:
        if self.lock is not None:
            self.holder_path.unlink(missing_ok=True)
            self.lock.release()


def is_minbert_run(run_dir: Path) -> bool:
    return (run_dir / MARKER).is_file()


def check_removable(run_dir: Path, root: Path) -> None:
    """Raise unless `run_dir` is a minbert run that lies directly in `root` (not through a symlink)."""
    if run_dir.is_symlink():
        raise ConfigError(f"{run_dir} is a symlink; --overwrite removes only run directories minbert made "
                          "(remove the link yourself)")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory; --overwrite removes only run directories minbert made")
    if run_dir.resolve().parent != root.resolve():
        raise ConfigError(f"{run_dir} does not lie in the runs directory {root}; --overwrite refuses it")
    if not is_minbert_run(run_dir):
        raise ConfigError(f"{run_dir} is not a minbert run (no {MARKER} file); --overwrite removes only run "
                          "directories minbert made: move or remove it yourself, or choose another name")


@dataclass(frozen=True)
class Input:
    """Something a command reads: `what` names it in messages; a run (`is_run`) may not even hold the output."""

    what: str
    path: Path
    is_run: bool = False


def check_not_an_input(run_dir: Path, inputs: Iterable[Input]) -> None:
    """Refuse to write `run_dir` where it would replace or change what the command reads: an input run it is, holds
    or lies inside; a model or data path it is or holds."""
    target = run_dir.resolve()
    for item in inputs:
        source = item.path.resolve()
        if target == source:
            relation = "is"
        elif target in source.parents:
            relation = "holds"
        elif item.is_run and source in target.parents:
            relation = "lies inside"
        else:
            continue
        raise ConfigError(f"{run_dir} {relation} {item.what} {item.path}, which this command reads: writing the "
                          "run there would replace or change its own input; choose another name or output directory")


def check_new_run(run_dir: Path, root: Path, overwrite: bool, inputs: Iterable[Input] = ()) -> None:
    """Before any work: the run is none of the command's inputs, and an existing run is replaced only with
    `overwrite`, and only if it is a minbert run."""
    check_not_an_input(run_dir, inputs)
    if run_dir.is_symlink() or (run_dir.exists() and any(run_dir.iterdir())):
        if not overwrite:
            raise ConfigError(f"{run_dir} already exists; pass --overwrite to replace it, or set name=...")
        check_removable(run_dir, root)


def create_run_dir(run_dir: Path, root: Path, overwrite: bool, files: dict[str, str],
                   inputs: Iterable[Input] = ()) -> bool:
    """Make the run directory with its marker and `files` (name: text; the resolved config, say), replacing an old
    run when `overwrite` allows it. Returns whether this call created the directory (so a failed start may remove
    it again)."""
    check_new_run(run_dir, root, overwrite, inputs)
    if run_dir.exists() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        marker = {"name": run_dir.name, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "pid": os.getpid()}
        (run_dir / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        for name, text in files.items():
            (run_dir / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {run_dir}: {exc.strerror}") from None
    return created


def remove_failed_start(run_dir: Path, created: bool) -> bool:
    """After a start that failed: remove the directory if this process created it and it holds no checkpoint
    (the retry then needs no --overwrite). Returns whether it was removed."""
    from minbert.training.checkpoint import list_checkpoints

    if not created or not is_minbert_run(run_dir) or list_checkpoints(run_dir):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


@contextmanager
def removed_if_unfinished(run_dir: Path, created: bool, what: str) -> Iterator[None]:
    """Around writing a run that is made in one go (an ensemble, a soup): an error or an interrupt leaves no
    half-written run behind (the directory goes if this command created it)."""
    try:
        yield
    except BaseException as exc:
        if remove_failed_start(run_dir, created):
            logging.getLogger("minbert").info("removed %s: %s was not finished", run_dir, what)
        if isinstance(exc, Interrupted):
            exc.detail = f"{what} was not finished, so {run_dir} was removed: run the same command again"
        raise
