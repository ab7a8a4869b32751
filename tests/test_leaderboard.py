"""Golden renderings of the leaderboard. Regenerate with `scripts/test.sh tests/test_leaderboard.py --accept`
after an intended change, and review the diff of tests/golden/."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_bench import leaderboard as lb
from fer_bench import leaderboard_stats

GOLDEN = Path(__file__).parent / "golden"
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _runs() -> pd.DataFrame:
    """Five runs: two seeds of resnet18, two of vgg_khaireddin, one of efficientnet_b2 (values made up, fixed)."""
    rows = []
    for model, recipe, seed, top1, f1, params, gmacs, inf, tr in [
        ("resnet18", "baseline", 0, 53.1, 43.2, 11.18, 0.084, 390.2, 125.1),
        ("resnet18", "baseline", 1, 54.3, 44.0, 11.18, 0.084, 385.0, 124.0),
        ("vgg_khaireddin", "baseline", 0, 55.0, 45.1, 29.89, 0.51, 60.0, 19.5),
        ("vgg_khaireddin", "baseline", 1, 56.2, 47.3, 29.89, 0.51, 61.2, 19.1),
        ("efficientnet_b2", "naik-effnetb2", 0, 50.2, 39.9, 7.71, 0.05, 441.0, 74.0),
    ]:
        row = {"model": model, "recipe": recipe, "dataset": "fer2013", "split": "test", "img_size": 48, "epochs": 3,
               "weights": "scratch", "precision": "fp32", "protocol_hash": f"{recipe[:4]}00000000",
               "device_name": "x86_64 (2 threads)", "seed": seed, "top1": top1, "macro_f1": f1,
               "weighted_f1": f1 + 5, "params_m": params, "gmacs": gmacs, "infer_model_img_s": inf,
               "train_e2e_img_s": tr, "train_frozen_epochs": 0}  # fmt: skip
        row |= {"train_min": 3000 / tr, "val_near_best_min": 2000 / tr + seed}  # minutes follow img/s (made up)
        row |= {f"f1_{c}": f1 + i - 3 for i, c in enumerate(CLASSES)}
        rows.append(row)
    return pd.DataFrame(rows)


CASES = {"md": "leaderboard.md", "csv": "leaderboard.csv", "latex": "leaderboard.tex", "html": "leaderboard.html"}


@pytest.mark.parametrize("fmt", CASES)
def test_golden(fmt, request):
    text = lb.render(lb.aggregate(_runs()), fmt, per_class=fmt == "md", published=fmt == "md")
    path = GOLDEN / CASES[fmt]
    if request.config.getoption("--accept"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with --accept once and review it"
    assert text == path.read_text()


def test_ranking_and_aggregation():
    agg = lb.aggregate(_runs())
    assert agg["model"].tolist() == ["vgg_khaireddin", "resnet18", "efficientnet_b2"]
    vgg = agg.iloc[0]
    assert vgg["macro_f1"] == pytest.approx(46.2) and vgg["seeds"] == 2
    assert vgg["macro_f1_std"] == pytest.approx(pd.Series([45.1, 47.3]).std())
    assert pd.isna(agg.iloc[2]["macro_f1_std"])  # one seed: no spread


def test_every_numeric_header_has_a_direction():
    text = lb.render(lb.aggregate(_runs()), "md")
    header = text.splitlines()[0]
    for name in (
        "top-1 % ↑",
        "macro-F1 ↑",
        "params (M) ↓",
        "GMACs ↓",
        "infer img/s (run, model-only, b64) ↑",
        "train img/s (run, end-to-end) ↑",
        "train min (on its device) ↓",
        "min to val within 0.5 pt of best ↓",
    ):
        assert name in header


def test_pareto_plot(tmp_path):
    lb.pareto_plot(lb.aggregate(_runs()), tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


def _one(**kw) -> dict:
    """A result row as `fer-bench run` writes it (only the fields the leaderboard reads)."""
    row = {"model": "resnet18", "recipe": "baseline", "dataset": "fer2013", "split": "public", "img_size": 48,
           "epochs": 3, "seed": 0, "device_name": "x86_64 (2 threads)", "precision": "fp32", "params": 11.2e6,
           "gmacs": 0.1, "infer_model_img_s": 800.0, "train_e2e_img_s": 180.0, "train_frozen_epochs": 0,
           "protocol_hash": "aaaa", "weights_source": "scratch", "run_id": "r",
           "test": {"top1": 50.0, "macro_f1": 40.0, "weighted_f1": 48.0},
           "test_tta": {"none": {"top1": 50.0, "macro_f1": 40.0, "weighted_f1": 48.0}}}  # fmt: skip
    return row | kw


def test_training_minutes_and_minutes_to_near_best_come_from_the_row():
    rows = [_one(train_wall_s=600.0, val_near_best_min=4.0), _one(seed=1, train_wall_s=900.0, val_near_best_min=6.0)]
    agg = lb.aggregate(lb.frame_from_rows(rows))
    assert agg.iloc[0]["train_min"] == pytest.approx(12.5) and agg.iloc[0]["val_near_best_min"] == pytest.approx(5.0)
    cells = _md_cells(lb.render(agg, "md"))
    assert cells["train min (on its device) ↓"] == "12.50 ± 3.54" and cells["device"] == "x86_64 (2 threads)"
    assert cells["min to val within 0.5 pt of best ↓"] == "5.00 ± 1.41"
    old = _md_cells(lb.render(lb.aggregate(lb.frame_from_rows([_one()])), "md"))  # a row from before the fields
    assert old["train min (on its device) ↓"] == old["min to val within 0.5 pt of best ↓"] == "–"


def _md_cells(table: str) -> dict[str, str]:
    """Header → cell of the first line of a Markdown table."""
    header, _, first = ([c.strip() for c in line.split("|")] for line in table.splitlines()[:3])
    return dict(zip(header, first, strict=True))


def test_rows_of_different_protocols_or_devices_are_never_averaged():
    rows = [_one(seed=0), _one(seed=1, test={"top1": 52.0, "macro_f1": 42.0, "weighted_f1": 50.0}),
            _one(protocol_hash="bbbb", img_size=224, test={"top1": 70.0, "macro_f1": 60.0, "weighted_f1": 68.0}),
            _one(dataset="synthetic", protocol_hash="cccc", test={"top1": 99.0, "macro_f1": 99.0, "weighted_f1": 99.0}),
            _one(device_name="NVIDIA H200", protocol_hash="aaaa"),
            _one(device_name="NVIDIA A100", protocol_hash="aaaa")]  # fmt: skip
    agg = lb.aggregate(lb.frame_from_rows(rows))
    assert len(agg) == 5  # (aaaa, cpu) with 2 seeds; bbbb; cccc; H200; A100
    cpu = agg[(agg["protocol_hash"] == "aaaa") & (agg["device_name"] == "x86_64 (2 threads)")].iloc[0]
    assert cpu["seeds"] == 2 and cpu["top1"] == pytest.approx(51.0)
    assert sorted(agg["img_size"].tolist()) == [48, 48, 48, 48, 224]


def test_each_split_is_ranked_on_its_own():
    rows = [
        _one(split="public", test={"top1": 60.0, "macro_f1": 50.0, "weighted_f1": 1.0}),
        _one(split="private", test={"top1": 70.0, "macro_f1": 55.0, "weighted_f1": 1.0}),
        _one(split="public", model="vgg", test={"top1": 65.0, "macro_f1": 52.0, "weighted_f1": 1.0}),
        _one(split="private", model="vgg", test={"top1": 50.0, "macro_f1": 45.0, "weighted_f1": 1.0}),
    ]
    agg = lb.aggregate(lb.frame_from_rows(rows))
    assert agg["split"].tolist() == ["public", "public", "private", "private"]  # never interleaved
    assert lb._ranks(agg) == ["1", "2", "1", "2"]
    assert agg["model"].tolist() == ["vgg", "resnet18", "resnet18", "vgg"]


def test_rows_without_a_protocol_hash_never_aggregate():
    old = [_one(run_id="a"), _one(run_id="b", seed=1)]
    for r in old:
        del r["protocol_hash"]
    assert len(lb.aggregate(lb.frame_from_rows(old))) == 2


def test_tta_is_a_column_of_its_own_with_its_cost_never_the_headline():
    row = _one(test_tta={"none": {"top1": 50.0, "macro_f1": 40.0, "weighted_f1": 48.0},
                         "tencrop": {"top1": 55.0, "macro_f1": 45.0, "weighted_f1": 53.0}},
               test_tta_gmacs={"none": 0.1, "tencrop": 1.0})  # fmt: skip
    agg = lb.aggregate(lb.frame_from_rows([row]))
    assert agg.iloc[0]["top1"] == 50.0 and agg.iloc[0]["top1_tencrop"] == 55.0 and agg.iloc[0]["gmacs_tencrop"] == 1.0
    header = lb.render(agg, "md").splitlines()[0]
    assert "top-1 tencrop % ↑" in header and "GMACs tencrop ↓" in header


def test_a_frozen_run_says_so_beside_its_training_speed():
    text = lb.render(lb.aggregate(lb.frame_from_rows([_one(train_frozen_epochs=2)])), "md")
    assert "180.0 ‡" in text and lb.FROZEN_NOTE in text


def _bench(device_name: str, precision: str = "fp32", infer: float = 5000.0) -> pd.DataFrame:
    """A `fer-bench bench` child run as mlflow.search_runs returns it."""
    return pd.DataFrame([{
        "tags.fer_bench.model": "resnet18", "tags.fer_bench.img_size": "48", "tags.fer_bench.device_name": device_name,
        "tags.fer_bench.precision": precision, "tags.fer_bench.batch_size": "256",
        "tags.fer_bench.channels_last": "True", "metrics.infer_img_s_median": infer,
        "metrics.train_img_s_median": 1500.0, "start_time": pd.Timestamp("2026-11-28"),
    }])  # fmt: skip


def test_bench_figures_are_columns_of_their_own_matched_on_the_device_model():
    frame = lb.frame_from_rows([_one()])
    same = lb.apply_bench(frame, _bench("x86_64 (2 threads)"))
    assert same.iloc[0]["infer_model_img_s"] == 800.0 and same.iloc[0]["train_e2e_img_s"] == 180.0  # untouched
    assert same.iloc[0]["bench_infer_img_s"] == 5000.0 and same.iloc[0]["bench_conditions"] == "b256, fp32, NHWC"
    for other in (_bench("NVIDIA H200"), _bench("x86_64 (2 threads)", precision="amp_bf16")):
        assert pd.isna(lb.apply_bench(frame, other).iloc[0]["bench_infer_img_s"])
    header = lb.render(lb.aggregate(same), "md").splitlines()[0]
    assert "bench infer img/s ↑" in header and "bench conditions" in header


def test_repeated_runs_of_one_seed_are_not_counted_as_seeds():
    rows = [
        _one(seed=0, test={"top1": 50.0, "macro_f1": 40.0, "weighted_f1": 1.0}),
        _one(seed=0, test={"top1": 54.0, "macro_f1": 44.0, "weighted_f1": 1.0}),  # the same cell re-run
        _one(seed=1, test={"top1": 58.0, "macro_f1": 48.0, "weighted_f1": 1.0}),
    ]
    line = lb.aggregate(lb.frame_from_rows(rows)).iloc[0]
    assert line["seeds"] == 2
    assert line["top1"] == pytest.approx(55.0)  # mean of the seeds' means (52, 58), not of three rows
    assert line["top1_std"] == pytest.approx(pd.Series([52.0, 58.0]).std())


def test_datasets_are_never_ranked_together():
    rows = [
        _one(dataset="synthetic", protocol_hash="s", test={"top1": 99.0, "macro_f1": 99.0, "weighted_f1": 1.0}),
        _one(model="vgg", test={"top1": 60.0, "macro_f1": 50.0, "weighted_f1": 1.0}),
        _one(test={"top1": 50.0, "macro_f1": 40.0, "weighted_f1": 1.0}),
    ]
    agg = lb.aggregate(lb.frame_from_rows(rows))
    assert list(zip(agg["dataset"], lb._ranks(agg), strict=True)) == [("fer2013", "1"), ("fer2013", "2"),
                                                                        ("synthetic", "1")]  # fmt: skip


def test_a_model_scored_on_another_dataset_is_a_line_of_its_own_ranked_apart():
    """`fer-bench eval --dataset ferplus` of a FER2013 run keeps the run's protocol hash and split name: it must not
    average into the run's own line, nor rank against FER+'s own rows (its macro-F1 is over the shared classes)."""
    cross = {"trained_on": "fer2013", "scored_on": "ferplus", "n_lacking": 16, "shared": ["angry", "happy"]}
    test = {"top1": 67.0, "macro_f1": 56.0, "weighted_f1": 69.0, "top1_shared": 67.3, "n_lacking": 16}
    rows = [
        _one(split="private", test={"top1": 64.0, "macro_f1": 60.0, "weighted_f1": 63.0}),
        _one(split="private", dataset="ferplus", run_id="e", cross_dataset=cross, test=test, test_tta={},
             classes=["angry", "happy", "(lacked by the model)"]),
        _one(split="private", dataset="ferplus", model="vgg", protocol_hash="f",
             test={"top1": 80.0, "macro_f1": 60.0, "weighted_f1": 79.0}),
    ]  # fmt: skip
    agg = lb.aggregate(lb.frame_from_rows(rows))
    got = agg.set_index(["model", "dataset"])
    assert got.loc[("resnet18", "fer2013"), "top1"] == 64.0 and got.loc[("resnet18", "ferplus"), "top1"] == 67.0
    assert list(zip(agg["model"], agg["train_dataset"], lb._ranks(agg), strict=True)) == [
        ("resnet18", "fer2013", "1"), ("vgg", "ferplus", "1"), ("resnet18", "fer2013", "1")]  # fmt: skip
    table = lb.render(agg, "md")
    lines = [[c.strip() for c in line.split("|")] for line in table.splitlines()[:5]]
    head = lines[0]
    cross_line = next(line for line in lines[2:] if line[head.index("dataset")] == "ferplus" and line[2] == "resnet18")
    assert cross_line[head.index("trained on")] == "fer2013"
    assert cross_line[head.index("top-1 % (shared classes' faces) ↑")] == "67.30"
    assert cross_line[head.index("faces of classes the model lacks")] == "16"
    plain = _md_cells(lb.render(lb.aggregate(lb.frame_from_rows(rows[:1])), "md"))
    assert "trained on" not in plain and "faces of classes the model lacks" not in plain  # only where there are any


def test_published_fer2013_figures_stand_only_beside_fer2013_lines():
    ferplus = lb.aggregate(lb.frame_from_rows([_one(dataset="ferplus")]))
    assert "(published)" not in lb.render(ferplus, "md", published=True)  # no FER+ figure in the published table
    both = lb.aggregate(lb.frame_from_rows([_one(dataset="ferplus"), _one(protocol_hash="b")]))
    pub = lb.with_published(both)
    pub = pub[pub["device_name"] == "published"]
    assert len(pub) == len(lb.published_rows()) and set(pub["dataset"]) == {"fer2013"}


def test_two_versions_of_one_recipe_read_as_two_recipes():
    rows = [_one(recipe="fast-48", recipe_version=2, protocol_hash="b"), _one(recipe="fast-48", recipe_version=1)]
    assert sorted(lb.aggregate(lb.frame_from_rows(rows))["recipe"]) == ["fast-48 v1", "fast-48 v2"]


def test_bench_matches_an_fp32_run_that_ran_in_tf32():
    frame = lb.frame_from_rows([_one(precision_label="fp32+tf32(cudnn)", device_name="NVIDIA H200")])
    assert lb.apply_bench(frame, _bench("NVIDIA H200")).iloc[0]["bench_infer_img_s"] == 5000.0


def _predicted_row(tmp_path, name: str, pred: np.ndarray, y: np.ndarray, **kw) -> dict:
    """A row with its run folder and predictions file (probabilities peaked on ``pred``), scored from them."""
    from fer_bench import predictions
    from fer_bench.metrics import classification_metrics

    d = tmp_path / name
    d.mkdir()
    probs = np.eye(7, dtype=np.float32)[pred] * 0.5 + np.float32(0.5 / 7)
    digest = predictions.write(d / predictions.FILE, probs, y, np.array([f"s{i}" for i in range(len(y))]))
    m = classification_metrics(probs, y, CLASSES)
    test = {k: m[k] for k in ("top1", "macro_f1", "weighted_f1")}
    return _one(run_id=name, _dir=str(d), predictions={"file": predictions.FILE, "sha256": digest}, test=test,
                test_tta={"none": test}, **kw)  # fmt: skip


def _known_case(tmp_path) -> tuple[list[dict], np.ndarray, dict[str, np.ndarray]]:
    """best: two seeds near 70 %; near: differs from best's seed 0 on 4 samples; worse: 15 pt below; old: no file."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 1500)
    preds = {}
    for name, acc, seed in [("best0", 0.70, 1), ("best1", 0.71, 2), ("worse", 0.55, 3)]:
        p = y.copy()
        wrong = np.random.default_rng(seed).permutation(1500)[: round((1 - acc) * 1500)]
        p[wrong] = (y[wrong] + 1 + np.arange(len(wrong)) % 6) % 7
        preds[name] = p
    near = preds["best0"].copy()
    near[np.flatnonzero(near == y)[:4]] = (y[np.flatnonzero(near == y)[:4]] + 1) % 7
    preds["near"] = near
    rows = [_predicted_row(tmp_path, "best0", preds["best0"], y, model="best", seed=0),
            _predicted_row(tmp_path, "best1", preds["best1"], y, model="best", seed=1),
            _predicted_row(tmp_path, "near", near, y, model="near"),
            _predicted_row(tmp_path, "worse", preds["worse"], y, model="worse"),
            _one(model="old", test={"top1": 10.0, "macro_f1": 5.0, "weighted_f1": 5.0})]  # fmt: skip
    return rows, y, preds


def test_intervals_calibration_and_marks_from_the_predictions(tmp_path):
    from fer_bench import calibration, stats

    rows, y, preds = _known_case(tmp_path)
    agg = lb.aggregate(lb.frame_from_rows(rows)).set_index("model")
    assert agg.loc["best", "sig"] == "best" and agg.loc["near", "sig"] == "≈" and agg.loc["worse", "sig"] == "<"
    assert agg.loc["old", "sig"] == "n/a" and pd.isna(agg.loc["old", "top1_ci_lo"])  # no predictions: not compared
    assert agg.loc["worse", "p_vs_best"] < 0.05 < agg.loc["near", "p_vs_best"]
    order = np.argsort([f"s{i}" for i in range(len(y))])  # the faces in sorted id order, as `compare` sees them
    ci = stats.bootstrap_interval(y[order], np.stack([preds["best0"], preds["best1"]])[:, order], 7)  # seeds' mean
    assert (agg.loc["best", "top1_ci_lo"], agg.loc["best", "top1_ci_hi"]) == ci["top1"]
    assert agg.loc["best", "top1_ci_lo"] < agg.loc["best", "top1"] < agg.loc["best", "top1_ci_hi"]
    worse = stats.bootstrap_interval(y[order], preds["worse"][order], 7)["macro_f1"]
    assert agg.loc["worse", "macro_f1_ci"] == f"[{worse[0]:.2f}, {worse[1]:.2f}]"
    probs = np.eye(7)[preds["worse"]] * 0.5 + 0.5 / 7
    assert agg.loc["worse", "ece"] == pytest.approx(calibration.ece(probs, y), abs=1e-4)
    assert agg.loc["worse", "brier"] == pytest.approx(calibration.brier(probs, y), abs=1e-5)
    assert agg.loc["best", "top1_seeds_ci_lo"] < agg.loc["best", "top1"] < agg.loc["best", "top1_seeds_ci_hi"]


def test_the_new_columns_and_the_note_in_every_format(tmp_path):
    agg = lb.aggregate(lb.frame_from_rows(_known_case(tmp_path)[0]))
    md = lb.render(agg, "md")
    cells = _md_cells(md)
    assert list(cells)[-6:] == ["top-1 95 % CI", "macro-F1 95 % CI", "ECE % ↓", "mCA % (corruptions) ↑",
                                "mCA / clean ↑", "macro-F1 − best (95 % CI)"]  # after every old column
    assert cells["mCA % (corruptions) ↑"] == cells["mCA / clean ↑"] == "–"  # no corruption run: said, not hidden
    assert cells["macro-F1 − best (95 % CI)"] == "best" and cells["top-1 95 % CI"].startswith("[")
    assert "Holm-corrected" in md and "α = 0.05" in md and "– for old: no predictions file recorded" in md
    csv = pd.read_csv(io.StringIO(lb.render(agg, "csv")))
    for col in ("top1_ci_lo", "top1_ci_hi", "macro_f1_ci_lo", "ece", "nll", "brier", "sig", "p_vs_best"):
        assert col in csv, col
    added = [c for c in csv.columns if any(c in cs for cs in leaderboard_stats.CSV.values())]
    assert csv.columns[-len(added) :].tolist() == added  # after the old ones
    assert added[-10:] == leaderboard_stats.CSV["vs_best"]
    latex, html = lb.render(agg, "latex"), lb.render(agg, "html")
    assert r"macro-F1 $-$ best" in latex and "% 95 % CI" in latex and "≈" not in latex.split("\n% ")[0]
    assert "top-1 95 % CI" in html and "<p>95 % CI" in html and "Holm" in html


def test_a_predictions_file_that_is_not_the_rows_is_an_error(tmp_path):
    from fer_bench.errors import DataError

    rows = _known_case(tmp_path)[0]
    path = tmp_path / "near" / "predictions.npz"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="sha256"):
        lb.aggregate(lb.frame_from_rows(rows))


def test_mca_is_shown_with_and_without_the_cells_at_or_below_the_majority_rate():
    runs = _runs().assign(mca=48.8, mca_ratio=0.744, mca_above_majority=52.3)
    md = lb.render(lb.aggregate(runs), "md")
    cells = _md_cells(md)
    assert cells["mCA % (corruptions) ↑"].startswith("48.80")
    assert cells["mCA % without cells ≤ majority class ↑"].startswith("52.30")
    assert "at or below the scored split's majority-class rate" in md
    assert r"$\leq$" in lb.render(lb.aggregate(runs), "latex")
    plain = lb.render(lb.aggregate(_runs()), "md")  # no corruption run: the extra column and note stay out
    assert "majority class" not in plain
