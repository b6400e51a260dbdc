"""A task's data spec: its files, text and label columns, labels, metrics and prediction files, in one TOML table.

    [tasks.rte]
    data = { train = "glue/rte-train.tsv", dev = "glue/rte-dev.tsv", text = ["sentence1", "sentence2"],
             label = "label", classes = ["not_entailment", "entailment"], metrics = ["accuracy"] }

A file in another format names it with its options as a sub-table, `format = { name = ..., option = ... }` (one
unit of minbert.data.formats.DATA_FORMATS, like every other options table; default `tsv`, today's delimited files
read with the keys below). A CoNLL tagging task needs no text, label or classes: its tags are its labels, declared
in the format's table or read from the train file:

    [tasks.ner]
    data = { format = { name = "conll", scheme = "iob1" }, train = "conll2003/train.txt",
             dev = "conll2003/dev.txt", test = "conll2003/test.txt" }

`data = "sst"` names a built-in spec: the CS224N four are tables of builtin_tasks.toml, read by the same reader
and checked by the same rules. Everything that lists tasks (readers, heads, prediction files, scores, reports,
serving) derives from the spec, so a new data set is one table and no code.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from minbert.data.files import Example, FileFormat, LoadedFile
from minbert.data.formats import (
    DATA_FORMATS,
    CheckedFile,
    ChoiceExample,
    ReadContext,
    SpanExample,
    TaggedExample,
    label_set,
    tag_labels,
)
from minbert.data.hub import hub_defaults, pin_spec
from minbert.errors import ConfigError, DataError
from minbert.metrics import METRICS, REGISTRIES
from minbert.names import check_name
from minbert.options import Chosen, build, option

SPLITS = ("train", "dev", "test")


@dataclass
class DataSpec:
    """One data set: where its rows are and what they mean."""

    # the files' format and its options: "tsv" (today's delimited files, read with the keys below), or a table
    # { name = "conll", scheme = "iob1", ... } (minbert.data.formats)
    format: Chosen = option(Chosen("tsv"), registry=DATA_FORMATS)
    # a data set on the Hugging Face Hub (`org/name`), read from its Parquet files in huggingface_hub's cache;
    # train, dev and test then name its splits (default "train" and "validation"): minbert.data.hub
    hub: str = ""
    subset: str = ""  # the Hub data set's subset (its card's config_name); "" = its default
    revision: str = ""  # the Hub data set's branch, tag or commit ("" = main); a run records the commit it read
    train: str = ""  # file names in the data directory (or absolute paths); train and dev are required
    dev: str = ""
    test: str = ""  # optional: unlabelled rows to predict
    # no dev file: hold out this share of the train file as dev (per class or score decile, the same rows for
    # every run seed), e.g. SICK, which ships as one file
    dev_share: float = option(0.0, low=0, high=1, high_open=True)
    text: list[str] = field(default_factory=list)  # one column: single sentences; two: sentence pairs
    # pairs: the label does not depend on which text comes first (paraphrase, similarity; not entailment), so a
    # task may train on either order and predict with both (tasks.X.train_order, tasks.X.predict_order)
    symmetric: bool = False
    label: str = ""  # the label column
    id: str = ""  # the id column; "" = rows are named by file and line (name:line)
    delimiter: str = "\t"
    quoting: str = option("csv", choices=("csv", "none"))  # none: every character is text (GLUE's MRPC)
    classes: list[str | int | float] = field(default_factory=list)  # classification: the labels, index = position
    class_names: list[str] = field(default_factory=list)  # for people (reports, serve); [] = the classes as written
    positive: str | int | float = ""  # binary metrics' positive class; "" = the second class
    score_range: list[float] = field(default_factory=list)  # regression: [low, high]
    metrics: list[str] = field(default_factory=list)  # by name (minbert.metrics); the first picks the best epoch
    loss: str = ""  # the default loss of a task on this data; "" = cross_entropy (classes) or mse (scores)
    prediction_file: str = ""  # predictions/{prediction_file}-{split}-output.csv; "" = the task's name
    prediction_column: str = ""  # the prediction file's header column; "" = Predicted_{label}

    def __post_init__(self) -> None:
        if self.hub:
            hub_defaults(self)
        # a format that names the rows' fields in its own table (jsonl's `text` and `label` paths) gives the spec's
        # text and label, so a spec need not repeat them (check_row_spec refuses a repeat that differs)
        for key, value in self.format_fields().items():
            if value and not getattr(self, key):
                setattr(self, key, type(value)(value))

    def format_fields(self) -> dict[str, object]:
        """The spec's keys that its format's table names itself ({} for a format that does not)."""
        unit = DATA_FORMATS.get(self.format.name)
        return unit.row_fields(self.format.options) if hasattr(unit, "row_fields") else {}

    @property
    def example_type(self) -> type:
        """What the format's reader gives: Example rows (sentences and labels), TaggedExample, SpanExample, ... (a
        format that reads more than one, such as jsonl's choice or sentence rows, says which from its options)."""
        unit = DATA_FORMATS[self.format.name]
        if hasattr(unit, "example_of"):
            return unit.example_of(self.format.options)
        return getattr(unit, "example", Example)

    @property
    def rows(self) -> bool:
        """Sentence rows with a label each (text, label and classes or a score range describe them)."""
        return self.example_type is Example

    @property
    def metric_inputs(self) -> str:
        """Which metrics registry scores this spec's predictions (minbert.metrics.REGISTRIES)."""
        if self.rows:
            return "labels" if self.classes else "scores"
        return EXAMPLE_INPUTS[self.example_type]

    @property
    def tag_labels(self) -> tuple[str, ...]:
        """A tagging spec's label set as declared in its format's table (() = read from the train file)."""
        return tuple(getattr(self.format.options, "labels", ()) or ())

    @property
    def is_classification(self) -> bool:
        return bool(self.classes)

    @property
    def is_pair(self) -> bool:
        return len(self.text) == 2

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def primary_metric(self) -> str:
        if not self.rows:
            return (self.metrics or [DEFAULT_METRICS[self.metric_inputs]])[0]
        return (self.metrics or ["accuracy" if self.classes else "pearson"])[0]

    @property
    def metric_names(self) -> list[str]:
        """The metrics a dev result holds; a tagging (span, choice) spec that names none gets every metric of its
        registry, the primary one first."""
        if not self.rows and not self.metrics:
            return [self.primary_metric, *(n for n in REGISTRIES[self.metric_inputs] if n != self.primary_metric)]
        return self.metrics or [self.primary_metric]

    @property
    def labels_for_people(self) -> list[str]:
        return self.class_names or [str(c) for c in self.classes]

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive) if self.positive != "" else 1

    def file_format(self) -> FileFormat:
        """How the reader reads these files. Classes 0..K-1 are read as numbers (so '2.0' is class 2, and an
        extra file's labels can be offset and scaled onto them); any other classes are looked up as declared."""
        numbered = self.classes == list(range(len(self.classes)))
        return FileFormat(tuple(self.text), self.label, num_classes=len(self.classes) or None,
                          score_range=tuple(self.score_range) if self.score_range else None, id_column=self.id,
                          delimiter=self.delimiter, quoting=self.quoting == "csv",
                          classes=None if numbered else tuple(self.classes))

    def read(self, path: str | Path, labelled: bool = True, strict: bool = False, what: str = "",
             tags: tuple[str, ...] = (), keep: bool = True) -> LoadedFile:
        """One of the spec's files through its format's unit; `tags`: a tagging spec's label set read from train
        (when not declared), which the other files' tags are checked against; `keep=False`: rows counted, not kept
        (a CheckedFile, where the format reads by rows)."""
        context = ReadContext(what, labelled, strict, self.file_format() if self.rows else None, tags, keep)
        return DATA_FORMATS[self.format.name].read(path, self.format.options, context)

    def train_tags(self, train: LoadedFile | None) -> tuple[str, ...]:
        """A tagging spec's label set: declared, else read from its train file's sentences; () for other specs."""
        if self.example_type is not TaggedExample:
            return ()
        if isinstance(train, CheckedFile):  # counted, not kept: the tags its sentences use
            return self.tag_labels or label_set(train.tags, self.format.options.scheme)
        return self.tag_labels or tag_labels(train.examples if train else (), self.format.options.scheme)

    def prediction_path(self, task: str, split: str) -> str:
        return f"{self.prediction_file or task}-{split}-output.csv"

    def prediction_header(self) -> str:
        return self.prediction_column or f"Predicted_{self.label}"


EXAMPLE_INPUTS = {TaggedExample: "tags", SpanExample: "spans", ChoiceExample: "choices"}
DEFAULT_METRICS = {"tags": "entity_f1", "spans": "f1", "choices": "accuracy"}
ROW_KEYS = ("text", "label", "id", "classes", "class_names", "positive", "score_range", "symmetric", "dev_share")


def check_spec(spec: DataSpec, where: str) -> None:
    """Every rule a spec must meet, each failure naming its key."""
    if spec.hub or spec.subset or spec.revision:  # resolved first: a ClassLabel may give the classes
        pin_spec(spec, where)
    if not spec.train:
        raise ConfigError(f"{where}.train: a file is required (train and dev files are required)")
    (check_row_spec if spec.rows else check_format_spec)(spec, where)
    if len(set(spec.metrics)) != len(spec.metrics):
        raise ConfigError(f"{where}.metrics = {spec.metrics}: a metric is named twice")
    if spec.prediction_file:
        check_name(spec.prediction_file, f"{where}.prediction_file")


def check_row_spec(spec: DataSpec, where: str) -> None:
    """A spec of sentence rows: its text, label and id columns, its classes or score range, its metrics."""
    for key, value in spec.format_fields().items():
        if value and getattr(spec, key) != value:
            raise ConfigError(f"{where}.{key} = {getattr(spec, key)!r} differs from the format's field paths "
                              f"({where}.format.{key} = {value!r}): give them once, in the format's table")
    if bool(spec.dev) == bool(spec.dev_share):
        raise ConfigError(f"{where}.dev: name a dev file, or set dev_share to hold out a share of the train file "
                          "(one of the two)")
    if len(spec.text) not in (1, 2) or not all(c.strip() for c in spec.text):
        raise ConfigError(f"{where}.text = {spec.text}: one column (single sentences) or two (pairs)")
    if spec.symmetric and len(spec.text) != 2:
        raise ConfigError(f"{where}.symmetric: only a pair of texts can be symmetric; this spec has one text column")
    if not spec.label.strip():
        raise ConfigError(f"{where}.label: the label column is required")
    check_column_roles(spec, where)
    if len(spec.delimiter) != 1:
        raise ConfigError(f"{where}.delimiter = {spec.delimiter!r}: one character")
    if bool(spec.classes) == bool(spec.score_range):
        raise ConfigError(f"{where}: declare either `classes` (classification) or `score_range` (regression)")
    if spec.classes:
        if len(spec.classes) < 2:
            raise ConfigError(f"{where}.classes = {spec.classes}: at least two classes")
        texts = [str(c) for c in spec.classes]
        if len(set(texts)) != len(texts):
            raise ConfigError(f"{where}.classes = {spec.classes}: a class is declared twice")
        if spec.class_names and len(spec.class_names) != len(spec.classes):
            raise ConfigError(f"{where}.class_names: {len(spec.class_names)} names for {len(spec.classes)} classes")
        if spec.positive != "" and spec.positive not in spec.classes:
            raise ConfigError(f"{where}.positive = {spec.positive!r} is not one of the classes {spec.classes}")
    else:
        if len(spec.score_range) != 2 or not spec.score_range[0] < spec.score_range[1]:
            raise ConfigError(f"{where}.score_range = {spec.score_range}: expected [low, high] with low < high")
        if spec.class_names or spec.positive != "":
            raise ConfigError(f"{where}: class_names and positive are for classes; this spec has a score_range")
    kind = "classification" if spec.classes else "regression"
    for name in spec.metrics:
        unit = METRICS.lookup(name, f"{where}.metrics")
        if unit.for_classification != bool(spec.classes):
            what = "classification" if unit.for_classification else "regression"
            raise ConfigError(f"{where}.metrics: {name!r} is a {what} metric; this spec is {kind}")
        if unit.binary and len(spec.classes) != 2:
            raise ConfigError(f"{where}.metrics: {name!r} needs two classes; this spec has {len(spec.classes)}")


def check_format_spec(spec: DataSpec, where: str) -> None:
    """A spec whose format gives tagged sentences, questions or choice rows: its format's table describes its
    examples and labels, so the keys of sentence rows (text, label, classes, ...) have no place in it."""
    unit = DATA_FORMATS[spec.format.name]
    if hasattr(unit, "check"):
        unit.check(spec.format.options, f"{where}.format")
    if not spec.dev:
        raise ConfigError(f"{where}.dev: a file is required (train and dev files are required)")
    defaults = DataSpec(format=spec.format)
    for key in ROW_KEYS:
        if getattr(spec, key) != getattr(defaults, key):
            raise ConfigError(f"{where}.{key}: a key of sentence rows; format {spec.format.name!r} reads "
                              f"{spec.metric_inputs} (its table `format = {{ name = {spec.format.name!r}, ... }}` "
                              "describes them)")
    registry = REGISTRIES[spec.metric_inputs]
    for name in spec.metrics:
        registry.lookup(name, f"{where}.metrics")


def check_column_roles(spec: DataSpec, where: str) -> None:
    """Each column has one role: a text column that is the label lets the model read its answer; a pair of one
    column twice is two copies of one text; an id column that is the label or a text names rows by their content,
    which is not unique (and writes the gold label into prediction files)."""
    if spec.label in spec.text:
        raise ConfigError(f"{where}.text = {spec.text} holds the label column {spec.label!r}: the model would read "
                          "its answer")
    if len(set(spec.text)) != len(spec.text):
        raise ConfigError(f"{where}.text = {spec.text} names column {spec.text[0]!r} twice: a pair is two "
                          "different columns")
    if spec.id and spec.id == spec.label:
        raise ConfigError(f"{where}.id = {spec.id!r} is the label column: ids name rows; leave id empty to name "
                          "them by file and line")
    if spec.id in spec.text:
        raise ConfigError(f"{where}.id = {spec.id!r} is a text column: ids name rows; leave id empty to name "
                          "them by file and line")


BUILTIN_FILE = Path(__file__).with_name("builtin_tasks.toml")


@cache
def builtin_specs() -> dict[str, DataSpec]:
    """The CS224N four, read from builtin_tasks.toml like any config's spec."""
    with BUILTIN_FILE.open("rb") as file:
        tables = tomllib.load(file)
    specs = {}
    for name, table in tables.items():
        specs[name] = build(DataSpec, table, f"{BUILTIN_FILE.name}:{name}")
        check_spec(specs[name], f"{BUILTIN_FILE.name}:{name}")
    return specs


def resolve_spec(data: str | DataSpec, where: str) -> DataSpec:
    """A task's `data`: a built-in's name, or its own spec (checked)."""
    if isinstance(data, DataSpec):
        check_spec(data, where)
        return data
    if data not in builtin_specs():
        raise ConfigError(f"{where} = {data!r} is not one of {', '.join(builtin_specs())} (the built-in data "
                          "sets), nor a data spec table: { train = ..., dev = ..., text = [...], label = ..., "
                          "classes = [...] or score_range = [low, high] }")
    return builtin_specs()[data]


def builtin_name(data: str | DataSpec) -> str:
    """The built-in data set's name ("sst", ...), "" for a task's own spec: what the CS224N formula looks for."""
    return data if isinstance(data, str) else ""


def data_key(task: str, data: str | DataSpec) -> str:
    """The name ensembles and teachers match a task by: a built-in's name, else the task's own name."""
    return builtin_name(data) or task


# The built-ins' file formats and standard files, by name and by (name, split).
FORMATS = {name: spec.file_format() for name, spec in builtin_specs().items()}
KNOWN_FILES = {(name, split): getattr(spec, split) for name, spec in builtin_specs().items() for split in SPLITS}


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def resolve_data_dir(flag: str | Path | None = None, needed: bool = True) -> Path:
    """--data-dir, then $MINBERT_DATA, then ./data, then ../shared/data (from here, then from the checkout).
    `needed` False (every task reads a Hub data set from huggingface_hub's cache): the current directory when none
    of them is found, since nothing is read from it."""
    if flag:
        if not Path(flag).is_dir():
            raise DataError(f"--data-dir {flag}: no such directory")
        return Path(flag)
    if env := os.environ.get("MINBERT_DATA"):
        if not Path(env).is_dir():
            raise DataError(f"MINBERT_DATA={env}: no such directory")
        return Path(env)
    candidates = [Path("data"), Path("../shared/data"), _repo_root() / "data", _repo_root().parent / "shared" / "data"]
    for candidate in candidates:
        if any((candidate / name).exists() for name in KNOWN_FILES.values()):
            return candidate
    if not needed:
        return Path()
    looked = ", ".join(str(c) for c in ["--data-dir (not given)", "$MINBERT_DATA (not set)", *candidates])
    raise DataError(f"no data directory found; looked in: {looked}")
