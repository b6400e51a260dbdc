"""bench/big_parquet.py, at a thousand rows: the file it writes row group by row group is what its config says, and
minbert's parquet reader reports its planted bad rows by row number."""

from __future__ import annotations

import tomllib

import pyarrow.parquet as pq

from bench.big_parquet import BAD_EVERY, CONFIG, write
from minbert.data.formats import DATA_FORMATS, ReadContext
from minbert.data.spec import DataSpec, check_spec
from minbert.options import build


def test_the_generated_file_and_config_read_with_the_planted_bad_rows(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.big_parquet.ROWS_PER_GROUP", 300)
    assert write(tmp_path / "train.parquet", 0, 0, rows=2000) == 2000
    assert pq.ParquetFile(tmp_path / "train.parquet").metadata.num_row_groups == 7
    table = tomllib.loads(CONFIG.format(config="c.toml", directory=tmp_path))["tasks"]["big"]["data"]
    spec = build(DataSpec, table, "tasks.big.data")
    check_spec(spec, "tasks.big.data")
    checked = spec.read(tmp_path / "train.parquet", keep=False)
    assert checked.rows == 2000 - 2000 // BAD_EVERY
    assert [s.place for s in checked.skipped] == [f"row {BAD_EVERY}", f"row {2 * BAD_EVERY}"]
    kept = DATA_FORMATS["parquet"].read(tmp_path / "train.parquet", spec.format.options,
                                        ReadContext(file_format=spec.file_format()))
    assert len(kept.examples) == checked.rows and all(len(e.texts) == 2 for e in kept.examples)


def test_reading_in_batches_holds_one_row_group_not_the_file(tmp_path, monkeypatch):
    """pyarrow's pool holds about a row group while the reader walks the file: with ParquetFile's pre_buffer (its
    default) every row group read stays buffered to the end, so a 10 GB file grew past 3 GB."""
    import pyarrow as pa

    from minbert.data.formats.parquet import open_parquet, parquet_rows

    monkeypatch.setattr("bench.big_parquet.ROWS_PER_GROUP", 2000)
    path = tmp_path / "train.parquet"
    write(path, 0, 0, rows=60_000)
    group_bytes = pq.ParquetFile(path).metadata.row_group(0).total_byte_size
    held = []
    for record in parquet_rows(open_parquet(path), path, ["premise", "hypothesis", "label"], batch_size=500):
        if record.line % 1000 == 0:
            held.append(pa.total_allocated_bytes())
    assert len(held) == 60 and max(held) < 3 * group_bytes, (max(held), group_bytes)
