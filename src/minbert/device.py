"""Device and precision choices: CUDA when present, bf16 autocast only where the hardware runs it fast, int8
weights for CPU inference."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator

import torch

from minbert.allocator import active_allocator
from minbert.errors import ConfigError

TRAINING_PRECISIONS = ("fp32", "bf16", "auto")
# int8 is inference only: dynamic quantization has no backward pass.
INFERENCE_PRECISIONS = (*TRAINING_PRECISIONS, "int8")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but no CUDA device is available")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: without them CPU bf16 matmuls are emulated and far slower than fp32."""
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                  "_is_amx_tile_supported"))


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else the platform's word for it)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_bf16_kind() -> str:
    """"amx", "avx512_bf16" or "none": which figures a CPU's numbers compare with."""
    if torch.cpu._is_amx_tile_supported():
        return "amx"
    return "avx512_bf16" if torch.cpu._is_avx512_bf16_supported() else "none"


def machine(device: torch.device | None = None, autocast_dtype: torch.dtype | None = None) -> dict:
    """Where a run ran, for its metrics and report: CPU, bf16 support, threads, GPU, torch, precision."""
    found = {"cpu": cpu_name(), "cpu_bf16": cpu_bf16_kind(), "threads": torch.get_num_threads(),
             "torch": torch.__version__, "python": platform.python_version(), "allocator": active_allocator()}
    if device is not None:
        found["device"] = str(device)
        if device.type == "cuda":
            found["gpu"] = torch.cuda.get_device_name(device)
    found["precision"] = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(autocast_dtype, "fp32")
    return found


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32 (and for int8, whose weights are quantized instead)."""
    if name in ("fp32", "int8"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    fast = cpu_has_fast_bf16()
    if name == "bf16":
        return torch.bfloat16  # honoured even where slow: the user asked for it
    return torch.bfloat16 if fast else None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def quantize_int8(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A copy of `module` whose Linear layers hold int8 weights and quantize activations on the fly (dynamic
    quantization): on CPUs without fast bf16 (AVX2 only) int8 matmuls are the one way past the fp32 roofline.
    Embeddings, LayerNorms and attention scores stay fp32."""
    if device.type != "cpu":
        raise ConfigError("precision = 'int8' runs on the CPU only; use bf16 or fp32 on a GPU")
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; the API still works
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
