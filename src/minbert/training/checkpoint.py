"""Resumable training checkpoints: tensors in safetensors, everything else in JSON, never pickle.

checkpoints/step-00000123/
  tensors.safetensors   model (HF names for the encoder, heads.*, common.*), optimizer moments, torch RNG states
  state.json            trainer position (step, epoch, step in epoch), the numpy/python RNG states, optimizer
                        hyper-parameters and step counts, loss scaler, history of finished epochs
  digests.json          the digests of both, checked before resuming: a file damaged inside, at its full length,
                        is passed over as a truncated one is (a checkpoint without it, from before digests were
                        recorded, is read unchecked)

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from minbert.errors import CheckpointError
from minbert.model.loading import DIGESTS, digest_mismatch, save_tensors, write_digests

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
    write_digests(tmp, ["tensors.safetensors", "state.json"])
    for path in (tmp / "tensors.safetensors", tmp / "state.json", tmp / DIGESTS, tmp):
        _fsync(path)
    final = directory / name
    publish(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        retire(old)
    return final


def retire(path: Path) -> None:
    """Remove a checkpoint: out of the listing first (a rename), then deleted, so that an interrupt midway never
    leaves half a checkpoint under a checkpoint's name (a `.tmp-*` leftover is cleaned up later)."""
    trash = path.with_name(f".tmp-removed-{path.name}")
    os.rename(path, trash)
    shutil.rmtree(trash)


def publish(tmp: Path, final: Path) -> None:
    """The one moment a checkpoint appears: a rename of its complete, synced temporary directory."""
    if final.exists():
        retire(final)
    os.rename(tmp, final)
    _fsync(final.parent)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints by name, oldest first (temporary directories of interrupted writes are not listed)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and NAME.fullmatch(p.name))


# What a resumable state.json holds (hooks add their own keys, checked by their load_state)
STATE_KEYS = ("step", "stage", "stage_start_step", "epoch", "step_in_epoch", "epoch_rng_state", "rng", "optimizer",
              "scaler", "epoch_losses", "epoch_seen", "epoch_seconds", "history")


def damage(path: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (files missing, a tensor file shorter than its header says, a state
    that is not JSON or lacks a key, a file whose digest is not the one recorded when it was written), or None;
    read without loading its tensors."""
    tensors, state = path / "tensors.safetensors", path / "state.json"
    for file in (tensors, state):
        if not file.is_file():
            return f"{file.name} is missing"
    size = tensors.stat().st_size
    try:
        with open(tensors, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            if size < 8 or 8 + header_size > size:
                return f"tensors.safetensors is truncated ({size:,} bytes, not even its header)"
            header = json.loads(f.read(header_size))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"tensors.safetensors has an unreadable header ({exc})"
    if 8 + header_size + end != size:
        return f"tensors.safetensors is truncated: {size:,} bytes where its header describes {8 + header_size + end:,}"
    try:
        saved = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"state.json is unreadable ({exc})"
    if not isinstance(saved, dict):
        return "state.json is not a JSON object"
    missing = [key for key in STATE_KEYS if key not in saved]
    if missing:
        return f"state.json is incomplete: no {missing[0]!r}"
    if mismatch := digest_mismatch(path):
        return " ".join(mismatch)
    return None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        tensors = load_file(path / "tensors.safetensors")
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    return tensors, state


@dataclass
class ResumePoint:
    """The newest checkpoint that can be resumed from, and the newer ones passed over (path, why)."""

    path: Path
    tensors: dict[str, torch.Tensor]
    state: dict
    passed_over: list[tuple[Path, str]]

    @property
    def step(self) -> int:
        return self.state["step"]


def remove_leftovers(run_dir: Path) -> None:
    """Temporary directories of interrupted writes and removals."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if directory.is_dir():
        for leftover in directory.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def newest_usable(run_dir: Path, check: Callable[[dict, dict], str | None] | None = None
                  ) -> tuple[ResumePoint | None, list[tuple[Path, str]]]:
    """The newest checkpoint that is complete, readable and (`check(tensors, state)` returns None) fits the run,
    with the newer ones passed over and why; (None, all of them) when none does."""
    passed_over: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(run_dir)):
        reason = damage(path)
        if reason is None:
            try:
                tensors, state = load_checkpoint(path)
            except CheckpointError as exc:
                reason = str(exc).removeprefix(f"{path}: ")
            else:
                reason = check(tensors, state) if check else None
                if reason is None:
                    return ResumePoint(path, tensors, state, passed_over), passed_over
        passed_over.append((path, reason))
    return None, passed_over
