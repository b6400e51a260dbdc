"""bench/gpu_session.py, what one GPU session carries: the model squeezed into fp16 (+ xz) and widened back loads
as minbert's own, within fp16's rounding; the data archive holds the default job's files, or says which is
missing."""

from __future__ import annotations

import tarfile

import pytest
import torch

from bench.gpu_session import DEFAULT_JOB_FILES, WEIGHTS, half_model, pack_data, restore_model
from minbert.model import BertConfig, BertModel


def test_a_model_travels_in_fp16_and_loads_as_fp32_again(tmp_path):
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    model = BertModel(config)
    model.save_pretrained(tmp_path / "source")
    worst = half_model(tmp_path / "source", tmp_path / "travel")
    assert (tmp_path / "travel" / WEIGHTS).exists() and not (tmp_path / "travel" / "model.safetensors").exists()
    assert 0 < worst <= 2**-11  # fp16 rounds to nearest: half an ulp of its 10-bit mantissa
    restore_model(tmp_path / "travel", tmp_path / "restored")
    restored = BertModel.from_pretrained(tmp_path / "restored")
    for (name, before), after in zip(model.state_dict().items(), restored.state_dict().values(), strict=True):
        assert after.dtype == torch.float32, name
        assert torch.allclose(after, before, rtol=2**-11, atol=1e-7), name


def test_the_data_archive_holds_the_default_jobs_files(tmp_path):
    for name in DEFAULT_JOB_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"rows of {name}\n", encoding="utf-8")
    pack_data(tmp_path, tmp_path / "data.tar.xz")
    with tarfile.open(tmp_path / "data.tar.xz") as tar:
        assert sorted(tar.getnames()) == sorted(DEFAULT_JOB_FILES)
    (tmp_path / "extra" / "sick.tsv").unlink()
    with pytest.raises(SystemExit, match="missing extra/sick.tsv"):
        pack_data(tmp_path, tmp_path / "again.tar.xz")
