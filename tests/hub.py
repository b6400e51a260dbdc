"""A Hugging Face Hub cache in huggingface_hub's own layout ({models,datasets}--org--name/{blobs,refs,snapshots}),
built in a temporary directory, for tests that load Hub models and data sets offline."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from bench.data_copies import add_snapshot, repo_folder, set_ref  # noqa: F401 (the cache's layout, for tests)


def use_cache(monkeypatch: pytest.MonkeyPatch, cache: Path, offline: bool = True) -> None:
    """HF_HUB_CACHE = `cache`, and HF_HUB_OFFLINE=1 unless `offline` is False; huggingface_hub reads both at import,
    so its constants are patched too (a subprocess reads the environment)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
