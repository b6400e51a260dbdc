"""Run directories are made, locked and removed here, and nowhere else.

- A run directory carries a marker file (`.minbert-run`) written when minbert creates it: `--overwrite` replaces a
  directory only when it holds that marker, is not a symlink and sits directly in its runs root. Anything else is
  refused with a message; nothing minbert did not create is ever deleted.
- `--overwrite` never loses the old run: the new one is built beside it, in `.NAME.overwrite` (a marked run whose
  marker records which run it replaces), and only once it has finished are the two swapped by renames (old ->
  `.NAME.replaced-PID`, new -> NAME) and the old one removed. A failure before the new run's first checkpoint
  removes the staging directory; after it, the staging directory stays, resumable (`minbert train --resume
  .NAME.overwrite` finishes it and then swaps it in, if NAME is still the run it was started to replace). A staging
  directory left by a killed process is replaced by the next `--overwrite` of NAME and is otherwise nobody's run.
  Nothing in the finished run names the staging directory (its train.log names files where they end up).
- One process at a time writes a run: an OS-level lock (flock through `filelock`) beside the directory, held for
  the life of a train, resume or evaluate-with-writes (a staging directory's is its run's). The kernel drops it
  when the holder dies, so a kill -9 leaves no stale lock; the holder's pid and command are written next to it so
  a refused process can name it.
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
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from minbert.errors import ConfigError
from minbert.interrupts import Interrupted
from minbert.outputs import swap_directories

MARKER = ".minbert-run"
STAGING = ".overwrite"  # .NAME.overwrite: where --overwrite builds NAME's replacement

log = logging.getLogger("minbert")


def lock_path(run_dir: Path) -> Path:
    """Beside the run directory, not in it: removing the directory must not remove the lock it is guarded by."""
    return run_dir.parent / f".{run_dir.name}.lock"


def staging_dir(run_dir: Path) -> Path:
    """Where `--overwrite` builds the run that replaces `run_dir`: hidden, in the same runs root (one rename away)."""
    return run_dir.parent / f".{run_dir.name}{STAGING}"


def final_dir(path: Path) -> Path:
    """The run a directory will be: NAME for a staging directory .NAME.overwrite, else the directory itself."""
    name = path.name
    if name.startswith(".") and name.endswith(STAGING) and len(name) > len(STAGING) + 1:
        return path.with_name(name[1:-len(STAGING)])
    return path


def read_marker(run_dir: Path) -> dict | None:
    try:
        marker = json.loads((run_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


class RunLock:
    """`with RunLock(run_dir):` one process at a time; a second one stops at once, naming the holder."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = final_dir(Path(run_dir))  # a run and the staging directory of its replacement: one lock
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


def is_staging(path: Path) -> bool:
    """Is `path` a staging directory minbert made for an `--overwrite` of `final_dir(path)`?"""
    marker = None if path.is_symlink() else read_marker(path)
    return final_dir(path) != path and marker is not None and "replaces" in marker


def remove_run(run_dir: Path) -> None:
    """Remove a directory minbert made, its marker last: one whose removal was cut short still says whose it is."""
    for child in run_dir.iterdir():
        if child.name != MARKER:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    shutil.rmtree(run_dir)


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


def check_new_run(run_dir: Path, root: Path, overwrite: bool, inputs: Iterable[Input] = ()) -> Path:
    """Before any work: the run is none of the command's inputs, and an existing run is replaced only with
    `overwrite`, and only if it is a minbert run. Returns where the new run is built: `run_dir`, or beside the run
    it replaces (whose place a staging directory minbert did not make may not take)."""
    check_not_an_input(run_dir, inputs)
    if not (run_dir.is_symlink() or (run_dir.exists() and any(run_dir.iterdir()))):
        return run_dir
    if not overwrite:
        raise ConfigError(f"{run_dir} already exists; pass --overwrite to replace it, or set name=...")
    check_removable(run_dir, root)
    staging = staging_dir(run_dir)
    check_not_an_input(staging, inputs)
    if (staging.exists() or staging.is_symlink()) and not is_staging(staging):
        raise ConfigError(f"{staging}: --overwrite builds the new {run_dir.name} there, and minbert did not make "
                          "this one: move or remove it yourself")
    return staging


@dataclass
class NewRun:
    """A run being written: in `run_dir` itself, or (`replacing`) in a staging directory beside the run it replaces
    until `finish` swaps them. `created`: this process made the directory (a failed start may remove it)."""

    run_dir: Path
    building: Path
    created: bool = False
    finished: bool = False

    @property
    def replacing(self) -> bool:
        return self.building != self.run_dir

    @property
    def path(self) -> Path:
        """Where the run is now."""
        return self.run_dir if self.finished else self.building

    def finish(self) -> Path:
        """The run is complete: a replacement takes the old run's place, which is removed."""
        if self.replacing and not self.finished:
            swap_into_place(self.building, self.run_dir)
        self.finished = True
        return self.run_dir


def resumed_run(path: Path) -> NewRun:
    """A run continued where it is: a staging directory still replaces its run when it finishes."""
    return NewRun(final_dir(path), path) if is_staging(path) else NewRun(path, path)


def swap_into_place(staging: Path, run_dir: Path) -> None:
    """The finished run in `staging` becomes `run_dir`, whose old run goes, if it is still the one the marker
    says the staging directory was made to replace. Held under `run_dir`'s lock; every step is a rename or happens
    after them, so the old run or the new one is always complete on disk."""
    marker = read_marker(staging) or {}
    replaces = marker.pop("replaces", None)
    if run_dir.exists() or run_dir.is_symlink():
        if replaces != read_marker(run_dir) or run_dir.is_symlink() or not run_dir.is_dir():
            raise ConfigError(f"{run_dir} is not the run that {staging} was started to replace (it changed since "
                              f"then), so it was left as it is; the finished new run stays in {staging}: move "
                              "it yourself")
        trash = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
        swap_directories(staging, run_dir, trash)
        remove_run(trash)
    else:
        os.rename(staging, run_dir)
    tmp = run_dir / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(marker) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / MARKER)
    log.info("%s replaced the run that was there", run_dir)


def create_run_dir(run_dir: Path, root: Path, overwrite: bool, files: dict[str, str],
                   inputs: Iterable[Input] = ()) -> NewRun:
    """Make the run directory with its marker and `files` (name: text; the resolved config, say); with
    `overwrite`, an existing run stays as it is and the new one is made beside it (`NewRun.finish` swaps them).
    Call it holding `run_dir`'s lock."""
    building = check_new_run(run_dir, root, overwrite, inputs)
    marker = {"name": run_dir.name, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "pid": os.getpid(),
              "id": uuid.uuid4().hex}  # which run this is: a replacement names the one it replaces by its marker
    if building != run_dir:
        if building.exists():  # is_staging: checked above; its process is gone, since we hold the run's lock
            remove_run(building)
            log.info("removed %s, left by an --overwrite of %s that did not finish", building, run_dir)
        marker["replaces"] = read_marker(run_dir)
    elif is_staging(staging_dir(run_dir)):
        log.warning("%s is left from an --overwrite of an earlier %s that did not finish; it is not part of this "
                    "run (remove it when you no longer need it)", staging_dir(run_dir), run_dir.name)
    created = not building.exists()
    try:
        building.mkdir(parents=True, exist_ok=True)
        (building / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        for name, text in files.items():
            (building / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {building}: {exc.strerror}") from None
    return NewRun(run_dir, building, created)


def remove_failed_start(run: NewRun) -> bool:
    """After a start that failed: remove the directory if this process created it, the run has not finished and
    it holds no checkpoint (the retry then needs no --overwrite). Returns whether it was removed."""
    from minbert.training.checkpoint import list_checkpoints

    if not run.created or run.finished or not is_minbert_run(run.building) or list_checkpoints(run.building):
        return False
    shutil.rmtree(run.building, ignore_errors=True)
    return True


def as_it_was(run: NewRun) -> str:
    """What a stopped replacement says of the run it was to replace."""
    return f"; {run.run_dir} is as it was" if run.replacing and not run.finished else ""


@contextmanager
def removed_if_unfinished(run: NewRun, what: str) -> Iterator[Path]:
    """Around writing a run that is made in one go (an ensemble, a soup) into the directory it yields: an error or
    an interrupt leaves no half-written run behind (the directory goes if this command created it, and a run it was
    to replace stays); at the end a replacement takes its place (write the report after: it names the run's path)."""
    try:
        yield run.building
    except BaseException as exc:
        if remove_failed_start(run):
            log.info("removed %s: %s was not finished", run.building, what)
        if isinstance(exc, Interrupted):
            exc.detail = (f"{what} was not finished, so {run.building} was removed{as_it_was(run)}: run the same "
                          "command again")
        raise
    run.finish()
