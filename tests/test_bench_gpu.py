"""The GPU bench (`minbert bench --gpu`), run on the CPU at a tiny shape: every engine's row and every field, the
FLOPs it divides by, the peak it compares with, and its bad flags as one line each."""

from __future__ import annotations

import json
import math

import pytest
import torch

from minbert.bench import (
    GPU_ENGINES,
    datasheet_bf16_tflops,
    flops_per_token,
    gpu_bench,
    print_gpu_report,
    training_flops_per_step,
)
from minbert.cli import main
from minbert.model import BertConfig

TINY = {"device": "cpu", "layers": 2, "hidden": 64, "heads": 4, "batch_size": 2, "seq_length": 16, "steps": 2,
        "warmup_steps": 1, "vocab_size": 1000}
ROW_FIELDS = {"sentences_per_s", "tokens_per_s", "tflops", "peak_share", "step_ms", "final_loss", "parameters",
              "peak_gpu_mb", "vs_hf_eager"}


@pytest.fixture(scope="module")
def tiny_report() -> dict:
    return gpu_bench(**TINY)


def test_every_engine_trains_and_reports_every_figure(tiny_report):
    assert list(tiny_report["engines"]) == list(GPU_ENGINES)
    for name, row in tiny_report["engines"].items():
        assert set(row) == ROW_FIELDS, name  # no "error": each engine ran its steps
        for field in ("sentences_per_s", "tokens_per_s", "tflops", "peak_share", "step_ms"):
            assert math.isfinite(row[field]) and row[field] > 0, (name, field)
        assert row["tokens_per_s"] == pytest.approx(16 * row["sentences_per_s"])
        assert math.isfinite(row["final_loss"])
        assert row["peak_gpu_mb"] is None  # no GPU memory on the CPU, and no invented figure
    # the same architecture on both sides: encoder + pooler + classifier, the same parameter count
    assert len({row["parameters"] for row in tiny_report["engines"].values()}) == 1
    assert tiny_report["engines"]["hf eager"]["vs_hf_eager"] == 1.0
    assert tiny_report["peak_source"] == "measured bf16 matmul"  # a CPU is in no datasheet table
    assert tiny_report["shape"] == {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 256, "vocab": 1000,
                                    "batch_size": 2, "seq_length": 16}
    json.dumps(tiny_report)  # the --output / --json report as it is


def test_the_share_of_peak_is_the_steps_flops_over_time(tiny_report):
    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256)
    flops = training_flops_per_step(config, 2, 16)
    # 6 x matmul weights per token (+ attention), and the pooler and classifier once per sentence
    assert flops == 2 * 16 * flops_per_token(config, 16, True) + 2 * 6 * (64 * 64 + 64 * 5)
    assert tiny_report["flops_per_step"] == flops
    row = tiny_report["engines"]["minbert"]
    assert row["tflops"] == pytest.approx(flops / (row["step_ms"] / 1000) / 1e12)
    assert row["peak_share"] == pytest.approx(row["tflops"] / tiny_report["peak_tflops"])


def test_the_table_prints_every_engine(tiny_report, capsys):
    print_gpu_report(tiny_report)
    out = capsys.readouterr().out
    assert all(name in out for name in GPU_ENGINES) and "1.00x" in out and "measured bf16 matmul" in out


def test_peak_by_device_name():
    assert datasheet_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0  # SXM
    assert datasheet_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert datasheet_bf16_tflops("NVIDIA H200") == 989.0
    assert datasheet_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert datasheet_bf16_tflops("NVIDIA L40S") == 362.0 and datasheet_bf16_tflops("NVIDIA L4") == 121.0
    assert datasheet_bf16_tflops("Some Future GPU") is None


def test_a_failing_engine_is_a_row_and_the_others_go_on(monkeypatch):
    import minbert.bench as bench

    real = bench._build_engine

    def broken(engine, config, device):
        if engine == "hf sdpa":
            raise RuntimeError("out of memory")
        return real(engine, config, device)

    monkeypatch.setattr(bench, "_build_engine", broken)
    report = gpu_bench(**{**TINY, "steps": 1, "warmup_steps": 0})
    assert report["engines"]["hf sdpa"] == {"error": "RuntimeError: out of memory"}
    assert "sentences_per_s" in report["engines"]["minbert"]


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "--seq-length", "16"], "--seq-length: a GPU bench option, given without --gpu"),
    (["bench", "--gpu", "--device", "cpu", "--hidden", "66", "--heads", "4"], "--hidden 66 is not a multiple"),
    (["bench", "--gpu", "--device", "cpu", "--seq-length", "513"], "--seq-length 513: at most 512"),
    (["bench", "--gpu", "--job-steps", "3"], "--job-steps: not with --gpu"),
])
def test_bad_flags_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_gpu_without_a_gpu_is_one_line(capsys):
    assert main(["bench", "--gpu"]) == 2
    assert "no CUDA device is available here" in capsys.readouterr().err
