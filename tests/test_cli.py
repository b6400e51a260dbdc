"""The command line's info job and its error path."""

from __future__ import annotations

from minbert.cli import main
from tests.conftest import tiny_config


def test_info_prints_config_and_parameter_counts(tmp_path, capsys):
    from minbert import BertModel

    model = BertModel(tiny_config())
    model.save_pretrained(tmp_path)
    assert main(["info", "--model", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "hidden_size                    64" in out
    assert f"{model.num_parameters():>12,}" in out
    assert "layers (2 x" in out


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["info", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"minbert: error: {tmp_path / 'nope'}: model directory does not exist"
