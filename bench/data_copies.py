"""Issue 45's equality goals on the real model: a data set read through another route trains to the same dev figures,
to the last digit, as from its original files.

    python bench/data_copies.py mrpc-hub --out DIR [--data-dir ../shared/data] [--reference RUN] [key=value ...]
    python bench/data_copies.py conll-parquet --out DIR [--data-dir ../shared/data] [--reference RUN] [key=value ...]

mrpc-hub: GLUE's MRPC written as the Hub keeps it (`nyu-mll/glue`: Parquet files under mrpc/, a README card with
`configs:`, the label a ClassLabel) from the data directory's TSV files, into a Hub cache in huggingface_hub's own
layout (OUT/mrpc-hub/hub-cache: blobs, refs, snapshots), read with HF_HUB_OFFLINE=1 by configs/glue/mrpc.toml whose
data spec is replaced by a `hub` spec. conll-parquet: CoNLL-2003's train and dev files written as HF `datasets`
writes `eriktks/conll2003` (tokens, and ner_tags as integers with their ClassLabel names) to OUT/conll-parquet/data,
read by configs/kinds/conll2003.toml with a `parquet` spec.

Each trains the copy (OUT/<case>/copy) and, unless --reference names a finished run of the original config with the
same overrides, the original (OUT/<case>/original), then prints both runs' final dev figures and whether they agree
to the last digit (exit 1 if not). key=value overrides go to both runs (e.g. train.max_train_examples=300 for a
quick look). A run that stopped resumes; a finished one is not run again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]

MRPC_NAMES = ["not_equivalent", "equivalent"]
MRPC_FEATURES = {"sentence1": {"dtype": "string", "_type": "Value"}, "sentence2": {"dtype": "string", "_type": "Value"},
                 "label": {"names": MRPC_NAMES, "_type": "ClassLabel"}, "idx": {"dtype": "int32", "_type": "Value"}}
GLUE_CARD = """---
configs:
- config_name: mrpc
  data_files:
  - split: train
    path: mrpc/train-*
  - split: validation
    path: mrpc/validation-*
  - split: test
    path: mrpc/test-*
- config_name: rte
  data_files:
  - split: train
    path: rte/train-*
---
# GLUE (a copy of its MRPC)
"""
MRPC_HUB_SPEC = """[tasks.mrpc.data]
hub = "{name}"
subset = "mrpc"
text = ["sentence1", "sentence2"]
label = "label"
symmetric = true
metrics = ["accuracy", "f1"]
"""
CONLL_PARQUET_SPEC = """[tasks.ner.data]
train = "conll2003/train.parquet"
dev = "conll2003/dev.parquet"
format = { name = "parquet", words = "tokens", tags = "ner_tags", scheme = "iob1" }
"""


def repo_folder(cache: Path, name: str, repo_type: str = "model") -> Path:
    """Where huggingface_hub keeps repository `name` in `cache`: models--org--name, datasets--org--name."""
    return cache / f"{repo_type}s--{name.replace('/', '--')}"


def add_snapshot(repo: Path, commit: str, files: Path) -> None:
    """Every file under the directory `files` as huggingface_hub stores it: a content-addressed blob, and the
    snapshot's name (same relative path, sub-folders kept) linking to it."""
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def set_ref(repo: Path, ref: str, commit: str) -> None:
    """refs/<ref> (a branch, a tag, or refs/convert/parquet) points at `commit`."""
    path = repo / "refs" / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(commit)


def hf_metadata(features: dict) -> dict[bytes, bytes]:
    """A Parquet schema's metadata as HF `datasets` writes it: the features (ClassLabel names among them)."""
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def mrpc_rows(path: Path) -> list[tuple[str, str, int]]:
    """(sentence1, sentence2, label) of a GLUE MRPC TSV (BOM, tab-separated, no quoting), read without minbert."""
    lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8-sig").split("\n")[1:] if line]
    return [(fields[3], fields[4], int(fields[0])) for fields in (line.split("\t") for line in lines)]


def write_mrpc_parquet(path: Path, rows: list[tuple[str, str, int]], features: dict = MRPC_FEATURES) -> Path:
    """Rows as HF `datasets` writes a split: its columns, and its features in the schema's `huggingface` metadata."""
    table = pa.table({"sentence1": [r[0] for r in rows], "sentence2": [r[1] for r in rows],
                      "label": pa.array([r[2] for r in rows], pa.int64()),
                      "idx": pa.array(range(len(rows)), pa.int32())})
    table = table.replace_schema_metadata(hf_metadata(features))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def glue_files(directory: Path, train: list, dev: list) -> Path:
    """A GLUE snapshot's files: the card, MRPC's three splits (test unlabelled: -1, as GLUE's)."""
    directory.mkdir(parents=True)
    (directory / "README.md").write_text(GLUE_CARD, encoding="utf-8")
    write_mrpc_parquet(directory / "mrpc" / "train-00000-of-00001.parquet", train)
    write_mrpc_parquet(directory / "mrpc" / "validation-00000-of-00001.parquet", dev)
    write_mrpc_parquet(directory / "mrpc" / "test-00000-of-00001.parquet", [(a, b, -1) for a, b, _ in dev])
    return directory


def conll_to_parquet(conll: Path, path: Path, names: list[str] | None = None,
                     row_group_size: int = 1000) -> list[str]:
    """A CoNLL file's sentences as HF's conll2003 rows: tokens, and ner_tags as indices of a ClassLabel whose names
    are `names` (default: the file's label set in minbert's order); the names it used."""
    from minbert.data.formats import DATA_FORMATS, ReadContext, tag_labels

    sentences = DATA_FORMATS["conll"].read(conll, DATA_FORMATS.options_of("conll")(), ReadContext()).examples
    names = list(names or tag_labels(sentences, "iob1"))
    features = {"tokens": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
                "ner_tags": {"feature": {"names": names, "_type": "ClassLabel"}, "_type": "Sequence"}}
    schema = pa.schema([("tokens", pa.list_(pa.string())), ("ner_tags", pa.list_(pa.int64()))],
                       metadata=hf_metadata(features))
    rows = [{"tokens": list(s.words), "ner_tags": [names.index(t) for t in s.tags]} for s in sentences]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return names


def replace_data_spec(config: Path, table: str, spec: str) -> str:
    """The config's text with its last table, `[table]` (the task's data spec), replaced by `spec`."""
    text = config.read_text(encoding="utf-8")
    head, found, _ = text.partition(f"[{table}]\n")
    if not found:
        raise SystemExit(f"{config}: no [{table}] table to replace")
    return head + spec


def prepare_mrpc_hub(data_dir: Path, case: Path) -> tuple[Path, Path, dict[str, str]]:
    """The Hub cache and the copy's config; (original config, copy config, environment for the copy's run)."""
    name, commit = "nyu-mll/glue", "0" * 39 + "1"
    cache = case / "hub-cache"
    if not (cache / "datasets--nyu-mll--glue").is_dir():
        train, dev = mrpc_rows(data_dir / "glue" / "mrpc-train.tsv"), mrpc_rows(data_dir / "glue" / "mrpc-dev.tsv")
        repo = repo_folder(cache, name, "dataset")
        add_snapshot(repo, commit, glue_files(case / "hub-files", train, dev))
        set_ref(repo, "main", commit)
    original = ROOT / "configs" / "glue" / "mrpc.toml"
    copy = case / "mrpc-hub.toml"
    copy.write_text(replace_data_spec(original, "tasks.mrpc.data", MRPC_HUB_SPEC.format(name=name)), encoding="utf-8")
    return original, copy, {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def prepare_conll_parquet(data_dir: Path, case: Path) -> tuple[Path, Path, dict[str, str]]:
    """Parquet copies of CoNLL-2003's train and dev files (ClassLabel names of train's label set) and the config."""
    copies = case / "data" / "conll2003"
    if not (copies / "dev.parquet").is_file():
        names = conll_to_parquet(data_dir / "conll2003" / "train.txt", copies / "train.parquet")
        conll_to_parquet(data_dir / "conll2003" / "dev.txt", copies / "dev.parquet", names)
    original = ROOT / "configs" / "kinds" / "conll2003.toml"
    copy = case / "conll2003-parquet.toml"
    copy.write_text(replace_data_spec(original, "tasks.ner.data", CONLL_PARQUET_SPEC), encoding="utf-8")
    return original, copy, {}


CASES = {"mrpc-hub": prepare_mrpc_hub, "conll-parquet": prepare_conll_parquet}


def train(config: Path, run_dir: Path, data_dir: Path | None, overrides: list[str], env: dict[str, str]) -> dict:
    """Train (or resume, or reuse) the run at `run_dir`; its final dev figures."""
    if not (run_dir / "metrics.json").is_file():
        what = (["--resume", str(run_dir)] if (run_dir / "checkpoints").is_dir() else
                ["--config", str(config), *overrides, f"output_dir={run_dir.parent}", f"name={run_dir.name}"])
        data = ["--data-dir", str(data_dir)] if data_dir else []
        subprocess.run([sys.executable, "-m", "minbert", "train", *data, *what], check=True,
                       env={**os.environ, **env})
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["final_dev"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--reference", type=Path, help="a finished run of the original config (with the same "
                        "overrides) to compare with, instead of training it")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    case = (args.out / args.case).resolve()
    case.mkdir(parents=True, exist_ok=True)
    original, copy, env = CASES[args.case](args.data_dir.resolve(), case)
    copied = train(copy, case / "copy", None if args.case == "mrpc-hub" else case / "data", args.overrides, env)
    reference = train(original, args.reference or case / "original", args.data_dir, args.overrides, {})
    (task,) = reference
    (copy_task,) = copied
    print(f"{'metric':<20} {'original':>22} {'copy':>22}")
    for metric, value in reference[task]["metrics"].items():
        print(f"{metric:<20} {value!r:>22} {copied[copy_task]['metrics'].get(metric)!r:>22}")
    same = reference[task]["metrics"] == copied[copy_task]["metrics"]
    print(f"{args.case}: the copy's final dev figures {'equal' if same else 'DIFFER FROM'} the original's"
          f"{' to the last digit' if same else ''}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
