"""Issue 44's comparison, one command: each task kind's shipped config trained by minbert and the plain HF
transformers reference (bench/hf_reference.py) of the same kind, seed by seed on one machine, then one table of
dev figures (mean ± standard error over the seeds), training examples/s and minutes.

    .venv/bin/python bench/kinds_side_by_side.py [--kinds ner choice qa] [--seeds 11711 1 2] [--precision fp32]
        [--data-dir DIR] [--out runs/ablations/kinds] [--only minbert|hf] [--table-only]

minbert's runs land where `minbert ablate configs/ablations/kinds.toml` puts them (OUT/<config>/seed-<S>), so either
command finishes what the other began; the reference's JSON goes to OUT/hf/<kind>-seed-<S>.json. A run that finished
is not run again; seeds go in order (every kind at the first seed, then the next), so a run cut short (a lent GPU's
minutes) still gives a table of what finished. The table goes to OUT/side-by-side.md and stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = {  # reference kind: (minbert config stem, the figures compared; the first is the primary one)
    "ner": ("conll2003", ("entity_f1", "entity_precision", "entity_recall")),
    "choice": ("arc-easy", ("accuracy",)),
    "qa": ("squad", ("exact_match", "f1")),
}
HF_SCALE = {"exact_match": 0.01, "f1": 0.01}  # the reference prints SQuAD's figures x 100, minbert on 0..1


def minbert_result(run_dir: Path) -> dict | None:
    """Dev figures, training examples/s and minutes of a finished minbert run (None if not finished)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    (dev,) = metrics["final_dev"].values()
    epochs = metrics["epochs"]
    train_s = sum(e["train_seconds"] for e in epochs)
    return {"metrics": dev["metrics"], "examples_per_s": sum(e["train_examples"] for e in epochs) / train_s,
            "train_minutes": train_s / 60, "machine": metrics["environment"]["cpu"]}


def hf_result(path: Path) -> dict | None:
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    return {"metrics": {k: v * HF_SCALE.get(k, 1) for k, v in result["metrics"].items()},
            "examples_per_s": result["train_examples_per_s"], "train_minutes": result["train_minutes"],
            "machine": result["machine"].get("cpu") or result["machine"].get("device", "?")}


def mean_se(values: list[float]) -> str:
    if not values:
        return "-"
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return f"{statistics.fmean(values):.4f}" + (f" ± {se:.4f}" if se is not None else "") + f" (n={len(values)})"


def table(results: dict[str, dict[str, list[dict]]]) -> str:
    lines = ["| kind | figure | minbert | HF reference |", "| --- | --- | ---: | ---: |"]
    for kind, sides in results.items():
        for figure in KINDS[kind][1]:
            cells = [mean_se([r["metrics"][figure] for r in sides[side]]) for side in ("minbert", "hf")]
            lines.append(f"| {kind} | {figure} | {cells[0]} | {cells[1]} |")
        for figure, label in (("examples_per_s", "train examples/s"), ("train_minutes", "train minutes")):
            cells = [f"{statistics.fmean(r[figure] for r in sides[side]):.1f}" if sides[side] else "-"
                     for side in ("minbert", "hf")]
            lines.append(f"| {kind} | {label} (mean) | {cells[0]} | {cells[1]} |")
    machines = sorted({r["machine"] for sides in results.values() for runs in sides.values() for r in runs})
    notes = ["Machines: " + "; ".join(machines) + " (dev figures are means ± standard error)"]
    if "qa" in results:  # minbert's loop counts the rows it trains on; the reference counts questions
        notes.append("minbert's qa examples/s counts windows (a context longer than one window is several rows)")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[11711, 1, 2])
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="fp32",
                        help="the reference's (minbert's configs train in fp32 on a CPU)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/ablations/kinds"))
    parser.add_argument("--only", choices=("minbert", "hf"), default=None, help="run one side only")
    parser.add_argument("--table-only", action="store_true", help="tabulate what finished, run nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    for seed in [] if args.table_only else args.seeds:
        for kind in args.kinds:
            config = KINDS[kind][0]
            run_dir, hf_file = args.out / config / f"seed-{seed}", args.out / "hf" / f"{kind}-seed-{seed}.json"
            if args.only != "hf" and minbert_result(run_dir) is None:
                what = (["--resume", str(run_dir)] if (run_dir / "checkpoints").is_dir() else [
                    "--config", str(ROOT / "configs" / "kinds" / f"{config}.toml"), f"seed={seed}",
                    f"output_dir={args.out / config}", f"name=seed-{seed}"])
                subprocess.run([sys.executable, "-m", "minbert", "train", *data, *what], check=True)
            if args.only != "minbert" and not hf_file.is_file():
                hf_file.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([sys.executable, str(ROOT / "bench" / "hf_reference.py"), "--kind", kind, *data,
                                "--seed", str(seed), "--precision", args.precision, "--out", str(hf_file)],
                               check=True, stdout=subprocess.DEVNULL)
    results = {kind: {"minbert": [r for s in args.seeds
                                  if (r := minbert_result(args.out / KINDS[kind][0] / f"seed-{s}"))],
                      "hf": [r for s in args.seeds if (r := hf_result(args.out / "hf" / f"{kind}-seed-{s}.json"))]}
               for kind in args.kinds}
    text = table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "side-by-side.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
