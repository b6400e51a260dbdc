"""Device and precision choices: CUDA when present, bf16 autocast only where the hardware runs it fast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from minbert.errors import ConfigError


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


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if name == "fp32":
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
