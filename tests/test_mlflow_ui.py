"""`mlflow ui` lands on the results: a tiny tracked run, MLflow's server on a free port, the address the run printed
opened in headless Chromium; the runs table lists each run with its model and top-1.

Skips where no Chromium is installed, and fails instead with FER_BENCH_REQUIRE_CHROMIUM=1 (CI installs it)."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from helpers import fer_bench  # noqa: E402

SEEDS = (0, 1)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")  # fmt: skip


def _chromium_or_skip() -> str:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if browser is None:
        why = "no headless Chromium on PATH; CI installs Debian's `chromium`"
        if os.environ.get("FER_BENCH_REQUIRE_CHROMIUM"):
            pytest.fail(why)
        pytest.skip(why)
    return browser


def chromium(browser: str, url: str, *args: str, budget_ms: int = 30_000) -> str:
    """What headless Chromium prints for ``url`` (``--dump-dom``: the DOM once the page's requests settled)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """simple_cnn on synthetic data, two seeds of one epoch, in a fresh SQLite store, and what the run printed."""
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root}/mlflow.db"
    res = fer_bench("run", "--models", "simple_cnn", "--seeds", ",".join(map(str, SEEDS)), "--dataset", "synthetic",
                    "--epochs", "1", "--limit-train", "100", "--out", str(root / "out"), "--no-progress",
                    "--tracking-uri", uri, "--experiment", "ui", timeout=1800)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return uri, res.stderr


@pytest.fixture(scope="module")
def server(tracked, tmp_path_factory):
    """``mlflow server`` on a free localhost port over the run's store; its base URL."""
    uri, _ = tracked
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port",
           str(port), "--workers", "1"]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("w") as out:
        # its own process group: the server's workers go with it at the end
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 1200  # NOTE: on a loaded 2-core machine the server took 10 min to come up
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"mlflow server exited {proc.returncode}: {log.read_text()[-2000:]}")
                time.sleep(2)
        else:
            pytest.fail(f"mlflow server not up in 1200 s: {log.read_text()[-2000:]}")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _runs_table(dom: str) -> dict[str, dict[str, str]]:
    """The runs table as {run id: {column id: cell text}}: MLflow draws it as grid rows (a pinned part and a
    scrolled part of one row share its ``row-id``, the run's id) of grid cells named by ``col-id``."""
    table: dict[str, dict[str, str]] = {}
    for chunk in re.split(r'(?=<div[^>]*role="row")', dom)[1:]:
        row_id = re.search(r'row-id="([^"]+)"', chunk.split(">", 1)[0])
        if row_id is None:  # a header row
            continue
        cells = re.findall(r'<div[^>]*role="gridcell"[^>]*col-id="([^"]+)"[^>]*>(.*?)(?=<div[^>]*role="gridcell"|$)',
                           chunk, flags=re.S)  # fmt: skip
        for col, body in cells:
            table.setdefault(row_id[1], {})[html.unescape(col)] = " ".join(
                html.unescape(re.sub(r"<[^>]+>", " ", body)).split()
            )
    return table


def test_the_printed_address_opens_a_runs_table_with_each_run_of_the_model_and_its_top1(tracked, server, tmp_path):
    browser = _chromium_or_skip()
    uri, printed = tracked
    match = re.search(r"runs in MLflow: mlflow ui --backend-store-uri (\S+)  then  http://127\.0\.0\.1:5000/(\S+)",
                      printed)  # fmt: skip
    assert match, printed[-2000:]
    assert match[1] == uri
    # wide enough that the grid draws every chosen column (it leaves out columns outside the window)
    dom = chromium(browser, f"{server}/{match[2]}", "--window-size=2400,1200", "--dump-dom")
    assert "Traces: 0" not in dom  # not the GenAI overview
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ui").experiment_id])
    children = [r for r in runs if r.data.tags.get("fer_bench.kind") == "model"]
    assert sorted(int(r.data.tags["fer_bench.seed"]) for r in children) == list(SEEDS)
    table = _runs_table(dom)
    assert set(table) == {r.info.run_id for r in runs}, table  # children listed flat beside the parent
    for run in children:
        cells = table[run.info.run_id]
        assert f"simple_cnn-baseline-s{run.data.tags['fer_bench.seed']}" in cells["attributes.`Run Name`"], cells
        assert float(cells["metrics.`test_top1`"]) == pytest.approx(run.data.metrics["test_top1"], abs=1e-9), cells
        assert "synthetic" in cells["attributes.`Dataset`"], cells
    # a 1440 × 900 screen: drawn, not blank (FER_BENCH_MLFLOW_UI_SHOT=PATH keeps it, as results/mlflow-ui/ does)
    shot = Path(os.environ.get("FER_BENCH_MLFLOW_UI_SHOT") or tmp_path / "runs.png").resolve()
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    chromium(browser, f"{server}/{match[2]}", "--window-size=1440,900", f"--screenshot={shot}")
    from PIL import Image

    im = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert im.shape == (900, 1440) and im.std() > 20
