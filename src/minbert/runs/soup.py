"""Model soups (Wortsman et al. 2022): one model whose weights are the mean of several runs fine-tuned from the
same start with the same architecture (seeds, learning rates, ...): the cost of one model at inference.

- uniform: the mean of every member's best checkpoint;
- greedy: members in order of their own dev selection score, best first; each is kept only if the soup with it
  scores at least as well on dev as the soup without it (so a kept member never lowers the selection score).
  Greedy selection reads dev labels: its dev figure is the one it was chosen on, stated in the run's soup.md.

runs/<name>/ is a run like any other (config.toml of the first member, best/, metrics.json, predictions/, figures/,
report.html) with soup.md: each step, its dev score, and whether the member was kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from minbert.device import machine
from minbert.errors import ConfigError
from minbert.evaluation.predict import evaluate_tasks
from minbert.metrics import dev_selection_score
from minbert.model.loading import load_state_file
from minbert.predictor import MultitaskBERT
from minbert.reporting.report import write_report_quietly
from minbert.runs.ensemble import check_distinct, member_inputs
from minbert.runs.outputs import write_json, write_outputs
from minbert.runs.rundir import RunLock, check_new_run, create_run_dir, removed_if_unfinished
from minbert.training.config import TRAINED_WITH, RunConfig, check_run_name, load_config, trained_with
from minbert.training.experiment import load_task_data

log = logging.getLogger("minbert")
SOUP_METHODS = ("uniform", "greedy")


def mean_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes, stored back in each dtype. Summed in
    fp64, where a few fp32 weights of like magnitude add exactly, so the mean does not depend on the members' order
    (an fp32 sum rounds differently per order: a greedy soup that kept every member scored 0.0005 off the uniform
    soup of the same runs)."""
    return {key: (sum(s[key].double() for s in states) / len(states)).to(states[0][key].dtype) for key in states[0]}


def check_members(runs: list[Path]) -> list[RunConfig]:
    """Members of one soup: finished training runs of one architecture (the same model-shaping keys) fine-tuned
    from the same starting model."""
    if len(runs) < 2:
        raise ConfigError("a soup needs at least two member runs")
    configs = []
    for run in runs:
        if not (run / "config.toml").is_file() or not (run / "best" / "model.safetensors").is_file():
            raise ConfigError(f"{run}: not a finished training run (no config.toml and best/model.safetensors)")
        configs.append(load_config(run / "config.toml"))
    check_distinct([(str(run), run) for run in runs])
    first = configs[0]
    for run, config in zip(runs[1:], configs[1:], strict=True):
        if trained_with(config) != trained_with(first):
            raise ConfigError(f"{run}: its model is not shaped like {runs[0]}'s (tasks, poolings, heads, ... differ; "
                              "compare their trained-with.json): a soup averages weights of one architecture")
        if (config.model.path, config.model.revision) != (first.model.path, first.model.revision):
            raise ConfigError(f"{run}: fine-tuned from {config.model.path or 'the embedded model'}, {runs[0]} from "
                              f"{first.model.path or 'the embedded model'}: a soup's members share their start")
    starts = {start_of(run, c) for run, c in zip(runs, configs, strict=True)}
    if len(starts) > 1:
        log.warning("soup: the members start from different points (%s): their mean can fall far below each of "
                    "them; members trained with one init_seed (and their own seeds), or forked from one checkpoint "
                    "(minbert train --fork), share the start", "; ".join(sorted(starts)))
    return configs


def start_seed(config: RunConfig) -> int:
    """The seed of a run's random initialisation (its init_seed, else its seed)."""
    return config.seed if config.init_seed < 0 else config.init_seed


def start_of(run: Path, config: RunConfig) -> str:
    """Where a member's training started: the checkpoint it was forked from, else its heads' init seed."""
    metrics = run / "metrics.json"
    forked = json.loads(metrics.read_text(encoding="utf-8")).get("forked_from") if metrics.is_file() else None
    return f"forked from {forked['checkpoint']}" if forked else f"init seed {start_seed(config)}"


def recorded_score(run: Path) -> float:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8")) if (run / "metrics.json").is_file() \
        else {}
    best = metrics.get("best") or {}
    if "selection_score" not in best:
        raise ConfigError(f"{run}: no recorded best epoch in metrics.json (a greedy soup orders members by it)")
    return float(best["selection_score"])


def soup_run(members: Sequence[str | Path], name: str, output_dir: str | Path = "runs", method: str = "uniform",
             data_dir: str | None = None, overwrite: bool = False) -> Path:
    """Average the members' best weights (uniformly, or greedily on dev) into a new run directory."""
    started = time.perf_counter()
    check_run_name(name)
    if method not in SOUP_METHODS:
        raise ConfigError(f"soup method {method!r} is not one of {', '.join(SOUP_METHODS)}")
    runs = [Path(m) for m in members]
    configs = check_members(runs)
    root, run_dir = Path(output_dir), Path(output_dir) / name
    inputs = member_inputs(runs)
    check_new_run(run_dir, root, overwrite, inputs)
    order = sorted(runs, key=recorded_score, reverse=True) if method == "greedy" else runs
    with RunLock(run_dir):
        soup = MultitaskBERT.load(order[0])  # the architecture, tokenizer and inference settings; weights replaced
        data = load_task_data(soup.config, soup.tokenizer, data_dir or configs[0].data_dir or None,
                              splits=("dev", "test"))

        def dev_of(state: dict[str, torch.Tensor]) -> tuple[dict, float]:
            soup.model.load_state(state, "the soup")
            soup.model.to(soup.inference.device)
            dev = evaluate_tasks(soup.model, data, soup.inference)
            return dev, dev_selection_score(dev, {t for t in dev if soup.config.tasks[t].helper})

        states = {run: load_state_file(run / "best" / "model.safetensors") for run in order}
        steps, kept = [], []
        if method == "uniform":
            kept = list(order)
            dev, chosen_score = dev_of(mean_state([states[r] for r in kept]))
            steps.append({"run": "all members", "selection_score": chosen_score, "kept": True})
        else:
            chosen_score = float("-inf")
            for run in order:
                dev_with, score_with = dev_of(mean_state([states[r] for r in [*kept, run]]))
                keep = score_with >= chosen_score
                steps.append({"run": str(run), "selection_score": score_with, "kept": keep})
                log.info("soup: with %s: dev selection %.4f: %s", run, score_with, "kept" if keep else "left out")
                if keep:
                    kept.append(run)
                    chosen_score, dev = score_with, dev_with
            soup.model.load_state(mean_state([states[r] for r in kept]), "the soup")
        soup.model.to(soup.inference.device)
        config = dataclasses.replace(soup.config, name=name, output_dir=str(root))
        files = {"config.toml": config.to_toml(), TRAINED_WITH: trained_with(config)}
        new = create_run_dir(run_dir, root, overwrite, files, inputs)
        with removed_if_unfinished(new, "the soup") as out:  # beside the run it replaces, if any
            soup.model.save(out / "best", tokenizer_from=order[0] / "best")
            final_dev = write_outputs(soup.model, data, soup.inference, out)
            (out / "soup.md").write_text(soup_table(method, steps, runs, configs), encoding="utf-8")
            write_json(out / "metrics.json", {
                "name": name, "soup": {"method": method, "members": [str(r) for r in runs],
                                       "kept": [str(r) for r in kept], "steps": steps,
                                       "chosen_on": "dev" if method == "greedy" else None},
                "best": {"epoch": None, "selection_score": chosen_score, "dev": dev, "weights": f"{method} soup"},
                "final_dev": final_dev, "wall_seconds": round(time.perf_counter() - started, 1),
                "environment": machine()})
        write_report_quietly(run_dir)
    return run_dir


def soup_table(method: str, steps: list[dict], runs: list[Path], configs: list[RunConfig]) -> str:
    how = ("the mean of every member's best weights" if method == "uniform" else
           "members in order of their own dev selection score; each kept only if the soup's dev selection score "
           "does not fall (chosen on dev: its dev figure is optimistic)")
    starts = sorted({start_of(run, c) for run, c in zip(runs, configs, strict=True)})
    start = (f"Every member started from one point: {starts[0]}." if len(starts) == 1 else
             f"The members started from different points: {'; '.join(starts)}.")
    lines = [f"A {method} soup of {len(runs)} runs: {how}.", start, "", "| step | with | dev selection | kept |",
             "| ---: | --- | ---: | --- |"]
    for i, step in enumerate(steps, start=1):
        lines.append(f"| {i} | {step['run']} | {step['selection_score']:.4f} | {'yes' if step['kept'] else 'no'} |")
    return "\n".join(lines) + "\n"
