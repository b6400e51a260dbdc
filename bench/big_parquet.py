"""A Parquet file of any size for `minbert data`'s bounded-memory check (issue 45: a 10 GB file checked with a peak
RSS under 1 GB), written one row group at a time so that writing it takes bounded memory too.

    python bench/big_parquet.py --gigabytes 10 --out /scratch/big --check

writes OUT/train.parquet (sentence pairs and a 0/1 label, about GIGABYTES on disk: no compression and no
dictionary, so the size on disk is the size of the data read), OUT/dev.parquet (a thousand rows), OUT/config.toml
(a classification task over them, `format = { name = "parquet", ... }`) and, with --check, runs
`minbert data --config OUT/config.toml --data-dir OUT` in a child process and prints its wall time and peak RSS
(getrusage of the child). Rows have no id column: rows are named by their row number (an id column makes the check
keep every id, to find repeats). Every 997th row has a label of 2, a bad row the check must report by its row.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

WORDS = ("the a man woman dog cat plays runs sits eats sleeps on in under near park street house garden ball food "
         "red blue small large quickly slowly happily today yesterday while and but because").split()
ROWS_PER_GROUP = 200_000  # ~25 MB of text a row group: what the writer (and a reader's batch) holds at once
BAD_EVERY = 997

CONFIG = """# written by bench/big_parquet.py: minbert data --config {config} --data-dir {directory}
[tasks.big.data]
format = {{ name = "parquet", text = ["premise", "hypothesis"], label = "label" }}
train = "train.parquet"
dev = "dev.parquet"
classes = [0, 1]
"""


def sentences(rng: np.random.Generator, count: int) -> pa.Array:
    """`count` sentences of 6 to 17 random words (as one Arrow string array: no Python string per row)."""
    lengths = rng.integers(6, 18, size=count)
    words = pa.array(WORDS).take(pa.array(rng.integers(0, len(WORDS), size=int(lengths.sum()))))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), words)
    return pc.binary_join(lists, " ")


def row_group(rng: np.random.Generator, start: int, count: int) -> pa.Table:
    labels = rng.integers(0, 2, size=count)
    labels[(np.arange(start, start + count) + 1) % BAD_EVERY == 0] = 2  # rows BAD_EVERY, 2 * BAD_EVERY, ...: bad
    return pa.table({"premise": sentences(rng, count), "hypothesis": sentences(rng, count),
                     "label": pa.array(labels, pa.int64())})


def write(path: Path, size_bytes: int, seed: int, rows: int = 0) -> int:
    """Row groups until the file holds `size_bytes` (or `rows` rows); the number of rows written."""
    rng = np.random.default_rng(seed)
    written = 0
    with pa.OSFile(str(path), "wb") as sink:
        writer = None
        while (rows and written < rows) or (not rows and sink.tell() < size_bytes):
            count = min(ROWS_PER_GROUP, rows - written) if rows else ROWS_PER_GROUP
            table = row_group(rng, written, count)
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema, compression="none", use_dictionary=False)
            writer.write_table(table, row_group_size=count)
            written += count
        if writer is not None:
            writer.close()
    return written


def check(config: Path, directory: Path) -> int:
    minbert = Path(sys.executable).with_name("minbert")
    command = [str(minbert), "data", "--config", str(config), "--data-dir", str(directory)]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    listed = 0  # a file's listed bad rows (up to a thousand): the first three of each shown
    for line in done.stdout.splitlines():
        listed = listed + 1 if line.startswith("      row ") else 0
        if listed <= 3:
            print(line)
    if done.returncode not in (0, 1):
        print(done.stderr[-3000:], file=sys.stderr)
    print(f"minbert data: exit {done.returncode}, {seconds:.0f} s, peak RSS {peak_kib / 1024:.0f} MiB")
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=10.0, help="the train file's size on disk (GB, 10^9)")
    parser.add_argument("--out", type=Path, required=True, help="a directory for the files and config.toml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="then run minbert data on it: wall time, peak RSS")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train = args.out / "train.parquet"
    began = time.perf_counter()
    rows = write(train, int(args.gigabytes * 1e9), args.seed)
    print(f"{train}: {rows:,} rows, {train.stat().st_size / 1e9:.2f} GB, {rows // BAD_EVERY:,} bad "
          f"(label 2), written in {time.perf_counter() - began:.0f} s")
    write(args.out / "dev.parquet", 0, args.seed + 1, rows=1000)
    config = args.out / "config.toml"
    config.write_text(CONFIG.format(config=config, directory=args.out), encoding="utf-8")
    print(f"{config}: minbert data --config {config} --data-dir {args.out}")
    return check(config, args.out) if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
