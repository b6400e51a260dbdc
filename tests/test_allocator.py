"""The `minbert` command's choice of malloc: jemalloc when the system has it, once, and never against the user."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minbert.allocator import DONE, VARIABLE, active_allocator, library_to_preload, preloaded_environment

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")


@linux
def test_the_first_library_found_is_preloaded_once(tmp_path):
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    candidates = [str(tmp_path / "missing.so"), str(library)]
    assert library_to_preload({}, candidates) == str(library)
    env = preloaded_environment({"LD_PRELOAD": "/x/other.so", "PATH": "/bin"}, str(library))
    assert env["LD_PRELOAD"] == f"{library} /x/other.so" and env["PATH"] == "/bin" and env[DONE] == str(library)
    assert library_to_preload(env, candidates) is None  # the re-executed process does not loop
    assert library_to_preload({"LD_PRELOAD": str(library)}, candidates) is None  # already there


@linux
def test_the_user_can_keep_glibc_or_name_another_library(tmp_path):
    library = tmp_path / "libtcmalloc.so"
    library.write_bytes(b"")
    assert library_to_preload({VARIABLE: "system"}, [str(library)]) is None
    assert library_to_preload({VARIABLE: str(library)}, []) == str(library)
    with pytest.raises(SystemExit, match="no such library"):
        library_to_preload({VARIABLE: str(tmp_path / "nope.so")}, [])
    assert library_to_preload({}, [str(tmp_path / "nope.so")]) is None  # none installed: run as we are


@linux
def test_the_command_runs_on_the_library_it_preloads():
    probe = "from minbert.allocator import active_allocator; print(active_allocator())"
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == active_allocator() == "glibc"
    library = library_to_preload({})
    if library is None:
        pytest.skip("no jemalloc on this machine (Debian: libjemalloc2)")
    env = preloaded_environment({"PATH": "/usr/bin:/bin"}, library)
    preloaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert preloaded.stdout.strip() == "jemalloc"


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
    assert seen == [ONEDNN_CACHE_CAPACITY]  # already set when the process re-executes under jemalloc


def test_training_trims_glibcs_heap_every_n_steps_and_after_each_evaluation():
    from types import SimpleNamespace

    from minbert.training.hooks import ReturnFreedMemory, glibc_malloc_trim

    if active_allocator() == "glibc":  # this process: pytest, not re-executed
        assert glibc_malloc_trim() is not None
    hook, calls = ReturnFreedMemory(3), []
    hook.trim = calls.append
    for step in range(1, 10):
        hook.after_step(SimpleNamespace(step=step))
    assert len(calls) == 3  # steps 3, 6, 9
    hook.epoch_ended(SimpleNamespace(step=9), {})
    assert len(calls) == 4
    assert ReturnFreedMemory(0).trim is None  # train.malloc_trim_every = 0: never


def test_no_trim_under_another_allocator(monkeypatch):
    from minbert import allocator
    from minbert.training.hooks import glibc_malloc_trim

    monkeypatch.setattr(allocator, "active_allocator", lambda: "jemalloc")
    assert glibc_malloc_trim() is None
