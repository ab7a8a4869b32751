"""fer_bench.evaluation.stats and fer_bench.evaluation.calibration against independent computations (scipy,
scikit-learn, by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sst
from sklearn import metrics as skm

from fer_bench.evaluation import calibration as cal
from fer_bench.evaluation import stats
from helpers import one_line_error


def _preds(n: int, k: int, acc: float, seed: int, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels (``y`` when given) and predictions right on exactly round(acc·n) samples, wrong classes otherwise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n) if y is None else y
    pred = y.copy()
    wrong = rng.permutation(n)[: n - round(acc * n)]
    pred[wrong] = (y[wrong] + rng.integers(1, k, len(wrong))) % k
    return y, pred


def test_bootstrap_interval_of_top1_agrees_with_wilson_on_a_large_set():
    y, pred = _preds(10_000, 7, 0.73, seed=0)
    lo, hi = stats.bootstrap_interval(y, pred, 7, n_boot=1000, seed=1)["top1"]
    w_lo, w_hi = stats.wilson(7300, 10_000)
    assert abs(lo - w_lo) < 0.5 and abs(hi - w_hi) < 0.5
    assert lo < 73.0 < hi and 1.2 < hi - lo < 2.3  # ±0.87 pt at n = 10,000: the width is that of a binomial


def test_the_bootstrap_scores_are_the_metrics_modules_and_sklearns():
    y, pred = _preds(500, 7, 0.6, seed=3)
    s = stats.scores(y[None], pred[None], 7)
    assert s["top1"][0] == pytest.approx(skm.accuracy_score(y, pred) * 100)
    f1 = skm.f1_score(y, pred, labels=list(range(7)), average="macro", zero_division=0) * 100
    assert s["macro_f1"][0] == pytest.approx(f1)


def test_macro_f1_over_a_cross_dataset_rows_shared_classes_is_sklearns():
    """A cross-dataset row's predictions have columns no sample is labelled with (a class the dataset lacks) and
    labels no column predicts ("lacked by the model"): macro-F1 averages the shared classes only, as the row does."""
    y, pred = _preds(600, 8, 0.6, seed=5)
    pred[pred == 7] = 0  # class 7: the model lacks it (never predicted); class 6 below: the dataset lacks it
    y[y == 6] = 1
    shared = [0, 1, 2, 3, 4, 5]
    s = stats.scores(y[None], pred[None], 8, shared)
    assert s["macro_f1"][0] == pytest.approx(skm.f1_score(y, pred, labels=shared, average="macro") * 100)
    ci = stats.bootstrap_interval(y, pred, 8, n_boot=500, average=shared)["macro_f1"]
    assert ci[0] <= s["macro_f1"][0] <= ci[1]
    everything = stats.bootstrap_interval(y, pred, 8, n_boot=500)["macro_f1"]
    assert everything[1] < s["macro_f1"][0]  # over all 8 columns the interval misses the row's own figure


def test_bootstrap_is_seeded_and_macro_f1_interval_holds_the_point():
    y, pred = _preds(2000, 7, 0.6, seed=4)
    a = stats.bootstrap_interval(y, pred, 7, n_boot=500, seed=7)
    assert a == stats.bootstrap_interval(y, pred, 7, n_boot=500, seed=7)
    assert a != stats.bootstrap_interval(y, pred, 7, n_boot=500, seed=8)
    point = stats.scores(y[None], pred[None], 7)["macro_f1"][0]
    assert a["macro_f1"][0] < point < a["macro_f1"][1]


def test_several_seeds_average_per_resample():
    y, p0 = _preds(3000, 7, 0.70, seed=5)
    _, p1 = _preds(3000, 7, 0.60, seed=5)  # same labels (same rng stream for y), other predictions
    both = stats.bootstrap_interval(y, np.stack([p0, p1]), 7, n_boot=400)["top1"]
    assert 60.0 < both[0] < 65.0 < both[1] < 70.0  # around the seeds' mean, holding neither seed's figure
    twice = stats.bootstrap_interval(y, np.stack([p0, p0]), 7, n_boot=400)
    assert twice == stats.bootstrap_interval(y, p0, 7, n_boot=400)  # a repeated seed adds nothing


@pytest.mark.parametrize(("a_only", "b_only"), [(7, 2), (0, 3), (12, 12), (30, 14), (100, 131), (25, 0)])
def test_mcnemar_equals_binomtest_and_an_independent_chi_square(a_only, b_only):
    both, neither = 400, 90
    a = np.array([1] * both + [1] * a_only + [0] * b_only + [0] * neither, bool)
    b = np.array([1] * both + [0] * a_only + [1] * b_only + [0] * neither, bool)
    r = stats.mcnemar(a, b)
    assert (r["both"], r["a_only"], r["b_only"], r["neither"]) == (both, a_only, b_only, neither)
    n = a_only + b_only
    if n < 25:
        assert r["method"] == "exact binomial"
        assert r["p"] == pytest.approx(sst.binomtest(a_only, n, 0.5, alternative="two-sided").pvalue)
    else:
        chi = (abs(a_only - b_only) - 1) ** 2 / n  # Edwards' continuity correction, written out
        assert r["method"] == "chi-square with continuity correction"
        assert r["statistic"] == pytest.approx(chi)
        assert r["p"] == pytest.approx(1 - sst.chi2.cdf(chi, df=1))


def test_mcnemar_refuses_to_pool_seed_pairs():
    """Pooling S seed pairs into one table counts each face S times; lines of several seeds go to paired_test."""
    a = np.array([[1, 1, 0, 1], [1, 0, 0, 1]], bool)
    b = np.array([[0, 1, 0, 1], [0, 1, 1, 1]], bool)
    with pytest.raises(ValueError, match="paired_test"):
        stats.mcnemar(a, b)


def test_paired_bootstrap_keeps_the_pairing():
    y, pa = _preds(3000, 7, 0.70, seed=6)
    pb = pa.copy()
    flip = np.flatnonzero(pa == y)[:60]  # B = A but wrong on 60 more samples: a sure 2-pt difference
    pb[flip] = (y[flip] + 1) % 7
    d = stats.paired_bootstrap(y, pa, pb, 7, n_boot=1000)
    assert d["top1"]["diff"] == pytest.approx(2.0)
    # paired: the spread comes from the 60 discordant samples only (≈ ±0.5 pt), far below two rows' own ±1.6 pt
    assert 1.3 < d["top1"]["lo"] < 2.0 < d["top1"]["hi"] < 2.7
    assert d["macro_f1"]["lo"] > 0 and 0.2 < d["top1"]["se"] < 0.4  # ≈ sqrt(60) / 3000 · 100
    same = stats.paired_bootstrap(y, pa, pa, 7, n_boot=200)
    assert same["top1"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "se": 0.0}


def test_seed_summary_is_the_t_interval():
    v = [71.0, 72.5, 73.1]
    s = stats.seed_summary(v)
    half = sst.t.ppf(0.975, 2) * np.std(v, ddof=1) / np.sqrt(3)
    assert s["mean"] == pytest.approx(np.mean(v)) and s["hi"] - s["mean"] == pytest.approx(half)
    assert np.isnan(stats.seed_summary([70.0])["lo"])


def test_holm_matches_the_step_down_rule():
    p = np.array([0.04, 0.001, 0.03, 0.2])
    # sorted 0.001, 0.03, 0.04, 0.2 times 4, 3, 2, 1 → 0.004, 0.09, 0.08→0.09 (monotone), 0.2
    np.testing.assert_allclose(stats.holm(p), [0.09, 0.004, 0.09, 0.2])


def test_ece_equals_a_worked_example():
    probs = np.array([[0.95, 0.05, 0.0], [0.90, 0.05, 0.05], [0.2, 0.7, 0.1], [0.5, 0.45, 0.05],
                      [0.1, 0.3, 0.6], [0.25, 0.35, 0.4]])  # fmt: skip
    labels = np.array([0, 1, 1, 0, 2, 0])
    # confidences 0.95, 0.90, 0.70, 0.50, 0.60, 0.40; bins of width 1/15 = 0.0667 (upper edge included):
    #   0.95 → bin 14 (0.933, 1.0], right;   0.90 → bin 13 (0.867, 0.933], wrong (argmax 0, label 1)
    #   0.70 → bin 10 (0.667, 0.733], right; 0.50 → bin 7 (0.467, 0.533], right
    #   0.60 → bin 8 (0.533, 0.600], right;  0.40 → bin 5 (0.333, 0.400], wrong (argmax 2, label 0)
    # one sample per bin, each weighs 1/6: |1−.95| + |0−.90| + |1−.70| + |1−.50| + |1−.60| + |0−.40|
    #   = 0.05 + 0.90 + 0.30 + 0.50 + 0.40 + 0.40 = 2.55; ECE = 2.55 / 6 = 0.425 → 42.5 %
    assert cal.ece(probs, labels) == pytest.approx(42.5)
    # two samples sharing a bin are averaged before the gap: 0.90 (wrong) and 0.92 (right) in bin 13:
    #   acc 0.5, conf 0.91 → |0.5 − 0.91| · 2/2 = 0.41 → 41 %
    assert cal.ece(np.array([[0.90, 0.1], [0.92, 0.08]]), np.array([1, 0])) == pytest.approx(41.0)
    # a confidence on a bin edge belongs to the bin below it (upper edge included), with 4 bins so that the edge
    # 0.5 is exact: 0.50 (right) → bin 1 (0.25, 0.5], 0.55 (wrong) → bin 2 (0.5, 0.75]; apart: (0.50 + 0.55) / 2
    # = 52.5 %; were the lower edge included, they would share bin 2: |0.5 − 0.525| = 2.5 %
    edge = np.array([[0.5, 0.5], [0.55, 0.45]])
    assert cal.ece(edge, np.array([0, 1]), n_bins=4) == pytest.approx(52.5)


def test_nll_and_brier_match_sklearn_and_the_definition():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 7)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 7, 300)
    assert cal.nll(probs, y) == pytest.approx(skm.log_loss(y, probs, labels=list(range(7))))
    onehot = np.zeros((300, 7))
    onehot[np.arange(300), y] = 1
    by_hand = np.mean([sum((probs[i, c] - onehot[i, c]) ** 2 for c in range(7)) for i in range(300)])
    assert cal.brier(probs, y) == pytest.approx(by_hand)
    for c in range(7):  # one class against the rest is scikit-learn's binary Brier; the sum over classes is ours
        by_hand -= skm.brier_score_loss(y == c, probs[:, c])
    assert by_hand == pytest.approx(0.0, abs=1e-12)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20_000, 7)) * 3
    true_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.minimum((true_probs.cumsum(1) < rng.random((20_000, 1))).sum(1), 6)  # labels drawn from the true model
    overconfident = cal.scale(true_probs, 1 / 2.5).astype(np.float32)  # the model's logits are 2.5× too large
    t = cal.fit_temperature(overconfident, y)
    assert t == pytest.approx(2.5, rel=0.05)
    s = cal.summary(overconfident, y, valid=(overconfident, y))
    assert s["temperature"] == pytest.approx(t) and s["ece_ts"] < s["ece"] / 3 and s["nll_ts"] < s["nll"]


def test_reliability_diagram_is_written(tmp_path):
    y, pred = _preds(400, 7, 0.6, seed=2)
    probs = np.full((400, 7), 0.05)
    probs[np.arange(400), pred] = 0.7
    from fer_bench.report.run_plots import reliability_diagram

    reliability_diagram(probs, y, tmp_path / "r.png", title="t", temperature=1.5)
    assert (tmp_path / "r.png").stat().st_size > 10_000


def _run_folder(root, name: str, probs, labels, ids, **row) -> object:
    """A run folder as `fer-bench run` leaves it, as far as `compare` reads it: result.json + predictions.npz."""
    from fer_bench.evaluation import predictions

    d = root / name
    d.mkdir()
    digest = predictions.write(d / predictions.FILE, probs, labels, ids)
    row = {"model": name, "recipe": "baseline", "split": "test", "seed": 0} | row
    (d / "result.json").write_text(json.dumps(row | {"predictions": {"file": predictions.FILE, "sha256": digest}}))
    return d


def _two_rows(tmp_path):
    y, pa = _preds(600, 7, 0.70, seed=8)
    rng = np.random.default_rng(9)
    pb, change = pa.copy(), rng.permutation(600)[:150]
    pb[change] = rng.integers(0, 7, 150)  # B: right where A is wrong on some samples, wrong where A is right on more
    ids = np.array([f"id{i:04d}" for i in range(600)])
    a = _run_folder(tmp_path, "a", np.eye(7, dtype=np.float32)[pa] * 0.6 + 0.4 / 7, y, ids)
    back = np.arange(600)[::-1]  # B's file lists the samples in another order: pairing is by id
    b = _run_folder(tmp_path, "b", (np.eye(7, dtype=np.float32)[pb] * 0.5 + 0.5 / 7)[back], y[back], ids[back])
    return a, b, y, pa, pb


def test_compare_pairs_two_run_folders_by_id(tmp_path, capsys):
    from fer_bench.cli import main

    a, b, y, pa, pb = _two_rows(tmp_path)
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "faces: A right more often" in out and "A − B macro-F1" in out and "paired on 600 common sample ids" in out
    res = json.loads((tmp_path / "c.json").read_text())
    mc = stats.mcnemar(pa == y, pb == y)  # B re-ordered by id: the same table as the arrays in one order
    assert res["paired"]["faces"] == {"a_better": mc["a_only"], "b_better": mc["b_only"],
                                      "tied": mc["both"] + mc["neither"]}  # fmt: skip
    exact = sst.binomtest(mc["a_only"], mc["a_only"] + mc["b_only"]).pvalue  # McNemar's exact test
    assert res["paired"]["test"]["top1"]["p"] == pytest.approx(exact, rel=1e-12)
    assert res["paired"]["test"] == stats.paired_test(y, pa, pb, 7)
    assert res["a"]["top1"] == pytest.approx(70.0) and res["b"]["top1"] == pytest.approx(np.mean(pb == y) * 100)
    assert res["paired"]["bootstrap"] == stats.paired_bootstrap(y, pa, pb, 7)
    assert res["a"]["top1_ci"] == list(stats.bootstrap_interval(y, pa, 7)["top1"])


def test_compare_refuses_other_samples_and_a_changed_file(tmp_path, capsys):
    from fer_bench.cli import main
    from fer_bench.evaluation import predictions

    a, b, y, pa, pb = _two_rows(tmp_path)
    other = predictions.read(b / predictions.FILE)
    c = _run_folder(tmp_path, "c", other["probs"][:590], other["labels"][:590], other["ids"][:590])
    assert main(["compare", str(a), str(c)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(a / predictions.FILE) in err and str(c / predictions.FILE) in err
    assert "10 ids" in err  # how many samples the two files do not share
    predictions.write(b / predictions.FILE, other["probs"][::-1], other["labels"][::-1], other["ids"][::-1])
    assert main(["compare", str(a), str(b)]) == 2  # the same predictions, other bytes: not the file the row scored
    err = capsys.readouterr().err
    assert "sha256" in err and str(b / predictions.FILE) in err
    assert main(["compare", str(a), str(tmp_path / "nothing")]) == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(("a_only", "b_only"), [(4, 0), (9, 3), (20, 31)])
def test_the_permutation_test_of_top1_is_mcnemars_exact_test(a_only, b_only):
    y = np.zeros(300, np.int64)
    pa, pb = y.copy(), y.copy()
    pa[a_only : a_only + b_only] = 1  # B right, A wrong
    pb[:a_only] = 2  # A right, B wrong
    p = stats.paired_test(y, pa, pb, 7)
    exact = sst.binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert p["top1"]["p"] == pytest.approx(exact, rel=1e-12) and p["top1"]["mc_se"] == 0  # enumerated, not sampled
    assert 0 < p["macro_f1"]["p"] <= 1


def test_the_exact_top1_p_of_several_seeds_is_accurate_far_below_double_precision():
    """Two seeds of A right on every face (one of them on the even faces only), B's one seed never: every per-face
    difference is positive (2 or 1), so only all-plus or all-minus signs reach the observed sum, p = 2 / 2^n."""
    n = 100
    y = np.zeros(n, np.int64)
    a = np.stack([y, np.where(np.arange(n) % 2 == 0, 0, 1)])
    p = stats.paired_test(y, a, np.full(n, 2), 3)["top1"]["p"]
    assert p == pytest.approx(2.0**-99, rel=1e-9, abs=0)  # ≈ 1.6e-30: an FFT convolution has noise of ~1e-16


def test_a_rows_reliability_diagram_is_written_beside_it(tmp_path):
    from fer_bench.evaluation import predictions
    from fer_bench.report.run_plots import save_reliability

    _, _, y, pa, _ = _two_rows(tmp_path)
    run = tmp_path / "a"
    probs = np.eye(7, dtype=np.float32)[pa] * 0.6 + 0.4 / 7
    predictions.write(run / "predictions-valid.npz", probs, y, np.arange(600).astype(str))
    save_reliability(run, "a")
    assert (run / "reliability.png").stat().st_size > 10_000


def test_compare_takes_lines_of_several_seeds_face_by_face(tmp_path, capsys):
    from fer_bench.cli import main
    from fer_bench.evaluation import comparison

    y, _ = _preds(400, 7, 0.7, seed=10)
    ids = np.array([f"id{i:04d}" for i in range(400)])
    line = {"protocol_hash": "p"}
    runs = {}
    for side, accs in (("a", (0.70, 0.72)), ("b", (0.64, 0.60))):
        (tmp_path / side).mkdir()
        for s, acc in enumerate(accs):
            runs[(side, s)] = pred = _preds(400, 7, acc, seed=20 + s + 10 * (side == "b"), y=y)[1]
            _run_folder(tmp_path / side, f"s{s}", np.eye(7, dtype=np.float32)[pred], y, ids, model=side, seed=s, **line)
    out = tmp_path / "c.json"
    assert main(["compare", str(tmp_path / "a"), f"{tmp_path / 'b' / 's1'},{tmp_path / 'b' / 's0'}", "--json",
                 str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "A: seeds [0, 1], B: seeds [0, 1]" in printed
    res = json.loads(out.read_text())
    for side in ("a", "b"):  # every seed, not the first run's "seed 0"
        assert (
            res[side]["name"]
            == comparison.row_name(json.loads((tmp_path / side / "s0" / "result.json").read_text())).removesuffix(
                " · seed 0"
            )
            + " · seeds 0, 1"
        )
    assert f"A: {res['a']['name']} (" in printed
    pa, pb = np.stack([runs[("a", 0)], runs[("a", 1)]]), np.stack([runs[("b", 0)], runs[("b", 1)]])
    assert res["paired"]["test"] == stats.paired_test(y, pa, pb, 7)  # each face once, its seeds averaged
    assert res["paired"]["bootstrap"] == stats.paired_bootstrap(y, pa, pb, 7)
    assert res["a"]["top1"] == pytest.approx(np.mean(pa == y) * 100) and res["a"]["seeds"] == [0, 1]
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b" / "s1"), "--json", str(out)]) == 0  # other seeds
    assert json.loads(out.read_text())["paired"]["test"] == stats.paired_test(y, pa, runs[("b", 1)], 7)
    assert json.loads(out.read_text())["b"]["name"].endswith(" · seed 1")  # one run keeps its own seed
    capsys.readouterr()
    code = main(["compare", str(tmp_path), str(tmp_path / "b")])  # two lines in one side: the side is named
    one_line_error(code, capsys.readouterr().err, f"{tmp_path}: ", "leaderboard lines")


def test_compare_names_each_side_by_recipe_version_and_settings(tmp_path, capsys):
    """Two versions of one recipe on one model and split are two names in `compare` (was "resnet18 · fast-48 ·
    private" twice)."""
    from fer_bench.cli import main

    y, pa = _preds(300, 7, 0.7, seed=3)
    ids = np.array([f"id{i}" for i in range(300)])
    probs = np.eye(7, dtype=np.float32)[pa] * 0.6 + 0.4 / 7
    row = {"model": "resnet18", "recipe": "fast-48", "split": "private"}
    a = _run_folder(tmp_path, "a", probs, y, ids, **row, recipe_version=2, recipe_hash="8a160d5040ef", epochs=36)
    b = _run_folder(tmp_path, "b", probs, y, ids, **row, recipe_version=1, recipe_hash="975bc97d6181", epochs=25)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("A: resnet18 · fast-48 v2 [8a160d50] · 36 ep · private · seed 0 (")
    assert out[1].startswith("B: resnet18 · fast-48 v1 [975bc97d] · 25 ep · private · seed 0 (")


def test_compare_takes_bare_predictions_files_as_the_runs_of_one_line(tmp_path, capsys):
    """Predictions files carry no seed: several joined by commas are one line's runs, and a run's own file is that
    run; one run named twice (a link, a copy of a seedless file, a folder and its file) is refused, as is a seed
    that two run folders share."""
    import shutil

    from fer_bench.cli import main
    from fer_bench.evaluation import predictions

    y, _ = _preds(300, 7, 0.7, seed=11)
    ids = np.array([f"id{i:04d}" for i in range(300)])
    files = {}
    for name, acc, s in (("a0", 0.70, 30), ("a1", 0.66, 31), ("b0", 0.60, 32)):
        files[name] = tmp_path / f"{name}.npz", _preds(300, 7, acc, seed=s, y=y)[1]
        predictions.write(files[name][0], np.eye(7, dtype=np.float32)[files[name][1]], y, ids)
    a0, a1, b0 = (str(files[n][0]) for n in ("a0", "a1", "b0"))
    out = tmp_path / "c.json"
    assert main(["compare", f"{a0},{a1}", b0, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    pa = np.stack([files["a0"][1], files["a1"][1]])
    assert res["a"]["seeds"] == [None, None] and res["a"]["name"].endswith(" · seeds ?, ?")
    assert res["paired"]["test"] == stats.paired_test(y, pa, files["b0"][1], 7)
    capsys.readouterr()
    (tmp_path / "link.npz").symlink_to(files["a0"][0])
    shutil.copy(files["a0"][0], tmp_path / "copy.npz")
    for twice in (tmp_path / "link.npz", tmp_path / "copy.npz"):
        one_line_error(main(["compare", f"{a0},{twice}", b0]), capsys.readouterr().err, "same predictions", str(twice))
    run = _run_folder(tmp_path, "s3", np.eye(7, dtype=np.float32)[files["a1"][1]], y, ids, seed=3, model="m")
    assert main(["compare", str(run / predictions.FILE), b0, "--json", str(out)]) == 0  # a run's file is the run
    assert json.loads(out.read_text())["a"]["seeds"] == [3]
    capsys.readouterr()
    code = main(["compare", f"{run},{run / predictions.FILE}", b0])
    one_line_error(code, capsys.readouterr().err, "same predictions", str(run / predictions.FILE))
    for s in ("s0", "s1"):  # two runs of one seed (their predictions differ)
        pred = files["a0" if s == "s0" else "a1"][1]
        _run_folder(tmp_path, s, np.eye(7, dtype=np.float32)[pred], y, ids, seed=0, model="m")
    code = main(["compare", f"{tmp_path / 's0'},{tmp_path / 's1'}", b0])
    one_line_error(code, capsys.readouterr().err, "seeds [0, 0] repeat")
    one_line_error(main(["compare", ",", b0]), capsys.readouterr().err, "names no run")
