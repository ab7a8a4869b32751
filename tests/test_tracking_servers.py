"""Tracking against real servers: an `mlflow server` on 127.0.0.1 and PostgreSQL as the backend store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from helpers import fer_bench  # noqa: E402

PG_URI = os.environ.get("FER_BENCH_TEST_PG_MLFLOW")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` bound to 127.0.0.1, stopped by its PID afterwards."""
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination",
           str(tmp_path / "artifacts"), "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not come up in 60 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _check_run_landed(uri: str, out: Path) -> None:
    res = fer_bench("run", "--models", "simple_cnn", "--epochs", "1", "--limit-train", "200", "--out", str(out),
                    "--no-progress", "--tracking-uri", uri, "--experiment", "server-test")  # fmt: skip
    assert res.returncode == 0, res.stderr
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["server-test"], output_format="list")
    finished = {r.data.tags.get("fer_bench.kind"): r for r in runs if r.info.status == "FINISHED"}
    assert set(finished) == {"suite", "model"}
    assert "test_macro_f1" in finished["model"].data.metrics


def test_a_real_mlflow_server_on_loopback_receives_a_run(mlflow_server, tmp_path):
    _check_run_landed(mlflow_server, tmp_path / "out")


@pytest.mark.skipif(not PG_URI and not os.environ.get("CI"), reason="PostgreSQL not set up (scripts/start-postgres.sh)")
def test_postgresql_backend_store(tmp_path):
    assert PG_URI, "CI must run scripts/start-postgres.sh and export FER_BENCH_TEST_PG_MLFLOW"
    _check_run_landed(PG_URI, tmp_path / "out")
