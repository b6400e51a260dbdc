"""Data sets on the Hugging Face Hub: a data spec's `hub` names a data set repository (`org/name`), `subset` one of
its configs and `revision` a branch, tag or commit; `train`, `dev` and `test` then name its splits.

    [tasks.mrpc]
    data = { hub = "nyu-mll/glue", subset = "mrpc", dev = "validation", text = ["sentence1", "sentence2"],
             label = "label", metrics = ["accuracy", "f1"] }

huggingface_hub fetches the repository's Parquet files into its standard cache (HF_HOME, HF_HUB_CACHE,
HF_HUB_OFFLINE and HF_TOKEN are its own to read). A split's files are those its card's `configs:` give
(`data_files`, per split), else the conventional layouts `data/{split}-*`, `{subset}/{split}-*` and
`{subset}/{split}/*.parquet`, else those of the `refs/convert/parquet` branch, where the Hub keeps a Parquet copy
of every data set. Only Parquet is read, through the `parquet` data format: no dataset script is ever run.

A spec is pinned when it is checked: its revision becomes the commit it resolved to, which the run's config.toml
records, so `--resume`, `evaluate` and `predict` read the same rows offline; a ClassLabel feature (the Parquet
schema's `huggingface` metadata) gives the classes of a label column (its indices 0..K-1, named by its names) and
the label set of a tag list.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from minbert.data.files import LoadedFile
from minbert.data.formats.base import DATA_FORMATS, CheckedFile
from minbert.data.formats.parquet import class_label_names, open_parquet
from minbert.errors import ConfigError, DataError
from minbert.model_dir import COMMIT, HUB_NAME, HubKind, fetch_snapshot

# A DataSpec is typed `Any` here: data.spec imports this module (an import back would be a ring).

log = logging.getLogger("minbert")

DATASET = HubKind("dataset", "data set", DataError, False,
                  "read local files instead (a spec without `hub`: train and dev files and their format)")
PARQUET_BRANCH = "refs/convert/parquet"  # the Hub's Parquet conversion of every public data set
CARD = "README.md"
# a shard's name says how many shards its split has: train-00000-of-00003.parquet
SHARD = re.compile(r"-(\d+)-of-(\d+)\.[^/]*$")


@dataclass(frozen=True)
class HubSplits:
    """A Hub data set resolved at one commit: the Parquet files of the splits asked for, in the cache."""

    name: str
    subset: str
    commit: str
    folder: Path  # the snapshot folder
    files: Mapping[str, tuple[Path, ...]]  # split -> its Parquet files, in name order
    splits: tuple[str, ...]  # every split the card names for the subset (() when it names none), for messages

    def class_names(self, split: str, column: str) -> tuple[str, ...]:
        """A ClassLabel column's names in the split's first file (the Parquet schema's `huggingface` metadata), ()
        for any other column."""
        return class_label_names(open_parquet(self.files[split][0]).schema_arrow).get(column, ())


def card_configs(folder: Path) -> list[dict[str, Any]]:
    """The `configs:` of the data set's card (huggingface_hub's DatasetCard), [] without a card or configs."""
    if not (folder / CARD).is_file():
        return []
    from huggingface_hub import DatasetCard

    configs = DatasetCard.load(folder / CARD, ignore_metadata_errors=True).data.get("configs") or []
    return [config for config in configs if isinstance(config, dict)] if isinstance(configs, list) else []


def choose_config(configs: list[dict[str, Any]], name: str, subset: str, where: str) -> dict[str, Any] | None:
    """The card's config for `subset` ("" = the default one); None for a card without configs."""
    if not configs:
        return None
    names = [str(config.get("config_name", "default")) for config in configs]
    if subset:
        if subset not in names:
            raise ConfigError(f"{where}.subset = {subset!r}: {name} has no such subset; its subsets: "
                              f"{', '.join(names)}")
        return configs[names.index(subset)]
    named_default = [config for config, n in zip(configs, names, strict=True) if n == "default"]
    default = [c for c in configs if c.get("default")] or named_default or (configs if len(configs) == 1 else [])
    if not default:
        raise ConfigError(f"{where}.subset: {name} has {len(configs)} subsets and none is its default: name one "
                          f"({', '.join(names)})")
    return default[0]


def config_patterns(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Split -> file patterns of a card config's `data_files` (a path or list of paths is the train split's; a list
    of {split, path} or a table by split names each); {} when it has none."""
    data_files = config.get("data_files")
    if data_files is None:
        return {}
    if isinstance(data_files, str) or (isinstance(data_files, list) and all(isinstance(p, str) for p in data_files)):
        data_files = {"train": data_files}
    if isinstance(data_files, list):
        data_files = {str(entry.get("split", "train")): entry.get("path", []) for entry in data_files
                      if isinstance(entry, dict)}
    if not isinstance(data_files, dict):
        return {}
    return {str(split): [paths] if isinstance(paths, str) else [str(p) for p in paths]
            for split, paths in data_files.items()}


def layout_patterns(split: str, subset: str, data_dir: str = "") -> list[str]:
    """The conventional places of a split's Parquet files, when no card config gives them (also the layout of the
    refs/convert/parquet branch: {subset}/{split}/0000.parquet, subset "default" when a data set has one)."""
    base = f"{data_dir.strip('/')}/" if data_dir else ""
    patterns = [f"{base}data/{split}-*", f"{base}{split}-*"] if base else [f"data/{split}-*"]
    if subset:
        patterns.append(f"{subset}/{split}-*")
    patterns.append(f"{subset or 'default'}/{split}/*.parquet")
    return patterns


def snapshot_files(folder: Path) -> list[str]:
    """The snapshot's files as repository paths (a/b.parquet)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def matching(files: Sequence[str], patterns: Sequence[str]) -> list[str]:
    from huggingface_hub.utils import filter_repo_objects  # the patterns mean what they mean to snapshot_download

    return sorted(filter_repo_objects(files, allow_patterns=list(patterns)))


def missing_shards(paths: Sequence[str]) -> str:
    """Why a split's shards are incomplete ("2 of its 3 shards"), "" when they are complete (or not numbered)."""
    totals = {int(m.group(2)) for p in paths if (m := SHARD.search(p))}
    if len(totals) == 1 and len(paths) < (total := totals.pop()):
        return f"{len(paths)} of its {total} shards"
    return ""


@dataclass(frozen=True)
class Layout:
    """Where the splits' files are at one commit: split -> patterns, and the splits the card names."""

    patterns: Mapping[str, list[str]]
    known: tuple[str, ...]


def layout(folder: Path, name: str, subset: str, splits: Sequence[str], where: str) -> Layout:
    config = choose_config(card_configs(folder), name, subset, where)
    by_split = config_patterns(config) if config is not None else {}
    data_dir = str(config.get("data_dir", "")) if config is not None else ""
    if by_split:
        return Layout({split: by_split.get(split, []) for split in splits}, tuple(by_split))
    return Layout({split: layout_patterns(split, subset, data_dir) for split in splits}, ())


def found_files(folder: Path, found: Layout) -> dict[str, list[str]]:
    files = snapshot_files(folder)
    return {split: matching(files, patterns) if patterns else [] for split, patterns in found.patterns.items()}


def fetch(name: str, revision: str | None, patterns: list[str], where: str,
          complete: Callable[[Path], bool] | None = None) -> Path:
    """model_dir.fetch_snapshot for a data set, its one-line failures naming the spec."""
    try:
        return fetch_snapshot(name, revision, patterns, DATASET, complete)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def at_commit(name: str, subset: str, revision: str | None, splits: Sequence[str],
              where: str) -> tuple[Path, Layout, dict[str, list[str]]]:
    """The snapshot at `revision` with the splits' files fetched: (folder, where the splits are, split -> files)."""
    folder = fetch(name, revision, [CARD], where)  # the card, and the commit the revision is at
    found = layout(folder, name, subset, splits, where)
    wanted = [p for patterns in found.patterns.values() for p in patterns]

    def complete(snapshot: Path) -> bool:
        files = found_files(snapshot, found)
        return all(files[s] and not missing_shards(files[s]) for s in splits)

    if wanted:
        folder = fetch(name, folder.name, wanted, where, complete)
    return folder, found, found_files(folder, found)


def split_problem(name: str, subset: str, split: str, files: list[str], found: Layout, commit: str) -> str:
    """Why a split cannot be read from these files ("" when it can)."""
    of = f"{name}{f' (subset {subset})' if subset else ''} at commit {commit}"
    if found.known and split not in found.known:
        return f"{of} has no split {split!r}; its splits: {', '.join(found.known)}"
    if not files:
        from huggingface_hub import constants

        tried = ", ".join(found.patterns[split]) or "none"
        cached = " in the Hugging Face cache (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        return f"{of}: no files of split {split!r}{cached} (looked for {tried})"
    if not_parquet := [f for f in files if not f.endswith(".parquet")]:
        return (f"{of}: split {split!r} is not Parquet ({', '.join(not_parquet[:3])}"
                f"{', ...' if len(not_parquet) > 3 else ''}); minbert reads a Hub data set's Parquet files only")
    if shards := missing_shards(files):
        return f"{of}: split {split!r} has only {shards} in the Hugging Face cache"
    return ""


def resolve_hub(name: str, subset: str, revision: str, splits: tuple[str, ...], where: str) -> HubSplits:
    """Data set `name` (subset, revision: "" = default, main) with the Parquet files of `splits` in the cache.
    When the revision (a branch or tag, not a commit) has no Parquet files for a split, the data set's
    refs/convert/parquet branch is read instead, and its commit is the one recorded. Resolved once per process
    (and cache, and offline mode)."""
    from huggingface_hub import constants

    return resolved(name, subset, revision, splits, where, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)


@cache
def resolved(name: str, subset: str, revision: str, splits: tuple[str, ...], where: str, cache_dir: str,
             offline: bool) -> HubSplits:
    if not HUB_NAME.match(name) or ".." in name:
        raise ConfigError(f"{where}.hub = {name!r}: not a Hub data set name (`org/name` or `name`)")
    folder, found, files = at_commit(name, subset, revision or None, splits, where)
    problems = [p for split in splits if (p := split_problem(name, subset, split, files[split], found, folder.name))]
    if problems and not COMMIT.match(revision):
        try:  # the Hub's own Parquet copy of the data set, at the branch's newest commit
            converted = at_commit(name, subset, PARQUET_BRANCH, splits, where)
        except (ConfigError, DataError):
            converted = None
        if converted and all(not split_problem(name, subset, s, converted[2][s], converted[1], converted[0].name)
                             for s in splits):
            folder, found, files = converted
            log.info("%s: read from its Parquet conversion (%s, commit %s)", name, PARQUET_BRANCH, folder.name)
            problems = []
    if problems:
        raise (ConfigError if "has no split" in problems[0] else DataError)(f"{where}: {problems[0]}")
    return HubSplits(name, subset, folder.name, folder, {s: tuple(folder / f for f in files[s]) for s in splits},
                     found.known)


def pin_spec(spec: Any, where: str) -> None:
    """A Hub spec resolved and completed in place, before its other checks: its revision becomes the commit it
    resolved to (what the run's config.toml records), and a ClassLabel label column gives sentence rows their
    classes, the ClassLabel's names (when the spec declares neither classes nor a score range)."""
    if not spec.hub:
        key = "subset" if spec.subset else "revision"
        raise ConfigError(f"{where}.{key}: a key of Hub data sets; name the data set with hub = \"org/name\"")
    if spec.format.name != "parquet":
        raise ConfigError(f"{where}.format = {spec.format.name!r}: a Hub data set is read from its Parquet files "
                          "(format \"parquet\", the default, or a table { name = \"parquet\", ... })")
    splits = tuple(dict.fromkeys(s for s in (spec.train, spec.dev, spec.test) if s))
    found = resolve_hub(spec.hub, spec.subset, spec.revision, splits, where)
    if spec.revision != found.commit:
        log.info("data set %s%s: revision %s is commit %s, cached in %s", spec.hub,
                 f" ({spec.subset})" if spec.subset else "", spec.revision or "main", found.commit, found.folder)
        spec.revision = found.commit
    if spec.rows and spec.label and spec.train and not spec.classes and not spec.score_range:
        spec.classes = list(found.class_names(spec.train, spec.label))


def hub_defaults(spec: Any) -> None:
    """What a Hub spec leaves out (DataSpec.__post_init__): the splits `train` and `validation` (dev, unless a dev
    share is held out of train), the `parquet` format, whose sentence rows' fields are the spec's text and label."""
    spec.train = spec.train or "train"
    if not spec.dev and not spec.dev_share:
        spec.dev = "validation"
    if spec.format.name == "tsv":  # the default format: a Hub data set's files are Parquet
        spec.format = DATA_FORMATS.resolve("parquet")
    if spec.format.name == "parquet" and spec.rows:
        options = spec.format.options
        options.text = options.text or list(spec.text)
        options.label = options.label or spec.label


def read_hub_split(spec: Any, split: str, where: str, labelled: bool = True, strict: bool = False,
                   what: str = "", tags: tuple[str, ...] | None = None, keep: bool = True) -> LoadedFile:
    """A split of a Hub spec's data set: each of its Parquet files read in order through the spec's format
    (DataSpec.read's options; `tags` default: the spec's declared label set), as one LoadedFile named by its file
    (or by the folder of its shards)."""
    paths = resolve_hub(spec.hub, spec.subset, spec.revision, (split,), where).files[split]
    tags = spec.tag_labels if tags is None else tags
    parts = [spec.read(path, labelled=labelled, strict=strict, what=what, tags=tags, keep=keep) for path in paths]
    if len(parts) == 1:
        return parts[0]
    merged = dataclasses.replace(parts[0], path=paths[0].parent,
                                 examples=[e for part in parts for e in part.examples],
                                 skipped=[s for part in parts for s in part.skipped])
    if isinstance(merged, CheckedFile):  # a file checked, not kept (minbert data): its counts
        merged.rows = sum(part.rows for part in parts)
        merged.bad_rows = sum(part.bad_rows for part in parts)
        merged.tags = set().union(*(part.tags for part in parts))
    return merged
