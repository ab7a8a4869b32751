"""Golden renderings of the leaderboard. Regenerate with `scripts/test.sh tests/test_leaderboard.py --accept`
after an intended change, and review the diff of tests/golden/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fer_bench import leaderboard as lb

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
        row = {"model": model, "recipe": recipe, "split": "test", "device": "cpu", "seed": seed, "top1": top1,
               "macro_f1": f1, "weighted_f1": f1 + 5, "params_m": params, "gmacs": gmacs, "infer_img_s": inf,
               "train_img_s": tr}  # fmt: skip
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
    for name in ("top-1 % ↑", "macro-F1 ↑", "params (M) ↓", "GMACs ↓", "infer img/s ↑", "train img/s ↑"):
        assert name in header


def test_pareto_plot(tmp_path):
    lb.pareto_plot(lb.aggregate(_runs()), tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000
