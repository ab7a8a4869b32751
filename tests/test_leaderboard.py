"""Golden renderings of the leaderboard. Regenerate with `scripts/test.sh tests/test_leaderboard.py --accept`
after an intended change, and review the diff of tests/golden/."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_bench.report import leaderboard as lb
from fer_bench.report import table_stats as leaderboard_stats

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
    text = lb.render(lb.aggregate(_runs()), "md", columns=["all"])
    header = _md_lines(text)[0]
    for name in (
        "top-1 % ↑",
        "macro-F1 ↑",
        "params ↓",
        "GMACs ↓",
        "img/s ↑",
        "train img/s (run, end-to-end) ↑",
        "train min (on its device) ↓",
        "min to val within 0.5 pt of best ↓",
    ):
        assert name in header


def test_pareto_plot(tmp_path):
    from fer_bench.report.figures import save_pareto

    save_pareto(lb.aggregate(_runs()), tmp_path / "p.png")
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
    cells = _md_cells(lb.render(agg, "md", columns=["cost", "provenance"]))
    assert cells["train min (on its device) ↓"] == "12.50 ± 3.54" and cells["device"] == "x86_64 (2 threads)"
    assert cells["min to val within 0.5 pt of best ↓"] == "5.00 ± 1.41"
    old = _md_cells(lb.render(lb.aggregate(lb.frame_from_rows([_one()])), "md", columns=["cost"]))  # an old row
    assert old["train min (on its device) ↓"] == old["min to val within 0.5 pt of best ↓"] == "–"


def _md_lines(table: str) -> list[str]:
    """The lines of the Markdown tables (without their outer pipes), headers and separators included."""
    return [line for line in table.splitlines() if "|" in line and not line.startswith("**")]


def _md_cells(table: str) -> dict[str, str]:
    """Header → cell of the first line of the first Markdown table (after its heading line)."""
    lines = _md_lines(table)
    header, _, first = ([c.strip() for c in line.split("|")] for line in lines[:3])
    return dict(zip(header, first, strict=True))


def test_the_comparison_columns_give_the_sd_over_a_lines_seeds():
    import statistics

    f1s = [(61.0, 50.5), (58.0, 47.0), (63.5, 52.0)]
    rows = [_one(seed=s, test={"top1": t, "macro_f1": f, "weighted_f1": 1.0}) for s, (t, f) in enumerate(f1s)]
    rows.append(_one(model="vgg", test={"top1": 40.0, "macro_f1": 30.0, "weighted_f1": 1.0}))
    md = lb.render(lb.aggregate(lb.frame_from_rows(rows)), "md", columns=["comparison"])
    cells = _md_cells(md)
    sd = [statistics.stdev(v) for v in zip(*f1s, strict=True)]  # the sample sd (n − 1), as the CSV's *_std
    assert cells["sd over seeds (top-1 / macro-F1)"] == f"{sd[0]:.1f} / {sd[1]:.1f}"
    second = [c.strip() for c in _md_lines(md)[3].split("|")]
    assert second[list(cells).index("sd over seeds (top-1 / macro-F1)")] == "–"  # one seed: no spread to show
    csv = pd.read_csv(io.StringIO(lb.render(lb.aggregate(lb.frame_from_rows(rows)), "csv")))
    assert csv.loc[0, "macro_f1_std"] == pytest.approx(sd[1], abs=1e-4)


def test_a_line_of_five_epochs_or_fewer_says_it_has_no_plateau_window():
    md = lb.render(lb.aggregate(lb.frame_from_rows([_one(epochs=4, epochs_run=4)])), "md")
    assert "†" in _md_cells(md)["epochs"]
    assert "no plateau window" in " ".join(md.split())


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
    assert agg["split"].tolist() == ["private", "private", "public", "public"]  # never interleaved; the headline first
    assert lb._ranks(agg) == ["1", "2", "1", "2"]
    assert agg["model"].tolist() == ["resnet18", "vgg", "vgg", "resnet18"]


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
    header = _md_lines(lb.render(agg, "md", columns=["tta"]))[0]
    assert "top-1 tencrop % ↑" in header and "GMACs tencrop ↓" in header


def test_a_frozen_run_says_so_beside_its_training_speed():
    text = lb.render(lb.aggregate(lb.frame_from_rows([_one(train_frozen_epochs=2)])), "md", columns=["cost"])
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
    header = _md_lines(lb.render(lb.aggregate(same), "md", columns=["cost"]))[0]
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
    assert table.count("**ferplus · private split") == table.count("**ferplus · trained on fer2013 · private") == 1
    cross_line = _md_cells(table.split("**ferplus · trained on fer2013 · private split")[1])  # a table of its own
    assert cross_line["model"] == "resnet18"
    assert cross_line["shared top-1 % ↑"] == "67.30" and cross_line["lacked faces"] == "16"
    assert "lacked faces:" in table  # the column's footnote
    plain = _md_cells(lb.render(lb.aggregate(lb.frame_from_rows(rows[:1])), "md"))
    assert "trained on" not in plain and "lacked faces" not in plain  # only where there are any


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
    from fer_bench.evaluation import predictions
    from fer_bench.evaluation.metrics import classification_metrics

    d = tmp_path / name
    d.mkdir()
    probs = np.eye(7, dtype=np.float32)[pred] * 0.5 + np.float32(0.5 / 7)
    digest = predictions.write(d / predictions.FILE, probs, y, np.array([f"s{i}" for i in range(len(y))]))
    m = classification_metrics(probs, y, CLASSES)
    test = {k: m[k] for k in ("top1", "macro_f1", "weighted_f1")}
    return _one(run_id=name, _dir=str(d), predictions={"file": predictions.FILE, "sha256": digest}, test=test,
                test_tta={"none": test}, **kw)  # fmt: skip


def _known_case(tmp_path) -> tuple[list[dict], np.ndarray, dict[str, np.ndarray]]:
    """best: two seeds near 70 %; near: differs from best's seed 0 on 4 samples; worse: 15 pt below (one seed: the
    test alone, "‹"); old: no file."""
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
    from fer_bench.evaluation import calibration, stats

    rows, y, preds = _known_case(tmp_path)
    agg = lb.aggregate(lb.frame_from_rows(rows)).set_index("model")
    assert agg.loc["best", "sig"] == "best" and agg.loc["near", "sig"] == "≈" and agg.loc["worse", "sig"] == "‹"
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
    md = lb.render(agg, "md", columns=["comparison", "calibration", "robustness"])
    cells = _md_cells(md)
    for h in ("top-1 95 % CI", "macro-F1 95 % CI", "ECE % ↓", "mCA % (corruptions) ↑", "mCA / clean ↑",
              "macro-F1 − best (95 % CI)"):  # fmt: skip
        assert h in cells, h
    assert cells["mCA % (corruptions) ↑"] == cells["mCA / clean ↑"] == "–"  # no corruption run: said, not hidden
    assert cells["macro-F1 − best (95 % CI)"] == cells["Δ best"] == "best" and cells["top-1 95 % CI"].startswith("[")
    lo, hi = (float(v) for v in cells["top-1 95 % CI"].strip("[]").split(", "))
    assert cells["top-1 % ↑"] == f"{agg.iloc[0]['top1']:.1f} ± {(hi - lo) / 2:.1f}"  # the default's ± is that CI
    flat = " ".join(md.split())  # the notes wrap at 120 columns
    assert "Holm-corrected" in flat and "α = 0.05" in flat and "– for old: no predictions file recorded" in flat
    csv = pd.read_csv(io.StringIO(lb.render(agg, "csv")))
    for col in ("top1_ci_lo", "top1_ci_hi", "macro_f1_ci_lo", "ece", "nll", "brier", "sig", "p_vs_best"):
        assert col in csv, col
    added = [c for c in csv.columns if any(c in cs for cs in leaderboard_stats.CSV.values())]
    assert csv.columns[-len(added) :].tolist() == added  # after the old ones
    assert added[-10:] == leaderboard_stats.CSV["vs_best"]
    latex, html = lb.render(agg, "latex", columns=["comparison"]), lb.render(agg, "html", columns=["comparison"])
    assert r"macro-F1 $-$ best" in latex and "% 95 % CI" in latex and "≈" not in latex.split("\n% ")[0]
    assert "top-1 95 % CI" in html and "<p>95 % CI" in html and "Holm" in html


def test_a_predictions_file_that_is_not_the_rows_is_an_error(tmp_path):
    from fer_bench.utils.errors import DataError

    rows = _known_case(tmp_path)[0]
    path = tmp_path / "near" / "predictions.npz"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="sha256"):
        lb.aggregate(lb.frame_from_rows(rows))


def test_mca_is_shown_with_and_without_the_cells_at_or_below_the_majority_rate():
    runs = _runs().assign(mca=48.8, mca_ratio=0.744, mca_above_majority=52.3)
    md = lb.render(lb.aggregate(runs), "md", columns=["robustness"])  # the robustness group shows mCA
    cells = _md_cells(md)
    assert cells["mCA % (corruptions) ↑"].startswith("48.80")
    assert cells["mCA % without cells ≤ majority class ↑"].startswith("52.30")
    assert "majority-class rate" in md  # the second mCA column's footnote
    assert r"$\leq$" in lb.render(lb.aggregate(runs), "latex", columns=["robustness"])
    plain = lb.render(lb.aggregate(_runs()), "md", columns=["robustness"])  # no corruption run: no extra column, note
    assert "majority class" not in plain


# The default table fits a screen; the rest is behind named column groups -------------------------------------------


def _longest_names(n: int = 3) -> list[str]:
    from fer_bench.models import MODELS

    return sorted(MODELS.names(), key=len, reverse=True)[:n]


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> pd.DataFrame:
    return _wide_case(tmp_path_factory.mktemp("wide"))


def _wide_case(tmp_path) -> pd.DataFrame:
    """Three lines under the registry's longest model names on two splits, every figure at its widest (big counts,
    intervals, a difference to the best, a line that did not converge, a snapshot), with TTA, corruptions and a
    frozen stage so that every group has something to show."""
    rows, y, preds = _known_case(tmp_path)
    names = _longest_names()
    wide = {"params": 143.7e6, "gmacs": 19.632, "infer_model_img_s": 12345.6, "img_size": 224, "epochs": 300,
            "train_wall_s": 123456.0, "val_near_best_min": 1234.5, "train_frozen_epochs": 2,
            "device_name": "Intel(R) Xeon(R) Processor (2 threads)", "precision_label": "fp32",
            "recipe": "insideout-effnetv2s-scratch", "recipe_version": 12}  # fmt: skip
    out = []
    for split in ("public", "private"):
        for r, name, conv in zip(rows[:4], [names[0], names[0], names[1], names[2]], [True, True, False, None],
                                 strict=True):  # fmt: skip
            t = r["test"]
            tta = {"none": t, "hflip": {k: v + 0.5 for k, v in t.items()}}
            row = r | wide | {"model": name, "split": split, "converged": conv, "test_tta": tta,
                              "test_tta_gmacs": {"hflip": 39.264}, "epochs_run": 300 if conv is not None else 3,
                              "corruptions": {"mca": 41.23, "mca_ratio": 0.612}}  # fmt: skip
            out.append(row | {"run_id": f"{r['run_id']}-{split}"})
        out[-1]["test"] = out[-1]["test"] | {f"f1_{c}": 10.0 + i for i, c in enumerate(CLASSES)}
    return lb.aggregate(lb.frame_from_rows(out))


def test_the_default_markdown_fits_120_columns_with_the_registrys_longest_names(wide):
    agg = wide
    md = lb.render(agg, "md")
    assert max(map(len, md.splitlines())) <= 120, max(md.splitlines(), key=len)
    for name in _longest_names():
        assert name in md
    head = _md_lines(md)[0]
    assert 10 <= head.count("|") + 1 <= 14  # about a dozen columns
    for needle in ("model", "weights", "px", "epochs", "top-1", "macro-F1", "best", "params", "GMACs", "img/s",
                   "seeds"):  # fmt: skip
        assert needle in head, needle
    for moved in ("dataset", "split", "device", "precision", "protocol", "ECE", "mCA", "weighted-F1", "hflip"):
        assert moved not in head, moved  # in the heading line, or behind a group
    assert "Intel(R) Xeon(R) Processor (2 threads)" in md and "public" in md and "fp32" in md  # the heading line


GROUP_HEADERS = {  # a group → headers only it adds
    "comparison": ["top-1 95 % CI", "macro-F1 95 % CI", "weighted-F1 ↑"],
    "tta": ["top-1 hflip % ↑", "macro-F1 hflip ↑", "GMACs hflip ↓"],
    "cost": ["train img/s (run, end-to-end) ↑", "train min (on its device) ↓", "min to val within 0.5 pt of best ↓"],
    "calibration": ["ECE % ↓"],
    "robustness": ["mCA % (corruptions) ↑", "mCA / clean ↑"],
    "per-class": ["F1 angry ↑", "F1 neutral ↑"],
    "provenance": ["protocol", "device", "precision", "recipe"],
}


@pytest.mark.parametrize("group", GROUP_HEADERS)
def test_each_column_group_adds_its_columns(wide, group):
    agg = wide
    default = set(_md_cells(lb.render(agg, "md")))
    shown = _md_cells(lb.render(agg, "md", columns=[group]))
    assert default <= set(shown)
    for h in GROUP_HEADERS[group]:
        assert h in shown and h not in default, h
    everything = set(_md_cells(lb.render(agg, "md", columns=["all"])))
    assert {h for hs in GROUP_HEADERS.values() for h in hs} <= everything


def test_per_class_is_an_alias_of_its_group_and_an_unknown_group_says_which_exist(wide):
    from fer_bench.utils.errors import ConfigError

    agg = wide
    assert lb.render(agg, "md", per_class=True) == lb.render(agg, "md", columns=["per-class"])
    with pytest.raises(ConfigError, match="calibration.*provenance.*all"):
        lb.render(agg, "md", columns=["calibraton"])


def test_csv_keeps_every_column_whatever_is_shown(wide):
    agg = wide
    csv = lb.render(agg, "csv")
    assert csv == lb.render(agg, "csv", columns=["cost"])
    got = pd.read_csv(io.StringIO(csv)).columns
    for col in ("rank", "model", "recipe", "dataset", "split", "device_name", "precision", "protocol_hash", "weights",
                "img_size", "epochs", "top1", "top1_std", "macro_f1", "weighted_f1", "f1_angry", "top1_hflip",
                "gmacs_hflip", "params_m", "gmacs", "infer_model_img_s", "train_e2e_img_s", "train_min",
                "val_near_best_min", "mca", "mca_ratio", "top1_ci_lo", "ece", "p_vs_best", "seeds",
                "convergence"):  # fmt: skip
        assert col in got, col


def test_a_line_that_did_not_converge_says_so_in_every_format(wide):
    agg = wide
    status = dict(zip(agg["model"], agg["convergence"], strict=False))
    names = _longest_names()
    assert status == {names[0]: "converged", names[1]: "not converged", names[2]: "snapshot, not converged"}
    md = lb.render(agg, "md")
    lines = _md_lines(md)
    marked = {n: [("†" in line) for line in lines if f"| {n} " in line] for n in names}
    assert marked == {names[0]: [False, False], names[1]: [True, True], names[2]: [True, True]}  # two splits each
    assert "not converged" in md and "snapshot, not converged" in md
    csv = pd.read_csv(io.StringIO(lb.render(agg, "csv")))
    assert set(csv["convergence"]) == {"converged", "not converged", "snapshot, not converged"}
    for fmt, mark in (("html", "†"), ("latex", r"$\dagger$")):
        text = lb.render(agg, fmt)
        assert "snapshot, not converged" in text and text.count(mark) >= 4 + 1, fmt  # 2 lines × 2 splits, the note


def test_a_table_of_snapshots_says_so_in_its_heading():
    md = lb.render(lb.aggregate(lb.frame_from_rows([_one(epochs_run=3), _one(model="vgg", epochs_run=2)])), "md")
    heading = md.splitlines()[0]
    assert "snapshot, not converged" in heading and "fer2013" in heading and "public" in heading


def test_the_default_leaderboard_of_the_committed_converged_rows_fits_120_columns():
    root = Path(__file__).resolve().parents[1] / "results" / "fer2013-converged"
    agg = lb.aggregate(lb.frame_from_rows(lb.read_rows([root / "runs"])))
    md = lb.render(agg, "md", published=True)
    assert max(map(len, md.splitlines())) <= 120, max(md.splitlines(), key=len)
    assert "resnet18" in md and "†" not in md.split("\n\n")[1]  # converged rows: no mark
    committed = (root / "leaderboard.md").read_text()
    assert max(map(len, committed.splitlines())) <= 120
    assert committed.splitlines()[0] == md.splitlines()[0]  # regenerated with today's layout


@pytest.mark.parametrize("name", ["leaderboard.md", "leaderboard.csv", "leaderboard.html", "leaderboard.tex"])
def test_the_committed_snapshot_tables_say_they_are_snapshots(name):
    text = (Path(__file__).resolve().parents[1] / "results" / "fer2013-cpu" / name).read_text()
    assert "snapshot, not converged" in text


def test_the_cli_takes_column_groups_and_refuses_an_unknown_one_in_one_line(capsys):
    from fer_bench.cli import main

    runs = str(Path(__file__).resolve().parents[1] / "results" / "fer2013-cpu" / "runs")
    assert main(["leaderboard", "--from-results", runs, "--columns", "cost,robustness"]) == 0
    head = _md_lines(capsys.readouterr().out)[0]
    assert "train img/s (run, end-to-end) ↑" in head and "mCA / clean ↑" in head and "ECE" not in head
    assert main(["leaderboard", "--from-results", runs, "--columns", "cots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Did you mean 'cost'?" in err


def test_rows_below_a_superseded_folder_are_never_read(tmp_path):
    """A results folder keeps the rows a rule set aside under superseded/, with why; no table or comparison reads
    them."""
    import json

    from fer_bench.report.frames import read_rows
    from fer_bench.utils.io import row_files

    for sub, seed in (("kept", 0), ("superseded/old", 1), ("x/superseded/older", 2)):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "result.json").write_text(json.dumps({"seed": seed}))
    assert [r["seed"] for r in read_rows([tmp_path])] == [0]
    assert row_files(tmp_path / "superseded") == [tmp_path / "superseded" / "old" / "result.json"]  # asked for by name
    assert len(read_rows([tmp_path / "superseded" / "old" / "result.json"])) == 1


def test_a_bench_figure_shared_by_a_lines_seeds_shows_no_spread_while_a_trained_figure_does():
    """One bench measurement is copied to every seed's row (its sd over seeds is 0 by construction, not a spread);
    the line's own training throughput differs seed by seed and shows its sd."""
    from fer_bench.report.leaderboard import _cell

    row = pd.Series({"bench_infer_img_s": 1234.5, "bench_infer_img_s_std": 0.0, "train_e2e_img_s": 100.0,
                     "train_e2e_img_s_std": 4.0})  # fmt: skip
    assert _cell(row, "bench_infer_img_s") == "1234.5"
    assert _cell(row, "train_e2e_img_s") == "100.0 ± 4.0"
