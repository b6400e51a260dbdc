"""A task's data, assembled in one call: each split read through its spec, a spec's dev share or a run's tune split
carved out of the train file, the samples a run asks for, and the extra training rows appended to train.

    source = TaskSource("sst", spec, {"train": "ids-sst-train.csv", ...}, kind.row_strata, kind.dev_problem, extras)
    splits = assemble_task_data(source, directory, Sampling(seed=11711), strict=False)
    splits["train"].examples, splits["train"].sources

What a task's kind decides (how rows are grouped by their labels for a stratified share, why dev rows cannot be
scored) comes in as two functions of the source, so that data/ reads no label itself; the kind then turns each
split's rows into model inputs (TaskKind.task_data).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minbert.data.batching import ExtraSource
from minbert.data.extra import EXTRA_FORMATS, ExtraContext, ExtraDataConfig
from minbert.data.files import Example, LoadedFile
from minbert.data.hub import read_hub_split
from minbert.data.spec import SPLITS, DataSpec
from minbert.errors import ConfigError, DataError

log = logging.getLogger("minbert")

DEV_SHARE_SEED = 0  # a spec's dev_share holds out the same rows whatever the run's seed: runs stay comparable
# train.max_eval_examples samples dev and test with this seed, not the run's: every run and every fork of a config
# scores the same rows. It is the default seed, so the default-seed runs keep the sample they always drew.
EVAL_SAMPLE_SEED = 11711


@dataclass(frozen=True)
class TaskSource:
    """Where one task's rows come from and the two rules of its kind that reading them needs."""

    task: str
    spec: DataSpec
    files: Mapping[str, str]  # split -> file name in the data directory or a path ("" or absent: none)
    # rows -> the groups a held-out share is drawn from evenly (the kind reads their labels: a class, a score, a
    # question's right choice)
    strata: Callable[[Sequence[Example]], np.ndarray]
    dev_problem: Callable[[Sequence[Example]], str | None]  # why dev rows cannot be scored (None: they can)
    # each extra table with the context its format loads against (its train rows and tune split are filled in)
    extras: Sequence[tuple[ExtraDataConfig, ExtraContext]] = ()


@dataclass(frozen=True)
class Sampling:
    """What a run keeps of each file (train.*: tune_split, max_train_examples, max_eval_examples, train_fraction)."""

    seed: int  # the run's: train's sample and the extra rows' draws
    tune_split: float = 0.0  # > 0: this share of train is held out and stands in for dev; test is not read
    tune_split_seed: int = 0
    max_train_examples: int = 0  # 0 = all
    max_eval_examples: int = 0
    train_fraction: float = 1.0


@dataclass
class SplitRows:
    """One split's rows as a run takes them: from `path`, the train split's extra rows after its own."""

    path: Path
    examples: list = field(default_factory=list)
    sources: list[ExtraSource] = field(default_factory=list)  # where the extra rows are (train only)


def subsample(examples: list[Example], limit: int, seed: int) -> list[Example]:
    if not limit or len(examples) <= limit:
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=limit, replace=False))
    return [examples[i] for i in keep]


def load_extra(directory: Path, extra: ExtraDataConfig, context: ExtraContext, seed: int,
               cap: int = 0) -> list[Example]:
    """Extra training examples in the extra table's format (minbert.data.extra), optionally balanced per class and
    capped (at max_examples, and at `cap`: train.max_train_examples, so that a quick look stays quick)."""
    path = Path(extra.file) if Path(extra.file).is_absolute() else directory / extra.file
    examples = EXTRA_FORMATS[extra.format.name].load(path, extra.format.options, context)
    rng = np.random.default_rng(seed)
    if extra.class_balanced:
        by_class: dict = {}
        for i, example in enumerate(examples):
            by_class.setdefault(example.label, []).append(i)
        smallest = min(len(v) for v in by_class.values())
        keep = sorted(i for label in sorted(by_class)
                      for i in rng.choice(by_class[label], smallest, replace=False))
        examples = [examples[i] for i in keep]
    examples = subsample(examples, min((n for n in (extra.max_examples, cap) if n), default=0), seed)
    log.info("%s: %d extra training examples%s", path.name, len(examples),
             f" ({extra.share:.0%} of each epoch's examples drawn from them)" if extra.share else "")
    return examples


def carve_tune_split(examples: list[Example], share: float, seed: int,
                     strata_of: Callable[[Sequence[Example]], np.ndarray]) -> tuple[list[Example], list[Example]]:
    """(rest, held out): `share` of the examples held out, drawn evenly from each group of `strata_of(examples)` (a
    task kind's `row_strata`: per class, per tenth of the label range, per right choice), so the held-out part has
    the file's label distribution. Both keep the file's order."""
    rng = np.random.default_rng([seed, len(examples)])
    strata = np.asarray(strata_of(examples))
    held = []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        held.extend(rng.permutation(members)[: round(share * len(members))])
    held_set = set(int(i) for i in held)
    return ([e for i, e in enumerate(examples) if i not in held_set],
            [e for i, e in enumerate(examples) if i in held_set])


def check_enough_rows(path: Path, split: str, examples: list[Example],
                      dev_problem: Callable[[Sequence[Example]], str | None], skipped: int) -> None:
    """Refuse, before any training, a train or dev file with too few rows to train on or to score (a header-only
    dev file would otherwise fail after a whole epoch)."""
    if split == "test":
        return
    note = f" ({skipped} skipped as malformed)" if skipped else ""
    if not examples:
        what = "train on" if split == "train" else "evaluate on"
        raise DataError(f"{path}: no rows to {what}{note}")
    problem = dev_problem(examples) if split == "dev" else None
    if problem:
        count = f"{len(examples)} row{'s' if len(examples) > 1 else ''}"
        raise DataError(f"{path}: {count}; {problem}{note}")


def read_split(source: TaskSource, split: str, directory: Path, strict: bool = False) -> LoadedFile | None:
    """A task's rows of one split as its spec says (None: no such file, or no test file): its file, or for a spec
    with `dev_share` and no dev file the held-out share of the train file (the rest is train)."""
    spec, task = source.spec, source.task
    share = spec.dev_share if not source.files.get("dev") else 0.0
    file_split = "train" if share and split != "test" else split
    name = source.files.get(file_split)
    if not name:
        return None
    if spec.hub:  # a split of a Hub data set: its Parquet files in huggingface_hub's cache
        loaded = read_hub_split(spec, name, f"tasks.{task}.data", labelled=split != "test", strict=strict,
                                what=f"tasks.{task}.{file_split}")
        path = loaded.path
    else:
        path = directory / name
        if not path.exists():
            if split == "test":
                return None
            raise ConfigError(f"tasks.{task}.{split}: {path} does not exist")
        loaded = spec.read(path, labelled=split != "test", strict=strict, what=f"tasks.{task}.{file_split}",
                           tags=spec.tag_labels)
    if share and split != "test":
        rest, held = carve_tune_split(loaded.examples, share, DEV_SHARE_SEED, source.strata)
        loaded = dataclasses.replace(loaded, examples=held if split == "dev" else rest)
        if split == "dev":
            log.info("%s: %d rows of %s held out as dev (dev_share %.0f%%)", task, len(held), path.name, 100 * share)
    return loaded


def tune_split_rows(source: TaskSource, directory: Path, share: float, seed: int) -> list[Example]:
    """The rows of a task's training file that a run with `train.tune_split` = share (and tune_split_seed = seed)
    held out, never trained on, exactly as its training carved them."""
    _, held = carve_tune_split(read_split(source, "train", directory).examples, share, seed, source.strata)
    return held


def assemble_task_data(source: TaskSource, directory: Path, sampling: Sampling, splits: Sequence[str] = SPLITS,
                       strict: bool = False) -> dict[str, SplitRows]:
    """Split -> the task's rows of it, as a run trains, selects and predicts on them (a split without a file is
    absent). With a tune split, dev is the share held out of train and test is not read. A tagging spec that
    declares no label set gets the train file's, written into its format's options: dev and test are checked on it,
    and the run's config.toml records it (evaluate, predict and serve read no train file)."""
    task, spec = source.task, source.spec
    tuning = sampling.tune_split > 0
    if tuning:  # evaluation on a share of the training file: dev is not read, test not predicted
        splits = tuple(s for s in splits if s != "test")
    assembled: dict[str, SplitRows] = {}
    held_out: list[Example] = []  # the tune split, carved from the training file
    for split in splits:
        if tuning and split == "dev":  # the tune split stands in for dev, which is not read
            if "train" not in splits:  # evaluate, a soup: the rows the run held out, carved as its training did
                held_out = tune_split_rows(source, directory, sampling.tune_split, sampling.tune_split_seed)
            loaded = LoadedFile(directory / source.files.get("train", ""), held_out)
        else:
            loaded = read_split(source, split, directory, strict)
            if loaded is None:
                if split == "test" and source.files.get("test"):
                    log.info("%s: no test file %s; test predictions skipped", task, directory / source.files["test"])
                continue
        if split == "train" and not spec.tag_labels and (tags := spec.train_tags(loaded)):
            spec.format.options.labels = list(tags)
        if tuning and split == "train":
            rest, held_out = carve_tune_split(loaded.examples, sampling.tune_split, sampling.tune_split_seed,
                                              source.strata)
            log.info("%s: %d training examples held out as the tune split (%.0f%%); dev is not used", task,
                     len(held_out), 100 * sampling.tune_split)
            loaded = dataclasses.replace(loaded, examples=rest)
        limit = sampling.max_train_examples if split == "train" else sampling.max_eval_examples
        if split == "train" and sampling.train_fraction < 1:  # an ablation budget: a fixed share
            share = max(1, round(sampling.train_fraction * len(loaded.examples)))
            limit = min(limit, share) if limit else share
        examples = subsample(loaded.examples, limit, sampling.seed if split == "train" else EVAL_SAMPLE_SEED)
        check_enough_rows(loaded.path, split, examples, source.dev_problem, len(loaded.skipped))
        rows = SplitRows(loaded.path, examples)
        if split == "train":
            # extra rows are sentence rows (a kind without them refuses extra files)
            held_sentences = frozenset(e.texts[0] for e in held_out) if source.extras else frozenset()
            for extra, context in source.extras:
                context = dataclasses.replace(context, strict=strict, train_examples=tuple(examples),
                                              held_out=held_sentences)
                added = load_extra(directory, extra, context, sampling.seed, sampling.max_train_examples)
                rows.sources.append(ExtraSource(extra.file, len(rows.examples), len(rows.examples) + len(added),
                                                extra.share))
                rows.examples = rows.examples + added
        assembled[split] = rows
    missing = [split for split in ("train", "dev") if split in splits and split not in assembled]
    if missing:
        raise ConfigError(f"tasks.{task}: no {missing[0]} file (train and dev files are required)")
    return assembled
