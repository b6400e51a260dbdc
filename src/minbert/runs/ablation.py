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

    seeds = [11711, 1, 2]                # optional: every variant once per seed (runs <variant>/seed-<S>); the
                                         # table shows each task's mean and standard error and the overall
                                         # score's standard deviation, so differences can be weighed against
                                         # seed noise

`jobs` > 1 trains that many runs at once in separate processes (a GPU, or a machine with many cores); the CPU
threads are shared out between them.

    [ensemble]                           # optional: ensemble the sweep's runs (minbert.runs.ensemble)
    name = "trio"
    members = "variants"                 # variants: one ensemble per seed of every variant's run (three single-task
                                         # runs make the trio); all: one ensemble of every run of the sweep
    weights = "fitted"                   # optional: per-task weights fitted on the members' tune split (each
                                         # variant trains with train.tune_split), else equal
The ensemble is one more row of the table (its minutes include its members' training).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from minbert.data.spec import builtin_name, data_key
from minbert.errors import ConfigError, RunFailed
from minbert.interrupts import Interrupted, run_in_processes
from minbert.metrics import CS224N_LABEL, TaskScore, overall
from minbert.names import check_name
from minbert.reporting.report import write_report_quietly
from minbert.runs.run import train_run
from minbert.training.checkpoint import list_checkpoints
from minbert.training.config import RunConfig, load_config, read_toml
from minbert.training.tracking import close_group, open_group, sweep_trackers


def read_sweep(path: Path) -> dict:
    """The sweep file, with every variant resolved to {"config": Path, "overrides": [...]}."""
    sweep = read_toml(path, "sweep file")
    unknown = set(sweep) - {"base", "output_dir", "budget", "overrides", "seeds", "variants", "ensemble"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (use base, output_dir, budget, "
                          "overrides, seeds, variants, ensemble)")
    ensemble = sweep.get("ensemble")
    if ensemble is not None and (not isinstance(ensemble, dict) or not {"name", "members"} <= set(ensemble)
                                 or set(ensemble) - {"name", "members", "weights"}
                                 or ensemble["members"] not in ("variants", "all")
                                 or ensemble.get("weights", "equal") not in ("equal", "fitted")):
        raise ConfigError(f"{path}: [ensemble] takes name = \"...\", members = \"variants\" or \"all\" and "
                          "optionally weights = \"equal\" or \"fitted\"")
    if ensemble is not None:  # its run directory: checked before the variants train
        check_name(ensemble["name"], f"{path}: ensemble.name")
    check_seeds(str(path), sweep.get("seeds", []))
    if not sweep.get("variants"):
        raise ConfigError(f"{path}: a sweep needs a [variants] table")
    check_overrides(path, "overrides", sweep.get("overrides", []))
    variants = {}
    for name, variant in sweep["variants"].items():
        check_name(name, f"{path}: variants.NAME")  # the variant's run directory
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


def check_seeds(source: str, seeds: object) -> None:
    if (not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"{source}: seeds must be a list of distinct integers, got {seeds!r}")


def check_overrides(path: Path, name: str, overrides: object) -> None:
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{path}: {name} must be a list of key=value strings")


def run_ablation(path: str | Path, data_dir: str | None = None, budget: float | None = None,
                 seeds: list[int] | None = None, jobs: int = 1, overrides: Sequence[str] = ()) -> Path:
    """Run a sweep's variants (every seed of each), then write its table and chart. `overrides` apply to every
    run after the sweep's own. In any override, `{seed}` stands for the run's seed (a teacher trained with the
    same seed, say)."""
    path = Path(path)
    sweep = read_sweep(path)
    budget = budget if budget is not None else sweep.get("budget")
    if seeds is None:
        seeds = sweep.get("seeds", [])
    else:
        check_seeds("--seeds", seeds)
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    if budget is not None and not (isinstance(budget, (int, float)) and 0 < budget <= 1):
        raise ConfigError(f"budget must be a share of the training data in (0, 1], got {budget!r}")
    out = Path(sweep.get("output_dir") or Path("runs") / "ablations" / path.stem)
    common = ([f"train.train_fraction={budget}"] if budget else []) + sweep.get("overrides", []) + list(overrides)
    # check every run's config before running any: a typo in the last one should not cost the first ones' time
    runs, run_dirs = {}, {name: [] for name in sweep["variants"]}
    for seed in seeds or [None]:  # seed-major: a sweep cut short has every variant at the first seeds
        for name, variant in sweep["variants"].items():
            where = [f"output_dir={out}", f"name={name}"] if seed is None else [
                f"output_dir={out / name}", f"name=seed-{seed}", f"seed={seed}"]
            chosen = [o.replace("{seed}", str(seed)) for o in [*common, *variant["overrides"]]]
            config = load_config(variant["config"], [*chosen, *where])
            run_dir = Path(config.output_dir) / config.name
            runs[run_dir] = config
            run_dirs[name].append(run_dir)
    pending = [(config, run_dir) for run_dir, config in runs.items() if not finished(run_dir)]
    # the sweep's runs as one group of its trackers (an MLflow parent run, a W&B group), named after the sweep
    trackers = sweep_trackers([config.train.tracking for config in runs.values()])
    group = open_group(trackers, path.stem, out) if pending else {}
    try:
        if jobs > 1 and len(pending) > 1:
            run_parallel(pending, data_dir, jobs, group)
        else:
            for config, run_dir in pending:
                train_one(config, run_dir, data_dir, tracking_group=group)
    except Interrupted as exc:
        done = sum(finished(run_dir) for run_dir in runs)
        exc.detail = "; ".join(filter(None, [
            exc.detail, f"{done} of {len(runs)} runs of the sweep finished (kept in {out})",
            f"rerun `minbert ablate {path}` to continue: finished runs are not run again, stopped ones resume"]))
        raise
    base = (path.parent / sweep["base"]).resolve() if "base" in sweep else None
    rows = [summarize(name, run_dirs[name], variant, base) for name, variant in sweep["variants"].items()]
    if "ensemble" in sweep:
        rows.append(ensemble_row(sweep["ensemble"], run_dirs, out, seeds, data_dir))
    write_table(rows, out / "ablation.md", base, budget, sweep.get("overrides", []), seeds)
    plot_bars(rows, out / "ablation.png")
    every_run = [d for dirs in run_dirs.values() for d in dirs if (d / "metrics.json").exists()]
    write_report_quietly(*every_run, output=out / "report.html")
    close_group(trackers, group, {name: out / name for name in ("ablation.md", "ablation.png", "report.html")})
    return out


def ensemble_row(spec: dict, run_dirs: dict[str, list[Path]], out: Path, seeds: list[int],
                 data_dir: str | None) -> dict:
    """Ensemble the sweep's runs (per seed across variants, or all at once) and summarize it as a table row."""
    from minbert.runs.ensemble import ensemble_run

    name = spec["name"]
    if spec["members"] == "all":
        groups = {name: [run for runs in run_dirs.values() for run in runs]}
        where = {name: out}
    else:
        groups = {f"seed-{seed}" if seeds else name: [runs[i] for runs in run_dirs.values()]
                  for i, seed in enumerate(seeds or [None])}
        where = {group: out / name if seeds else out for group in groups}
    ensembles = []
    for group, members in groups.items():
        run_dir = where[group] / group
        if not finished(run_dir):
            ensemble_run(members, group, where[group], data_dir, overwrite=True,
                         weights=spec.get("weights", "equal"))
        ensembles.append(run_dir)
    label = f"ensemble of {len(next(iter(groups.values())))} runs" + (" per seed" if len(groups) > 1 else "")
    return summarize(name, ensembles, {"config": None, "overrides": [label]}, None)


def finished(run_dir: Path) -> bool:
    metrics = run_dir / "metrics.json"
    return metrics.exists() and "final_dev" in json.loads(metrics.read_text(encoding="utf-8"))


def train_one(config: RunConfig, run_dir: Path, data_dir: str | None, threads: int = 0,
              tracking_group: dict | None = None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
    if list_checkpoints(run_dir):
        train_run(config, data_dir, resume=run_dir, tracking_group=tracking_group)
    else:
        train_run(config, data_dir, overwrite=True, tracking_group=tracking_group)


def run_parallel(pending: list, data_dir: str | None, jobs: int, tracking_group: dict | None = None) -> None:
    """Train the runs `jobs` at a time, each in its own process (spawned: no CUDA or thread state is inherited).
    A run that fails does not stop the others; the failures are listed at the end. A signal stops them all at
    their next step boundary (minbert.interrupts)."""
    jobs = min(jobs, len(pending))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    outcomes = run_in_processes([(str(run_dir), train_one, (config, run_dir, data_dir, threads, tracking_group))
                                 for config, run_dir in pending], jobs)
    failures = [f"{o.label}: {o.message}" for o in outcomes if o.rc]
    if failures:
        raise RunFailed(f"{len(failures)} of {len(pending)} runs failed:\n" + "\n".join(failures))


def summarize(name: str, run_dirs: list[Path], variant: dict, base: Path | None) -> dict:
    """One table row: the run's dev scores, or with several seeds their means and standard errors (and per-seed
    overall scores)."""
    per_run = [score_run(run_dir) for run_dir in run_dirs]
    scores = {task: statistics.fmean(r["scores"][task] for r in per_run) for task in per_run[0]["scores"]}
    # each task's standard error over the seeds: a gain counts when it beats twice it
    errors = {task: statistics.stdev(r["scores"][task] for r in per_run) / len(per_run) ** 0.5
              for task in scores} if len(per_run) > 1 else {}
    overall = [r["overall"] for r in per_run]
    # a variant with its own config shows it first in the overrides column
    shown = variant["overrides"] if variant["config"] in (base, None) else [variant["config"].name,
                                                                             *variant["overrides"]]
    return {"name": name, "overrides": shown, "overall": statistics.fmean(overall), "per_seed": overall,
            "overall_sd": statistics.stdev(overall) if len(overall) > 1 else None, "scores": scores,
            "score_errors": errors,
            "overall_label": per_run[0]["overall_label"], "metrics": per_run[0]["metrics"],
            "best_epoch": "/".join(str(r["best_epoch"]) for r in per_run),
            "minutes": statistics.fmean(r["minutes"] for r in per_run)}


def score_run(run_dir: Path) -> dict:
    from minbert.runs.ensemble import ENSEMBLE_FILE

    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    final_dev = metrics["final_dev"]
    if (run_dir / ENSEMBLE_FILE).is_file():  # keyed by data set already; its time includes its members' training
        seconds = metrics["wall_seconds"] + sum(
            json.loads((Path(m) / "metrics.json").read_text(encoding="utf-8"))["wall_seconds"]
            for m in metrics["members"])
        scores = [TaskScore(data, data, r["metric"], r["score"]) for data, r in final_dev.items()]
        best_epoch = "-"
    else:
        config = load_config(run_dir / "config.toml")
        scores = [TaskScore(data_key(task, c.data), builtin_name(c.data), final_dev[task]["metric"],
                            final_dev[task]["score"], c.helper) for task, c in config.tasks.items()]
        seconds, best_epoch = metrics["wall_seconds"], metrics["best"]["epoch"]
    value, label = overall(scores)
    return {"scores": {s.task: s.value for s in scores}, "overall": value, "overall_label": label,
            "metrics": {s.task: s.metric for s in scores}, "best_epoch": best_epoch, "minutes": seconds / 60}


def write_table(rows: list[dict], path: Path, base: Path | None, budget: float | None, common: list[str],
                seeds: Sequence[int] = ()) -> None:
    columns = list(dict.fromkeys(data for row in rows for data in row["scores"]))
    config = f"Base config: `{base.name}`; a" if base else "A"
    lines = [f"# Ablation: {path.parent.name}", "",
             f"{config} row that names a config file runs that config. Dev scores of each variant's best checkpoint."]
    if common:
        lines.append("Every variant also sets " + ", ".join(f"`{o}`" for o in common) + ".")
    metric_of = {data: metric for row in rows for data, metric in row["metrics"].items()}
    lines.append("Task columns: each task's primary dev metric (" + ", ".join(f"{d}: {m}" for d, m in metric_of.items())
                 + ").")
    if any(row["overall_label"] != CS224N_LABEL for row in rows):
        lines.append("`overall` is the mean of the tasks' normalised dev metrics (accuracy, F1; a correlation r as "
                     "(r + 1) / 2), the CS224N formula where SST, Quora and STS are all present.")
    if budget:
        lines.append(f"**Budget: every variant trained on {budget:.0%} of each task's training examples**, so "
                     "absolute scores are below full runs; compare rows with each other.")
    if seeds:
        lines.append(f"Every variant ran with seeds {', '.join(map(str, seeds))}: task columns are mean ± standard "
                     "error over the seeds, `overall` is mean ± standard deviation, `per seed` lists each seed's "
                     "overall score, minutes are per run.")
    seed_column, seed_rule = (" per seed |", " --- |") if seeds else ("", "")
    lines += ["", f"| variant | overrides | overall | {' | '.join(columns)} |{seed_column} best epoch | minutes |",
              "| --- | --- | ---: | " + " | ".join("---:" for _ in columns) + f" |{seed_rule} ---: | ---: |"]
    for row in rows:
        cells = [f"{row['scores'][c]:.4f}" + (f" ± {row['score_errors'][c]:.4f}" if c in row["score_errors"] else "")
                 if c in row["scores"] else "-" for c in columns]
        overrides = ", ".join(f"`{o}`" for o in row["overrides"]) or "(base)"
        overall = f"{row['overall']:.4f}" + (f" ± {row['overall_sd']:.4f}" if row["overall_sd"] is not None else "")
        per_seed = f" {' / '.join(f'{v:.4f}' for v in row['per_seed'])} |" if seeds else ""
        lines.append(f"| {row['name']} | {overrides} | {overall} | " + " | ".join(cells)
                     + f" |{per_seed} {row['best_epoch']} | {row['minutes']:.1f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_bars(rows: list[dict], path: Path) -> None:
    from minbert.evaluation.plots import plot_ablation

    plot_ablation([r["name"] for r in rows], [r["overall"] for r in rows], path,
                  errors=[r["overall_sd"] or 0.0 for r in rows] if any(r["overall_sd"] for r in rows) else None)
