"""What an export reads (a trained run's model, config and tokenizer files) and where it may write."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from minbert.errors import ConfigError
from minbert.tasks.model import MultitaskModel
from minbert.training.config import RunConfig

EXPORT_MARK = "minbert-export.json"  # written first into every export directory: what made it, from which run


def file_sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@dataclass
class ExportSource:
    """A trained run, loaded: its config, its model (eval mode, fp32, CPU) and the directory of its best checkpoint
    (tokenizer files, weights)."""

    run_dir: Path
    config: RunConfig
    model: MultitaskModel
    best: Path

    @cached_property
    def checkpoint_sha256(self) -> str:
        """sha256 of the best checkpoint's weights (read once): an export is of one state of the run."""
        return file_sha256(self.best / "model.safetensors")

    def check_plain_encoders(self, what: str) -> None:
        """`what` (a format) holds plain BERT encoders: tasks with projected attention layers inside theirs are
        refused (a task's own top layers, model.task_layers, make it one plain BERT of its own: task_encoder)."""
        pal = [task for task, head in self.model.heads.items() if head.pal is not None]
        if pal:
            raise ConfigError(f"tasks {', '.join(pal)} have projected attention layers (model.pal) inside the "
                              f"encoder: {what} has plain BERT encoders and does not cover them yet")


def write_export(unit: Any, options: Any, source: ExportSource, directory: Path, format_name: str,
                 overwrite: bool) -> dict:
    """`unit.export(...)` into a directory prepared for it; an export that fails (or is interrupted) leaves nothing
    behind: the directory it made is removed, or an empty one it was given is emptied again."""
    existed = Path(directory).exists()
    prepare_export_dir(directory, format_name, source, overwrite)
    try:
        return unit.export(source, Path(directory), options)
    except BaseException:
        for child in ([] if not existed else list(Path(directory).iterdir())):
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        if not existed:
            shutil.rmtree(directory)
        raise


def prepare_export_dir(directory: Path, format_name: str, source: ExportSource, overwrite: bool) -> None:
    """An empty or new directory, or with `overwrite` one an earlier export of this format made (its mark says so):
    nothing else is ever replaced. The mark is written first, so a half-written export is recognised too."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory")
    if directory.exists() and any(directory.iterdir()):
        mark = directory / EXPORT_MARK
        made_here = mark.is_file() and json.loads(mark.read_text(encoding="utf-8")).get("format") == format_name
        if not overwrite:
            raise ConfigError(f"{directory}: not empty; choose a new directory"
                              + (", or pass --overwrite to replace this earlier export" if made_here else ""))
        if not made_here:
            raise ConfigError(f"{directory}: not empty, and not a {format_name} export made by minbert: it is never "
                              "replaced; choose a new directory")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / EXPORT_MARK).write_text(json.dumps({
        "format": format_name, "run": str(source.run_dir.resolve()), "checkpoint_sha256": source.checkpoint_sha256,
    }, indent=2) + "\n", encoding="utf-8")
