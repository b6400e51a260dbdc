"""bench/lone_request.py: each way of laying out the weights answers as the row-major model does (within float
rounding), and the table has a row for each variant measured; a run without an ONNX export skips that variant."""

from __future__ import annotations

import pytest
import torch

from bench.lone_request import main, measure


def test_every_layout_gives_the_row_major_models_hidden_states(three_task_run, capsys):
    reference = measure(three_task_run, "row-major", "a fine film", 2, None)
    assert reference["encoder_ms"] > 0 and reference["service_ms"] > 0
    variants = ["column-major", "onednn-packed"] + (["mkl-packed"] if torch.backends.mkl.is_available() else [])
    for variant in variants:
        result = measure(three_task_run, variant, "a fine film", 2, reference["hidden"])
        assert result["max_diff"] < 1e-4, variant
        assert result["hidden"].shape == reference["hidden"].shape
    assert main(["--run", str(three_task_run), "--variants", "row-major", "column-major", "onnx", "--repeat", "2"]) == 0
    out, err = capsys.readouterr()
    rows = [line for line in out.splitlines() if line.startswith("| ") and "ms" not in line and "---" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| row-major", "| column-major"]
    assert rows[0].endswith("| - |")  # the reference has no diff of its own
    assert float(rows[1].split(" | ")[-1].rstrip(" |")) < 1e-4
    assert "onnx: skipped" in err
    assert torch.is_grad_enabled()  # the script leaves the process (a test worker) as it found it


@pytest.mark.parametrize("variant", ["nothing"])
def test_an_unknown_variant_is_refused(three_task_run, variant):
    with pytest.raises(SystemExit):
        main(["--run", str(three_task_run), "--variants", variant])
