"""Checkpoint loading: layouts we accept, and bad checkpoints we refuse with a clear message."""

from __future__ import annotations

import json
import logging
import pickle

import pytest
import torch
from safetensors.torch import save_file

from minbert import BertModel, CheckpointError
from minbert.model.loading import hf_to_native, native_to_hf
from tests.conftest import random_batch, tiny_config


@pytest.fixture()
def tiny_dir(tmp_path):
    torch.manual_seed(0)
    model = BertModel(tiny_config())
    model.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt", model


def hf_state(model: BertModel, prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in native_to_hf(model.state_dict()).items()}


def same_outputs(a: BertModel, b: BertModel) -> bool:
    batch = random_batch(a.config.vocab_size)
    with torch.no_grad():
        return torch.equal(a.eval()(**batch).last_hidden_state, b.eval()(**batch).last_hidden_state)


def test_name_mapping_round_trips():
    state = BertModel(tiny_config()).state_dict()
    hf = native_to_hf(state)
    assert "encoder.layer.1.attention.self.value.bias" in hf and "embeddings.LayerNorm.weight" in hf
    back = hf_to_native(hf)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_save_then_load_gives_the_same_model(tiny_dir):
    directory, model = tiny_dir
    loaded = BertModel.from_pretrained(directory)
    assert not loaded.training
    assert same_outputs(model, loaded)


def test_saved_checkpoint_loads_in_transformers(tiny_dir):
    transformers = pytest.importorskip("transformers")
    directory, model = tiny_dir
    hf = transformers.BertModel.from_pretrained(str(directory)).eval()
    batch = random_batch(model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(**batch).last_hidden_state, hf(**batch).last_hidden_state,
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("prefix", ["bert.", "0.auto_model.", "encoder_model.bert."])
def test_prefixed_bin_checkpoint_with_mlm_head_and_old_layernorm_names(tmp_path, tiny_dir, prefix, caplog):
    directory, model = tiny_dir
    state = hf_state(model, prefix)
    for key in [k for k in state if k.endswith("LayerNorm.weight")]:  # TF-era names
        state[key.replace("LayerNorm.weight", "LayerNorm.gamma")] = state.pop(key)
    state["cls.predictions.bias"] = torch.zeros(99)
    state[prefix + "embeddings.position_ids"] = torch.arange(40)[None]
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((directory / "config.json").read_text())
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    with caplog.at_level(logging.INFO, logger="minbert"):
        loaded = BertModel.from_pretrained(tmp_path / "bin")
    assert loaded.load_report == ["cls.predictions.bias"]
    assert "ignored 1 keys" in caplog.text and "cls.predictions.bias" in caplog.text
    assert same_outputs(model, loaded)


def test_sentence_transformers_layout_and_sharded_index(tmp_path, tiny_dir):
    directory, model = tiny_dir
    sub = tmp_path / "st" / "0_Transformer"
    sub.mkdir(parents=True)
    (tmp_path / "st" / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}]))
    (sub / "config.json").write_text((directory / "config.json").read_text())
    state = hf_state(model)
    names = sorted(state)
    save_file({k: state[k] for k in names[:10]}, sub / "part1.safetensors")
    save_file({k: state[k] for k in names[10:]}, sub / "part2.safetensors")
    weight_map = {k: "part1.safetensors" if i < 10 else "part2.safetensors" for i, k in enumerate(names)}
    (sub / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert same_outputs(model, BertModel.from_pretrained(tmp_path / "st"))


def test_missing_pooler_is_a_warning_not_an_error(tmp_path, tiny_dir, caplog):
    directory, model = tiny_dir
    state = {k: v for k, v in hf_state(model).items() if not k.startswith("pooler.")}
    save_file(state, directory / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="minbert"):
        BertModel.from_pretrained(directory)
    assert "no pooler weights" in caplog.text


# --- bad checkpoints -------------------------------------------------------------------------------------------

def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does-not-exist: model directory does not exist"):
        BertModel.from_pretrained(tmp_path / "does-not-exist")


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        BertModel.from_pretrained(tmp_path)


def test_missing_weights(tiny_dir):
    directory, _ = tiny_dir
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no weights found \(looked for model.safetensors"):
        BertModel.from_pretrained(directory)


def test_missing_encoder_weight_is_named(tiny_dir):
    directory, model = tiny_dir
    state = hf_state(model)
    del state["encoder.layer.1.output.dense.weight"]
    save_file(state, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing encoder weight 'encoder.layer.1.output.dense.weight'"):
        BertModel.from_pretrained(directory)


def test_shape_mismatch_is_named(tiny_dir):
    directory, _ = tiny_dir
    config = json.loads((directory / "config.json").read_text())
    config["intermediate_size"] = 256
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"'encoder.layer.0.intermediate.dense.bias' has shape \[128\], "
                                              r"the model \(config.json\) expects \[256\]"):
        BertModel.from_pretrained(directory)


def test_corrupt_safetensors(tiny_dir):
    directory, _ = tiny_dir
    (directory / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        BertModel.from_pretrained(directory)


def test_invalid_config_json_names_the_line(tiny_dir):
    directory, _ = tiny_dir
    (directory / "config.json").write_text('{\n  "hidden_size": 64,\n  oops\n}')
    with pytest.raises(CheckpointError, match=r"config.json: line 3: invalid JSON"):
        BertModel.from_pretrained(directory)


class Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, tiny_dir):
    directory, model = tiny_dir
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "config.json").write_text((directory / "config.json").read_text())
    state = hf_state(model)
    state["evil"] = Payload(marker)
    torch.save(state, hostile / "pytorch_model.bin")
    with open(tmp_path / "plain.pkl", "wb") as f:  # the same payload as a raw pickle
        pickle.dump({"x": Payload(marker)}, f)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused: the pickle holds more than tensors"):
        BertModel.from_pretrained(hostile)
    (tmp_path / "plain.pkl").replace(hostile / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refused"):
        BertModel.from_pretrained(hostile)
    assert not marker.exists()


def test_unsupported_position_embedding_type(tiny_dir):
    directory, _ = tiny_dir
    config = json.loads((directory / "config.json").read_text())
    config["position_embedding_type"] = "relative_key"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="position_embedding_type 'relative_key' is not supported"):
        BertModel.from_pretrained(directory)
