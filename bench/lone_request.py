"""Issue 46's lone request, the model call alone: one short sentence through a run's encoder and through `serve`'s
Service.run (tokenize, model, answer), timed in one script under each way of laying out or compiling the weights,
so that what the server's `model` stage could gain is measured before it is built into the server.

    .venv/bin/python bench/lone_request.py --run RUN [--variants ...] [--text "..."] [--repeat 300]

Variants (`--variants` picks, in order; each starts from the run's weights as `MultitaskBERT.load` reads them, in
fp32 even where `auto` would serve bf16, since the layouts compared are fp32 layouts and the encoder is called bare):
  row-major       nn.Linear's own (out, in) weights, eager: what serving did before issue 46
  column-major    MultitaskBERT.prepare_for_serving: every fp32 weight held transposed in memory (what `serve` does)
  mkl-packed      MKL's packed sgemm (torch.ops.mkl._mkl_linear), packed for this sentence's row count: ATen takes
                  the packed path only for that exact count and falls back to the row-major weight for any other,
                  so a server could not use it as it is
  onednn-packed   oneDNN's reordered weights (torch.ops.mkldnn._linear_pointwise), any row count
  inductor        torch.compile with frozen weights, one static shape (a new length recompiles: seconds)
  inductor-dynamic  torch.compile with frozen weights and dynamic shapes (one compile serves every length)
  int8            precision = "int8": dynamically quantized encoder weights (changes the outputs)
  onnx            the run's ONNX export (RUN/onnx) under ONNX Runtime: the other backend, for reference
Run it with nothing else on the machine, under `serve`'s OpenMP setting (GOMP_SPINCOUNT=10000, which this script
sets when OMP_WAIT_POLICY is not set). Medians in ms; `max diff` is the largest difference of the encoder's last
hidden states from the row-major variant's. Output: a markdown table on stdout.
"""

from __future__ import annotations

import os

if "OMP_WAIT_POLICY" not in os.environ:  # as `minbert serve` sets it, before torch loads
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from minbert.predictor import MultitaskBERT
from minbert.serving.app import TASK_PREFIX, Service

VARIANTS = ("row-major", "column-major", "mkl-packed", "onednn-packed", "inductor", "inductor-dynamic", "int8",
            "onnx")
DEFAULT_VARIANTS = ("row-major", "column-major", "mkl-packed", "onednn-packed", "onnx")
TEXT = "The movie was a delight from start to finish."


def median_ms(call: Callable[[], object], repeat: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def endpoint_of(service: Service) -> str:
    """A named endpoint of the run (sentiment first), else its first task's POST /predict/{task}."""
    for name in ("sentiment", "paraphrase", "similarity"):
        if name in service.tasks:
            return name
    return TASK_PREFIX + next(iter(service.kinds))


def pack_linears(model: torch.nn.Module, how: str, rows: int) -> None:
    """Every nn.Linear of `model` answered from packed weights: `how` = "mkl" (packed for `rows` rows) or
    "onednn". The module keeps its own weight (an MKL call for another row count falls back to it)."""
    for linear in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        weight, bias = linear.weight.detach().contiguous(), linear.bias
        if how == "mkl":
            packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, rows)

            def forward(x, packed=packed, weight=weight, bias=bias):
                return torch.ops.mkl._mkl_linear(x, packed, weight, bias, rows)
        else:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)

            def forward(x, packed=packed, bias=bias):
                return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        linear.forward = forward


def load_variant(run: Path, variant: str, rows: int) -> MultitaskBERT:
    if variant == "onnx":
        return MultitaskBERT.load(run, backend="onnx")
    model = MultitaskBERT.load(run, precision="int8" if variant == "int8" else "fp32")
    if variant in ("column-major", "int8"):
        model.prepare_for_serving()
    elif variant in ("mkl-packed", "onednn-packed"):
        model.model.requires_grad_(False)
        pack_linears(model.model, variant.split("-")[0], rows)
    elif variant.startswith("inductor"):
        model.model.requires_grad_(False)
        model.model.encoder = torch.compile(model.model.encoder, dynamic=variant == "inductor-dynamic",
                                            options={"freezing": True})
    return model


def measure(run: Path, variant: str, text: str, repeat: int, reference: torch.Tensor | None) -> dict:
    """{"variant", "encoder_ms" (None for onnx), "service_ms", "max_diff", "hidden" (the encoder's output)}."""
    probe = MultitaskBERT.load(run)
    service = Service(probe)
    endpoint = endpoint_of(service)
    task = endpoint.removeprefix(TASK_PREFIX) if endpoint.startswith(TASK_PREFIX) else service.tasks[endpoint]
    batch = probe.task_data(task, service.kinds[task].serve_examples([(text,)], probe.tokenizer)).collate([0])
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    del probe, service  # one copy of the weights in memory while timing
    model = load_variant(run, variant, ids.numel())
    service = Service(model)
    result = {"variant": variant, "tokens": ids.shape[1], "encoder_ms": None, "max_diff": None, "hidden": None}
    with torch.no_grad():
        first = time.perf_counter()
        service.run(endpoint, [(text,)])
        result["first_call_s"] = time.perf_counter() - first
        if variant != "onnx":
            encoder = model.model.encoder
            result["hidden"] = encoder(ids, mask).last_hidden_state.float()
            if reference is not None:
                result["max_diff"] = (result["hidden"] - reference).abs().max().item()
            result["encoder_ms"] = median_ms(lambda: encoder(ids, mask), repeat)
        result["service_ms"] = median_ms(lambda: service.run(endpoint, [(text,)]), repeat)
    return result


def table(results: list[dict], threads: int) -> str:
    lines = [f"One sentence ({results[0]['tokens']} tokens), {threads} threads, medians:", "",
             "| variant | encoder ms | Service.run ms | first call s | max diff |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        encoder = "-" if r["encoder_ms"] is None else f"{r['encoder_ms']:.2f}"
        diff = "-" if r["max_diff"] is None else f"{r['max_diff']:.1e}"
        lines.append(f"| {r['variant']} | {encoder} | {r['service_ms']:.2f} | {r['first_call_s']:.2f} | {diff} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="a finished run directory")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS))
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args(argv)
    results, reference = [], None
    for variant in args.variants:
        if variant == "onnx" and not (args.run / "onnx").is_dir():
            print(f"onnx: skipped ({args.run / 'onnx'} does not exist: minbert export RUN --format onnx)",
                  file=sys.stderr)
            continue
        with torch.no_grad():
            result = measure(args.run, variant, args.text, args.repeat, reference)
        if reference is None and variant == "row-major":
            reference = result["hidden"]
        results.append(result)
    print(table(results, torch.get_num_threads()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
