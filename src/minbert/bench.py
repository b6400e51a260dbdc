"""`minbert bench`: minbert against HF transformers, same weights, same sentences, one process tree.

Each measurement runs in a fresh child process, so its peak memory (max RSS) is its own. Reported:
- matmul peaks (fp32, bf16) measured here, the roofline the achieved GFLOP/s are compared with;
- inference sentences/s on SST dev in file order (HF: file-order batches; minbert: SentenceEncoder, which sorts
  by length internally and returns file order);
- training sentences/s on SST train, batch 32, AdamW (HF: torch AdamW, file-order batches; minbert: our AdamW,
  length-bucketed batches);
- int8 inference (dynamic quantization) on CPUs;
- optionally, dev metrics of one trained run in fp32 and the other precisions that run fast here.
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

from minbert.data.files import read_examples
from minbert.data.spec import FORMATS, resolve_data_dir
from minbert.device import cpu_has_fast_bf16, cpu_name
from minbert.outputs import write_output_text
from minbert.terminal import console as make_console

PACKING_CAPACITY = 128  # tokens per packed row in the packed inference measurement


def matmul_peak(dtype: torch.dtype, size: int = 1024, seconds: float = 2.0) -> float:
    """GFLOP/s of a square matmul, the best of a few timed rounds."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_token(config, length: int, training: bool) -> float:
    """Matmul FLOPs of one token through the encoder: 2 x weights, plus attention's QK^T and AV at this length;
    training adds the backward pass (2x the forward)."""
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * (4 * h * h + 2 * h * i) + 2 * 2 * length * h
    return n * per_layer * (3 if training else 1)


def useful_flops(config, lengths: list[int]) -> float:
    """The FLOPs the sentences themselves need, each at its own length: padding excluded."""
    return float(sum(n * flops_per_token(config, n, False) for n in lengths))


def _sentences(data_dir: str | None, name: str, limit: int | None = None) -> list[str]:
    examples = read_examples(resolve_data_dir(data_dir) / name, FORMATS["sst"]).examples
    return [e.texts[0] for e in examples[:limit]]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- measurements, each run in its own child process ----------------------------------------------------------

def infer_minbert(data_dir: str | None, precision: str, packing: int = 0, backend: str = "torch") -> dict:
    """`packing` > 0: 64 sentences per call packed into rows of that many tokens, instead of sorted and padded.
    `backend = "onnx"`: the same encoder exported to ONNX (before timing) and run by ONNX Runtime, in the same
    pipeline (tokenizer, length-sorted batches of 64, mean pooling)."""
    from minbert.data.packing import pack
    from minbert.sentence_encoder import SentenceEncoder

    texts = _sentences(data_dir, "ids-sst-dev.csv")
    encoder = SentenceEncoder.from_pretrained()
    if backend == "onnx":
        import tempfile

        from minbert.export.onnx_export import export_encoder
        from minbert.export.onnx_runtime import OnnxEncoder

        with tempfile.TemporaryDirectory(prefix="minbert-bench-") as scratch:  # the session keeps the graph
            graph = Path(scratch) / "encoder.onnx"
            export_encoder(encoder.model, graph)
            encoder = SentenceEncoder(OnnxEncoder(graph, encoder.model.config), encoder.tokenizer, "cpu")
    encoder.encode(texts[:64], precision=precision, packing=packing)  # warm-up
    rows = encoder.tokenizer.encode_ids(texts)
    lengths = sorted(rows.lengths.tolist())
    if packing:  # (rows, width) of each call's packed batch, as encode() packs them
        shapes = [pack([rows[i] for i in range(s, min(s + 64, len(rows)))], packing, 0).inputs["input_ids"].shape
                  for s in range(0, len(rows), 64)]
    else:  # as encode() batches them: sorted, 64 at a time
        shapes = [(len(lengths[i:i + 64]), lengths[i:i + 64][-1]) for i in range(0, len(lengths), 64)]
    tokens = sum(n * width for n, width in shapes)  # computed, padding included
    start = time.perf_counter()
    encoder.encode(texts, batch_size=64, precision=precision, packing=packing)
    seconds = time.perf_counter() - start
    flops = sum(n * width * flops_per_token(encoder.model.config, width, False) for n, width in shapes)
    return {"sentences_per_s": len(texts) / seconds, "gflops": flops / seconds / 1e9, "tokens": tokens,
            "useful_gflops": useful_flops(encoder.model.config, lengths) / seconds / 1e9,
            "peak_rss_mb": _peak_rss_mb()}


def infer_hf(data_dir: str | None, precision: str) -> dict:
    import transformers

    from minbert.model_dir import embedded_model_path

    texts = _sentences(data_dir, "ids-sst-dev.csv")
    path = str(embedded_model_path())
    tokenizer = transformers.BertTokenizerFast.from_pretrained(path)
    model = transformers.BertModel.from_pretrained(path).eval()
    computed = 0
    flops = 0.0

    def run(batch_texts: list[str]) -> None:
        nonlocal computed, flops
        inputs = tokenizer(batch_texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
        length = inputs["input_ids"].shape[1]
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            model(**inputs)
        computed += inputs["input_ids"].numel()
        flops += inputs["input_ids"].numel() * flops_per_token(model.config, length, False)

    run(texts[:64])
    computed, flops = 0, 0.0
    start = time.perf_counter()
    for i in range(0, len(texts), 64):  # file order, as a plain user would
        run(texts[i:i + 64])
    seconds = time.perf_counter() - start
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]]
    return {"sentences_per_s": len(texts) / seconds, "gflops": flops / seconds / 1e9, "tokens": computed,
            "useful_gflops": useful_flops(model.config, lengths) / seconds / 1e9, "peak_rss_mb": _peak_rss_mb()}


def train_minbert(data_dir: str | None, precision: str, steps: int) -> dict:
    from minbert.training.config import load_config
    from minbert.training.experiment import build_experiment
    from minbert.training.loop import Trainer

    config = load_config(None, ["tasks.sst.data=sst", "tasks.sst.pooling=mean", "train.batch_size=32",
                                "train.lr=2e-5", f"train.precision={precision}", "train.max_eval_examples=10"])
    exp = build_experiment(config, data_dir, splits=("train", "dev"))
    trainer = Trainer(exp)
    plan = trainer.epoch_plan(0)
    trainer.total_steps = len(plan)
    exp.model.train()
    trainer.train_step(plan[0])  # warm-up
    data = exp.data["sst"]["train"]
    seen, flops, start = 0, 0.0, time.perf_counter()
    for step in plan[1:steps + 1]:
        (_, positions), = step
        length = int(data.lengths[positions].max())
        flops += len(positions) * length * flops_per_token(exp.model.encoder.config, length, True)
        seen += trainer.train_step(step)
    seconds = time.perf_counter() - start
    return {"sentences_per_s": seen / seconds, "gflops": flops / seconds / 1e9, "peak_rss_mb": _peak_rss_mb()}


def train_default_job(data_dir: str | None, steps: int, compiled: bool) -> dict:
    """The default job's (configs/multitask.toml) first training steps as the run would take them: examples/s,
    the padding its bucketed batches carry, peak memory; compiled, the first step's compile time apart."""
    from minbert.training.config import default_config_path, load_config
    from minbert.training.experiment import build_experiment
    from minbert.training.loop import Trainer

    config = load_config(default_config_path(), [f"train.compile={str(compiled).lower()}",
                                                  "train.max_eval_examples=10"])
    exp = build_experiment(config, data_dir, splits=("train", "dev"))
    trainer = Trainer(exp)
    plan = trainer.epoch_plan(0)
    trainer.total_steps = len(plan)
    useful = computed = 0
    for step in plan:  # the whole epoch's padding, as collate() will pad it
        for task, positions in step:
            lengths = exp.data[task]["train"].batch_row_lengths(positions)  # the rows collate() pads together
            useful += int(lengths.sum())
            computed += int(len(lengths) * lengths.max())
    exp.model.train()
    start = time.perf_counter()
    for step in plan[:3]:  # warm-up (and compilation: shapes vary, so a few steps)
        trainer.train_step(step)
    warm_up = time.perf_counter() - start
    seen, start = 0, time.perf_counter()
    for step in plan[3:steps + 3]:
        seen += trainer.train_step(step)
    seconds = time.perf_counter() - start
    graphs = 0
    if compiled:
        from torch._dynamo.utils import counters

        graphs = int(counters["stats"]["unique_graphs"])
    return {"examples_per_s": seen / seconds, "warm_up_s": warm_up, "graphs": graphs,
            "padding_share": 1 - useful / computed, "peak_rss_mb": _peak_rss_mb()}


def train_hf(data_dir: str | None, precision: str, steps: int) -> dict:
    import transformers

    from minbert.model_dir import embedded_model_path

    texts = _sentences(data_dir, "ids-sst-train.csv", limit=32 * (steps + 1))
    examples = read_examples(resolve_data_dir(data_dir) / "ids-sst-train.csv", FORMATS["sst"]).examples
    labels = torch.tensor([e.label for e in examples[: len(texts)]])
    path = str(embedded_model_path())
    tokenizer = transformers.BertTokenizerFast.from_pretrained(path)
    model = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=5).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    seen, flops = 0, 0.0

    def step(i: int) -> None:
        nonlocal seen, flops
        inputs = tokenizer(texts[i:i + 32], padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**inputs, labels=labels[i:i + 32]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        length = inputs["input_ids"].shape[1]
        seen += inputs["input_ids"].shape[0]
        flops += inputs["input_ids"].numel() * flops_per_token(model.config, length, True)

    step(0)
    seen, flops = 0, 0.0
    start = time.perf_counter()
    for i in range(32, 32 * (steps + 1), 32):  # file order
        step(i)
    seconds = time.perf_counter() - start
    return {"sentences_per_s": seen / seconds, "gflops": flops / seconds / 1e9, "peak_rss_mb": _peak_rss_mb()}


# --- the GPU bench (`minbert bench --gpu`): bert-base's shape, random weights, synthetic batches --------------

GPU_ENGINES = ("minbert", "hf eager", "hf sdpa")
# Dense bf16 tensor-core peaks (no sparsity) in TFLOP/s, from the vendors' datasheets. The first fragment found in
# torch.cuda.get_device_name() wins, so a more specific name comes before one it contains (L40S, L40, L4).
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0))
NUM_LABELS = 5  # an SST-5-like head: what the bench trains is the encoder, the head only gives it a loss


def datasheet_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named `device_name`, or None for one the table does not know."""
    for fragment, tflops in BF16_PEAK_TFLOPS:
        if fragment.lower() in device_name.lower():
            return tflops
    return None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, size: int, rounds: int = 10) -> float:
    """bf16 TFLOP/s of a square matmul on `device`: what this card reaches, beside its datasheet's figure."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    a @ b
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(rounds):
        a @ b
    _synchronize(device)
    return rounds * 2 * size**3 / (time.perf_counter() - start) / 1e12


def training_flops_per_step(config, batch_size: int, seq_length: int) -> float:
    """One training step's matmul FLOPs: 6 x the encoder's matmul weights per token plus attention's QK^T and AV
    (flops_per_token), and the pooler and classifier once per sentence. Embedding lookups are not matmuls."""
    head = 3 * 2 * (config.hidden_size**2 + config.hidden_size * NUM_LABELS)
    return batch_size * (seq_length * flops_per_token(config, seq_length, True) + head)


def synthetic_batches(config, count: int, batch_size: int, seq_length: int,
                      device: torch.device) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """`count` batches of random token ids, every row `seq_length` tokens (an attention mask of ones, which
    minbert's engine leaves out as its training loop does, HF's is handed) with a random label, on the device
    before timing starts."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        ids = torch.randint(1, config.vocab_size, (batch_size, seq_length), generator=generator)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        labels = torch.randint(0, NUM_LABELS, (batch_size,), generator=generator)
        batches.append(({k: v.to(device) for k, v in inputs.items()}, labels.to(device)))
    return batches


def _build_engine(engine: str, config, device: torch.device) -> tuple[Callable, torch.optim.Optimizer, list]:
    """(loss of (inputs, labels), optimizer, modules) for one engine, freshly initialised on `device`. Both sides
    are BERT + pooler + dropout + a linear classifier, AdamW at lr 2e-5 and weight decay 0.01 on every parameter."""
    if engine == "minbert":
        from minbert.model import BertModel
        from minbert.optim import AdamW

        encoder = BertModel(config).to(device)
        head = torch.nn.Sequential(torch.nn.Dropout(config.hidden_dropout_prob),
                                   torch.nn.Linear(config.hidden_size, NUM_LABELS)).to(device)
        optimizer = AdamW([*encoder.parameters(), *head.parameters()], lr=2e-5, weight_decay=0.01)

        def loss_of(inputs: dict, labels: torch.Tensor) -> torch.Tensor:
            # no row is padded, which Batch.to finds on the host: the encoder gets no mask (Batch.encoder_mask)
            hidden = encoder(inputs["input_ids"], None, inputs["token_type_ids"])
            return torch.nn.functional.cross_entropy(head(hidden.pooler_output), labels)

        return loss_of, optimizer, [encoder, head]
    try:
        import transformers
    except ImportError:
        raise RuntimeError("transformers is not installed (pip install transformers)") from None
    hf_config = transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob, num_labels=NUM_LABELS,
        attn_implementation=engine.removeprefix("hf "))
    model = transformers.BertForSequenceClassification(hf_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)

    def hf_loss_of(inputs: dict, labels: torch.Tensor) -> torch.Tensor:
        return model(**inputs, labels=labels).loss

    return hf_loss_of, optimizer, [model]


def time_engine(engine: str, config, batches: list, steps: int, warmup_steps: int, device: torch.device) -> dict:
    """Seconds for `steps` training steps after `warmup_steps` untimed ones, bf16 autocast, no host read of a device
    tensor inside the timed loop; the last loss (read after the clock stops) and the peak GPU memory (weights,
    AdamW's moments and the activations: the peak counter starts before the model is built)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    loss_of, optimizer, modules = _build_engine(engine, config, device)
    for module in modules:
        module.train()

    def step(index: int) -> torch.Tensor:
        inputs, labels = batches[index % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_of(inputs, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for index in range(warmup_steps):
        step(index)
    _synchronize(device)
    start = time.perf_counter()
    for index in range(warmup_steps, warmup_steps + steps):
        loss = step(index)
    _synchronize(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "final_loss": float(loss),
            "parameters": sum(p.numel() for m in modules for p in m.parameters()),
            "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


def gpu_bench(device: str = "cuda", batch_size: int = 32, seq_length: int = 128, steps: int = 50,
              warmup_steps: int = 5, layers: int = 12, hidden: int = 768, heads: int = 12,
              peak_tflops: float | None = None, engines: tuple[str, ...] = GPU_ENGINES,
              vocab_size: int = 30522) -> dict:
    """Training speed at one shape (default bert-base's: 12 layers, hidden 768, 12 heads, intermediate 4 x hidden;
    random weights, nothing downloaded), batch x seq_length tokens a step, bf16 autocast: minbert's encoder + a
    classification head with minbert's AdamW, HF transformers' BertForSequenceClassification (eager, sdpa) with
    torch's AdamW. Per engine: sentences/s, tokens/s, TFLOP/s and its share of the bf16 peak (--peak-tflops, else
    the datasheet table by device name, else the matmul measured here), peak GPU memory; all in one process."""
    from minbert.errors import ConfigError
    from minbert.model import BertConfig

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--gpu: no CUDA device is available here (--device cpu runs the same bench on the CPU)")
    if hidden % heads:
        raise ConfigError(f"--hidden {hidden} is not a multiple of --heads {heads}")
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden)
    if seq_length > config.max_position_embeddings:
        raise ConfigError(f"--seq-length {seq_length}: at most {config.max_position_embeddings} (BERT's positions)")
    for flag, value in (("--batch-size", batch_size), ("--seq-length", seq_length), ("--steps", steps),
                        ("--layers", layers), ("--hidden", hidden), ("--heads", heads)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be >= 1")
    if warmup_steps < 0:
        raise ConfigError(f"--warmup-steps {warmup_steps}: must be >= 0")
    where = torch.device(device)
    name = torch.cuda.get_device_name(where) if where.type == "cuda" else f"CPU ({cpu_name()})"
    measured = matmul_tflops(where, 8192 if where.type == "cuda" else 256)
    if peak_tflops is not None:
        peak, source = peak_tflops, "--peak-tflops"
    elif (known := datasheet_bf16_tflops(name) if where.type == "cuda" else None) is not None:
        peak, source = known, "datasheet (dense bf16)"
    else:
        peak, source = measured, "measured bf16 matmul"
    flops = training_flops_per_step(config, batch_size, seq_length)
    batches = synthetic_batches(config, min(warmup_steps + steps, 8), batch_size, seq_length, where)
    report: dict = {"device": name, "torch": torch.__version__, "transformers": _version_of("transformers"),
                    "shape": {"layers": layers, "hidden": hidden, "heads": heads, "intermediate": 4 * hidden,
                              "vocab": vocab_size, "batch_size": batch_size, "seq_length": seq_length},
                    "precision": "bf16 autocast", "steps": steps, "warmup_steps": warmup_steps,
                    "flops_per_step": flops, "peak_tflops": peak, "peak_source": source,
                    "matmul_tflops": measured, "engines": {}}
    for engine in engines:
        try:
            timed = time_engine(engine, config, batches, steps, warmup_steps, where)
        except Exception as exc:  # reported in its row (an OOM, transformers missing); the other engines go on
            report["engines"][engine] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        seconds = timed.pop("seconds")
        tflops = steps * flops / seconds / 1e12
        report["engines"][engine] = {"sentences_per_s": steps * batch_size / seconds,
                                     "tokens_per_s": steps * batch_size * seq_length / seconds,
                                     "tflops": tflops, "peak_share": tflops / peak, "step_ms": 1000 * seconds / steps,
                                     **timed}
    base = report["engines"].get("hf eager", {}).get("sentences_per_s")
    for row in report["engines"].values():
        if "error" not in row:
            row["vs_hf_eager"] = row["sentences_per_s"] / base if base else None
    return report


def _version_of(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def dev_metrics(run_dir: str, data_dir: str | None, precision: str) -> dict:
    from minbert.runs.run import evaluate_run

    return evaluate_run(run_dir, data_dir, precision=precision, quiet=True)


def _child(queue: mp.Queue, fn: Callable, args: tuple) -> None:
    torch.manual_seed(0)
    try:
        queue.put({"ok": fn(*args)})
    except Exception as exc:  # reported in the table, the other measurements go on
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def in_child(fn: Callable, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, fn, args))
    process.start()
    result = queue.get()
    process.join()
    return result.get("ok") or {"error": result["error"]}


def run_bench(data_dir: str | None = None, steps: int = 20, run_dir: str | None = None,
              job_steps: int = 0) -> dict:
    from minbert.allocator import active_allocator

    have_hf = _importable("transformers")
    fast_bf16 = cpu_has_fast_bf16() or torch.cuda.is_available()
    # every figure's child process inherits this malloc (LD_PRELOAD); its peak RSS depends on it
    report: dict = {"threads": torch.get_num_threads(), "fast_bf16": fast_bf16, "allocator": active_allocator(),
                    "peak_gflops": {"fp32": matmul_peak(torch.float32)}}
    report["peak_gflops"]["bf16"] = matmul_peak(torch.bfloat16, size=1024 if fast_bf16 else 256, seconds=1.0)
    precisions = ["fp32", "bf16"] if fast_bf16 else ["fp32"]
    # int8 (dynamic quantization) is a CPU inference option; on a GPU bf16 is the fast path.
    inference_precisions = precisions + ([] if torch.cuda.is_available() else ["int8"])
    report["inference"] = {f"minbert {p}": in_child(infer_minbert, data_dir, p) for p in inference_precisions}
    if not torch.cuda.is_available():  # ONNX Runtime's CPU provider, fp32: the CPU serving backend's candidate
        report["inference"]["onnx runtime fp32"] = in_child(infer_minbert, data_dir, "fp32", 0, "onnx")
    packed = precisions[-1]  # the fastest precision here, with several sentences packed into each row
    report["inference"][f"minbert {packed} packed"] = in_child(infer_minbert, data_dir, packed, PACKING_CAPACITY)
    report["training"] = {f"minbert {p}": in_child(train_minbert, data_dir, p, steps) for p in precisions}
    if have_hf:
        report["inference"].update({f"hf {p}": in_child(infer_hf, data_dir, p) for p in precisions})
        report["training"].update({f"hf {p}": in_child(train_hf, data_dir, p, steps) for p in precisions})
    if torch.cuda.is_available():  # the GPU bench's defaults: bert-base's shape, batch 32, 128 tokens
        report["gpu"] = gpu_bench()
    if job_steps:
        report["default job"] = {name: in_child(train_default_job, data_dir, job_steps, compiled)
                                 for name, compiled in (("eager", False), ("compiled", True))}
    if run_dir:
        # emulated bf16 would take hours here, so only precisions that run fast on this machine are compared
        report["dev"] = {p: in_child(dev_metrics, run_dir, data_dir, p) for p in inference_precisions}
    return report


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def useful_share(result: dict, peak: float, name: str) -> str:
    """The share of the matmul peak spent on the sentences' own tokens (inference; padding excluded)."""
    if "useful_gflops" not in result:
        return "-"
    share = f"{100 * result['useful_gflops'] / peak:.0f}%"
    return f"({share})" if name.endswith("int8") else share


def print_report(report: dict) -> None:
    from rich.table import Table

    console = make_console()
    peaks = report["peak_gflops"]
    console.print(f"matmul peak here: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
                  f"({'native' if report['fast_bf16'] else 'emulated: no AVX-512 BF16/AMX, bf16 not used'}); "
                  f"{report['threads']} threads, malloc: {report.get('allocator', 'not recorded')}")
    for section, unit in (("inference", "SST dev, file order"), ("training", "SST train, batch 32, AdamW")):
        rows = report[section]
        table = Table(title=f"{section}: {unit}")
        for column in ("engine", "sentences/s", "vs hf fp32", "GFLOP/s", "% of peak", "useful % of peak",
                       "peak RSS MB"):
            table.add_column(column, justify="left" if column == "engine" else "right")
        base = rows.get("hf fp32", {}).get("sentences_per_s")
        for name, result in rows.items():
            if "error" in result:
                table.add_row(name, result["error"], "", "", "", "", "")
                continue
            # int8 matmuls have no measured peak here: their share is shown against the fp32 peak, in brackets
            peak = peaks["bf16" if "bf16" in name else "fp32"]
            share = f"{100 * result['gflops'] / peak:.0f}%"
            table.add_row(name, f"{result['sentences_per_s']:.1f}",
                          f"{result['sentences_per_s'] / base:.2f}x" if base else "-",
                          f"{result['gflops']:.0f}", f"({share})" if name.endswith("int8") else share,
                          useful_share(result, peak, name), f"{result['peak_rss_mb']:.0f}")
        console.print(table)
    if "gpu" in report:
        print_gpu_report(report["gpu"])
    if "default job" in report:
        table = Table(title="the default job (configs/multitask.toml): its first training steps")
        for column in ("step", "examples/s", "warm-up s", "graphs", "padding", "peak RSS MB"):
            table.add_column(column, justify="left" if column == "step" else "right")
        for name, result in report["default job"].items():
            if "error" in result:
                table.add_row(name, result["error"], "", "", "", "")
                continue
            table.add_row(name, f"{result['examples_per_s']:.1f}", f"{result['warm_up_s']:.1f}",
                          str(result["graphs"]), f"{100 * result['padding_share']:.1f}%",
                          f"{result['peak_rss_mb']:.0f}")
        console.print(table)
    if "dev" in report:
        others = [p for p in report["dev"] if p != "fp32"]
        table = Table(title=f"dev metrics of one checkpoint: fp32 vs {', '.join(others)}")
        for column in ("task", "fp32", *(f"{p} (difference)" for p in others)):
            table.add_column(column, justify="left" if column == "task" else "right")
        fp32 = report["dev"]["fp32"]
        for task in fp32:
            if task == "error":
                continue
            a = fp32[task]["score"]
            cells = []
            for p in others:
                b = report["dev"][p].get(task, {}).get("score", float("nan"))
                cells.append(f"{b:.4f} ({b - a:+.4f})")
            table.add_row(task, f"{a:.4f}", *cells)
        console.print(table)


def _figure(value: float) -> str:
    """Whole numbers with thousands separators from 100 up; three significant digits below (a tiny CPU check's
    figures would otherwise print as 0)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def print_gpu_report(report: dict) -> None:
    """The GPU bench's table: one row per engine, its ratio to HF eager, the peak its share is taken of."""
    from rich.table import Table

    console = make_console()
    shape = report["shape"]
    console.print(f"{report['device']}: torch {report['torch']}, transformers {report['transformers'] or '-'}; "
                  f"bf16 peak {_figure(report['peak_tflops'])} TFLOP/s ({report['peak_source']}), measured bf16 "
                  f"matmul {_figure(report['matmul_tflops'])} TFLOP/s")
    table = Table(title=f"training, random weights: {shape['layers']} layers, hidden {shape['hidden']}, "
                        f"{shape['heads']} heads; batch {shape['batch_size']} x {shape['seq_length']} tokens, "
                        f"{report['precision']}, {report['steps']} timed steps after {report['warmup_steps']}")
    columns = ("engine", "sentences/s", "tokens/s", "vs hf eager", "ms/step", "TFLOP/s", "% of bf16 peak",
               "peak GPU MB")
    for column in columns:
        table.add_column(column, justify="left" if column == "engine" else "right")
    for name, row in report["engines"].items():
        if "error" in row:
            table.add_row(name, row["error"], *[""] * (len(columns) - 2))
            continue
        table.add_row(name, _figure(row["sentences_per_s"]), _figure(row["tokens_per_s"]),
                      f"{row['vs_hf_eager']:.2f}x" if row["vs_hf_eager"] else "-", _figure(row["step_ms"]),
                      _figure(row["tflops"]), f"{100 * row['peak_share']:.1f}%",
                      "-" if row["peak_gpu_mb"] is None else f"{row['peak_gpu_mb']:,.0f}")
    console.print(table)


def write_report(report: dict, path: str | Path) -> None:
    """`--output`: a regular file written whole (a FIFO or a device is never replaced), or `-` for standard
    output."""
    write_output_text(path, json.dumps(report, indent=2) + "\n")
