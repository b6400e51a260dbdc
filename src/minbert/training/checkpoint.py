"""Resumable training checkpoints: tensors in safetensors, everything else in JSON, never pickle.

checkpoints/step-00000123/
  tensors.safetensors   model (HF names for the encoder, heads.*, common.*), optimizer moments, torch RNG states
  state.json            trainer position (step, epoch, step in epoch), the numpy/python RNG states, optimizer
                        hyper-parameters and step counts, loss scaler, history of finished epochs

Each checkpoint is written into a hidden temporary directory, every file fsync'ed, then renamed into place: a
process killed while writing leaves the previous checkpoint intact (and a `.tmp-*` directory that is ignored and
cleaned up). The newest `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from minbert.errors import CheckpointError
from minbert.model.loading import save_tensors

CHECKPOINT_DIR = "checkpoints"
NAME = re.compile(r"step-(\d{8})")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> tuple[dict, dict[str, torch.Tensor]]:
    """Every global RNG: JSON-able python and numpy states, torch (and CUDA) states as tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"python": [version, list(internal), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states, tensors


def set_rng_state(states: dict, tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return {"param_groups": state["param_groups"], "scalars": scalars}, tensors


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = tensor
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in saved["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], state: dict, keep: int) -> Path:
    directory = Path(run_dir) / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = directory / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_tensors({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / "tensors.safetensors")
    (tmp / "state.json").write_text(json.dumps(state) + "\n", encoding="utf-8")
    for path in (tmp / "tensors.safetensors", tmp / "state.json", tmp):
        _fsync(path)
    final = directory / name
    publish(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def publish(tmp: Path, final: Path) -> None:
    """The one moment a checkpoint appears: a rename of its complete, synced temporary directory."""
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(final.parent)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories of interrupted writes are not listed)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and NAME.fullmatch(p.name))


def load_latest(run_dir: Path) -> tuple[Path, dict[str, torch.Tensor], dict] | None:
    """The newest readable checkpoint, after removing leftovers of interrupted writes."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if directory.is_dir():
        for leftover in directory.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    for path in reversed(list_checkpoints(run_dir)):
        try:
            tensors = load_file(path / "tensors.safetensors")
            state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        except (OSError, SafetensorError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable checkpoint ({exc}); remove it to resume from an older one"
                                  ) from None
        return path, tensors, state
    return None
