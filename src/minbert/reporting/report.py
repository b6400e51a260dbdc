"""HTML reports: one self-contained page per run (or ensemble), and a comparison page for several.

The pages open from disk with no server and no network: Jinja2 renders them, Plotly draws the charts, and
plotly.js is inlined once per page. Each run's numbers come from what the run directory already holds:
metrics.json, config.toml (or ensemble.toml) and predictions/<task>-dev-details.jsonl (text, gold, prediction and
soft output of every dev example, written with the run's predictions).
"""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader
from plotly.offline import get_plotlyjs

from minbert.data.spec import data_key
from minbert.errors import ConfigError, MinbertError
from minbert.metrics import TaskScore, overall
from minbert.outputs import check_output_file, write_output_text
from minbert.tasks.kinds import TaskKind, kind_of
from minbert.training.config import default_config_path, load_config

log = logging.getLogger("minbert")

REPORT_FILE = "report.html"
WORST_ERRORS = 200  # rows per task in a report's error table
NOT_COMPARED = {"name", "output_dir", "data_dir"}  # where a run is written, not how it is trained


@dataclass
class RunView:
    """What a report shows of one run directory."""

    path: Path
    name: str
    metrics: dict
    config: dict | None  # the resolved config (None for an ensemble)
    members: list[str] = field(default_factory=list)  # an ensemble's member runs
    details: dict[str, list[dict]] = field(default_factory=dict)  # task -> dev examples with predictions
    kinds: dict[str, TaskKind] = field(default_factory=dict)  # task -> its kind (spec, classes, ...)

    def data_of(self, task: str) -> str:
        """The name runs are compared by: a built-in data set's (sst, quora, ...), else the task's own."""
        return data_key(task, self.kinds[task].data) if task in self.kinds else task

    @property
    def overall(self) -> tuple[float | None, str]:
        kinds = self.kinds
        return overall(TaskScore(task, kinds[task].data if task in kinds else "", r["metric"], r["score"],
                                 task in kinds and kinds[task].helper)
                       for task, r in self.metrics.get("final_dev", {}).items())

    @property
    def scores(self) -> dict[str, float]:
        """{data set or "overall": dev score (primary metric) of the best checkpoint}."""
        found = {self.data_of(t): r["score"] for t, r in self.metrics.get("final_dev", {}).items()}
        value, _ = self.overall
        if value is not None:
            found["overall"] = value
        return found


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def read_details(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return rows


def load_run(path: str | Path) -> RunView:
    """A run or ensemble directory, read for a report; a clear error for anything else."""
    path = Path(path)
    if not (path / "metrics.json").exists():
        raise ConfigError(f"{path}: not a finished run (no metrics.json)")
    metrics = read_json(path / "metrics.json")
    if "final_dev" not in metrics:
        raise ConfigError(f"{path}/metrics.json: no final_dev (the run has not finished; "
                          f"`minbert evaluate --run {path} --write-outputs` writes it)")
    config = members = None
    if (path / "config.toml").exists():
        run_config = load_config(path / "config.toml")
        config = run_config.to_dict()
        kinds = {task: kind_of(task, task_config) for task, task_config in run_config.tasks.items()}
    else:  # an ensemble: its tasks are named by their data sets, their kinds are its members'
        members = metrics.get("members", [])
        kinds = member_kinds(members, metrics["final_dev"])
    details = {task: read_details(path / "predictions" / f"{task}-dev-details.jsonl") for task in metrics["final_dev"]
               if (path / "predictions" / f"{task}-dev-details.jsonl").exists()}
    return RunView(path, metrics.get("name", path.name), metrics, config, members or [], details, kinds)


def member_kinds(members: Sequence[str], tasks: Sequence[str]) -> dict[str, TaskKind]:
    """An ensemble's task kinds by data set, from the first member run (its config.toml) that has each."""
    kinds: dict[str, TaskKind] = {}
    for member in members:
        if (Path(member) / "config.toml").exists():
            for task, task_config in load_config(Path(member) / "config.toml").tasks.items():
                kinds.setdefault(data_key(task, task_config.data), kind_of(task, task_config))
    return {task: kinds[task] for task in tasks if task in kinds}


def flatten(values: dict, prefix: str = "") -> dict[str, object]:
    """{"train.lr": 5e-5, "tasks.sst.dropout": 0.3, ...}; lists (stages, extra files) stay whole values."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@cache
def default_job() -> tuple[str, dict[str, object]] | None:
    """(where it is, its flattened settings) of the default job, the baseline of every config difference."""
    try:
        path = default_config_path()
    except MinbertError:
        return None
    return str(path), flatten(load_config(path).to_dict())


def config_differences(config: dict | None) -> list[dict]:
    """Each setting where a run differs from the default job: key, this run's value, the default's."""
    baseline = default_job()
    if config is None or baseline is None:
        return []
    ours, theirs = flatten(config), baseline[1]
    return [{"key": key, "value": show(ours.get(key, "(absent)")), "default": show(theirs.get(key, "(absent)"))}
            for key in sorted(ours.keys() | theirs.keys())
            if key.split(".")[0] not in NOT_COMPARED and ours.get(key) != theirs.get(key)]


def show(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- charts: Plotly figures, serialised to JSON and drawn by the inlined plotly.js ---

def plain(text: object) -> str:
    """Text for a Plotly label, title or hover: Plotly reads its own HTML subset (<br>, <a href>, ...) in every
    string, so what came from data or a user is escaped and shows literally."""
    return html.escape(str(text), quote=False)


def chart(figure: go.Figure, height: int = 360) -> dict:
    figure.update_layout(height=height, margin={"l": 60, "r": 20, "t": 40, "b": 50}, template="plotly_white")
    return json.loads(figure.to_json())


def learning_curves(epochs: list[dict]) -> list[dict]:
    if not epochs:
        return []
    numbers = [e["epoch"] for e in epochs]
    tasks = sorted({t for e in epochs for t in e.get("dev", {})})
    loss, dev = go.Figure(), go.Figure()
    for task in tasks:
        loss.add_scatter(x=numbers, y=[e.get("train_loss", {}).get(task) for e in epochs], name=plain(task),
                         mode="lines+markers")
        dev.add_scatter(x=numbers, y=[e["dev"].get(task, {}).get("score") for e in epochs], name=plain(task),
                        mode="lines+markers")
    dev.add_scatter(x=numbers, y=[e.get("selection_score") for e in epochs], name="selection score",
                    mode="lines+markers", line={"dash": "dot", "color": "black"})
    loss.update_layout(title="train loss per epoch", xaxis_title="epoch")
    dev.update_layout(title="dev primary metric per epoch", xaxis_title="epoch")
    return [chart(loss), chart(dev)]


def confusion_chart(task: str, counts: np.ndarray, labels: Sequence[str]) -> dict:
    labels = [plain(label) for label in labels]
    figure = go.Figure(go.Heatmap(z=counts.tolist(), x=labels, y=labels, colorscale="Blues",
                                  text=counts.tolist(), texttemplate="%{text}", hovertemplate=(
                                      "gold %{y}<br>predicted %{x}<br>%{z} examples<extra></extra>")))
    figure.update_layout(title=f"{plain(task)}: confusion matrix (dev)", xaxis_title="predicted", yaxis_title="gold",
                         yaxis_autorange="reversed")
    return chart(figure, height=300 + 30 * len(labels))


def similarity_scatter(task: str, rows: list[dict], score_range: Sequence[float] = (0.0, 5.0)) -> dict:
    gold = np.array([r["gold"] for r in rows], dtype=float)
    predicted = np.array([r["predicted"] for r in rows], dtype=float)
    # SVG, not WebGL (Scattergl): headless browsers and many machines have no WebGL, and dev sets are small
    scatter = go.Figure(go.Scatter(x=gold, y=predicted, mode="markers", marker={"size": 5, "opacity": 0.5},
                                   text=[plain(" / ".join(r["texts"])) for r in rows],
                                   hovertemplate="gold %{x:.2f}, predicted %{y:.2f}<br>%{text}<extra></extra>"))
    scatter.add_scatter(x=list(score_range), y=list(score_range), mode="lines", line={"color": "gray", "width": 1},
                        showlegend=False)
    scatter.update_layout(title=f"{plain(task)}: predicted against gold (dev)", xaxis_title="gold score",
                          yaxis_title="predicted", showlegend=False)
    return chart(scatter, height=420)


def error_per_bin_chart(task: str, bins: list[dict]) -> dict:
    """The per-bin error the run recorded in metrics.json (write_task_outputs' score_bins)."""
    per_bin = go.Figure(go.Bar(x=[b["bin"] for b in bins], y=[b["mean_abs_error"] or 0 for b in bins],
                               text=[f"n={b['count']}" for b in bins], textposition="outside"))
    per_bin.update_layout(title=f"{plain(task)}: mean |error| per gold-score bin", xaxis_title="gold bin",
                          yaxis_title="mean |error|")
    return chart(per_bin, height=420)


# --- tables ---

def worst_errors(labels: Sequence[str] | None, rows: list[dict], limit: int = WORST_ERRORS) -> list[dict]:
    """The dev examples a task got most wrong: classes furthest off (then the most confident), or the largest
    score error. `labels`: the class names of a classification task, None for scores."""
    scored = []
    for row in rows:
        gold, predicted = row["gold"], row["predicted"]
        if labels is None:
            error = abs(predicted - gold)
            confidence = None
        else:
            if gold == predicted:
                continue
            soft = row.get("soft")
            confidence = (max(soft) if isinstance(soft, list) else max(soft, 1 - soft)) if soft is not None else None
            error = abs(predicted - gold) + (confidence or 0)
        scored.append((error, row, confidence))
    scored.sort(key=lambda item: -item[0])
    out = []
    for _, row, confidence in scored[:limit]:
        out.append({"id": row["id"], "texts": row["texts"],
                    "gold": labels[row["gold"]] if labels else f"{row['gold']:.2f}",
                    "predicted": labels[row["predicted"]] if labels else f"{row['predicted']:.2f}",
                    "error": f"{abs(row['predicted'] - row['gold']):.2f}" if labels is None else
                    str(abs(row["predicted"] - row["gold"])),
                    "confidence": "" if confidence is None else f"{confidence:.3f}"})
    return out


def task_sections(run: RunView) -> list[dict]:
    sections = []
    for task, result in run.metrics["final_dev"].items():
        kind = run.kinds.get(task)
        rows = run.details.get(task) if kind is None or kind.row_details else None
        section = {"task": task, "data": run.data_of(task), "metric": result["metric"], "score": result["score"],
                   "metrics": result.get("metrics", {}), "charts": [], "errors": [],
                   "pair": kind.is_pair if kind else bool(rows and len(rows[0]["texts"]) == 2),
                   "has_details": bool(rows)}
        labels = kind.class_names if kind else None
        if labels is None and kind is None and "confusion" in result:  # a task whose spec cannot be read now
            labels = [str(i) for i in range(len(result["confusion"]))]
        section["classes"] = labels is not None
        # the confusion matrix and per-bin error are in metrics.json (write_task_outputs); the scatter needs the rows
        if labels and "confusion" in result:
            section["charts"].append(confusion_chart(task, np.array(result["confusion"]), labels))
        if labels is None and rows:
            section["charts"].append(similarity_scatter(task, rows, kind.score_range if kind else (0.0, 5.0)))
        if labels is None and "bins" in result:
            section["charts"].append(error_per_bin_chart(task, result["bins"]))
        if rows:
            section["errors"] = worst_errors(labels, rows)
        if kind is not None and kind.report_template:  # the kind's own views (per-type scores, worst sentences, ...)
            section["view"] = kind.report_view(result, run.details.get(task), WORST_ERRORS)
            section["view_template"] = f"kinds/{kind.report_template}.html.j2"
            section["has_details"] = task in run.details
        sections.append(section)
    return sections


def epoch_rows(epochs: list[dict]) -> tuple[list[str], list[dict]]:
    tasks = sorted({t for e in epochs for t in e.get("dev", {})})
    rows = [{"epoch": e["epoch"], "stage": e.get("stage", ""),
             "loss": {t: e.get("train_loss", {}).get(t) for t in tasks},
             "dev": {t: e["dev"].get(t, {}).get("score") for t in tasks},
             "selection": e.get("selection_score"), "train_seconds": e.get("train_seconds"),
             "eval_seconds": e.get("eval_seconds"), "rate": e.get("train_examples_per_second"), "lr": e.get("lr")}
            for e in epochs]
    return tasks, rows


# --- pages ---

@cache
def environment() -> Environment:
    # every value is escaped (select_autoescape() would leave *.html.j2 unescaped): texts, names and config
    # values come from data files and users, and reports are shared
    env = Environment(loader=PackageLoader("minbert.reporting", "templates"), autoescape=True)
    env.filters["num"] = lambda v, digits=4: "" if v is None else f"{v:.{digits}f}"
    return env


def content_security_policy(nonce: str) -> str:
    """The page's own scripts only (by nonce), nothing fetched; Plotly needs inline styles and data/blob images."""
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data: blob:; "
            "font-src data:; base-uri 'none'; form-action 'none'")


def page_context(title: str) -> dict:
    nonce = secrets.token_urlsafe(16)
    return {"title": title, "plotly_js": get_plotlyjs(), "made": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "default_job": default_job()[0] if default_job() else None, "nonce": nonce,
            "content_security_policy": content_security_policy(nonce)}


def render_run(run: RunView) -> str:
    tasks, epochs = epoch_rows(run.metrics.get("epochs", []))
    config_text = (run.path / "config.toml").read_text(encoding="utf-8") if run.config else ""
    best = run.metrics.get("best") or {}
    return environment().get_template("run.html.j2").render(
        **page_context(f"minbert report: {run.name}"), run=run, scores=run.scores, overall_label=run.overall[1],
        best_epoch=best.get("epoch"),
        sections=task_sections(run), curves=learning_curves(run.metrics.get("epochs", [])), epoch_tasks=tasks,
        epochs=epochs, differences=config_differences(run.config), config_text=config_text,
        environment=run.metrics.get("environment"), wall_seconds=run.metrics.get("wall_seconds"),
        stopped_early=run.metrics.get("stopped_early"))


def render_comparison(runs: list[RunView], links: dict[Path, str]) -> str:
    ranked = sorted(runs, key=lambda r: -r.scores.get("overall", max(r.scores.values(), default=0)))
    columns = list(dict.fromkeys(c for r in runs for c in r.scores if c != "overall"))
    columns += ["overall"] if any("overall" in r.scores for r in runs) else []
    leaderboard = go.Figure(go.Bar(x=[plain(r.name) for r in ranked], y=[r.scores.get(columns[-1]) for r in ranked]))
    leaderboard.update_layout(title=f"{columns[-1]} dev score per run", yaxis_title=columns[-1])
    low = min((r.scores.get(columns[-1], 1) for r in ranked), default=0)
    leaderboard.update_yaxes(range=[max(0, low - 0.02), None])
    curves = go.Figure()
    for run in ranked:
        epochs = run.metrics.get("epochs", [])
        if epochs:
            curves.add_scatter(x=[e["epoch"] for e in epochs], y=[e.get("selection_score") for e in epochs],
                               name=plain(run.name), mode="lines+markers")
    curves.update_layout(title="selection score per epoch (dev)", xaxis_title="epoch")
    rows = [{"run": r, "link": links.get(r.path), "scores": r.scores, "best_epoch": (r.metrics.get("best") or {})
             .get("epoch"), "minutes": (r.metrics.get("wall_seconds") or 0) / 60,
             "differences": config_differences(r.config), "environment": r.metrics.get("environment")}
            for r in ranked]
    return environment().get_template("compare.html.j2").render(
        **page_context(f"minbert comparison: {len(runs)} runs"), rows=rows, columns=columns,
        charts=[chart(leaderboard), chart(curves)])


def write_report(runs: Sequence[str | Path], output: str | Path | None = None) -> Path:
    """One run: its report (default RUN/report.html). Several: a comparison page (default ./comparison.html)
    that links each run's own report where it has one."""
    if not runs:
        raise ConfigError("name at least one run directory")
    if output:
        check_output_file(output)
    views = [load_run(r) for r in runs]
    if len(views) == 1:
        path = Path(output) if output else views[0].path / REPORT_FILE
        html = render_run(views[0])
    else:
        path = Path(output) if output else Path("comparison.html")
        links = {v.path: relative_link(v.path / REPORT_FILE, path.parent) for v in views
                 if (v.path / REPORT_FILE).exists()}
        html = render_comparison(views, links)
    write_output_text(path, html)
    return path


def relative_link(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def write_report_quietly(*runs: str | Path, output: str | Path | None = None) -> Path | None:
    """A report at the end of train, ensemble and ablate: a failure to draw it is logged, never fatal to the
    run it describes."""
    try:
        path = write_report(runs, output)
    except Exception as exc:  # the run's own results are written; the page is a view of them
        log.warning("could not write the HTML report: %s", exc)
        return None
    log.info("report: %s", path)
    return path
