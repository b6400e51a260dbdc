"""Output files a command writes (a report, predictions, a table): checked before the work that fills them, and
written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from minbert.errors import ConfigError


def check_output_file(path: str | Path, flag: str = "--output") -> Path:
    """`path` names a file that can be written: not a directory, not below a file. Checked before the command's
    work, so a bad path costs nothing."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; name a file in it (e.g. {path / 'out'}{path.suffix})")
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
    the temporary file is removed when the write fails (a full disk, an interrupt)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
