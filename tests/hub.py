"""A Hugging Face Hub cache in huggingface_hub's own layout ({models,datasets}--org--name/{blobs,refs,snapshots}),
built in a temporary directory, for tests that load Hub models and data sets offline."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest


def repo_folder(cache: Path, name: str, repo_type: str = "model") -> Path:
    """Where huggingface_hub keeps repository `name` in `cache`: models--org--name, datasets--org--name."""
    return cache / f"{repo_type}s--{name.replace('/', '--')}"


def add_snapshot(repo: Path, commit: str, files: Path) -> None:
    """Every file under the directory `files` as huggingface_hub stores it: a content-addressed blob, and the
    snapshot's name (same relative path, sub-folders kept) linking to it."""
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def set_ref(repo: Path, ref: str, commit: str) -> None:
    """refs/<ref> (a branch, a tag, or refs/convert/parquet) points at `commit`."""
    path = repo / "refs" / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(commit)


def use_cache(monkeypatch: pytest.MonkeyPatch, cache: Path, offline: bool = True) -> None:
    """HF_HUB_CACHE = `cache`, and HF_HUB_OFFLINE=1 unless `offline` is False; huggingface_hub reads both at import,
    so its constants are patched too (a subprocess reads the environment)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
