"""A task defined only in a TOML file, over a made-up file minbert has never seen (semicolons, string labels, no id
column, a BOM, CRLF line ends, a malformed row): every command works on it with no code change."""

from __future__ import annotations

import json
import random
import shutil

import httpx
import pytest

from minbert.cli import main
from minbert.predictor import MultitaskBERT
from tests.conftest import WORDS
from tests.serving.conftest import running_server

MOODS = ["calm", "tense", "odd"]  # three string classes; the text says which (a learnable signal)
MARK = {"calm": "good fun", "tense": "awful boring", "odd": "cat guitar"}


def made_up_file(path, rows: int, seed: int, malformed: bool) -> None:
    rng = random.Random(seed)
    lines = ["sentence;mood"]
    for i in range(rows):
        mood = MOODS[i % 3]
        lines.append(f"{MARK[mood]} {' '.join(rng.choice(WORDS) for _ in range(4))};{mood}")
    if malformed:
        lines.insert(5, "a row with no label at all;")  # line 6: empty mood
        lines.insert(9, "the mood is not declared;furious")  # line 10
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())


TASK = """
[tasks.mood]
pooling = "mean"
[tasks.mood.data]
train = "mood-train.csv"
dev = "mood-dev.csv"
test = "mood-test.csv"
text = ["sentence"]
label = "mood"
delimiter = ";"
classes = ["calm", "tense", "odd"]
class_names = ["Calm", "Tense", "Odd"]
metrics = ["macro_f1", "accuracy"]
"""


@pytest.fixture(scope="module")
def own_task(tmp_path_factory, tiny_model_dir):
    """(config, data directory, finished run) of the made-up task, trained with --quick."""
    root = tmp_path_factory.mktemp("own-task")
    data = root / "data"
    data.mkdir()
    made_up_file(data / "mood-train.csv", 60, 0, malformed=True)
    made_up_file(data / "mood-dev.csv", 18, 1, malformed=False)
    (data / "mood-test.csv").write_bytes("\ufeffsentence\r\ngood fun film\r\nawful boring plot\r\n".encode())
    config = root / "mood.toml"
    config.write_text(f'output_dir = "{root / "runs"}"\n[model]\npath = "{tiny_model_dir}"\nmax_length = 32\n'
                      f'[train]\nepochs = 2\nbatch_size = 8\nlr = 1e-3\n{TASK}', encoding="utf-8")
    assert main(["train", "--quick", "--config", str(config), "--data-dir", str(data)]) == 0
    return config, data, root / "runs" / "mood-quick"


def test_train_reports_the_bad_rows_and_scores_by_the_spec(own_task, capsys):
    config, data, run = own_task
    log = (run / "train.log").read_text()
    assert "mood-train.csv:6: skipped row: empty mood (no label)" in log
    assert "mood-train.csv:10: skipped row: mood 'furious' is not a declared class (calm, tense, odd)" in log
    metrics = json.loads((run / "metrics.json").read_text())
    dev = metrics["final_dev"]["mood"]
    assert dev["metric"] == "macro_f1" and set(dev["metrics"]) == {"macro_f1", "accuracy"}
    assert len(dev["confusion"]) == 3 and sum(map(sum, dev["confusion"])) == 18
    # prediction files named after the task; the test file has no label column and no ids: rows by line
    lines = (run / "predictions" / "mood-test-output.csv").read_text().splitlines()
    assert lines[0] == "id \t Predicted_mood " and [line.split(" , ")[0] for line in lines[1:]] == ["mood-test:2",
                                                                                                   "mood-test:3"]
    assert (run / "predictions" / "mood-dev-output.csv").exists()
    assert main(["data", "--config", str(config), "--data-dir", str(data), "--json"]) == 0  # rows skipped, none fatal
    report = json.loads(capsys.readouterr().out)
    assert [s["line"] for s in report["mood-train.csv"]["skipped"]] == [6, 10]
    assert report["mood-dev.csv"]["rows"] == 18 and not report["mood-dev.csv"]["skipped"]


def test_evaluate_reproduces_the_recorded_score(own_task, capsys):
    _, data, run = own_task
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    recorded = json.loads((run / "metrics.json").read_text())["final_dev"]["mood"]["score"]
    assert f"macro_f1  {recorded:.4f} (recorded {recorded:.4f})" in out


def test_predict_from_the_cli_and_the_api(own_task, tmp_path, capsys):
    _, data, run = own_task
    model = MultitaskBERT.load(run)
    indices = model.predict("mood", ["good fun film", "awful boring plot"])
    assert model.predict("mood", ["good fun film", "awful boring plot"], labels=True) == [
        ["Calm", "Tense", "Odd"][i] for i in indices]
    assert model.class_names("mood") == ["Calm", "Tense", "Odd"]
    capsys.readouterr()
    assert main(["predict", "--run", str(run), "--task", "mood", "good fun film", "awful boring plot"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [str(i) for i in indices]
    # an input file in the task's own format: its delimiter, its BOM
    assert main(["predict", "--run", str(run), "--task", "mood", "--input", str(data / "mood-dev.csv"),
                 "--output", str(tmp_path / "out.csv")]) == 0
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 19


def test_ensemble_report_and_serve(own_task, tmp_path):
    _, data, run = own_task
    copy = shutil.copytree(run, tmp_path / "copy")  # a run listed twice is refused; its copy counts as another
    assert main(["ensemble", str(run), str(copy), "--name", "pair", "--output-dir", str(tmp_path),
                 "--data-dir", str(data)]) == 0
    ensemble = json.loads((tmp_path / "pair" / "metrics.json").read_text())
    single = json.loads((run / "metrics.json").read_text())["final_dev"]["mood"]
    assert ensemble["final_dev"]["mood"]["score"] == pytest.approx(single["score"])  # one model twice
    assert "| run | mood | overall |" in (tmp_path / "pair" / "members.md").read_text()
    assert main(["report", str(run), str(tmp_path / "pair"), "--output", str(tmp_path / "both.html")]) == 0
    page = (run / "report.html").read_text()
    assert "overall: mean of normalised primary metrics" in page and "Tense" in page
    model = MultitaskBERT.load(run)
    with running_server(model) as url, httpx.Client(base_url=url, timeout=30) as http:
        answer = http.post("/predict/mood", json={"texts": ["good fun film", "awful boring plot"]})
        assert answer.status_code == 200
        results = answer.json()["results"]
        assert [r["label"] for r in results] == model.predict("mood", ["good fun film", "awful boring plot"])
        assert all(r["name"] in ("Calm", "Tense", "Odd") and len(r["probabilities"]) == 3 for r in results)
        assert http.post("/predict/mood", json={"pairs": [["a", "b"]]}).status_code == 422
        assert http.post("/predict/nope", json={"texts": ["a"]}).status_code == 404
        assert http.get("/health").json()["task_endpoints"] == {"mood": "/predict/mood"}


def test_ablate(own_task, tmp_path):
    config, data, _ = own_task
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'base = "{config}"\noutput_dir = "{tmp_path / "out"}"\n[variants]\nmean = []\n'
                     'cls = ["tasks.mood.pooling=cls"]\n')
    assert main(["ablate", str(sweep), "--data-dir", str(data), "--budget", "0.5"]) == 0
    table = (tmp_path / "out" / "ablation.md").read_text()
    assert "| variant | overrides | overall | mood |" in table and "mood: macro_f1" in table
    assert "| cls | `tasks.mood.pooling=cls` |" in table
