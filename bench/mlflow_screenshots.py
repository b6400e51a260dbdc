"""The README's pictures of the MLflow UI (issue 45): a tracked run and an ablation, taken in Chromium.

    .venv/bin/python bench/mlflow_screenshots.py [--out docs/images] [--workdir DIR] [--max-train 200] [--max-eval 100]

starts `mlflow server` on 127.0.0.1 (a free port, a SQLite store and the artifact root in WORKDIR), runs a small
real ablation of the default multitask job (configs/multitask.toml, the embedded MiniLM, `minbert train --quick`'s
limits with fewer examples: a picture of the UI, not a score) with two variants, SST's mean pooling and its [CLS]
vector, logged with `train.tracking = ["tensorboard", { name = "mlflow", ... experiment = "minbert-demo" }]`, then
opens the MLflow UI in Chromium (playwright, Debian's /usr/bin/chromium) and writes OUT/mlflow-run.png (a child
run: its overview with metrics and parameters, its charts, its artifacts with report.html open) and
OUT/mlflow-ablation.png (the experiment's runs table, the parent run expanded to its two children, and the parent's
artifacts with ablation.png open), and stops the server. WORKDIR (default: a temporary directory, removed at the
end) is kept when given, and a second call with it skips the finished runs (as `minbert ablate` does) and only
retakes the pictures. Measured under `nice -n 19` on a 2-core CPU busy with another training: the server took
3 minutes to start, the two runs 33 minutes; a retake with a kept WORKDIR, 6 minutes. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = "minbert-demo"
SWEEP = """# written by bench/mlflow_screenshots.py: the default job, a first look, SST's pooling two ways
base = "{base}"
output_dir = "{runs}"
overrides = ["train.max_train_examples={max_train}", "train.max_eval_examples={max_eval}", "train.epochs=1",
             "train.stage_epoch_limit=1",
             'train.tracking=["tensorboard", {{name = "mlflow", tracking_uri = "{url}", experiment = "{experiment}"}}]']

[variants]
mean = []
cls = ["tasks.sst.pooling=cls"]
"""
VIEWPORT = {"width": 1280, "height": 800}
MAX_PNG_BYTES = 300_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """`mlflow server` on loopback with its store in ROOT (tests/runs/test_tracking_mlflow.py starts it here too)."""
    url = f"http://127.0.0.1:{free_port()}"
    with (root / "server.log").open("w") as server_log:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                                   url.rsplit(":", 1)[1], "--workers", "1",
                                   "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                                   "--artifacts-destination", str(root / "artifacts")],
                                  stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True,
                                  # no job runner: its five huey consumers would each import mlflow, for jobs
                                  # nothing here runs
                                  env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        deadline = time.monotonic() + 600  # slow to start on a busy CPU
        while True:
            if server.poll() is not None:
                raise SystemExit(f"mlflow server stopped:\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("mlflow server did not start in 10 minutes") from None
                time.sleep(0.5)
        yield url
    finally:  # the server and its workers: their own process group
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def run_sweep(workdir: Path, url: str, max_train: int, max_eval: int) -> None:
    from minbert.cli import main

    sweep = workdir / "pooling.toml"
    sweep.write_text(SWEEP.format(base=REPO / "configs" / "multitask.toml", runs=workdir / "runs", url=url,
                                  experiment=EXPERIMENT, max_train=max_train, max_eval=max_eval), encoding="utf-8")
    if main(["ablate", str(sweep)]) != 0:
        raise SystemExit("minbert ablate failed")


def to_png(image, path: Path) -> None:
    """IMAGE as a PNG of at most MAX_PNG_BYTES: a palette of 256 colours or fewer is plenty for a web page."""
    from PIL import Image

    for colours in (256, 128, 64):
        buffer = BytesIO()
        image.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= MAX_PNG_BYTES:
            break
    path.write_bytes(buffer.getvalue())
    print(f"{path}: {image.width}x{image.height}, {buffer.tell() // 1000} KB")


def stacked(shots: list[tuple[bytes, int]]):
    """Screenshots (each with the x it was clipped at) one above the other, a grey rule between them; left of a
    clipped one, the page's background."""
    from PIL import Image

    images = [(Image.open(BytesIO(shot)).convert("RGB"), x) for shot, x in shots]
    rule = 6
    width = max(image.width + x for image, x in images)
    canvas = Image.new("RGB", (width, sum(image.height for image, _ in images) + rule * (len(images) - 1)),
                       (200, 200, 200))
    top = 0
    for image, x in images:
        if x:
            canvas.paste(images[0][0].getpixel((2, 2)), (0, top, x, top + image.height))
        canvas.paste(image, (x, top))
        top += image.height + rule
    return canvas


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise SystemExit("no Chromium found: apt-get install chromium")


def ui_settings(experiment: str, parent: str) -> str:
    """localStorage the UI reads at load: the classic ML views (not GenAI), its assistant panel closed, the runs
    table with the parent run expanded and a few of the sweep's metrics and its varied parameter as columns."""
    state = {"selectedColumns": ["attributes.`Duration`", "metrics.`dev/selection_score`", "metrics.`dev/sst_accuracy`",
                                 "metrics.`dev/sts_pearson`", "params.`tasks.sst.pooling`"],
             "runsExpanded": {parent: True}}
    settings = {"mlflow.workflowType_v1": json.dumps("machine_learning"), "mlflow.assistant.panelOpen_v1": "false",
                "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
                f"MLflowLocalStorage-1.1-ExperimentView-{experiment}-expandRows": "true",
                f'MLflowLocalStorage-1.1-ExperimentPage-["{experiment}"]-ReactComponentState': json.dumps(state)}
    return "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});\n" for k, v in settings.items())


def screenshots(url: str, out: Path) -> None:
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = {run.info.run_name: run.info.run_id for run in client.search_runs([experiment])}
    run_page, parent_page = (f"{url}/#/experiments/{experiment}/runs/{runs[name]}" for name in ("mean", "pooling"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_init_script(ui_settings(experiment, runs["pooling"]))
            page = context.new_page()
            # a run: its overview (metrics, the first parameters), its charts, its artifacts with report.html open
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(run_page)
            page.get_by_text("Finished", exact=True).first.wait_for(timeout=120_000)
            page.get_by_text("train.lr", exact=True).first.wait_for()
            page.get_by_role("link", name="pooling", exact=True).first.wait_for()  # the parent run's link
            page.wait_for_timeout(1500)
            overview = page.screenshot()
            tab = page.get_by_text("Overview", exact=True).first.bounding_box()  # the next two: from the tabs on
            left, tabs = int(tab["x"] - 16), tab["y"] - 14
            page.set_viewport_size({"width": 1280, "height": 1900})
            page.goto(f"{run_page}/model-metrics")
            page.get_by_text("throughput", exact=True).first.click()  # collapsed: the losses come up beside dev
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 7", timeout=120_000)
            page.wait_for_timeout(1500)  # the last plots' transitions
            below = page.get_by_text("Model metrics", exact=True).last.bounding_box()["y"]  # after the losses
            charts = page.screenshot(clip={"x": left, "y": tabs, "width": 1280 - left, "height": below - 12 - tabs})
            page.set_viewport_size({"width": 1280, "height": 640})
            page.goto(f"{run_page}/artifacts")
            page.get_by_text("report.html", exact=True).first.click()
            page.frame_locator("iframe").first.locator("body").wait_for(timeout=60_000)
            page.wait_for_timeout(2000)
            artifacts = page.screenshot(clip={"x": left, "y": tabs, "width": 1280 - left, "height": 640 - tabs})
            to_png(stacked([(overview, 0), (charts, left), (artifacts, left)]), out / "mlflow-run.png")

            # an ablation: the experiment's runs, the parent run expanded, and the parent's ablation chart
            page.set_viewport_size({"width": 1280, "height": 360})
            page.goto(f"{url}/#/experiments/{experiment}/runs")
            page.get_by_text("cls", exact=True).first.wait_for(timeout=120_000)
            page.wait_for_timeout(1500)
            table = page.screenshot()
            page.set_viewport_size(VIEWPORT)
            page.goto(f"{parent_page}/artifacts")
            page.get_by_text("ablation.png", exact=True).first.click()
            page.locator("img[src*='ablation.png'], img[src*='blob:']").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            to_png(stacked([(table, 0), (page.screenshot(), 0)]), out / "mlflow-ablation.png")
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="where the PNGs go")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="the server's store and the runs, kept (default: a temporary directory, removed)")
    parser.add_argument("--max-train", type=int, default=200, help="training examples per task")
    parser.add_argument("--max-eval", type=int, default=100, help="dev examples per task")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlflow-screenshots-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with mlflow_server(workdir) as url:
            run_sweep(workdir, url, args.max_train, args.max_eval)
            screenshots(url, args.out)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
