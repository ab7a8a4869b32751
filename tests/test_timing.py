"""Paired, interleaved measurement (fer_bench.bench.timing) and the two benchmarks built on it: the data path against
torchvision (`fer-bench bench --data`) and `fer-bench bench` against an independent torch.utils.benchmark.Timer
statement (tools/check_bench_vs_timer.py), each run with tiny settings."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_bench.bench.data_pipelines import ours_augment, same_work, torchvision_ops, torchvision_transform
from fer_bench.bench.timing import MachineLoad, check_paired, paired
from fer_bench.recipes.schema import AugmentCfg
from helpers import cli, fer_bench

ROOT = Path(__file__).resolve().parents[1]


def recorded(calls: list[str], name: str, values: list):
    """A side of a pair that returns ``values`` in turn and notes each call in ``calls``."""
    it = iter(values)

    def side():
        calls.append(name)
        return next(it)

    return side


def test_paired_alternates_and_takes_the_ratio_pair_by_pair():
    calls = []
    a, b = recorded(calls, "a", [9.0, 1, 2, 3, 4, 100]), recorded(calls, "b", [9.0, 1, 1, 1, 1, 1])
    r = paired(a, b, pairs=5, warmup=1)
    assert calls == ["a", "b"] * 6  # one warm-up pair, then five, alternating
    assert r["a"]["values"] == [1, 2, 3, 4, 100] and r["b"]["values"] == [1, 1, 1, 1, 1]
    assert r["ratio"]["values"] == [1, 2, 3, 4, 100] and r["ratio"]["median"] == 3
    assert r["ratio"]["iqr"] == pytest.approx(np.percentile([1, 2, 3, 4, 100], 75) - 2)
    check_paired(r, ("a", "b"))
    with pytest.raises(ValueError, match="at least 5"):
        paired(a, b, pairs=4)


def test_paired_fields_share_the_calls_and_take_each_ratio_pair_by_pair():
    calls = []
    a = recorded(calls, "a", [{"x": 2.0, "y": 10.0}, {"x": 4.0, "y": 30.0}] * 3)
    b = recorded(calls, "b", [{"x": 1.0, "y": 5.0}, {"x": 1.0, "y": 10.0}] * 3)
    r = paired(a, b, pairs=5, warmup=0, fields=("x", "y"))
    assert calls == ["a", "b"] * 5  # one call per side per pair gives every field
    assert r.keys() == {"x", "y"}
    assert r["x"]["ratio"]["values"] == [2, 4, 2, 4, 2] and r["y"]["ratio"]["values"] == [2, 3, 2, 3, 2]
    assert r["x"]["a"]["values"] == [2, 4, 2, 4, 2] and r["y"]["b"]["values"] == [5, 10, 5, 10, 5]
    assert r["x"]["spans_s"] == r["y"]["spans_s"] and r["x"]["order"] == ["a", "b"] * 5
    for field in ("x", "y"):
        check_paired(r[field], ("a", "b"))
    with pytest.raises(KeyError):  # a call that lacks a field is an error, not a silent gap
        paired(lambda: {"x": 1.0}, lambda: {"x": 1.0, "y": 1.0}, pairs=5, fields=("x", "y"))


def test_check_paired_rejects_a_ratio_of_medians_and_unpaired_values():
    r = paired(iter([1.0, 2, 4, 6, 8, 10]).__next__, iter([1.0, 1, 1, 1, 10, 10]).__next__, pairs=5)
    assert r["ratio"]["median"] == 2  # pair by pair: 2, 4, 6, 0.8, 1
    bad = json.loads(json.dumps(r))
    bad["ratio"]["values"] = sorted(bad["ratio"]["values"])  # not pair by pair any more
    with pytest.raises(AssertionError, match="pair-by-pair"):
        check_paired(bad, ("a", "b"))
    bad = json.loads(json.dumps(r))
    bad["ratio"]["median"] = r["a"]["median"] / r["b"]["median"]  # the ratio of the medians: 6/1
    with pytest.raises(AssertionError, match="median"):
        check_paired(bad, ("a", "b"))
    bad = json.loads(json.dumps(r))
    bad["order"] = ["a"] * 5 + ["b"] * 5
    with pytest.raises(AssertionError, match="interleaved"):
        check_paired(bad, ("a", "b"))


def test_machine_load_sees_another_busy_process():
    import os
    import signal
    import time

    # a busy loop that is not our descendant (the shell that starts it exits at once), as another user's job is
    spin = f"{sys.executable} -c 'import time\nt = time.time()\nwhile time.time() - t < 20: pass' >/dev/null 2>&1 &"
    pid = int(subprocess.run(["sh", "-c", spin + " echo $!"], capture_output=True, text=True).stdout)
    try:
        with MachineLoad() as load:
            time.sleep(2.5)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert load.conditions["other_processes_cpu_s"] >= 1.0, load.conditions
    assert any(p.startswith("python") for p in load.conditions["other_processes_over_5pct"]), load.conditions
    assert "cpu_steal_s" in load.conditions


@pytest.mark.parametrize("aug", [
    AugmentCfg(),  # the default (full) augmentation that the benchmark uses
    AugmentCfg(rotate_p=0.5, translate_p=0.3, erase_p=0, brightness=0),
    AugmentCfg(hflip=0, rotate=0, contrast=0.4, crop_scale=(1.0, 1.0)),
])  # fmt: skip
def test_the_torchvision_pipeline_does_the_same_operations_as_ours(aug):
    from PIL import Image

    tv = torchvision_transform(aug)
    assert same_work(ours_augment(aug).ops(), torchvision_ops(tv))
    out = tv(Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8), mode="L"))
    x, _ = ours_augment(aug)(torch.randint(0, 256, (2, 48, 48), dtype=torch.uint8), torch.zeros(2), torch.Generator())
    assert tuple(out.shape) == tuple(x.shape[1:]) == (3, 48, 48)


def _variant(change):
    tv = torchvision_transform()
    change(tv.transforms)
    return tv


def _swap(ops, a, b):
    ops[a], ops[b] = ops[b], ops[a]


@pytest.mark.parametrize("change", [
    lambda ops: _swap(ops, -3, -1),  # erasing after normalising: erases to grey, not black
    lambda ops: ops.pop(-3),  # no erasing at all
    lambda ops: _swap(ops, 1, 3),  # the flip after the colour jitter: another order
    lambda ops: setattr(ops[3], "brightness", (1.0, 1.4)),  # brightening only
])  # fmt: skip
def test_a_pipeline_doing_other_work_is_told_apart(change):
    assert not same_work(ours_augment().ops(), torchvision_ops(_variant(change)))


@pytest.mark.parametrize("change, message", [
    (lambda ops: ops.insert(1, __import__("torchvision").transforms.RandomVerticalFlip(0.5)), "RandomVerticalFlip"),
    (lambda ops: setattr(ops[2], "shear", [-20.0, 20.0, 0.0, 0.0]), "shear"),
    (lambda ops: setattr(ops[2], "scale", (0.8, 1.2)), "scale"),
    (lambda ops: setattr(ops[3], "saturation", (0.5, 1.5)), "saturation"),
    (lambda ops: setattr(ops[0], "interpolation", __import__("torchvision").transforms.InterpolationMode.BICUBIC),
     "bicubic"),
    (lambda ops: setattr(ops[2], "interpolation", __import__("torchvision").transforms.InterpolationMode.NEAREST),
     "nearest"),
])  # fmt: skip
def test_a_torchvision_setting_ours_lacks_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        torchvision_ops(_variant(change))


def test_data_bench_every_ratio_comes_from_paired_windows(tmp_path):
    out = tmp_path / "fast-data"
    res = fer_bench("bench", "--data", "--out", str(out), "--pairs", "5", "--data-batch-size", "32", "--window", "3,2",
                    "--e2e-model", "simple_cnn", "--e2e-steps", "2", "--e2e-pairs", "5")  # fmt: skip
    assert res.returncode == 0, res.stderr
    r = json.loads((out / "data-bench-cpu.json").read_text())
    for key, names, headline in (
        ("data_path_vs_torchvision", ("ours_batches_per_s", "torchvision_batches_per_s"), "speedup_vs_torchvision"),
        ("csv_load", ("csv_cold_s", "csv_cached_s"), None),
        ("e2e_vs_model_only", ("e2e_train_img_s", "model_only_train_img_s"), "e2e_over_model_only"),
    ):
        check_paired(r[key], names)
        assert r[key]["pairs"] == 5
        if headline:
            assert (
                r[headline]
                == r[key]["ratio"]["median"]
                == pytest.approx(
                    statistics.median(
                        [x / y for x, y in zip(r[key][names[0]]["values"], r[key][names[1]]["values"], strict=True)]
                    ),
                    rel=1e-3,
                )
            )
            assert r[f"{headline}_iqr"] == r[key]["ratio"]["iqr"]
    assert r["csv_cold_s"] == r["csv_load"]["csv_cold_s"]["median"]
    assert r["csv_cached_s"] == r["csv_load"]["csv_cached_s"]["median"]
    speed = r["data_path_vs_torchvision"]
    counts = {int(w) for w in speed["torchvision_batches_per_s_by_workers"]}
    assert counts == {0, 1, os.cpu_count() or 1} and speed["torchvision_best_workers"] in counts
    for i, best in enumerate(speed["torchvision_best_workers_by_pair"]):  # each pair counts torchvision's fastest
        rates = {int(w): v[i] for w, v in speed["torchvision_batches_per_s_by_workers"].items()}
        assert rates[best] == max(rates.values()) == pytest.approx(speed["torchvision_batches_per_s"]["values"][i],
                                                                    rel=1e-3)  # fmt: skip
    assert same_work([tuple(o) for o in r["ops"]], [tuple(o) for o in r["torchvision_ops"]])
    cond = r["conditions"]
    assert {"loadavg_1min_start", "loadavg_1min_end", "other_processes_cpu_s", "threads", "torch"} <= cond.keys()
    assert cond["started"] <= cond["finished"] and cond["pid"] != os.getpid()  # when, and in a process of its own
    assert (out / "augment-grid.png").stat().st_size > 0


def test_data_bench_refuses_different_work_before_timing_anything(tmp_path, monkeypatch):
    """Two pipelines that do not do the same work stop the run before a single window is timed."""
    from fer_bench.bench import data_path as bench_data

    timed = []
    monkeypatch.setattr(bench_data, "same_work", lambda ours, theirs: False)
    monkeypatch.setattr(bench_data, "data_path_vs_torchvision", lambda *a, **k: timed.append(1))
    with pytest.raises(AssertionError, match="the two pipelines differ"):
        bench_data.run_data_bench(None, tmp_path / "out")
    assert not timed and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--pairs", "3"], "--pairs"),
    (["--window", "3"], "two positive batch counts"),
    (["--e2e-model", "no_such_net"], "no_such_net"),
    (["--e2e-steps", "0"], "--e2e-steps"),
    (["--data-batch-size", "0"], "--data-batch-size"),
    (["--data-batch-size", "5000"], "larger than the 2400 training images"),
    (["--data-dir", "/no/such/dir"], "/no/such/dir"),
])  # fmt: skip
def test_data_bench_bad_settings_exit_2(tmp_path, capsys, args, message):
    code, err, _ = cli(capsys, "bench", "--data", "--out", tmp_path / "o", *args)  # in this process
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()  # nothing written, not even the folder


def test_bench_vs_timer_check_pairs_every_ratio(tmp_path):
    out = tmp_path / "check.json"
    cmd = [sys.executable, str(ROOT / "tools" / "check_bench_vs_timer.py"), "--model", "simple_cnn",
           "--img-size", "16", "--batch-size", "8", "--pairs", "5,6", "--window", "2,1", "--warmup-s", "0",
           "--window-pairs", "5", "--process-pairs", "5", "--out", str(out)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=540)  # inside pytest's 600 s, to see stderr
    assert res.returncode in (0, 1), res.stderr  # 1: outside ±5 %, which tiny noisy windows may be
    r = json.loads(out.read_text())
    levels = {part: r[part] for part in ("infer", "train", "window_infer", "window_train")}
    levels |= {f"process_{part}": r["process"][part] for part in ("infer", "train")}
    for part, level in levels.items():
        check_paired(level, ("fer_bench_img_s", "timer_img_s"))
        assert level["pairs"] == {"infer": 5, "train": 6}.get(part, 5)
        assert r[f"{part}_ratio_median"] == level["ratio"]["median"]
        assert r[f"{part}_within_5_percent"] == (abs(level["ratio"]["median"] - 1) <= 0.05)
    # the process level: both parts come from the same calls, fresh processes as the CLI runs bench
    assert r["process"]["infer"]["spans_s"] == r["process"]["train"]["spans_s"]
    assert r["process"]["infer"]["warmup_pairs"] == 0
    assert res.returncode == (0 if all(v for k, v in r.items() if k.endswith("within_5_percent")) else 1)
    assert {"device_name", "torch", "threads", "loadavg_1min_start"} <= r["conditions"].keys()


@pytest.mark.parametrize("args, message", [
    (["--pairs", "3,3"], "at least 5"), (["--process-pairs", "4"], "at least 5"),
    (["--process-pairs", "-1"], "at least 5"), (["--window-pairs", "-1"], "at least 5"),
    (["--model", "nope_net"], "nope_net"),
])  # fmt: skip
def test_bench_vs_timer_check_bad_input_exits_2(tmp_path, args, message):
    script = ROOT / "tools" / "check_bench_vs_timer.py"
    cmd = [sys.executable, str(script), *args, "--out", str(tmp_path / "c.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "c.json").exists()


def test_check_paired_rejects_calls_that_overlap_in_time():
    r = paired(iter([1.0] * 6).__next__, iter([2.0] * 6).__next__, pairs=5)
    check_paired(r, ("a", "b"))
    bad = json.loads(json.dumps(r))
    start, end = bad["spans_s"][2]
    bad["spans_s"][3] = [start - 1.0, end + 1.0]  # b of pair 2 "ran" while a of pair 2 did
    with pytest.raises(AssertionError, match="alternate in time"):
        check_paired(bad, ("a", "b"))
