"""Prediction files in the CS224N starter's format: a header line `id \t <column> `, then `id , prediction `."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from minbert.errors import DataError
from minbert.outputs import check_input_file, check_output_file, write_output_text


def write_predictions(path: str | Path, header: str, ids: Sequence[str], predictions: Sequence) -> None:
    """Written whole or not at all (an interrupted predict leaves no half file); `-`: to standard output."""
    path = check_output_file(path)
    rows = [f"{example_id} , {prediction} \n" for example_id, prediction in zip(ids, predictions, strict=True)]
    write_output_text(path, f"id \t {header} \n" + "".join(rows))


def read_predictions(path: str | Path) -> tuple[str, list[tuple[str, str]]]:
    """(header column, [(id, prediction text)]) from a file written by write_predictions."""
    path = check_input_file(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("id \t "):
        raise DataError(f"{path}:1: expected the header 'id \\t <column>'")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if " , " not in line:
            raise DataError(f"{path}:{number}: expected 'id , prediction'")
        example_id, prediction = line.split(" , ", 1)
        rows.append((example_id.strip(), prediction.strip()))
    return lines[0][len("id \t "):].strip(), rows
