"""Run the `minbert` command on a malloc that gives memory back, with a bounded oneDNN kernel cache.

glibc's malloc raises its mmap threshold after large frees and then serves the training loop's activations,
whose shapes change with every bucketed batch, from a heap it rarely gives back: on the default job the resident
memory climbs from 1.2 to 3.2 GB within 400 steps. jemalloc holds the same loop at 1.7 GB at the same speed, but
only a system package brings it; mimalloc comes from PyPI (the `cmeel-mimalloc` wheel, a dependency of minbert on
Linux), so a fresh setup has it. An allocator has to be chosen before the process starts, so the command
re-executes itself once with the library preloaded (the way torch.backends.xeon.run_cpu does), before torch is
imported. Each allocator is one unit of `ALLOCATORS`; `MINBERT_ALLOCATOR` names one (`glibc`, or its older name
`system`, keeps glibc) or gives the path of another library (e.g. tcmalloc). Unset: the first unit installed, in
registry order.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

from minbert.errors import ConfigError
from minbert.options import Registry

VARIABLE = "MINBERT_ALLOCATOR"
DONE = "MINBERT_ALLOCATOR_PRELOADED"  # set in the re-executed process: never loop
ALIASES = {"system": "glibc"}  # the variable's word for glibc before allocators had names

ALLOCATORS = Registry("allocator")  # in order of preference: the first installed one is preloaded


class Allocator:
    """One malloc: the library to preload (None where it is not installed) and its call that hands freed memory
    back to the system now (None: it has none)."""

    preloaded = True  # False: the C library's own malloc, nothing to preload
    install_hint = ""

    def library(self) -> str | None:
        raise NotImplementedError

    def release(self) -> Callable[[], object] | None:
        return None


def wheel_library(distribution: str, stem: str) -> str | None:
    """The shared library `stem.so[.N...]` among an installed distribution's files (its RECORD), else None."""
    from importlib import metadata

    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return None
    pattern = re.compile(rf"{re.escape(stem)}\.so(\.\d+)*")
    for file in sorted((f for f in files if pattern.fullmatch(f.name)), key=lambda f: len(f.name)):
        path = Path(file.locate())
        if path.is_file():
            return str(path)
    return None


@ALLOCATORS.register("mimalloc")
class Mimalloc(Allocator):
    """Microsoft's mimalloc from the `cmeel-mimalloc` wheel (its files live under site-packages/cmeel.prefix/lib).
    It returns freed pages to the system by itself, `MIMALLOC_PURGE_DELAY` ms after they empty."""

    distribution = "cmeel-mimalloc"
    install_hint = "pip install cmeel-mimalloc (`make setup` does)"

    def library(self) -> str | None:
        return wheel_library(self.distribution, "libmimalloc")

    def release(self) -> Callable[[], object] | None:
        import ctypes

        try:  # the preloaded library's symbol, from the process's global namespace
            collect = ctypes.CDLL(None).mi_collect
        except AttributeError:
            return None
        return lambda: collect(True)  # force: purge every free page now, as malloc_trim(0) does


@ALLOCATORS.register("jemalloc")
class Jemalloc(Allocator):
    """jemalloc where the system has it (Debian: libjemalloc2)."""

    candidates = tuple(f"{lib}/libjemalloc.so.2" for lib in (
        "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"))
    install_hint = "a system package (Debian: apt install libjemalloc2)"

    def library(self) -> str | None:
        return next((c for c in self.candidates if Path(c).is_file()), None)


@ALLOCATORS.register("glibc")
class Glibc(Allocator):
    """The C library's malloc: the fallback, nothing to preload; `malloc_trim(0)` hands its free pages back."""

    preloaded = False

    def library(self) -> str | None:
        return None

    def release(self) -> Callable[[], object] | None:
        import ctypes

        try:
            trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            return None
        return lambda: trim(0)


def _note(line: str) -> None:
    print(f"minbert: note: {line}", file=sys.stderr)


def library_to_preload(env: Mapping[str, str], allocators: Registry = ALLOCATORS,
                       note: Callable[[str], None] = _note) -> str | None:
    """The allocator library to preload, or None to run as we are. A chosen allocator that is not installed is a
    ConfigError; with no choice and none installed, glibc, with one `note` line saying so."""
    if not sys.platform.startswith("linux") or env.get(DONE):
        return None
    chosen = env.get(VARIABLE, "").strip()
    chosen = ALIASES.get(chosen, chosen)
    if chosen in allocators:
        unit = allocators[chosen]()
        if not unit.preloaded:
            return None
        found = unit.library()
        if found is None:
            raise ConfigError(f"{VARIABLE}={chosen}: {chosen} is not installed here; {unit.install_hint}, or "
                              f"choose another: {', '.join(allocators)}")
    elif chosen:
        if not Path(chosen).is_file():
            raise ConfigError(f"{VARIABLE}={chosen}: neither an allocator ({', '.join(allocators)}) nor a library "
                              "file")
        found = chosen
    else:
        units = [allocators[name]() for name in allocators]
        found = next((library for unit in units if unit.preloaded and (library := unit.library())), None)
        if found is None:
            missing = "; ".join(f"{name}: {allocators[name].install_hint}" for name in allocators
                                if allocators[name].preloaded)
            note(f"running on glibc's malloc, which holds more memory ({missing}); {VARIABLE}=glibc "
                 "chooses it without this note")
            return None
    if found in env.get("LD_PRELOAD", "").split():
        return None
    return found


def preloaded_environment(env: Mapping[str, str], library: str) -> dict[str, str]:
    preload = " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))
    return {**env, "LD_PRELOAD": preload, DONE: library}


def reexec_with_fast_allocator() -> None:
    """Replace this process with itself under the allocator chosen (found, not yet loaded); otherwise return.
    Raises ConfigError for a chosen allocator that is not installed."""
    library = library_to_preload(os.environ)
    if library is None or "torch" in sys.modules:  # too late once torch has allocated
        return
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], preloaded_environment(os.environ, library))


ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
# oneDNN (torch's CPU bf16 matmuls) keeps the last 1,024 kernels it built, one per shape: under bucketed batches
# of ever-changing lengths that held 260 MiB of the default job's peak. 32 measured as fast (300 steps: 1,468 MiB,
# 115.7 examples/s, against 1,775 MiB and 112 examples/s at 1,024; 0 rebuilds every kernel: 99.8 examples/s).
ONEDNN_CACHE_CAPACITY = "32"


def limit_onednn_kernel_cache(env: MutableMapping[str, str]) -> None:
    """Set oneDNN's kernel cache to ONEDNN_CACHE_CAPACITY, unless the user set it (read when torch first uses
    oneDNN, so before that)."""
    env.setdefault(ONEDNN_CACHE, ONEDNN_CACHE_CAPACITY)


KNOWN = ("mimalloc", "jemalloc", "tcmalloc")  # malloc libraries recognised in a process's memory map


def active_allocator() -> str:
    """"mimalloc", "jemalloc", "tcmalloc" or "glibc": which malloc this process runs on (for a run's record)."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    for name in KNOWN:
        if f"lib{name}" in maps:
            return name
    return "glibc" if sys.platform.startswith("linux") else "system"


def release_freed_memory(allocator: str) -> Callable[[], object] | None:
    """The call with which `allocator` (a unit's name) hands its free pages back to the system now, else None."""
    unit = ALLOCATORS.get(allocator)
    return unit().release() if unit is not None else None
