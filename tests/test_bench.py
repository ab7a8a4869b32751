"""`fer-bench bench` on CPU for a tiny model: every column present and sane; the speed figures match a model of
known cost."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import torch

from fer_bench.models import MODELS, ModelSpec, create_model
from helpers import fer_bench


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
    # achieved GFLOP/s = FLOPs per step x steps/s, a share of the matmul ceiling measured in the same process
    for df, part in ((infer, "infer"), (train, "train")):
        for col in (f"{part}_gflop_per_step", f"{part}_gflops_median", "ceiling_gflops", f"{part}_ceiling_share"):
            assert col in df and (df[col] > 0).all(), col
        achieved = df[f"{part}_gflop_per_step"] * df[f"{part}_img_s_median"] / df["batch_size"]
        assert ((df[f"{part}_gflops_median"] - achieved).abs() <= 0.01 * achieved).all()
        share = df[f"{part}_gflops_median"] / df["ceiling_gflops"]
        assert ((df[f"{part}_ceiling_share"] - share).abs() <= 0.01 * share).all()
    assert (train["train_gflop_per_step"] > 2 * infer["infer_gflop_per_step"]).all()
    assert (infer["latency_ms_p90"] >= infer["latency_ms_median"]).all()
    assert (train["peak_mem_mb"] > 0).all()
    # end-to-end: the same training step fed by the real data path (synthetic set, batched augmentation)
    assert (train["e2e_train_img_s_min"] <= train["e2e_train_img_s_median"]).all()
    assert train["e2e_over_model_only"].between(0.05, 2.0).all() and (train["dataset"] == "synthetic").all()


SECONDS_PER_IMAGE = 0.02  # the known cost: each image sleeps this long in the forward pass and again in backward


class _Sleep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        time.sleep(SECONDS_PER_IMAGE * x.shape[0])
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        time.sleep(SECONDS_PER_IMAGE * grad.shape[0])
        return grad


class _KnownCost(torch.nn.Module):
    """A model whose forward and backward cost SECONDS_PER_IMAGE per image each; everything else is ~free."""

    def __init__(self, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(in_chans, num_classes)

    def forward(self, x):
        return _Sleep.apply(self.head(x.mean((2, 3))))  # after the head, so its backward runs too

    def get_classifier(self):
        return self.head


@pytest.mark.parametrize("batch_size", [4, 8])
def test_reported_speed_matches_a_model_of_known_cost(monkeypatch, batch_size):
    """img/s, step time and latency against what the model is known to cost, not against each other: a wrong
    formula (batch size left out or counted twice) or a timed region that misses the step fails here."""
    from fer_bench.bench.model import BenchConfig, measure

    spec = ModelSpec(name="known_cost", builder=lambda nc, ic, pretrained, drop: _KnownCost(nc, ic), source="ours",
                     family="test", input_size=16, in_chans=1, mean=(0.5,), std=(0.5,))  # fmt: skip
    monkeypatch.setitem(MODELS._entries, "known_cost", spec)
    cfg = BenchConfig("known_cost", 16, batch_size=batch_size, device="cpu", warmup=1, steps=4, repeats=3,
                      latency_steps=5, dataset=None)  # fmt: skip
    row = measure(cfg)
    # sleep() lasts at least its time, so a correct figure is at most the known rate. Thread wake-ups on a busy
    # 2-core machine (load 8) added up to 0.75x to these step lengths (20-320 ms); a formula without the batch
    # size is off by 4x or 8x, a timed region that misses the step by far more.
    expected = {"infer_img_s_median": 1 / SECONDS_PER_IMAGE, "train_img_s_median": 1 / (2 * SECONDS_PER_IMAGE),
                "infer_step_ms_median": 1e3 * SECONDS_PER_IMAGE * batch_size,
                "train_step_ms_median": 1e3 * 2 * SECONDS_PER_IMAGE * batch_size,
                "latency_ms_median": 1e3 * SECONDS_PER_IMAGE}  # fmt: skip
    for key, value in expected.items():
        low, high = (value / 3, 1.01 * value) if "img_s" in key else (0.99 * value, 3 * value)
        assert low <= row[key] <= high, f"{key} = {row[key]:.2f}, known cost gives {value:.2f}"


def test_bench_figures_are_tracked(bench_out):
    import mlflow

    _, uri = bench_out
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["b"], filter_string="tags.`fer_bench.kind` = 'bench'")
    assert len(runs) == 2 and "metrics.infer_img_s_median" in runs


def test_the_bench_csvs_fill_a_leaderboard_as_the_tracked_bench_runs_do(bench_out, tmp_path):
    """`leaderboard --bench DIR` (results folders have no MLflow) gives a line the same bench columns as the bench
    runs of its MLflow experiment; a CSV that bench did not write is refused with the fix."""
    from fer_bench.experiment.tracking import search_bench_runs
    from fer_bench.report import leaderboard as lb
    from fer_bench.utils.errors import DataError

    out, uri = bench_out
    device = pd.read_csv(next(out.glob("bench-infer-*.csv")))["device_name"].iloc[0]
    row = {"model": "simple_cnn", "recipe": "baseline", "dataset": "synthetic", "split": "public", "img_size": 48,
           "epochs": 1, "seed": 0, "device_name": device, "precision": "fp32", "params": 1e5, "gmacs": 0.01,
           "protocol_hash": "aaaa", "run_id": "r",
           "test": {"top1": 50.0, "macro_f1": 40.0, "weighted_f1": 1.0}}  # fmt: skip
    frame = lb.frame_from_rows([row])
    cols = ["bench_infer_img_s", "bench_train_img_s", "bench_conditions"]
    from_csv = lb.apply_bench(frame, lb.bench_frame_from_csv([out]))[cols]
    tracked = lb.apply_bench(frame, search_bench_runs(uri, "b"))[cols]
    pd.testing.assert_frame_equal(from_csv, tracked, check_exact=False, rtol=1e-3)  # the CSV keeps 4 digits
    infer = pd.read_csv(next(out.glob("bench-infer-*.csv")))
    assert from_csv.iloc[0]["bench_infer_img_s"] == infer.loc[infer["img_size"] == 48, "infer_img_s_median"].item()
    assert from_csv.iloc[0]["bench_conditions"] == "b16, fp32, NCHW"
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a `fer-bench bench` CSV"):
        lb.bench_frame_from_csv([tmp_path / "other.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no bench-infer-"):
        lb.bench_frame_from_csv([tmp_path / "empty"])
    (tmp_path / "bench-infer-x.csv").write_text("")
    with pytest.raises(DataError, match="not a readable CSV"):
        lb.bench_frame_from_csv([tmp_path / "bench-infer-x.csv"])
    import json

    from fer_bench import api
    from fer_bench.utils.errors import FerBenchError

    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "result.json").write_text(json.dumps(row | {"device_name": "another CPU"}))
    with pytest.raises(FerBenchError, match="--bench: no measurement matches a line.*simple_cnn 48 px, fp32"):
        api.leaderboard([tmp_path / "runs"], bench=[out])  # benched on this machine, the row ran on another


def test_unknown_model_fails_before_measuring(tmp_path):
    res = fer_bench("bench", "--models", "resnet81", "--out", str(tmp_path), "--no-track")
    assert res.returncode == 2 and "resnet18" in res.stderr and not list(tmp_path.glob("*.csv"))


def test_flop_counter_counts_a_depthwise_conv_by_hand():
    """A depthwise 3x3 convolution, 8 channels, batch 2, 10x10 (padding 1): forward 2·N·C·k²·H·W FLOPs (each output
    reads one input channel); backward: grad_input and grad_weight cost as much each. torch's own counter takes
    grad_weight as dense (C times the work)."""
    from fer_bench.bench.cost import count_flops

    n, c, hw, k = 2, 8, 10, 3
    conv = torch.nn.Conv2d(c, c, k, padding=1, groups=c, bias=False)
    forward = 2 * n * c * k * k * hw * hw
    x = torch.randn(n, c, hw, hw, requires_grad=True)
    assert count_flops(lambda: conv(x)) == forward == 28_800
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward  # forward, grad_input, grad_weight
    x0 = torch.randn(n, c, hw, hw)  # an input without grad (the first layer's): no grad_input product
    assert count_flops(lambda: conv(x0).sum().backward()) == 2 * forward
    dense = torch.nn.Conv2d(c, 4, k, padding=1, bias=False)  # groups=1: 2·N·C_out·C_in·k²·H·W, 3x with backward
    assert count_flops(lambda: dense(x).sum().backward()) == 3 * 2 * n * 4 * c * k * k * hw * hw


def test_step_flops_of_a_model_scale_with_the_batch():
    from fer_bench.bench.cost import step_flops

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 7))
    f = step_flops(model, 1, 8, 64)
    conv, linear = 2 * 4 * 9 * 36, 2 * 144 * 7  # forward FLOPs of one image
    assert f["infer_gflop_per_step"] == pytest.approx(64 * (conv + linear) / 1e9)
    # backward: the conv's grad_weight (its input needs no grad), the linear's grad_input and grad_weight
    assert f["train_gflop_per_step"] == pytest.approx(64 * (2 * conv + 3 * linear) / 1e9)


def test_matmul_ceiling_is_measured_at_the_precision():
    from fer_bench.bench.cost import matmul_ceiling

    c = matmul_ceiling(torch.float32, min_s=0.05, max_n=256)
    assert c["ceiling_gflops"] > 0 and c["ceiling_matmul_n"] == 256 and c["ceiling_dtype"] == "float32"
    assert matmul_ceiling(torch.float32, min_s=0.05, max_n=256) is c  # once per process
