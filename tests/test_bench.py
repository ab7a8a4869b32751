"""`fer-bench bench` on CPU for a tiny model: every column present and sane."""

from __future__ import annotations

import pandas as pd
import pytest

from fer_bench.models import create_model
from test_cli import fer_bench


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    uri = f"sqlite:///{out}/mlflow.db"
    res = fer_bench("bench", "--models", "simple_cnn", "--img-size", "32,48", "--batch-size", "16", "--device", "cpu",
                    "--repeats", "5", "--steps", "3", "--out", str(out), "--tracking-uri", uri,
                    "--experiment", "b")  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out, uri


def test_csv_names_encode_the_conditions(bench_out):
    out, _ = bench_out
    import torch

    version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    names = sorted(p.name for p in out.glob("*.csv"))
    assert names == [f"bench-infer-fp32-nchw-pt{version}-cpu.csv", f"bench-train-fp32-nchw-pt{version}-cpu.csv"]


def test_every_column_present_and_sane(bench_out):
    out, _ = bench_out
    infer = pd.read_csv(next(out.glob("bench-infer-*.csv")))
    train = pd.read_csv(next(out.glob("bench-train-*.csv")))
    assert infer["img_size"].tolist() == [32, 48] and (infer["batch_size"] == 16).all()
    model, _ = create_model("simple_cnn")
    n_params = sum(p.numel() for p in model.parameters())
    for df, prefixes in ((infer, ("infer_img_s", "infer_step_ms")), (train, ("train_img_s", "train_step_ms"))):
        assert (df["params"] == n_params).all()
        for p in prefixes:
            for stat in ("median", "iqr", "min", "max"):
                assert f"{p}_{stat}" in df, f"{p}_{stat}"
            assert (df[f"{p}_min"] <= df[f"{p}_median"]).all() and (df[f"{p}_median"] <= df[f"{p}_max"]).all()
            assert (df[f"{p}_iqr"] >= 0).all()
        for col in ("precision", "channels_last", "device_name", "torch", "threads", "gmacs", "git_sha"):
            assert col in df, col
    assert (infer["latency_ms_p90"] >= infer["latency_ms_median"]).all()
    assert (train["peak_mem_mb"] > 0).all()
    # end-to-end: the same training step fed by the real data path (synthetic set, batched augmentation)
    assert (train["e2e_train_img_s_min"] <= train["e2e_train_img_s_median"]).all()
    assert train["e2e_over_model_only"].between(0.05, 2.0).all() and (train["dataset"] == "synthetic").all()
    # images/s and step time describe the same steps
    ratio = infer["batch_size"] / (infer["infer_step_ms_median"] / 1e3) / infer["infer_img_s_median"]
    assert ratio.between(0.999, 1.001).all()


def test_bench_figures_are_tracked(bench_out):
    import mlflow

    _, uri = bench_out
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["b"], filter_string="tags.`fer_bench.kind` = 'bench'")
    assert len(runs) == 2 and "metrics.infer_img_s_median" in runs


def test_unknown_model_fails_before_measuring(tmp_path):
    res = fer_bench("bench", "--models", "resnet81", "--out", str(tmp_path), "--no-track")
    assert res.returncode == 2 and "resnet18" in res.stderr and not list(tmp_path.glob("*.csv"))
