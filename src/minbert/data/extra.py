"""Extra-data formats: where a task's additional training examples come from (`[[tasks.X.extra]] format = ...`).

Each format is one unit of `EXTRA_FORMATS` with its own option table, written beside its name
(`format = { name = "sst_trees", min_tokens = 3 }`), a `check` that names the config key it cannot serve, and a
`load` that reads the file into the task's examples. Adding a format is one class here and its registry line.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from minbert.data.files import Example, FileFormat, read_examples
from minbert.data.trees import read_sst_trees
from minbert.errors import ConfigError
from minbert.options import Chosen, Registry, option

log = logging.getLogger(__name__)

EXTRA_FORMATS = Registry("extra-data format")


@dataclass(frozen=True)
class ExtraContext:
    """What a format is checked and loaded against: the task's own file format and how to name things."""

    where: str  # the config key of this extra table, for messages: tasks.sst.extra[0]
    data: str  # the task's data, for messages: "sst" or "tasks.rte's data"
    task_format: FileFormat
    strict: bool = False
    train_examples: tuple[Example, ...] = ()  # the task's own training examples
    held_out: frozenset[str] = frozenset()  # sentences held out as a tune split: they must not leak in as extra


@EXTRA_FORMATS.register("tsv")
class DelimitedExtra:
    """Rows of a delimited file (tab by default), its columns mapped onto the task's and its labels offset and
    scaled onto the task's labels (SICK's relatedness 1..5 -> STS's 0..5: offset -1, scale 1.25)."""

    @dataclass
    class Options:
        text_columns: list[str] = field(default_factory=list)  # one column, or two for a pair task
        label_column: str = ""
        id_column: str = ""  # "" = rows are named by file and line
        delimiter: str = "\t"
        quoting: str = option("csv", choices=("csv", "none"))  # none: a `"` is text (GLUE's TSVs)
        label_offset: float = 0.0  # label -> (label + offset) * scale, e.g. ratings 1..5 -> 0..4: offset = -1
        label_scale: float = 1.0

    @classmethod
    def check(cls, options: Options, context: ExtraContext) -> None:
        if not options.label_column:
            raise ConfigError(f"{context.where}.format.label_column is required")
        wanted = len(context.task_format.text_columns)
        if len(options.text_columns) != wanted:
            raise ConfigError(f"{context.where}.format.text_columns: {context.data} takes {wanted} text column(s), "
                              f"got {options.text_columns}")
        if len(options.delimiter) != 1:
            raise ConfigError(f"{context.where}.format.delimiter must be one character, got {options.delimiter!r}")

    @staticmethod
    def load(path: Path, options: Options, context: ExtraContext) -> list[Example]:
        fmt = dataclasses.replace(context.task_format, text_columns=tuple(options.text_columns),
                                  label_column=options.label_column, id_column=options.id_column,
                                  delimiter=options.delimiter, quoting=options.quoting == "csv",
                                  label_offset=options.label_offset, label_scale=options.label_scale)
        return read_examples(path, fmt, strict=context.strict, what=f"{context.where}.file").examples


@EXTRA_FORMATS.register("sst_trees")
class SstTreesExtra:
    """Every labelled node of SST's parse trees as a phrase of the 5-class sentiment task."""

    @dataclass
    class Options:
        min_tokens: int = option(1, low=1)  # only phrases of at least this many tokens
        include_roots: bool = False  # also the whole-sentence nodes (the training file's own sentences)
        dedup: bool = True  # one example per distinct phrase (majority label; ties dropped and counted)

    @classmethod
    def check(cls, options: Options, context: ExtraContext) -> None:
        fmt = context.task_format
        if fmt.num_classes != 5 or fmt.classes is not None:
            raise ConfigError(f"{context.where}: sst_trees hold 5-class sentiment phrases (0..4); {context.data} is "
                              "not SST-5")

    @staticmethod
    def load(path: Path, options: Options, context: ExtraContext) -> list[Example]:
        loaded, roots = read_sst_trees(path, context.task_format.num_classes, options.min_tokens,
                                       options.include_roots, options.dedup, context.strict, context.held_out,
                                       f"{context.where}.file")
        if context.held_out:
            log.info("%s: the trees of %d held-out sentences give no phrases", path.name,
                     sum(root in context.held_out for root in roots))
        sentences = {e.texts[0] for e in context.train_examples}
        log.info("%s: %d of %d tree roots spell a sentence of the task's training file exactly", path.name,
                 sum(root in sentences for root in roots), len(roots))
        return loaded.examples


@dataclass
class ExtraDataConfig:
    """`[[tasks.X.extra]]`: more training examples for a task from another file, mapped onto the task's columns and
    labels."""

    file: str = ""  # in the data directory, or a path
    # a format name, or a table with its options: { name = "sst_trees", min_tokens = 3 } (the formats above)
    format: Chosen = option(Chosen("tsv"), registry=EXTRA_FORMATS)
    share: float = option(0.0, low=0, high=1, high_open=True)  # each epoch draws this share afresh; 0 = all of it
    max_examples: int = option(0, low=0)  # 0 = all
    class_balanced: bool = False  # classification: sub-sample to the same count per class


# once flat keys of [[tasks.X.extra]], now the options of their format (migrated by training.config)
FLAT_OPTIONS = {name: tuple(f.name for f in dataclasses.fields(EXTRA_FORMATS.options_of(name)))
                for name in EXTRA_FORMATS}
