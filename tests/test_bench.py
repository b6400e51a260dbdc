"""The benchmark's arithmetic and report (the timed runs themselves are a command, not a test)."""

from __future__ import annotations

from minbert.bench import flops_per_token, print_report, useful_flops
from minbert.model.config import BertConfig


def test_flops_per_token_matches_the_minilm_figure():
    config = BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536, num_attention_heads=12)
    # 2 x 6 x (4 H^2 + 2 H I) = 21.2 MFLOP per token before attention (the brief's 21.2 MFLOP)
    assert flops_per_token(config, 0, training=False) == 2 * 6 * (4 * 384**2 + 2 * 384 * 1536)
    assert abs(flops_per_token(config, 0, False) / 1e6 - 21.2) < 0.1
    assert flops_per_token(config, 32, True) == 3 * flops_per_token(config, 32, False)


def test_useful_flops_count_each_sentence_at_its_own_length():
    config = BertConfig(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4)
    assert useful_flops(config, [3, 5]) == 3 * flops_per_token(config, 3, False) + 5 * flops_per_token(config, 5, False)
    assert useful_flops(config, [5, 5]) == 2 * 5 * flops_per_token(config, 5, False)  # no padding: equal to computed


def test_report_prints_ratios_against_hf(capsys):
    row = {"sentences_per_s": 300.0, "gflops": 120.0, "peak_rss_mb": 500.0, "useful_gflops": 90.0}
    report = {"threads": 2, "fast_bf16": False, "peak_gflops": {"fp32": 150.0, "bf16": 1.0},
              "inference": {"minbert fp32": row, "hf fp32": {**row, "sentences_per_s": 100.0}},
              "training": {"minbert fp32": row, "hf fp32": {"error": "ImportError: no transformers"}}}
    print_report(report)
    out = capsys.readouterr().out
    assert "3.00x" in out and "80%" in out and "60%" in out and "ImportError: no transformers" in out


def test_report_prints_the_default_jobs_steps(capsys):
    row = {"sentences_per_s": 300.0, "gflops": 120.0, "peak_rss_mb": 500.0}
    job = {"examples_per_s": 123.4, "warm_up_s": 2.5, "graphs": 0, "padding_share": 0.071, "peak_rss_mb": 1900.0}
    report = {"threads": 2, "fast_bf16": False, "peak_gflops": {"fp32": 150.0, "bf16": 1.0},
              "inference": {"minbert fp32": row}, "training": {"minbert fp32": row},
              "default job": {"eager": job, "compiled": {"error": "RuntimeError: no compiler"}}}
    print_report(report)
    out = capsys.readouterr().out
    assert "123.4" in out and "7.1%" in out and "1900" in out and "RuntimeError: no compiler" in out
