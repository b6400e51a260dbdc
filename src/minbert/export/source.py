"""What an export reads (a trained run's model, config and tokenizer files) and where it may write."""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from minbert.errors import ConfigError
from minbert.model.loading import file_digest
from minbert.outputs import swap_directories
from minbert.tasks.model import MultitaskModel
from minbert.training.config import RunConfig

# written first into every export directory: what made it, from which run; at the end, every file and folder it
# wrote
EXPORT_MARK = "minbert-export.json"

log = logging.getLogger("minbert")


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
        return file_digest(self.best / "model.safetensors", "sha256")

    def check_plain_encoders(self, what: str) -> None:
        """`what` (a format) holds plain BERT encoders: tasks with projected attention layers inside theirs are
        refused (a task's own top layers, model.task_layers, make it one plain BERT of its own: task_encoder)."""
        pal = [task for task, head in self.model.heads.items() if head.pal is not None]
        if pal:
            raise ConfigError(f"tasks {', '.join(pal)} have projected attention layers (model.pal) inside the "
                              f"encoder: {what} has plain BERT encoders and does not cover them yet")


def write_export(unit: Any, options: Any, source: ExportSource, directory: Path, format_name: str,
                 overwrite: bool) -> dict:
    """`unit.export(...)` into an empty directory it was given, or else built beside `directory` and moved into
    place only once complete (with `overwrite`, in place of an earlier export of this format that holds nothing but
    its own files). An export that fails (or is interrupted) leaves nothing of its own behind, and an earlier export
    as it was."""
    directory = Path(directory)
    check_export_dir(directory, format_name, overwrite)
    in_place = directory.is_dir() and not any(directory.iterdir())
    building = directory if in_place else staging_dir(directory)
    if not in_place:
        clear_leftover(building)
    try:
        building.mkdir(parents=True, exist_ok=True)
        mark = {"format": format_name, "run": str(source.run_dir.resolve()),
                "checkpoint_sha256": source.checkpoint_sha256}
        write_mark(building, mark)  # first: a half-written export is recognised as minbert's
        summary = unit.export(source, building, options)
        files, folders = contents(building)
        write_mark(building, {**mark, "files": sorted(files - {EXPORT_MARK}), "folders": sorted(folders)})
        if not in_place:
            put_in_place(building, directory, format_name)
    except BaseException as exc:
        if in_place:
            for child in list(directory.iterdir()):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        else:
            shutil.rmtree(building, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write the export {directory}: {exc.strerror or exc}") from None
        raise
    return summary


def staging_dir(directory: Path) -> Path:
    """Where an export into `directory` is built: hidden beside it (one rename away)."""
    return directory.parent / f".{directory.name}.export-new"


def write_mark(directory: Path, mark: dict) -> None:
    tmp = directory / f"{EXPORT_MARK}.tmp"
    tmp.write_text(json.dumps(mark, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / EXPORT_MARK)


def read_mark(directory: Path) -> dict | None:
    try:
        mark = json.loads((directory / EXPORT_MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) else None


def contents(directory: Path) -> tuple[set[str], set[str]]:
    """Every file (a symlink counts as one) and every directory under `directory`, as relative POSIX paths."""
    files, folders = set(), set()
    for parent, dirs, names in os.walk(directory):
        here = Path(parent).relative_to(directory)
        for name in dirs:
            (files if (Path(parent) / name).is_symlink() else folders).add((here / name).as_posix())
        files.update((here / name).as_posix() for name in names)
    return files, folders


def check_export_dir(directory: Path, format_name: str, overwrite: bool) -> None:
    """An empty or new directory, or with `overwrite` one an earlier export of this format made (its mark says
    so), holding only the files that export wrote: nothing else is ever replaced."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory")
    if not directory.exists() or not any(directory.iterdir()):
        return
    made_here = (read_mark(directory) or {}).get("format") == format_name
    if not overwrite:
        raise ConfigError(f"{directory}: not empty; choose a new directory"
                          + (", or pass --overwrite to replace this earlier export" if made_here else ""))
    if not made_here:
        raise ConfigError(f"{directory}: not empty, and not a {format_name} export made by minbert: it is never "
                          "replaced; choose a new directory")
    if directory.is_symlink():
        raise ConfigError(f"{directory}: a symlink; --overwrite replaces only a directory (choose the directory "
                          "it points to)")
    own_files(directory, format_name)


def own_files(directory: Path, format_name: str) -> list[str]:
    """The files of an earlier export in `directory`, as its mark lists them; refused if it holds anything else."""
    mark = read_mark(directory) or {}
    listed, listed_folders = mark.get("files"), mark.get("folders", [])
    if not isinstance(listed, list) or not isinstance(listed_folders, list):
        raise ConfigError(f"{directory}: its {EXPORT_MARK} lists no files (an export that did not finish, or one "
                          "made before minbert listed them), so what else it holds is unknown: it is never "
                          "replaced; remove it yourself, or choose a new directory")
    files, folders = contents(directory)
    foreign = sorted((files - set(listed) - {EXPORT_MARK}) | (folders - set(listed_folders)))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(f"{directory}: holds what the {format_name} export did not write ({shown}); an export is "
                          "replaced only as a whole, so it is never replaced with them in it: move them out, or "
                          "choose a new directory")
    return listed


def clear_leftover(building: Path) -> None:
    """A staging directory left by an export that was killed is minbert's (its mark is written first): removed."""
    if not (building.exists() or building.is_symlink()):
        return
    if building.is_symlink() or not building.is_dir() or read_mark(building) is None:
        raise ConfigError(f"{building}: an export builds its directory there, and minbert did not make this one: "
                          "move or remove it yourself")
    shutil.rmtree(building)


def put_in_place(building: Path, directory: Path, format_name: str) -> None:
    """The complete export takes `directory`'s place; an earlier export there (checked again: it holds nothing but
    its own files) is removed file by file."""
    if not directory.exists():
        os.rename(building, directory)
        return
    listed = own_files(directory, format_name)
    old = directory.with_name(f".{directory.name}.export-old-{os.getpid()}")
    swap_directories(building, directory, old)
    for name in [*listed, EXPORT_MARK]:
        (old / name).unlink(missing_ok=True)
    for parent, _, _ in sorted(os.walk(old), key=lambda entry: -len(Path(entry[0]).parts)):
        with suppress(OSError):  # not empty: something appeared there that the export did not write
            Path(parent).rmdir()
    if old.exists():
        log.warning("%s: the earlier export's files are removed; what it held besides them is kept here", old)
