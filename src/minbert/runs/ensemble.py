"""Ensembles: the average of member runs' soft outputs (class probabilities, a binary task's probability, scores,
each word's tag probabilities: TaskKind.average), for predictions (`minbert ensemble`) and as a distillation teacher.

Members may differ in config (heads, pair encodings, seeds, even encoders); tasks are matched by data set (a
built-in's name: sst, quora, sts, cfimdb; a task's own spec by its task name, the spec the same in every member),
and a data set is averaged over the members that have it, so three single-task runs make the "trio". Members are
loaded one at a time: memory stays that of one model. An ensemble's directory holds
`ensemble.toml` (its members), so an ensemble can itself be a member or a teacher.

Each data set's members are weighted equally, or (`weights = "fitted"`) by weights fitted on a tune split: the
rows of the training file that every member held out (`train.tune_split`, the same share and seed in every member),
so no member trained on them and neither dev nor test is looked at. The weights lie on the simplex and minimise the
weighted mean's loss as the task's kind measures it (TaskKind.ensemble_loss: log loss for classes, 1 - Pearson r
for scores, the gold tags' negative log-likelihood for tagging) on those rows.

runs/<name>/
  ensemble.toml     members (absolute run directories) and, when fitted, each data set's weights
  metrics.json      final_dev (the ensemble's dev metrics), member_dev (each member's), weights, wall time
  members.md        each member against the ensemble on dev, and the weights
  predictions/      CS224N-format dev and test predictions
  figures/          confusion matrices, STS scatter
"""

from __future__ import annotations

import filecmp
import gc
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tomli_w

from minbert.data.files import Example
from minbert.data.spec import data_key, resolve_data_dir
from minbert.device import machine
from minbert.errors import ConfigError
from minbert.evaluation.predict import score
from minbert.metrics import CS224N_LABEL, TaskScore, overall
from minbert.model.loading import file_digest
from minbert.predictor import MultitaskBERT
from minbert.reporting.report import write_report_quietly
from minbert.runs.outputs import write_json, write_task_outputs
from minbert.runs.rundir import Input, RunLock, check_new_run, create_run_dir, removed_if_unfinished
from minbert.tasks.kinds import TaskKind, kind_of, refuse
from minbert.training.config import check_run_name, load_config, read_toml
from minbert.training.experiment import read_split, tune_split_rows

log = logging.getLogger("minbert")
ENSEMBLE_FILE = "ensemble.toml"
WEIGHTINGS = ("equal", "fitted")


def read_weights(ensemble_dir: Path) -> dict[str, list[float]]:
    """An ensemble's fitted weights ({data set: one weight per member that has it}), {} for equal weights."""
    path = ensemble_dir / ENSEMBLE_FILE
    weights = read_toml(path, "ensemble file").get("weights", {})
    if not isinstance(weights, dict) or not all(
            isinstance(w, list) and w and all(isinstance(x, (int, float)) and x >= 0 for x in w)
            and abs(sum(w) - 1) < 1e-6 for w in weights.values()):
        raise ConfigError(f"{path}: `weights` must map data sets to lists of non-negative weights summing to 1, "
                          f"got {weights!r}")
    return {data: [float(x) for x in w] for data, w in weights.items()}


def read_members(ensemble_dir: Path) -> list[Path]:
    """The members an ensemble.toml lists, or a message naming the file when it is not a list of directories."""
    path = ensemble_dir / ENSEMBLE_FILE
    members = read_toml(path, "ensemble file").get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and m.strip() for m in members):
        raise ConfigError(f"{path}: `members` must be a non-empty list of run directories, got {members!r}")
    return [Path(m) for m in members]


def member_tree(path: str | Path, chain: tuple[Path, ...] = ()) -> list[tuple[Path, bool]]:
    """Every directory behind a run or ensemble directory, depth first, each with whether it is a training run:
    the ensembles themselves, then their members (ensembles of ensembles included). An ensemble that contains
    itself, directly or through another, is reported with the chain that closes the loop."""
    path = Path(path).resolve()
    if path in chain:
        loop = " -> ".join(str(p) for p in (*chain[chain.index(path):], path))
        raise ConfigError(f"{chain[-1] / ENSEMBLE_FILE}: the ensemble contains itself ({loop})")
    if (path / ENSEMBLE_FILE).is_file():
        return [(path, False), *(found for member in read_members(path)
                                 for found in member_tree(member, (*chain, path)))]
    if not (path / "config.toml").is_file() or not (path / "best").is_dir():
        where = f" (listed in {chain[-1] / ENSEMBLE_FILE})" if chain else ""
        raise ConfigError(f"{path}: not a finished run (no config.toml and best/) nor an ensemble "
                          f"({ENSEMBLE_FILE}){where}")
    return [(path, True)]


def member_runs(path: str | Path) -> list[Path]:
    """The training runs behind a run directory or an ensemble directory (ensembles of ensembles flatten)."""
    return [found for found, is_run in member_tree(path) if is_run]


def check_distinct(members: Sequence[tuple[str, Path]]) -> None:
    """Refuse one run listed twice ((as given, its directory) pairs): by the same path, a symbolic link or inside
    an ensemble also listed, it would count twice in a mean. Distinct directories with identical best weights (a
    copied run, a fork that never bettered its checkpoint, a deterministic rerun) are allowed, with a warning that
    those weights count twice: each is a run of its own that a user may mean to list."""
    seen: dict[Path, int] = {}
    for i, (given, run) in enumerate(members):
        first = seen.setdefault(run.resolve(), i)
        if first != i:
            raise ConfigError(f"{members[first][0]} and {given} are one run ({run.resolve()}): a run listed twice "
                              "would count twice in the mean; list each run once")
    by_size: dict[int, list[tuple[str, Path]]] = {}
    for given, run in members:
        weights = run / "best" / "model.safetensors"
        if weights.is_file():
            by_size.setdefault(weights.stat().st_size, []).append((given, weights))
    for same_size in by_size.values():
        for i, (given, weights) in enumerate(same_size):
            twin = next((other for other, w in same_size[:i] if filecmp.cmp(w, weights, shallow=False)), None)
            if twin is not None:
                log.warning("%s and %s have identical best/model.safetensors (a copy, or a fork that never "
                            "bettered its checkpoint): those weights count twice in the mean", twin, given)


def member_inputs(members: Sequence[str | Path], what: str = "a member") -> list[Input]:
    """What an ensemble (or a teacher) reads: each member as given and every run and ensemble behind it."""
    return [Input(what, Path(found), is_run=True) for member in members for found, _ in member_tree(member)]


def kinds_by_data(run_dir: Path) -> dict[str, TaskKind]:
    """{data set: the task's kind} of a run, in its task order: a built-in by its name, a task's own spec by the
    task's name (a run with two tasks on one data set cannot be matched)."""
    found: dict[str, TaskKind] = {}
    for task, task_config in load_config(run_dir / "config.toml").tasks.items():
        data = data_key(task, task_config.data)
        if data in found:
            raise ConfigError(f"{run_dir}: tasks {found[data].name} and {task} both use {data}")
        found[data] = kind_of(task, task_config)
    return found


def tasks_by_data(run_dir: Path) -> dict[str, str]:
    """{data set: task name} of a run."""
    return {data: kind.name for data, kind in kinds_by_data(run_dir).items()}


def tokenizer_digest(run: Path) -> str:
    """The digest of a run's vocabulary and tokenizer files (best/), which decide how its texts become tokens."""
    return ",".join(file_digest(run / "best" / name) for name in ("vocab.txt", "tokenizer.json")
                    if (run / "best" / name).is_file())


def check_same_rows(found: dict[Path, dict[str, TaskKind]]) -> None:
    """Refuse, before any member is loaded, members whose soft outputs of one data set are cut differently beyond
    its spec (TaskKind.ensemble_key: a span task's windows follow model.max_length and the tokenizer)."""
    first: dict[str, tuple[Path, dict]] = {}
    for run, kinds in found.items():
        keys = {data: kind.ensemble_key(load_config(run / "config.toml").model.max_length, tokenizer_digest(run))
                for data, kind in kinds.items()}
        for data, key in keys.items():
            other, known = first.setdefault(data, (run, key))
            if differ := [name for name in key if key[name] != known.get(name)]:
                raise ConfigError(f"{run}: task {kinds[data].name} ({data}) cuts its rows differently from {other} "
                                  f"({', '.join(differ)} differ), so their outputs cannot be averaged row by row; "
                                  "ensemble members that agree on it")


def short_name(run: Path) -> str:
    return f"{run.parent.name}/{run.name}" if run.name.startswith("seed-") else run.name


class Ensemble:
    """Average soft outputs over member runs, one member in memory at a time."""

    def __init__(self, members: Sequence[str | Path], precision: str | None = None):
        found_runs = [(str(member) if run == Path(member).resolve() else f"{member}'s member {run}", run)
                      for member in members for run in member_runs(member)]
        check_distinct(found_runs)
        self.runs = [run for _, run in found_runs]
        if not self.runs:
            raise ConfigError("an ensemble needs at least one member run")
        self.precision = precision
        # {data set: {run: weight}}; a data set not in it averages its members equally
        self.weights: dict[str, dict[Path, float]] = {}
        weighted = [Path(m) for m in members if (Path(m) / ENSEMBLE_FILE).is_file() and read_weights(Path(m))]
        if weighted and len(members) > 1:
            raise ConfigError(f"{weighted[0]} has fitted weights, which do not carry into a larger ensemble: list "
                              "its member runs instead (and fit again with --weights fitted)")
        found = {run: kinds_by_data(run) for run in self.runs}
        for kinds in found.values():
            for kind in kinds.values():
                refuse(kind, "ensembles")
        self.tasks = {run: {data: kind.name for data, kind in kinds.items()} for run, kinds in found.items()}
        self.kinds: dict[str, TaskKind] = {}  # data set -> its kind, from the first member that has it
        for run, kinds in found.items():
            for data, kind in kinds.items():
                first = self.kinds.setdefault(data, kind)
                if (kind.spec, kind.num_outputs) != (first.spec, first.num_outputs):
                    raise ConfigError(f"{run}: task {kind.name} ({data}) is not the same task as in "
                                      f"{self.members_for(data)[0]}: its data spec or its outputs differ")
        check_same_rows(found)
        self.data_sets = list(self.kinds)
        if weighted:
            for data, weights in read_weights(weighted[0]).items():
                self.set_weights(data, weights, weighted[0] / ENSEMBLE_FILE)

    def set_weights(self, data: str, weights: Sequence[float], where: Path | str = "the weights") -> None:
        """Weight `data`'s members (in members_for order) by `weights`."""
        runs = self.members_for(data)
        if data not in self.kinds or len(weights) != len(runs):
            raise ConfigError(f"{where}: {len(weights)} weight(s) for {data}, which has {len(runs)} member(s)")
        self.weights[data] = dict(zip(runs, (float(w) for w in weights), strict=True))

    def weights_of(self, data: str) -> dict[Path, float]:
        """Each member's weight for a data set (equal unless fitted)."""
        runs = self.members_for(data)
        return self.weights.get(data) or {run: 1 / len(runs) for run in runs}

    def members_for(self, data: str) -> list[Path]:
        return [run for run in self.runs if data in self.tasks[run]]

    def outputs(self, requests: dict[str, Sequence[Example]],
                on_member: Callable[[Path, str, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
        """{data set: mean soft outputs} for each data set's examples; `on_member(run, data set, outputs)` sees
        every member's own outputs as they are computed. The members' soft outputs are kept until each data set's
        kind averages them (they are a small share of a model's memory)."""
        found: dict[str, list[np.ndarray]] = {}
        for run in self.runs:
            wanted = [d for d in requests if d in self.tasks[run]]
            if not wanted:
                continue
            member = MultitaskBERT.load(run, self.precision)
            for data in wanted:
                outputs = member.outputs(self.tasks[run][data], requests[data])
                if on_member:
                    on_member(run, data, outputs)
                found.setdefault(data, []).append(outputs)  # in members_for(data)'s order, as the weights
            del member
            gc.collect()
        return {data: self.kinds[data].average(outputs, list(self.weights[data].values()) if data in self.weights
                                               else None) for data, outputs in found.items()}


def fit_weights(kind: TaskKind, member_outputs: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Weights on the simplex for the members' soft outputs that minimise the weighted mean's loss on labelled
    rows as the task's kind measures it (TaskKind.ensemble_loss: log loss for classes, 1 - Pearson r for scores,
    the gold tags' negative log-likelihood for tagging): smooth objectives, so that a few hundred rows do not pick
    weights by the ties of accuracy. The kind averages its own soft outputs (TaskKind.average)."""
    from scipy.optimize import minimize

    count = len(member_outputs)
    if count == 1:
        return np.ones(1)
    labels = np.asarray(labels)

    def loss(weights: np.ndarray) -> float:
        return kind.ensemble_loss(kind.average(member_outputs, weights), labels)

    start = np.full(count, 1 / count)
    found = minimize(loss, start, method="SLSQP", bounds=[(0, 1)] * count,
                     constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}])
    weights = np.clip(found.x, 0, None) if found.success else start
    weights = weights / weights.sum()
    return weights if loss(weights) <= loss(start) else start  # never worse than equal on the rows it saw


def check_tune_splits(ensemble: Ensemble, data: str) -> tuple[float, int]:
    """(share, seed) of the tune split that every member of `data` held out, or a message naming the member
    that trained on those rows or carved other ones."""
    found: dict[tuple[float, int], Path] = {}
    for run in ensemble.members_for(data):
        train = load_config(run / "config.toml").train
        if train.tune_split <= 0:
            raise ConfigError(f"{run}: trained on all of {data}'s training file (train.tune_split = 0), so no rows "
                              "are left to fit weights on: train every member with train.tune_split=0.1 (the same "
                              "share and seed in each), or use --weights equal")
        found.setdefault((train.tune_split, train.tune_split_seed), run)
    if len(found) > 1:
        (a, run_a), (b, run_b) = list(found.items())[:2]
        raise ConfigError(f"{data}: members held out different tune splits ({run_a}: share {a[0]}, seed {a[1]}; "
                          f"{run_b}: share {b[0]}, seed {b[1]}), so each trained on rows the other would fit on")
    return next(iter(found))


def tune_splits(ensemble: Ensemble) -> dict[str, tuple[float, int]]:
    """{data set with more than one member: (share, seed) of the tune split its members held out}, checked."""
    splits = {}
    for data in ensemble.data_sets:
        if len(ensemble.members_for(data)) > 1:
            try:
                refuse(ensemble.kinds[data], "train.tune_split")
            except ConfigError as exc:
                raise ConfigError(f"--weights fitted fits on the tune split every member held out: {exc}") from None
            splits[data] = check_tune_splits(ensemble, data)
    return splits


def fitted_weights(ensemble: Ensemble, data_dir: str | None, splits: dict[str, tuple[float, int]]) -> dict[str, dict]:
    """Fit and set each data set's weights on the tune split (`tune_splits`) its members held out; {data set: what
    was fitted on how many rows, and the tune split's score with equal and with fitted weights}."""
    requests: dict[str, list[Example]] = {}
    for data in splits:
        run = ensemble.members_for(data)[0]
        config = load_config(run / "config.toml")
        requests[data] = tune_split_rows(config, ensemble.tasks[run][data],
                                         resolve_data_dir(data_dir or config.data_dir or None))
    collected: dict[str, dict[Path, np.ndarray]] = {}
    ensemble.outputs(requests, lambda run, data, outputs: collected.setdefault(data, {}).__setitem__(run, outputs))
    fits = {}
    for data, examples in requests.items():
        kind, runs = ensemble.kinds[data], ensemble.members_for(data)
        labels = kind.labels(examples)
        outputs = [collected[data][run] for run in runs]
        weights = fit_weights(kind, outputs, labels)
        ensemble.set_weights(data, weights)
        tune_score = {name: score(kind, kind.decide(kind.average(outputs, w)), labels)["score"]
                      for name, w in (("equal", np.full(len(runs), 1 / len(runs))), ("fitted", weights))}
        share, seed = splits[data]
        fits[data] = {"rows": len(examples), "tune_split": share, "tune_split_seed": seed, "tune_score": tune_score}
        log.info("%s: weights %s fitted on %d tune-split rows (%s %.4f with equal weights, %.4f fitted)", data,
                 " / ".join(f"{w:.3f}" for w in weights), len(examples), kind.metric, tune_score["equal"],
                 tune_score["fitted"])
    return fits


def split_examples(run_dir: Path, data: str, split: str, data_dir: str | None) -> list[Example] | None:
    """A member's dev or test examples of one data set (None when it has no such file)."""
    config = load_config(run_dir / "config.toml")
    loaded = read_split(config, tasks_by_data(run_dir)[data], split, resolve_data_dir(data_dir or config.data_dir
                                                                                      or None))
    return loaded.examples if loaded is not None else None


def ensemble_run(members: Sequence[str | Path], name: str, output_dir: str | Path = "runs",
                 data_dir: str | None = None, overwrite: bool = False, weights: str = "equal") -> Path:
    """Average the members' dev and test outputs (equally, or with weights fitted on the tune split they held out)
    into a run directory of predictions, metrics and figures."""

    started = time.perf_counter()
    check_run_name(name)
    if weights not in WEIGHTINGS:
        raise ConfigError(f"ensemble weights must be one of {', '.join(WEIGHTINGS)}, got {weights!r}")
    ensemble = Ensemble(members)
    ensemble.weights = {}  # a new ensemble: equal, or fitted again on its members' tune split
    splits = tune_splits(ensemble) if weights == "fitted" else {}  # before any member is loaded
    root = Path(output_dir)
    run_dir = root / name
    inputs = member_inputs(members)
    check_new_run(run_dir, root, overwrite, inputs)  # before the members' outputs are computed
    with RunLock(run_dir):
        fits = fitted_weights(ensemble, data_dir, splits) if weights == "fitted" else {}
        member_dev: dict[str, dict[str, float]] = {}
        averaged: dict[tuple[str, str], tuple[list[Example], np.ndarray]] = {}
        for split in ("dev", "test"):
            requests = {data: examples for data in ensemble.data_sets
                        if (examples := split_examples(ensemble.members_for(data)[0], data, split, data_dir))}

            def member_score(run: Path, data: str, outputs: np.ndarray, split: str = split,
                             requests: dict = requests) -> None:
                if split == "dev":
                    kind = ensemble.kinds[data]
                    result = score(kind, kind.decide(outputs), kind.labels(requests[data]))
                    member_dev.setdefault(short_name(run), {})[data] = result["score"]

            for data, outputs in ensemble.outputs(requests, member_score).items():
                averaged[(data, split)] = (requests[data], outputs)
        written: dict = {"members": [str(r) for r in ensemble.runs]}
        if ensemble.weights:
            written["weights"] = {data: list(w.values()) for data, w in ensemble.weights.items()}
        members_toml = tomli_w.dumps(written)
        new = create_run_dir(run_dir, root, overwrite, {ENSEMBLE_FILE: members_toml}, inputs)
        with removed_if_unfinished(new, "the ensemble") as out:  # beside the run it replaces, if any
            final_dev = {}
            for (data, split), (examples, outputs) in averaged.items():
                kind = ensemble.kinds[data]
                result = write_task_outputs(out, data, kind, split, examples, kind.decide(outputs), outputs)
                if result:
                    final_dev[data] = result
            rows = [*member_dev.items(), ("ensemble", {data: r["score"] for data, r in final_dev.items()})]
            table = members_table(rows, ensemble.kinds) + weights_table(ensemble, fits)
            (out / "members.md").write_text(table, encoding="utf-8")
            write_json(out / "metrics.json", {
                "name": name, "members": [str(r) for r in ensemble.runs], "final_dev": final_dev,
                "member_dev": member_dev,
                "weights": {"method": weights, "fitted": fits,
                            "by_data": {data: {short_name(run): round(w, 6) for run, w in
                                               ensemble.weights_of(data).items()} for data in ensemble.data_sets}},
                "wall_seconds": round(time.perf_counter() - started, 1),
                "environment": {**machine(), "precision": ensemble.precision or "each member's own"}})
        write_report_quietly(run_dir)
    return run_dir


def with_overall(scores: dict[str, float], kinds: dict[str, TaskKind]) -> dict[str, float]:
    """The scores and the overall score where they make one: the CS224N three, or every data set of the ensemble."""
    value, label = overall(TaskScore(data, kinds[data].data, kinds[data].metric, score, kinds[data].helper)
                           for data, score in scores.items())
    if label == CS224N_LABEL or (value is not None and set(scores) == set(kinds)):
        return {**scores, "overall": value}
    return scores


def members_table(rows: list[tuple[str, dict[str, float]]], kinds: dict[str, TaskKind]) -> str:
    columns = [*kinds, "overall"]
    _, label = overall(TaskScore(data, kind.data, kind.metric, 0.0, kind.helper) for data, kind in kinds.items())
    lines = ["Dev scores of each member and of the ensemble (the mean of the members' soft outputs); each task's "
             f"primary metric ({', '.join(f'{d}: {k.metric}' for d, k in kinds.items())}); {label}.", "",
             "| run | " + " | ".join(columns) + " |", "| --- | " + " | ".join("---:" for _ in columns) + " |"]
    for name, scores in rows:
        scores = with_overall(scores, kinds)
        lines.append(f"| {name} | " + " | ".join(f"{scores[c]:.4f}" if c in scores else "-" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def weights_table(ensemble: Ensemble, fits: dict[str, dict]) -> str:
    """Each data set's member weights, and where fitted, the rows they were fitted on and the tune split's score."""
    if not ensemble.weights:
        return "\nEvery data set averages its members with equal weights.\n"
    lines = ["", "Weights, fitted on the tune split every member held out of its training file (dev and test "
             "untouched); its score with equal and with fitted weights:", "",
             "| data set | weights | tune rows | equal | fitted |", "| --- | --- | ---: | ---: | ---: |"]
    for data in ensemble.data_sets:
        weights = ", ".join(f"{short_name(run)} {w:.3f}" for run, w in ensemble.weights_of(data).items())
        fit = fits.get(data)
        figures = (f"{fit['rows']} | {fit['tune_score']['equal']:.4f} | {fit['tune_score']['fitted']:.4f}"
                   if fit else "- | - | -")
        lines.append(f"| {data} | {weights} | {figures} |")
    return "\n".join(lines) + "\n"
