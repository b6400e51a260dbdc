"""The `minbert` command's choice of malloc: mimalloc from its wheel, else jemalloc where the system has it, once,
never against the user, and one clear line when the choice cannot be had."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from minbert.allocator import (
    ALLOCATORS,
    DONE,
    VARIABLE,
    Allocator,
    Glibc,
    Mimalloc,
    active_allocator,
    library_to_preload,
    preloaded_environment,
)
from minbert.errors import ConfigError
from minbert.options import Registry

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")


def fake_allocators(found: dict[str, Path | None]) -> Registry:
    """A registry like ALLOCATORS whose libraries are `found` (None: not installed), then glibc."""
    registry = Registry("allocator")
    for name, path in found.items():
        registry[name] = type(name, (Allocator,), {"library": lambda self, p=path: p and str(p),
                                                    "install_hint": f"install {name}"})
    registry["glibc"] = Glibc
    return registry


@linux
def test_the_first_allocator_installed_is_preloaded_once(tmp_path):
    jemalloc = tmp_path / "libjemalloc.so.2"
    allocators = fake_allocators({"mimalloc": None, "jemalloc": jemalloc})
    assert library_to_preload({}, allocators) == str(jemalloc)  # mimalloc missing: the next one
    mimalloc = tmp_path / "libmimalloc.so"
    allocators = fake_allocators({"mimalloc": mimalloc, "jemalloc": jemalloc})
    assert library_to_preload({}, allocators) == str(mimalloc)  # registry order is preference
    env = preloaded_environment({"LD_PRELOAD": "/x/other.so", "PATH": "/bin"}, str(mimalloc))
    assert env["LD_PRELOAD"] == f"{mimalloc} /x/other.so" and env["PATH"] == "/bin" and env[DONE] == str(mimalloc)
    assert library_to_preload(env, allocators) is None  # the re-executed process does not loop
    assert library_to_preload({"LD_PRELOAD": str(mimalloc)}, allocators) is None  # already there


@linux
def test_the_user_chooses_by_name_keeps_glibc_or_names_a_library(tmp_path):
    mimalloc, jemalloc, tcmalloc = (tmp_path / f"lib{n}.so" for n in ("mimalloc", "jemalloc", "tcmalloc"))
    tcmalloc.write_bytes(b"")
    allocators = fake_allocators({"mimalloc": mimalloc, "jemalloc": jemalloc})
    assert library_to_preload({VARIABLE: "jemalloc"}, allocators) == str(jemalloc)
    assert library_to_preload({VARIABLE: "glibc"}, allocators) is None
    assert library_to_preload({VARIABLE: "system"}, allocators) is None  # the older name for glibc
    assert library_to_preload({VARIABLE: str(tcmalloc)}, allocators) == str(tcmalloc)
    with pytest.raises(ConfigError, match=f"{VARIABLE}=nope.so: neither an allocator"):
        library_to_preload({VARIABLE: "nope.so"}, allocators)


@linux
def test_a_chosen_allocator_not_installed_is_one_clear_error():
    allocators = fake_allocators({"mimalloc": None, "jemalloc": None})
    with pytest.raises(ConfigError, match=f"^{VARIABLE}=jemalloc: jemalloc is not installed here; install jemalloc"):
        library_to_preload({VARIABLE: "jemalloc"}, allocators)


@linux
def test_none_installed_runs_on_glibc_with_one_note():
    notes = []
    allocators = fake_allocators({"mimalloc": None, "jemalloc": None})
    assert library_to_preload({}, allocators, note=notes.append) is None
    assert len(notes) == 1 and "glibc" in notes[0] and "install mimalloc" in notes[0] and "\n" not in notes[0]
    assert library_to_preload({VARIABLE: "glibc"}, allocators, note=notes.append) is None
    assert len(notes) == 1  # glibc chosen: no note


def test_mimalloc_comes_from_its_wheel_a_dependency_of_minbert():
    """What `make setup` (pip install -e '.[dev]') installs: minbert requires cmeel-mimalloc on Linux, and the
    library the command preloads is that distribution's own file, found through its RECORD."""
    from packaging.requirements import Requirement

    requirements = [Requirement(r) for r in metadata.requires("minbert") or []]
    (requirement,) = [r for r in requirements if r.name == "cmeel-mimalloc"]
    if requirement.marker is not None and not requirement.marker.evaluate():
        pytest.skip("no cmeel-mimalloc wheel for this platform: the command keeps glibc (or jemalloc)")
    library = Mimalloc().library()
    assert library is not None and Path(library).name.startswith("libmimalloc.so")
    recorded = {Path(f.locate()).resolve() for f in metadata.distribution("cmeel-mimalloc").files}
    assert Path(library).resolve() in recorded
    assert Path(library).resolve().is_relative_to(Path(sys.prefix).resolve())  # this venv's, not the system's
    assert next(iter(ALLOCATORS)) == "mimalloc"  # preferred


def clean_environment() -> dict[str, str]:
    """This process's environment without any allocator choice or preload: a fresh shell's."""
    return {k: v for k, v in os.environ.items() if k not in (VARIABLE, DONE, "LD_PRELOAD")}


# The command's own entry point (the `minbert` script's `minbert.cli:entry`), with `main` reporting the malloc it
# runs on instead of parsing a command: no torch import, so a fraction of a second. The re-execution runs this same
# `-c` program again, under the preloaded library.
PROBE = """
from pathlib import Path
from minbert import cli
from minbert.allocator import active_allocator, release_freed_memory

def report():
    maps = Path("/proc/self/maps").read_text()
    mapped = sorted({line.split()[-1] for line in maps.splitlines() if "libmimalloc" in line})
    release = release_freed_memory(active_allocator())
    if release is not None:
        release()
    print(active_allocator(), *mapped, release is not None)
    return 0

cli.main = report
cli.entry()
"""


@linux
def test_the_command_runs_on_mimalloc_from_the_wheel():
    result = subprocess.run([sys.executable, "-c", PROBE], env=clean_environment(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    name, library, released = result.stdout.split()
    assert name == "mimalloc" and Path(library).resolve() == Path(Mimalloc().library()).resolve()
    assert released == "True"  # mi_collect found in the preloaded library, and it ran
    glibc = subprocess.run([sys.executable, "-c", PROBE], env={**clean_environment(), VARIABLE: "glibc"},
                           capture_output=True, text=True, timeout=120)
    assert glibc.stdout.split() == ["glibc", "True"], glibc.stderr  # malloc_trim


@linux
def test_the_command_refuses_an_allocator_it_cannot_find_in_one_line():
    env = {**clean_environment(), VARIABLE: "tcmalloc"}
    result = subprocess.run([sys.executable, "-m", "minbert", "--version"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"minbert: error: {VARIABLE}=tcmalloc: neither an allocator (mimalloc, "
                                          "jemalloc, glibc) nor a library file"]


@linux
def test_a_run_of_this_process_records_glibc():
    probe = "from minbert.allocator import active_allocator; print(active_allocator())"
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           env=clean_environment())
    assert plain.stdout.strip() == active_allocator() == "glibc"  # pytest's process: no re-execution


def test_the_onednn_kernel_cache_is_bounded_unless_the_user_chose(tmp_path):
    from minbert.allocator import ONEDNN_CACHE, ONEDNN_CACHE_CAPACITY, limit_onednn_kernel_cache

    env = {}
    limit_onednn_kernel_cache(env)
    assert env == {ONEDNN_CACHE: ONEDNN_CACHE_CAPACITY}
    env = {ONEDNN_CACHE: "1024"}
    limit_onednn_kernel_cache(env)
    assert env == {ONEDNN_CACHE: "1024"}


def test_the_command_bounds_it_before_anything_else(monkeypatch):
    from minbert import allocator, cli
    from minbert.allocator import ONEDNN_CACHE, ONEDNN_CACHE_CAPACITY

    seen = []
    monkeypatch.delenv(ONEDNN_CACHE, raising=False)
    monkeypatch.setattr(allocator, "reexec_with_fast_allocator", lambda: seen.append(os.environ.get(ONEDNN_CACHE)))
    monkeypatch.setattr(cli, "main", lambda: 0)
    with pytest.raises(SystemExit):
        cli.entry()
    assert seen == [ONEDNN_CACHE_CAPACITY]  # already set when the process re-executes under the allocator


def test_training_trims_glibcs_heap_every_n_steps_and_after_each_evaluation():
    from types import SimpleNamespace

    from minbert.training.hooks import ReturnFreedMemory

    assert active_allocator() == "glibc"  # this process: pytest, not re-executed
    hook = ReturnFreedMemory(3)
    assert hook.release is not None  # libc's malloc_trim
    calls = []
    hook.release = lambda: calls.append(1)
    for step in range(1, 10):
        hook.after_step(SimpleNamespace(step=step))
    assert len(calls) == 3  # steps 3, 6, 9
    hook.epoch_ended(SimpleNamespace(step=9), {})
    assert len(calls) == 4
    assert ReturnFreedMemory(0).release is None  # train.malloc_trim_every = 0: never


def test_under_mimalloc_the_hook_is_off_unless_asked_and_never_under_jemalloc(monkeypatch):
    from minbert import allocator
    from minbert.training.config import TrainConfig
    from minbert.training.hooks import ReturnFreedMemory
    from minbert.training.loop import default_hooks

    asked = []
    monkeypatch.setattr(allocator, "release_freed_memory", lambda name: asked.append(name) or (lambda: None))
    monkeypatch.setattr(allocator, "active_allocator", lambda: "mimalloc")
    assert ReturnFreedMemory(20).release is None  # the default: mimalloc purges by itself
    hook = ReturnFreedMemory(20, 5)  # train.mimalloc_collect_every = 5
    assert hook.every == 5 and hook.release is not None and asked == ["mimalloc"]
    (wired,) = [h for h in default_hooks(TrainConfig(mimalloc_collect_every=7), False)
                if isinstance(h, ReturnFreedMemory)]
    assert wired.every == 7
    monkeypatch.setattr(allocator, "active_allocator", lambda: "jemalloc")
    assert ReturnFreedMemory(20, 5).release is None
