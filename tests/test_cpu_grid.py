"""`fer-bench bench --grid`: settings timed in interleaved pairs against fp32 NCHW eager, their cost bounded, the
processor's facts and the rule's reading written with the figures."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest
import torch

from fer_bench.bench import cpu_grid
from fer_bench.bench.cpu_grid import BASELINE, SETTINGS, GridConfig, Setting, measure_setting
from fer_bench.bench.timing import check_paired
from fer_bench.utils import cpu_caps
from helpers import fer_bench

AVX2 = cpu_caps.CpuCaps(frozenset({"avx2", "fma"}), "AVX2", 2, "fake AVX2")
BF16 = cpu_caps.CpuCaps(frozenset({"avx2", "avx512f", "avx512_bf16"}), "AVX512", 2, "fake bf16")


def test_the_grid_holds_every_setting_but_the_baseline():
    assert len(SETTINGS) == 7 and BASELINE not in SETTINGS and len(set(SETTINGS)) == 7
    assert {s.precision for s in SETTINGS} == {"fp32", "amp_bf16"}


def test_a_setting_is_measured_in_pairs_against_the_baseline():
    cfg = GridConfig("simple_cnn", Setting("fp32", True, False), 48, pairs=5, steps=1, cap_s=300)
    rows = measure_setting(cfg)
    assert [r["part"] for r in rows] == ["train", "infer"]
    for r in rows:
        assert r["status"] == "measured" and r["batch_size"] == 64 and r["optimizer"] == "adamw"
        assert r["ema_decay"] == 0.999 and r["recipe"].startswith("fast-48")
        check_paired(r["pairs_detail"], ("setting", "baseline"))  # alternating in time, ratios pair by pair
        assert r["speedup_median"] == r["pairs_detail"]["ratio"]["median"] and r["first_call_s"] > 0
        assert r["gflops_median"] / r["ceiling_gflops"] == pytest.approx(r["ceiling_share"])
        assert r["ceiling_dtype"] == "float32" and r["gflop_per_step"] > 0
    assert rows[0]["gflop_per_step"] > 2 * rows[1]["gflop_per_step"]  # training: forward and backward


STEP_S = 0.004


def _fake_window(self, n: int) -> float:
    """A window whose steps last STEP_S, 6x as long for bf16 settings: img/s known."""
    t = n * STEP_S * (6 if self.setting.precision == "amp_bf16" else 1)
    time.sleep(t)
    return self.batch_size * n / t


def test_a_slow_setting_is_timed_in_short_windows_and_a_cap_skips(monkeypatch):
    monkeypatch.setattr(cpu_grid._Side, "train", _fake_window)
    monkeypatch.setattr(cpu_grid._Side, "infer", _fake_window)
    slow = GridConfig("simple_cnn", Setting("amp_bf16", False, False), 48, pairs=5, steps=4, cap_s=60)
    for r in measure_setting(slow):
        assert r["status"] == "measured" and r["steps_per_window"] == 1 and "cut to 1" in r["note"]
        assert r["probe_slowdown"] == pytest.approx(6, rel=0.3) and r["speedup_median"] == pytest.approx(1 / 6, rel=0.3)
    fast = GridConfig("simple_cnn", Setting("fp32", True, False), 48, pairs=5, steps=4, cap_s=60)
    assert [r["steps_per_window"] for r in measure_setting(fast)] == [4, 4]
    capped = GridConfig("simple_cnn", Setting("amp_bf16", False, False), 48, pairs=5, steps=4, cap_s=0.1)
    for r in measure_setting(capped):  # 5 pairs of (24 + 4) ms: 0.14 s, over the 0.1 s cap
        assert r["status"] == "skipped" and "cap" in r["note"] and "speedup_median" not in r


def _fake_rows(cfg: GridConfig, timeout: float) -> list[dict]:
    ratio = {"amp_bf16-nchw-eager": 0.05, "fp32-nhwc-eager": 1.1, "fp32-nchw-compile": 1.02}.get(cfg.setting.name, 1.0)
    return [{"model": cfg.model, "part": p, "setting": cfg.setting.name, "precision": cfg.setting.precision,
             "status": "measured", "speedup_median": ratio + (0.01 if cfg.model == "b" else 0), "speedup_iqr": 0.01,
             "img_s_median": 100 * ratio, "img_s_iqr": 1.0, "base_img_s_median": 100.0, "base_img_s_iqr": 1.0,
             "first_call_s": 1.0, "ceiling_share": 0.2, "note": ""} for p in ("train", "infer")]  # fmt: skip


@pytest.mark.parametrize("caps", [AVX2, BF16])
def test_grid_files_name_their_conditions_and_say_what_the_rule_makes_of_them(monkeypatch, tmp_path, caps):
    monkeypatch.setattr(cpu_caps, "_PROBED", caps)
    calls = []
    monkeypatch.setattr(cpu_grid, "run_isolated", lambda cfg, timeout: calls.append(cfg) or _fake_rows(cfg, timeout))
    paths = cpu_grid.run_grid(["a", "b"], GridConfig("a", Setting(), 48, pairs=5, steps=2), tmp_path, lambda m: None)
    v = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    stem = f"cpu-grid-48px-b64-fast-48-{caps.processor_class}-2t-pt"
    assert sorted(p.name for p in paths.values()) == [f"{stem}{v}.{ext}" for ext in ("csv", "json", "md")]
    rows = pd.read_csv(paths["csv"])
    compiled_bf16 = rows[rows["setting"].str.startswith("amp_bf16") & rows["setting"].str.endswith("compile")]
    assert len(rows) == 2 * 2 * 7 and len(compiled_bf16) == 2 * 2 * 2
    if caps.bf16:
        assert len(calls) == 14 and (compiled_bf16["status"] == "measured").all()
    else:
        assert len(calls) == 10 and (compiled_bf16["note"] == "skipped: no bf16 instructions").all()
    saved = json.loads(paths["json"].read_text())
    c = saved["conditions"]
    assert (c["bf16_instructions"], c["threads"], c["torch_capability"]) == (caps.bf16, 2, caps.torch_capability)
    # the rule's input: per setting, the median over models of the training speed-ups
    assert saved["rule_entry"]["amp_bf16"] == pytest.approx(0.055)
    assert saved["rule_entry"]["channels_last"]["fp32"] == pytest.approx(1.105)
    md = paths["md"].read_text()
    assert "skipped: no bf16 instructions" in md or caps.bf16
    # bf16 measured at 0.055x: the rule keeps fp32 even with bf16 instructions; channels_last at 1.105x pays
    assert re.search(
        r"\*\*fp32\*\*\W+channels_last \*\*True\*\*\W+compile \*\*None\*\*", md
    )  # what the rule resolves to


def test_bad_grid_options_fail_in_one_line(tmp_path):
    res = fer_bench("bench", "--grid", "--models", "simple_cnn", "--pairs", "3", "--out", str(tmp_path), "--no-track")
    assert res.returncode == 2 and "--pairs" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1  # one line, naming the option
