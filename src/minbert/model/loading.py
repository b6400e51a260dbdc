"""Checkpoint loading and saving: HF layout on disk, minbert's own parameter names in memory.

On disk we read and write HF names (`encoder.layer.0.attention.self.query.weight`, ...), with or without a
prefix (`bert.`, sentence-transformers' `0.auto_model.`, ...), so checkpoints move freely between minbert and
transformers. Weights come from safetensors, or from `.bin`/`.pt` through `torch.load(weights_only=True)` only:
a pickle that would construct arbitrary objects (and so could run code) is refused.

A directory minbert writes (a run's best/, a training checkpoint) records the digest of each of its files in
`digests.json`, written last; whatever reads a file it records checks it first, so that a file damaged inside, at
its full length, is refused by name rather than loaded as other weights. A directory without one (written before
digests were recorded, or a model from elsewhere) is read unchecked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import torch
import xxhash
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from minbert.errors import CheckpointError
from minbert.model.config import BertConfig
from minbert.model_dir import resolve_model_dir

# the encoder (model.bert.BertModel, which calls into this module: it is not imported here, so the two files do not
# import each other): any module with minbert's parameter names and a `config`
Encoder = TypeVar("Encoder", bound=torch.nn.Module)

log = logging.getLogger("minbert")

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
ANCHOR = "embeddings.word_embeddings.weight"  # finds the prefix a checkpoint puts before the encoder's names
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # HF buffers, not weights

DIGESTS = "digests.json"  # {"algorithm": ..., "files": {file name: hex digest}}, beside the files it records
# xxh3_128 rather than sha256: on a 384 MiB checkpoint (Xeon @ 2.8 GHz, one core) sha256 took 1.0 s and xxh3_128
# 0.12 s, as long as reading the file, where writing and syncing it took 1.1-1.8 s. The digests catch damage, not
# forgery (whoever can rewrite a file can rewrite its digest), so a fast non-cryptographic hash serves.
DIGEST_ALGORITHMS = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}
DIGEST_ALGORITHM = "xxh3_128"

# (HF prefix, minbert prefix) for every parameter except the fused query/key/value projection; {i} = layer.
_NAME_PAIRS = [
    ("embeddings.LayerNorm.", "embeddings.norm."),
    ("encoder.layer.{i}.attention.output.dense.", "layers.{i}.attention.out."),
    ("encoder.layer.{i}.attention.output.LayerNorm.", "layers.{i}.attention_norm."),
    ("encoder.layer.{i}.intermediate.dense.", "layers.{i}.ffn.up."),
    ("encoder.layer.{i}.output.dense.", "layers.{i}.ffn.down."),
    ("encoder.layer.{i}.output.LayerNorm.", "layers.{i}.ffn_norm."),
]
_QKV = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)")
_NATIVE_QKV = re.compile(r"layers\.(\d+)\.attention\.qkv\.(weight|bias)")


def _rename(name: str, to_native: bool) -> str:
    for hf, native in _NAME_PAIRS:
        source, target = (hf, native) if to_native else (native, hf)
        pattern = "^" + re.escape(source).replace(r"\{i\}", r"(\d+)")
        name, count = re.subn(pattern, target.replace("{i}", r"\1"), name)
        if count:
            break
    return name


def hf_to_native(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF-named encoder tensors (no prefix) -> minbert names; query/key/value are concatenated into qkv."""
    native, qkv = {}, {}
    for name, tensor in hf.items():
        if m := _QKV.fullmatch(name):
            qkv[(m[1], m[3], m[2])] = tensor
            continue
        native[_rename(name, to_native=True)] = tensor
    for layer, kind in sorted({(layer, kind) for layer, kind, _ in qkv}):
        parts = [qkv[(layer, kind, part)] for part in ("query", "key", "value")]
        native[f"layers.{layer}.attention.qkv.{kind}"] = torch.cat(parts, dim=0)
    return native


def native_to_hf(native: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of hf_to_native."""
    hf = {}
    for name, tensor in native.items():
        if m := _NATIVE_QKV.fullmatch(name):
            for part, chunk in zip(("query", "key", "value"), tensor.chunk(3, dim=0), strict=True):
                hf[f"encoder.layer.{m[1]}.attention.self.{part}.{m[2]}"] = chunk
            continue
        hf[_rename(name, to_native=False)] = tensor
    return hf


def file_digest(path: Path, algorithm: str = DIGEST_ALGORITHM) -> str:
    """The file's digest, read in chunks (never whole into memory)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, DIGEST_ALGORITHMS[algorithm]).hexdigest()


def write_digests(directory: Path, names: Sequence[str]) -> None:
    """Record the digests of `names` (complete files in `directory`) in its digests.json, atomically: a temporary
    file renamed into place."""
    record = {"algorithm": DIGEST_ALGORITHM, "files": {name: file_digest(directory / name) for name in names}}
    tmp = directory / f".{DIGESTS}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, directory / DIGESTS)


def digest_mismatch(directory: Path, names: Sequence[str] | None = None) -> tuple[str, str] | None:
    """(file, why) for the first file recorded in directory/digests.json (of `names`, when given) that no longer
    has its recorded digest, or whose record cannot be read; None when all match, or when there is no record (a
    directory written before digests were recorded, or not by minbert: not checked)."""
    manifest = directory / DIGESTS
    if not manifest.is_file():
        log.debug("%s: no %s (written before minbert recorded digests, or not by minbert): not checked",
                  directory, DIGESTS)
        return None
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        algorithm, files = record["algorithm"], record["files"]
        if algorithm not in DIGEST_ALGORITHMS:
            return DIGESTS, f"names an unknown digest {algorithm!r} (known: {', '.join(DIGEST_ALGORITHMS)})"
        if not all(isinstance(n, str) and Path(n).name == n and isinstance(d, str) for n, d in files.items()):
            return DIGESTS, "is malformed: expected {file name in its directory: digest}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return DIGESTS, f"is unreadable ({exc})"
    for name, digest in files.items():
        if names is not None and name not in names:
            continue
        if not (directory / name).is_file():
            return name, "is missing"
        if file_digest(directory / name, algorithm) != digest:
            return name, (f"does not match the digest recorded when it was written ({algorithm}, in {DIGESTS}): "
                          "changed or damaged since")
    return None


def verify_digests(directory: Path, names: Sequence[str] | None = None) -> None:
    """`digest_mismatch` as a CheckpointError naming the file."""
    if found := digest_mismatch(directory, names):
        name, why = found
        raise CheckpointError(f"{directory / name}: {why}")


def find_weight_file(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).exists():
            return directory / name
    raise CheckpointError(f"{directory}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read one tensor file safely: safetensors, or a pickle restricted to tensors (weights_only=True); then check
    it against the digest its directory records, if any (after reading, so that a file that cannot be read at all,
    a truncated one, says why)."""
    path = Path(path)
    state = _read_tensors(path)
    verify_digests(path.parent, [path.name])
    return state


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.name.endswith(".index.json"):  # a sharded checkpoint: {"weight_map": {name: shard file}}
        shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_state_file(path.parent / shard))
        return state
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: refused: the pickle holds more than tensors and could run code when loaded "
            f"(torch.load weights_only=True rejected it: {first_line}). Convert trusted files to safetensors."
        ) from None
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch weight file ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return state


def split_encoder_state(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip the prefix in front of the encoder's HF names; return (encoder tensors, ignored keys)."""
    anchors = [k for k in state if k.endswith(ANCHOR)]
    if not anchors:
        raise CheckpointError(f"{source}: no BERT encoder weights (missing '{ANCHOR}')")
    prefix = min(anchors, key=len)[: -len(ANCHOR)]
    encoder, ignored = {}, []
    for key, tensor in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name is not None:  # very old (TF-converted) checkpoints call LayerNorm parameters gamma/beta
            name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))
        if name in BUFFERS:
            continue
        if name is None or not name.startswith(("embeddings.", "encoder.layer.", "pooler.")):
            ignored.append(key)
        else:
            encoder[name] = tensor
    return encoder, ignored


def load_encoder_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Check names and shapes against the model, then copy. Returns the ignored keys."""
    encoder, ignored = split_encoder_state(state, source)
    expected = native_to_hf(model.state_dict())
    for name in list(encoder):
        if name not in expected:
            ignored.append(name)
            del encoder[name]
    missing = [name for name in expected if name not in encoder]
    if missing and all(name.startswith("pooler.") for name in missing):
        # Some sentence-embedding checkpoints drop the pooler; it only feeds the `cls` pooling.
        log.warning("%s: no pooler weights; the pooler keeps its random initialisation", source)
        encoder.update({name: expected[name] for name in missing})
    elif missing:
        raise CheckpointError(f"{source}: missing encoder weight {missing[0]!r} ({len(missing)} missing in all)")
    for name, tensor in sorted(encoder.items()):
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: {name!r} has shape {list(tensor.shape)}, the model (config.json) expects "
                f"{list(expected[name].shape)}"
            )
    model.load_state_dict(hf_to_native(encoder), strict=True)
    if ignored:
        shown = ", ".join(ignored[:8]) + (" ..." if len(ignored) > 8 else "")
        log.info("%s: ignored %d keys that are not encoder weights: %s", source, len(ignored), shown)
    return ignored


def load_pretrained(cls: type[Encoder], path: str | Path | None) -> Encoder:
    directory = resolve_model_dir(path)
    verify_digests(directory, ["config.json"])  # a run's best/ as the starting model
    config = BertConfig.from_json(directory / "config.json")
    weights = find_weight_file(directory)
    model = cls(config)
    model.load_report = load_encoder_weights(model, load_state_file(weights), str(weights))
    return model.eval()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, then the permissions any other file gets (it writes 0600 whatever the umask)."""
    save_file(tensors, path, metadata=metadata)
    os.chmod(path, 0o666 & ~current_umask())


def save_pretrained(model: torch.nn.Module, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.to_json(directory / "config.json")
    state = {k: v.detach().contiguous().cpu() for k, v in native_to_hf(model.state_dict()).items()}
    save_tensors(state, directory / "model.safetensors", metadata={"format": "pt"})
