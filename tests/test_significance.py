"""The project's significance test, intervals over seeds and faces, calibration intervals and the library references
(one test for every significance statement: the same p from `compare` and the leaderboard; a face counts once)."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst
from sklearn import metrics as skm

from fer_bench.evaluation import calibration as cal
from fer_bench.evaluation import comparison, predictions, stats
from fer_bench.evaluation.metrics import classification_metrics
from fer_bench.report import leaderboard as lb

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
N = 500
IDS = np.array([f"f{i:04d}" for i in range(N)])
ROW = {"recipe": "baseline", "dataset": "fer2013", "split": "public", "img_size": 48, "epochs": 3,
       "device_name": "cpu", "precision": "fp32", "params": 11.2e6, "gmacs": 0.1, "infer_model_img_s": 800.0,
       "train_e2e_img_s": 180.0, "train_frozen_epochs": 0, "protocol_hash": "aaaa",
       "weights_source": "scratch"}  # fmt: skip


def _labels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 7, N)


def _pred(y: np.ndarray, acc: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(y)) < acc, y, rng.integers(0, 7, len(y)))


def _run(root, name: str, pred: np.ndarray, y: np.ndarray, *, model: str, seed: int, reverse=False, **kw) -> dict:
    """A run folder (result.json + predictions.npz, optionally listing the faces in reverse) and its row."""
    d = root / name
    d.mkdir()
    probs = np.eye(7, dtype=np.float32)[pred] * 0.5 + np.float32(0.5 / 7)
    order = np.arange(len(y))[::-1] if reverse else np.arange(len(y))
    digest = predictions.write(d / predictions.FILE, probs[order], y[order], IDS[: len(y)][order])
    m = classification_metrics(probs, y, CLASSES)
    test = {k: m[k] for k in ("top1", "macro_f1", "weighted_f1")}
    row = ROW | {"model": model, "seed": seed, "run_id": name, "test": test, "test_tta": {"none": test},
                 "predictions": {"file": predictions.FILE, "sha256": digest}} | kw  # fmt: skip
    (d / "result.json").write_text(json.dumps(row))
    return row | {"_dir": str(d)}


def _board(rows: list[dict]) -> pd.DataFrame:
    return lb.aggregate(lb.frame_from_rows(rows)).set_index("model")


def _compare(root, a: list[str], b: list[str]) -> dict:
    line = (comparison.load_line(",".join(str(root / x) for x in side)) for side in (a, b))
    return comparison.compare(*line, n_boot=200)


# 1. A face counts once, whatever the number of seeds ----------------------------------------------------------------


def test_repeating_a_seed_pair_changes_no_p_and_no_interval():
    y = _labels()
    a, b = _pred(y, 0.65, 1), _pred(y, 0.6, 2)
    once, thrice = stats.paired_test(y, a, b, 7), stats.paired_test(y, np.stack([a] * 3), np.stack([b] * 3), 7)
    assert once == thrice
    assert stats.paired_bootstrap(y, a, b, 7, n_boot=300) == stats.paired_bootstrap(
        y, np.stack([a] * 3), np.stack([b] * 3), 7, n_boot=300
    )


def test_compare_and_the_leaderboard_give_one_p_and_repeats_change_neither(tmp_path):
    """Same pair of lines: one p from `compare` (either side first) and the leaderboard; the same p when each line's
    one run is repeated as three seeds; the face order of the files does not matter (a moderate effect, so that p is
    not the permutation floor and a different face order would change it)."""
    y = _labels()
    a, b = _pred(y, 0.58, 3), _pred(y, 0.60, 4)
    ps = []
    for seeds, tag in (([0], "one"), ([0, 1, 2], "three")):
        (tmp_path / tag).mkdir()
        rows = [_run(tmp_path / tag, f"best{s}", a, y, model="best", seed=s) for s in seeds]
        rows += [_run(tmp_path / tag, f"other{s}", b, y, model="other", seed=s, reverse=True) for s in seeds]
        agg = _board(rows)
        best, other = [f"{tag}/best{s}" for s in seeds], [f"{tag}/other{s}" for s in seeds]
        ps += [agg.loc["other", "p_vs_best"]]
        ps += [_compare(tmp_path, x, z)["paired"]["test"]["macro_f1"]["p"] for x, z in ((other, best), (best, other))]
    assert len(set(ps)) == 1, ps
    assert 0.05 < ps[0] < 0.5
    assert ps[0] == stats.paired_test(y, b, a, 7)["macro_f1"]["p"]


def test_top1_test_is_exact_on_per_face_mean_correctness():
    """Several seeds: the top-1 p is the exact permutation p of the per-face mean correctness (scipy enumerates)."""
    rng = np.random.default_rng(5)
    for s_a, s_b in ((3, 2), (2, 2), (1, 3)):
        y = rng.integers(0, 3, 13)
        a, b = rng.integers(0, 3, (s_a, 13)), rng.integers(0, 3, (s_b, 13))
        ca, cb = np.mean(a == y, 0), np.mean(b == y, 0)
        ref = sst.permutation_test((ca, cb), lambda x, z: np.mean(x - z), permutation_type="samples",
                                   n_resamples=np.inf).pvalue  # fmt: skip
        assert stats.paired_test(y, a, b, 3)["top1"]["p"] == pytest.approx(ref, rel=1e-9, abs=1e-12)


# 2. "≈ best" compares the lines it shows ----------------------------------------------------------------------------


def test_a_line_of_other_seeds_is_compared_with_all_of_the_best_lines_seeds(tmp_path):
    y = _labels()
    best = [_pred(y, 0.68, 10 + s) for s in range(3)]
    other = _pred(y, 0.63, 20)
    rows = [_run(tmp_path, f"best{s}", p, y, model="best", seed=s) for s, p in enumerate(best)]
    rows.append(_run(tmp_path, "other5", other, y, model="other", seed=5))
    agg = _board(rows)
    whole = stats.paired_test(y, other, np.stack(best), 7)["macro_f1"]["p"]
    assert agg.loc["other", "p_vs_best"] == whole != stats.paired_test(y, other, best[0], 7)["macro_f1"]["p"]
    mean_best = np.mean([skm.f1_score(y, p, average="macro", labels=range(7), zero_division=0) for p in best]) * 100
    other_f1 = skm.f1_score(y, other, average="macro", labels=range(7), zero_division=0) * 100
    assert agg.loc["other", "vs_best_diff"] == pytest.approx(other_f1 - mean_best)


def test_unequal_seed_lists_are_not_truncated(tmp_path):
    y = _labels()
    best = [_pred(y, 0.68, 30 + s) for s in range(2)]
    other = [_pred(y, 0.66, 40), _pred(y, 0.66, 41), _pred(y, 0.30, 42)]  # its third seed is far worse
    rows = [_run(tmp_path, f"best{s}", p, y, model="best", seed=s) for s, p in enumerate(best)]
    rows += [_run(tmp_path, f"other{s}", p, y, model="other", seed=s) for s, p in enumerate(other)]
    agg = _board(rows)
    assert agg.loc["other", "p_vs_best"] == stats.paired_test(y, np.stack(other), np.stack(best), 7)["macro_f1"]["p"]
    assert agg.loc["other", "p_vs_best_holm"] < 0.05  # the faces, with the third seed: below the best
    f1 = {m: [skm.f1_score(y, p, average="macro", labels=range(7), zero_division=0) * 100 for p in ps]
          for m, ps in (("best", best), ("other", other))}  # fmt: skip
    welch = sst.ttest_ind(f1["other"], f1["best"], equal_var=False).confidence_interval(0.95)  # all 3 against 2
    assert (agg.loc["other", "vs_best_seeds_lo"], agg.loc["other", "vs_best_seeds_hi"]) == pytest.approx(
        (welch.low, welch.high))  # fmt: skip
    assert welch.high > 0 and agg.loc["other", "sig"] == "≈"  # one bad seed of three: the seeds cannot say it is below


def test_vs_best_adds_the_seeds_welch_interval_when_both_lines_have_several_seeds(tmp_path):
    """The mark and face interval hold the trained runs fixed; the seeds' Welch t interval of the per-seed macro-F1
    difference (as `compare` gives it) is the seed-to-seed part: in the CSV columns and the cell, NaN for one seed."""
    y = _labels()
    best, other, single = [_pred(y, 0.68, 60 + s) for s in range(2)], [_pred(y, 0.64, 70 + s) for s in range(3)], [
        _pred(y, 0.62, 80)]  # fmt: skip
    rows = [_run(tmp_path, f"{m}{s}", p, y, model=m, seed=s) for m, ps in (("best", best), ("other", other),
            ("single", single)) for s, p in enumerate(ps)]  # fmt: skip
    agg = _board(rows)
    f1 = [[skm.f1_score(y, p, average="macro", labels=range(7), zero_division=0) * 100 for p in ps] for ps in (other,
          best)]  # fmt: skip
    ref = sst.ttest_ind(*f1, equal_var=False).confidence_interval(0.95)
    lo, hi = agg.loc["other", "vs_best_seeds_lo"], agg.loc["other", "vs_best_seeds_hi"]
    assert (lo, hi) == pytest.approx((ref.low, ref.high), rel=1e-9)
    cell = agg.loc["other", "vs_best"]
    assert f"seeds {lo:+.1f}, {hi:+.1f})".replace("-", "−") in cell and cell.endswith(agg.loc["other", "sig"])
    assert np.isnan(agg.loc["single", "vs_best_seeds_lo"]) and np.isnan(agg.loc["single", "vs_best_seeds_hi"])
    assert "seeds" not in agg.loc["single", "vs_best"]
    csv = pd.read_csv(io.StringIO(lb.render(agg.reset_index(), "csv")))
    assert {"vs_best_seeds_lo", "vs_best_seeds_hi"} <= set(csv.columns)
    note = lb.render(agg.reset_index(), "md")
    assert "seed-to-seed" in note and "before Holm's correction" in note


def test_a_lone_line_shows_a_dash_and_lines_on_other_faces_show_na(tmp_path):
    y = _labels()
    rows = [_run(tmp_path, "alone", _pred(y, 0.6, 50), y, model="alone", seed=0, split="private")]
    rows.append(_run(tmp_path, "best", _pred(y, 0.7, 51), y, model="best", seed=0))
    rows.append(_run(tmp_path, "other", _pred(y[:400], 0.6, 52), y[:400], model="other", seed=0))  # 400 faces only
    agg = _board(rows)
    assert agg.loc["alone", "sig"] == agg.loc["alone", "vs_best"] == "—"
    assert agg.loc["other", "sig"] == agg.loc["best", "sig"] == "n/a"  # nothing could be tested


# 3. One test, chosen in advance, its Monte Carlo error reported ----------------------------------------------------


def test_the_p_is_a_permutation_test_of_10000_rounds_with_its_monte_carlo_error(tmp_path, capsys):
    from fer_bench.cli import main

    y = _labels()
    _run(tmp_path, "a", _pred(y, 0.65, 60), y, model="a", seed=0)
    _run(tmp_path, "b", _pred(y, 0.62, 61), y, model="b", seed=0)
    out = tmp_path / "c.json"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(out)]) == 0
    t = json.loads(out.read_text())["paired"]["test"]["macro_f1"]
    assert t["rounds"] == 10_000 and t["mc_se"] == pytest.approx(np.sqrt(t["p"] * (1 - t["p"]) / 10_000))
    assert f"Monte Carlo SE {t['mc_se']:.4f}, 10000 rounds" in capsys.readouterr().out
    assert "p" not in stats.paired_bootstrap(y, y, y, 7, n_boot=100)["macro_f1"]  # the bootstrap gives intervals only
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--rounds", "2000"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_macro_f1_permutation_p_is_scipys_exact_one_within_its_monte_carlo_error():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 12)
    a, b = rng.integers(0, 3, (2, 12)), np.where(rng.random(12) < 0.6, y, rng.integers(0, 3, 12))
    qa, qb = stats.soft_predictions(a, 3), stats.soft_predictions(b, 3)
    table, truth = np.concatenate([qa, qb]), np.eye(3)[np.concatenate([y, y])]

    def f1_diff(x, z):  # x, z: row indices of A's and B's shares (swapped pairwise by scipy)
        return float(np.subtract(*(stats.from_confusion(truth[i].T @ table[i])["macro_f1"] for i in (x, z))))

    ref = sst.permutation_test((np.arange(12), np.arange(12, 24)), f1_diff, permutation_type="samples",
                               n_resamples=np.inf, vectorized=False).pvalue  # fmt: skip
    r = stats.paired_test(y, a, b, 3)["macro_f1"]
    assert abs(r["p"] - ref) < 4 * r["mc_se"] + 1e-4


# 4. Seeds and faces, the difference to the best with its interval, the detectable effect ---------------------------


def test_several_seeds_get_the_seeds_t_interval_beside_the_face_bootstrap(tmp_path):
    y = _labels()
    preds = {(m, s): _pred(y, acc + 0.02 * s, 70 + s + 10 * (m == "b")) for m, acc in (("a", 0.64), ("b", 0.6))
             for s in range(3)}  # fmt: skip
    for (m, s), p in preds.items():
        _run(tmp_path, f"{m}{s}", p, y, model=m, seed=s)
    res = _compare(tmp_path, ["a0", "a1", "a2"], ["b0", "b1", "b2"])
    f1 = {m: [skm.f1_score(y, preds[m, s], average="macro", labels=range(7), zero_division=0) * 100
              for s in range(3)] for m in "ab"}  # fmt: skip
    ref = sst.ttest_ind(f1["a"], f1["b"], equal_var=False).confidence_interval(0.95)
    assert res["paired"]["seeds"]["macro_f1"]["lo"] == pytest.approx(ref.low)
    assert res["paired"]["seeds"]["macro_f1"]["hi"] == pytest.approx(ref.high)
    one = sst.ttest_1samp(f1["a"], 0).confidence_interval(0.95)
    assert res["a"]["macro_f1_seeds_ci"] == pytest.approx([one.low, one.high])
    assert "macro_f1_ci" in res["a"]  # the face bootstrap, beside it


def test_the_leaderboard_shows_the_difference_to_the_best_with_its_interval(tmp_path):
    y = _labels()
    best, near, worse = _pred(y, 0.7, 80), _pred(y, 0.68, 81), _pred(y, 0.45, 82)
    rows = [_run(tmp_path, n, p, y, model=n, seed=0) for n, p in (("best", best), ("near", near), ("worse", worse))]
    agg = _board(rows)
    for name, pred in (("near", near), ("worse", worse)):
        d = stats.paired_bootstrap(y, pred, best, 7)["macro_f1"]
        r = agg.loc[name]
        assert (r["vs_best_diff"], r["vs_best_lo"], r["vs_best_hi"]) == pytest.approx((d["diff"], d["lo"], d["hi"]))
        assert re.fullmatch(r"[−+]\d+\.\d \([−+]\d+\.\d, [−+]\d+\.\d\) [≈‹]", r["vs_best"]), r["vs_best"]
        assert r["p_vs_best_mc_se"] == pytest.approx(np.sqrt(r["p_vs_best"] * (1 - r["p_vs_best"]) / 10_000))
    assert agg.loc["worse", "vs_best"].endswith("‹") and agg.loc["best", "vs_best"] == "best"  # one seed a side
    ses = [stats.paired_bootstrap(y, p, best, 7)["macro_f1"]["se"] for p in (near, worse)]
    mde = stats.minimum_detectable_effect(float(np.median(ses)))
    assert agg.loc["near", "vs_best_mde"] == pytest.approx(mde)
    assert "power 0.8" in lb.render(agg.reset_index(), "md") and f"public {mde:.1f} pt" in lb.render(
        agg.reset_index(), "md"
    )


@pytest.mark.parametrize(
    "p, diff, lo, hi, expected",
    [
        (0.001, -2.0, np.nan, np.nan, "‹"),  # one seed on a side: those trained runs differ, no claim
        (0.001, 2.0, np.nan, np.nan, "›"),
        (0.001, -2.0, -4.5, 0.0, "≈"),  # the interval must lie below 0, not touch it
        (0.001, np.nan, np.nan, np.nan, "≈"),
        (0.001, -2.0, -4.5, 0.5, "≈"),  # the faces say below, the seeds' interval reaches above 0: no claim
        (0.001, -2.0, -4.5, -0.3, "<"),
        (0.001, 2.0, 0.2, 3.9, ">"),
        (0.001, 2.0, -0.1, 3.9, "≈"),
        (0.05, -2.0, -4.5, -0.3, "≈"),  # p < α, strictly (the plan's words)
        (0.2, -9.0, -12.0, -6.0, "≈"),  # seeds alone claim nothing
        (0.001, 0.0, np.nan, np.nan, "≈"),
    ],
)
def test_a_difference_is_claimed_by_the_test_and_with_seeds_by_their_interval_too(p, diff, lo, hi, expected):
    assert stats.claim(p, diff, lo, hi) == expected


def test_the_leaderboard_mark_and_compare_claim_nothing_that_one_seeds_luck_explains(tmp_path):
    """Three seeds a side. The best line's seeds disagree (two good, one poor). "steady_near", steady and a little
    worse: the faces' test finds it below, the seeds' Welch interval does not, so neither the leaderboard's mark nor
    `compare` claims it. "steady_far", far below on every seed: both claim it."""
    y = _labels()
    acc = {"best": (0.8, 0.62, 0.8), "steady_near": (0.66, 0.67, 0.65), "steady_far": (0.25, 0.26, 0.24)}
    rows = {m: [_run(tmp_path, f"{m}{s}", _pred(y, a, 200 + 10 * i + s), y, model=m, seed=s)
                for s, a in enumerate(accs)] for i, (m, accs) in enumerate(acc.items())}  # fmt: skip
    for other, mark in (("steady_near", "≈"), ("steady_far", "<")):
        agg = _board(rows["best"] + rows[other])
        r = agg.loc[other]
        f1 = {m: [x["test"]["macro_f1"] for x in rows[m]] for m in ("best", other)}
        welch = sst.ttest_ind(f1[other], f1["best"], equal_var=False).confidence_interval(0.95)
        assert (r["vs_best_seeds_lo"], r["vs_best_seeds_hi"]) == pytest.approx((welch.low, welch.high))
        assert r["p_vs_best_holm"] < 0.05  # the faces alone would claim both
        assert r["sig"] == mark and r["vs_best"].endswith(mark)
        assert (welch.high < 0) == (mark == "<")
        res = _compare(tmp_path, [f"{other}{s}" for s in range(3)], [f"best{s}" for s in range(3)])
        assert res["paired"]["claim"]["macro_f1"] == mark
        said = {"≈": "no difference claimed", "<": "A below B"}[mark]
        (line,) = [x for x in comparison.render(res).splitlines() if x.startswith("A − B macro-F1")]
        assert line.endswith(said)


def test_the_minimum_detectable_effect_is_statsmodels_power_calculation():
    from statsmodels.stats.power import NormalIndPower

    for alpha, power in ((0.05, 0.8), (0.01, 0.9)):
        es = NormalIndPower().solve_power(effect_size=None, nobs1=1, alpha=alpha, power=power, ratio=0)
        assert stats.minimum_detectable_effect(1.7, alpha, power) == pytest.approx(1.7 * es, rel=1e-4)


# 8. Calibration intervals --------------------------------------------------------------------------------------------


def test_the_ece_interval_is_the_bootstrap_of_ece_before_and_after_scaling():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(400, 7)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 7, 400)
    line = cal.line_probs([probs], [(probs, y)])
    got = cal.bootstrap(line, y, n_boot=150, seed=3)
    idx = np.concatenate(list(stats.resample_ids(400, 150, 3)))
    for key, p in (("ece", probs), ("ece_ts", line["_ts"][0])):
        assert got[key] == pytest.approx(stats.percentile(np.array([cal.ece(p[i], y[i]) for i in idx])))
    assert got["nll"] == pytest.approx(stats.percentile(np.array([cal.nll(probs[i], y[i]) for i in idx])))


def test_compare_gives_delta_ece_and_delta_nll_with_intervals(tmp_path):
    y = _labels()
    for name, seed in (("a", 90), ("b", 91)):
        row = _run(tmp_path, name, _pred(y, 0.65, seed), y, model=name, seed=0)
        v = predictions.read(tmp_path / name / predictions.FILE)
        predictions.write(tmp_path / name / "predictions-valid.npz", v["probs"] ** 1.5, v["labels"], v["ids"])
        del row
    res = _compare(tmp_path, ["a"], ["b"])
    c = res["paired"]["calibration"]
    for key in ("ece", "nll", "ece_ts", "nll_ts"):
        assert c[key]["diff"] == pytest.approx(res["a"][key] - res["b"][key])
        assert c[key]["lo"] <= c[key]["diff"] <= c[key]["hi"]
        assert res["a"][f"{key}_ci"][0] <= res["a"][key] + 1.0  # each side's own interval is there too


# 9. The library references --------------------------------------------------------------------------------------------


def test_wilson_holm_and_mcnemar_are_statsmodels_on_random_inputs(monkeypatch):
    from statsmodels.stats import multitest, proportion
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    rng = np.random.default_rng(11)
    for _ in range(10):
        n = int(rng.integers(1, 5000))
        x = int(rng.integers(0, n + 1))
        assert stats.wilson(x, n) == pytest.approx(tuple(v * 100 for v in proportion.proportion_confint(
            x, n, method="wilson")))  # fmt: skip
        p = rng.random(int(rng.integers(1, 12))) ** 3
        np.testing.assert_allclose(stats.holm(p), multitest.multipletests(p, method="holm")[1])
        a, b = rng.random(300) < rng.random(), rng.random(300) < rng.random()
        table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
        exact = np.sum(a != b) < stats.EXACT_BELOW
        assert stats.mcnemar(a, b)["p"] == pytest.approx(sm_mcnemar(table, exact=exact, correction=True).pvalue)
    calls = []
    real = multitest.multipletests
    monkeypatch.setattr(multitest, "multipletests", lambda *a, **k: calls.append(1) or real(*a, **k))
    stats.holm([0.01, 0.2])
    assert calls  # Holm is statsmodels', not a copy of it


def test_the_bootstrap_is_scipys_percentile_bootstrap():
    rng = np.random.default_rng(12)
    n = 300
    y = rng.integers(0, 7, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, 7, n))
    ours = stats.bootstrap_interval(y, p, 7, n_boot=500, seed=4)

    def f1(i, axis=-1):
        i = np.asarray(i)
        return stats.scores(y[i].reshape(-1, n), p[i].reshape(-1, n), 7)["macro_f1"].reshape(i.shape[:-1])

    ref = sst.bootstrap((np.arange(n),), f1, vectorized=True, n_resamples=500, method="percentile",
                        rng=np.random.default_rng(4)).confidence_interval  # fmt: skip
    assert ours["macro_f1"] == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_the_stats_docstring_examples_hold():
    import doctest

    failed, tried = doctest.testmod(stats)
    assert tried >= 4 and failed == 0
