"""Issue 46's allocator comparison, one command: the default job (`minbert train --config configs/multitask.toml`,
every stage) once under each malloc, one run after another, then one table of each run's peak resident memory and
training examples/s (from its metrics.json), the rate against glibc's.

    .venv/bin/python bench/allocators.py [--variants glibc mimalloc jemalloc] [--out /tmp/allocator-runs]
        [--config configs/multitask.toml] [--data-dir DIR] [--table-only] [-- key=value ...]

Variants (`MINBERT_ALLOCATOR` and the keys each sets; `--variants` picks, in order):
  glibc             glibc's malloc with the malloc_trim hook (train.malloc_trim_every = 20): a fresh setup before
                    issue 46
  glibc-no-trim     glibc, no trim (train.malloc_trim_every = 0)
  mimalloc          mimalloc from the cmeel-mimalloc wheel, what the command now prefers (no collect hook)
  mimalloc-collect  mimalloc with mi_collect every 20 steps and after each evaluation (train.mimalloc_collect_every)
  mimalloc-purge-0  mimalloc returning emptied pages at once (MIMALLOC_PURGE_DELAY=0)
  mimalloc-lazy-commit  mimalloc committing its arenas as they fill (MIMALLOC_ARENA_EAGER_COMMIT=0; about 27 MiB
                    less after `import torch` here)
  jemalloc          Debian's libjemalloc2 where the system has it
Run it with nothing else on the machine: the default job takes about 25 minutes a run on the 2-core EPYC. A run
whose metrics.json exists is not run again (delete OUT/NAME to redo it); a variant whose allocator this machine lacks
is skipped with the command's own one line. The table (markdown) goes to stdout and OUT/allocators.md. Extra
`key=value` overrides after `--` go to every run (e.g. `-- train.stage_epoch_limit=1`, as issue 24's table ran).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name: (MINBERT_ALLOCATOR, overrides, extra environment)
    "glibc": ("glibc", [], {}),
    "glibc-no-trim": ("glibc", ["train.malloc_trim_every=0"], {}),
    "mimalloc": ("mimalloc", [], {}),
    "mimalloc-collect": ("mimalloc", ["train.mimalloc_collect_every=20"], {}),
    "mimalloc-purge-0": ("mimalloc", [], {"MIMALLOC_PURGE_DELAY": "0"}),
    "mimalloc-lazy-commit": ("mimalloc", [], {"MIMALLOC_ARENA_EAGER_COMMIT": "0"}),
    "jemalloc": ("jemalloc", [], {}),
}
DEFAULT = ["glibc", "mimalloc", "jemalloc"]


def run_variant(name: str, out: Path, config: Path, data_dir: str | None, overrides: list[str]) -> str | None:
    """Train the job under one variant (unless its run finished already); None, or the line why it did not run."""
    if (out / name / "metrics.json").is_file():
        return None
    allocator, keys, extra = VARIANTS[name]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MINBERT_ALLOCATOR_PRELOADED")}
    env.update({"MINBERT_ALLOCATOR": allocator, **extra})
    command = [sys.executable, "-m", "minbert", "train", "--config", str(config), f"name={name}",
               f"output_dir={out}", *(["--data-dir", data_dir] if data_dir else []), *keys, *overrides]
    if (out / name).exists():  # a run cut short: start it again
        command.append("--overwrite")
    shown = [f"MINBERT_ALLOCATOR={allocator}", *(f"{k}={v}" for k, v in extra.items()), "python", *command[1:]]
    print(f"== {name}: {' '.join(shown)}", flush=True)
    result = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(result.stderr[-4000:])
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        return f"{name}: did not run: {last[0]}"
    return None


def result_of(run_dir: Path) -> dict | None:
    """Peak RSS, the malloc recorded, training examples/s (all epochs, and each), minutes of a finished run."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    epochs = metrics["epochs"]
    train_seconds = sum(e["train_seconds"] for e in epochs)
    return {"peak_mib": metrics["peak_rss_mb"], "allocator": metrics["environment"]["allocator"],
            "examples_per_s": sum(e["train_examples"] for e in epochs) / train_seconds,
            "epochs": [f"{e['stage']} {e['train_examples_per_second']:.1f}" for e in epochs],
            "wall_minutes": metrics["wall_seconds"] / 60, "cpu": metrics["environment"]["cpu"]}


def table(results: dict[str, dict], notes: list[str]) -> str:
    lines = ["| variant | malloc (recorded) | peak RSS | training examples/s | vs glibc | each epoch (stage ex/s) "
             "| wall |", "| --- | --- | ---: | ---: | ---: | --- | ---: |"]
    base = results.get("glibc", {}).get("examples_per_s")
    for name, r in results.items():
        ratio = f"{r['examples_per_s'] / base:.3f}" if base else "-"
        lines.append(f"| {name} | {r['allocator']} | {r['peak_mib']:,.0f} MiB | {r['examples_per_s']:.1f} | {ratio} "
                     f"| {', '.join(r['epochs'])} | {r['wall_minutes']:.1f} min |")
    machines = sorted({r["cpu"] for r in results.values()})
    return "\n".join([*lines, "", f"Machine: {'; '.join(machines) or '-'}", *notes]) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT)
    parser.add_argument("--out", type=Path, default=Path("/tmp/allocator-runs"))
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "multitask.toml")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--table-only", action="store_true", help="tabulate what finished, run nothing")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="after --: given to every run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notes = []
    for name in [] if args.table_only else args.variants:
        if (why := run_variant(name, args.out, args.config, args.data_dir, args.overrides)) is not None:
            notes.append(why)
    results = {name: r for name in args.variants if (r := result_of(args.out / name)) is not None}
    text = table(results, notes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "allocators.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
