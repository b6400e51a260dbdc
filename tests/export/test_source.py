"""Where an export writes: `--overwrite` replaces an earlier export of minbert's as a whole, and only when it holds
nothing but the files that export wrote; a user's file is never deleted, and a failed export leaves the earlier one
as it was."""

from __future__ import annotations

import json
from pathlib import Path

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.export import EXPORT_FORMATS
from minbert.export.source import EXPORT_MARK

FORMAT = "sentence-transformers"


def export(run: Path, out: Path, *more: str) -> int:
    return main(["export", str(run), "--format", FORMAT, str(out), *more])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_a_file_the_export_did_not_write(tmp_path, three_task_run, capsys):
    out = tmp_path / "st"
    assert export(three_task_run, out) == 0
    (out / "notes.txt").write_text("mine")
    (out / "1_Pooling" / "my-plot.png").write_text("mine too")
    before = snapshot(out)
    capsys.readouterr()
    assert export(three_task_run, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "notes.txt" in err and "1_Pooling/my-plot.png" in err
    assert snapshot(out) == before


def test_overwrite_replaces_an_earlier_export_as_a_whole(tmp_path, three_task_run):
    out = tmp_path / "st"
    assert export(three_task_run, out, "normalize=true") == 0
    normalize = [m["path"] for m in json.loads((out / "modules.json").read_text()) if "Normalize" in m["type"]]
    assert normalize and (out / normalize[0]).is_dir()
    assert export(three_task_run, out, "--overwrite") == 0
    assert not (out / normalize[0]).exists()  # the earlier export's own files went with it
    mark = json.loads((out / EXPORT_MARK).read_text())
    assert sorted(mark["files"]) == sorted(p for p in snapshot(out) if p != EXPORT_MARK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]  # nothing left beside it


def test_a_failed_overwrite_keeps_the_earlier_export(tmp_path, three_task_run, monkeypatch, capsys):
    out = tmp_path / "st"
    assert export(three_task_run, out) == 0
    before = snapshot(out)
    unit = EXPORT_FORMATS[FORMAT]

    def half_then_fail(self, source, directory, options):
        (directory / "config.json").write_text("half")
        raise ConfigError("the export failed halfway")

    monkeypatch.setattr(unit, "export", half_then_fail)
    assert export(three_task_run, out, "--overwrite") == 2
    assert "failed halfway" in capsys.readouterr().err
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]
