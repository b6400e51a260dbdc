"""Files a command reads or writes. An input must be a regular file (or a symlink to one), checked with stat
before it is opened: opening a FIFO waits for a writer, and a device never ends. An output (a report, predictions,
a table) is checked before the work that fills it, written whole or not at all, and never replaces a node that
is not a regular file; `-` names standard output."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from minbert.errors import ConfigError, DataError

STANDARD_STREAM = "-"  # --input - reads standard input, --output - writes standard output

KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_kind(path: str | Path) -> str | None:
    """What `path` is ("a FIFO", "a directory", ...) when it exists and is not a regular file, following
    symlinks; None for a regular file or a path with nothing there."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # nothing there (or a dangling link): the open that follows says why
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for is_kind, name in KINDS if is_kind(mode)), "a special file")


def named(what: str, path: Path) -> str:
    """`--input x.csv` for a flag, `tasks.sst.train: x.csv` for a config key, `x.csv` alone."""
    if not what:
        return str(path)
    return f"{what} {path}" if what.startswith("-") else f"{what}: {path}"


def check_input_file(path: str | Path, what: str = "", stdin_too: bool = False) -> Path:
    """`path` is a regular file or names nothing yet (its reader reports that): never opened here, so a FIFO or a
    device is refused before anything blocks on it or reads it without end. `what`: the flag or key, for the
    message; `stdin_too`: the flag also takes `-` for standard input."""
    path = Path(path)
    kind = special_kind(path)
    if kind:
        dash = "; - reads standard input" if stdin_too else ""
        raise DataError(f"{named(what, path)}: {kind}, not a regular file (only regular files, or symlinks to them, "
                        f"are read{dash})")
    return path


def check_output_file(path: str | Path, flag: str = "--output") -> Path:
    """`path` names a file that can be written: `-` (standard output), or a regular file or none yet, not below a
    file. Checked before the command's work, so a bad path costs nothing."""
    path = Path(path)
    if str(path) == STANDARD_STREAM:
        return path
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; name a file in it (e.g. {path / 'out'}{path.suffix})")
    kind = special_kind(path)
    if kind:
        raise ConfigError(f"{flag} {path}: {kind}, not a regular file ({flag} writes regular files only, or - for "
                          "standard output)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK):
                raise ConfigError(f"{flag} {path}: cannot write in {parent} (permission denied)")
            break
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a reader (or a crash) sees the old file or the new, never half;
    the temporary file is removed when the write fails (a full disk, an interrupt). A symlink's target is written
    (the link stays); a node that is not a regular file is refused, never replaced by the rename."""
    target = Path(os.path.realpath(path))
    kind = special_kind(target)
    if kind:
        raise ConfigError(f"{path}: {kind}, not a regular file; it is never replaced by an output")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_output_text(path: str | Path, text: str) -> None:
    """An output flag's file, made with its missing parent directories and written atomically; `-`: standard
    output."""
    if str(path) == STANDARD_STREAM:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def swap_directories(new: Path, place: Path, aside: Path) -> None:
    """`new` takes `place`'s name and what was there moves to `aside`: two renames in one file system, the first
    undone when the second fails, so that a complete directory is at `place` throughout."""
    os.rename(place, aside)
    try:
        os.rename(new, place)
    except BaseException:
        os.rename(aside, place)
        raise
