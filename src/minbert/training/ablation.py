"""`minbert ablate SWEEP.toml`: a base config and named variants (override lists), run one after another, then a
table (ablation.md) and a bar chart, like the reports' ablation tables.

    base = "../multitask.toml"          # relative to this file
    output_dir = "runs/ablations/sts"    # optional; default runs/ablations/<sweep name>
    budget = 0.25                        # optional: each variant trains on this share of every task's data
    overrides = ["train.epochs=1"]       # optional: applied to every variant, before its own overrides
    [variants]
    baseline = []
    cosent = ["tasks.sts.loss=cosent"]

A variant may instead name its own config (relative to this file), with optional overrides, to compare recipes:
    seed_000 = { config = "../seeds/000-round-robin-stages.toml" }
    seed_001 = { config = "../seeds/001-siamese-sqrt-fgsm-mnrl.toml", overrides = ["train.epochs=2"] }

A variant whose run directory already holds final metrics is not run again (delete it to re-run); one that was
interrupted resumes from its newest checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from minbert.errors import ConfigError
from minbert.evaluation.metrics import overall_score
from minbert.training.checkpoint import list_checkpoints
from minbert.training.config import load_config, read_toml
from minbert.training.run import train_run


def read_sweep(path: Path) -> dict:
    """The sweep file, with every variant resolved to {"config": Path, "overrides": [...]}."""
    sweep = read_toml(path, "sweep file")
    unknown = set(sweep) - {"base", "output_dir", "budget", "overrides", "variants"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (use base, output_dir, budget, "
                          "overrides, variants)")
    if not sweep.get("variants"):
        raise ConfigError(f"{path}: a sweep needs a [variants] table")
    check_overrides(path, "overrides", sweep.get("overrides", []))
    variants = {}
    for name, variant in sweep["variants"].items():
        if isinstance(variant, dict):
            extra = set(variant) - {"config", "overrides"}
            if extra or "config" not in variant:
                raise ConfigError(f"{path}: variants.{name} must be a list of key=value strings or a table with "
                                  "`config` and optional `overrides`")
            config, overrides = path.parent / variant["config"], variant.get("overrides", [])
        else:
            if "base" not in sweep:
                raise ConfigError(f"{path}: variants.{name} is an override list but the sweep has no `base` config")
            config, overrides = path.parent / sweep["base"], variant
        check_overrides(path, f"variants.{name}", overrides)
        variants[name] = {"config": config.resolve(), "overrides": overrides}
    sweep["variants"] = variants
    return sweep


def check_overrides(path: Path, name: str, overrides: object) -> None:
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{path}: {name} must be a list of key=value strings")


def run_ablation(path: str | Path, data_dir: str | None = None, budget: float | None = None) -> Path:
    path = Path(path)
    sweep = read_sweep(path)
    budget = budget if budget is not None else sweep.get("budget")
    out = Path(sweep.get("output_dir") or Path("runs") / "ablations" / path.stem)
    common = ([f"output_dir={out}"] + ([f"train.train_fraction={budget}"] if budget else [])
              + sweep.get("overrides", []))
    # check every variant before running any: a typo in the last one should not cost the first ones' time
    configs = {name: load_config(variant["config"], [*common, *variant["overrides"], f"name={name}"])
               for name, variant in sweep["variants"].items()}
    for name, config in configs.items():
        run_dir = out / name
        if (run_dir / "metrics.json").exists() and "final_dev" in json.loads((run_dir / "metrics.json").read_text()):
            continue
        if list_checkpoints(run_dir):
            train_run(config, data_dir, resume=run_dir)
        else:
            train_run(config, data_dir, overwrite=True)
    base = (path.parent / sweep["base"]).resolve() if "base" in sweep else None
    rows = [summarize(name, out / name, variant, base) for name, variant in sweep["variants"].items()]
    write_table(rows, out / "ablation.md", base, budget, sweep.get("overrides", []))
    plot_bars(rows, out / "ablation.png")
    return out


def summarize(name: str, run_dir: Path, variant: dict, base: Path | None) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    scores = {task: result["score"] for task, result in metrics["final_dev"].items()}
    by_data = {}
    config = load_config(run_dir / "config.toml")
    for task, task_config in config.tasks.items():
        by_data[task_config.data] = scores[task]
    overall = (overall_score(by_data["sst"], by_data["quora"], by_data["sts"])
               if {"sst", "quora", "sts"} <= by_data.keys() else metrics["best"]["selection_score"])
    # a variant with its own config shows it first in the overrides column
    shown = variant["overrides"] if variant["config"] == base else [variant["config"].name, *variant["overrides"]]
    return {"name": name, "overrides": shown, "overall": overall, "scores": by_data,
            "best_epoch": metrics["best"]["epoch"], "minutes": metrics["wall_seconds"] / 60}


def write_table(rows: list[dict], path: Path, base: Path | None, budget: float | None, common: list[str]) -> None:
    columns = sorted({data for row in rows for data in row["scores"]}, key=["sst", "quora", "sts", "cfimdb"].index)
    config = f"Base config: `{base.name}`; a" if base else "A"
    lines = [f"# Ablation: {path.parent.name}", "",
             f"{config} row that names a config file runs that config. Dev scores of each variant's best checkpoint."]
    if common:
        lines.append("Every variant also sets " + ", ".join(f"`{o}`" for o in common) + ".")
    if any(set(row["scores"]) != {"sst", "quora", "sts"} for row in rows):
        lines.append("`overall` is the mean of the tasks' normalised dev metrics (accuracy; Pearson r as (r + 1) / 2), "
                     "the reports' overall score when all three tasks are present.")
    if budget:
        lines.append(f"**Budget: every variant trained on {budget:.0%} of each task's training examples**, so "
                     "absolute scores are below full runs; compare rows with each other.")
    lines += ["", "| variant | overrides | overall | " + " | ".join(columns) + " | best epoch | minutes |",
              "| --- | --- | ---: | " + " | ".join("---:" for _ in columns) + " | ---: | ---: |"]
    for row in rows:
        cells = [f"{row['scores'][c]:.4f}" if c in row["scores"] else "-" for c in columns]
        overrides = ", ".join(f"`{o}`" for o in row["overrides"]) or "(base)"
        lines.append(f"| {row['name']} | {overrides} | {row['overall']:.4f} | " + " | ".join(cells)
                     + f" | {row['best_epoch']} | {row['minutes']:.1f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_bars(rows: list[dict], path: Path) -> None:
    from minbert.evaluation.plots import plot_ablation

    plot_ablation([r["name"] for r in rows], [r["overall"] for r in rows], path)
