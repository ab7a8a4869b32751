"""The leaderboard page (issue 18): one self-contained HTML file, its label placement, and the page as headless
Chromium draws it (that test skips where no Chromium is installed, and fails instead under CI, which installs it)."""

from __future__ import annotations

import base64
import html
import json
import os
import re
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_bench.report import figures as page_figures
from fer_bench.report import leaderboard as lb
from fer_bench.report import page
from helpers import cli, one_line_error

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EVIL = '<script>alert("x")</script>'  # a model name is user input


def _row(model: str, run_dir: Path | None, *, top1: float, f1: float, seed: int = 0, **kw) -> dict:
    """A result row as `fer-bench run` writes it (the fields the leaderboard and the page read)."""
    test = {"top1": top1, "macro_f1": f1, "weighted_f1": f1 + 2} | {f"f1_{c}": f1 + i for i, c in enumerate(CLASSES)}
    row = {"model": model, "recipe": "baseline", "dataset": "fer2013", "split": "test", "img_size": 48, "epochs": 3,
           "seed": seed, "device_name": "x86_64 (2 threads)", "precision": "fp32", "params": 11.2e6, "gmacs": 0.1,
           "infer_model_img_s": 800.0, "train_e2e_img_s": 180.0, "train_frozen_epochs": 0, "protocol_hash": "aaaa",
           "weights_source": "scratch", "run_id": f"{model}-s{seed}", "test": test,
           "test_tta": {"none": test}}  # fmt: skip
    return row | ({"_dir": str(run_dir)} if run_dir else {}) | kw


def _with_predictions(tmp_path: Path, name: str, pred: np.ndarray, y: np.ndarray, **kw) -> dict:
    """A row whose folder holds its predictions file, scored from it."""
    from fer_bench.evaluation import predictions
    from fer_bench.evaluation.metrics import classification_metrics

    d = tmp_path / name
    d.mkdir()
    probs = np.eye(7, dtype=np.float32)[pred] * 0.5 + np.float32(0.5 / 7)
    digest = predictions.write(d / predictions.FILE, probs, y, np.array([f"s{i}" for i in range(len(y))]))
    m = classification_metrics(probs, y, CLASSES)
    return _row(kw.pop("model", name), d, top1=m["top1"], f1=m["macro_f1"],
                predictions={"file": predictions.FILE, "sha256": digest}, **kw)  # fmt: skip


def _corruption_table(run_dir: Path, clean: float) -> dict:
    """A ``corruptions.json`` as `fer-bench eval --corruptions` writes it; returns the row's summary."""
    table = [{"corruption": c, "severity": s, "param": s, "param_name": "p", "top1": clean - k * s, "macro_f1": 1.0}
             for k, c in enumerate(("gaussian_noise", "jpeg"), start=2) for s in range(1, 6)]  # fmt: skip
    summary = {"mca": float(np.mean([t["top1"] for t in table])), "clean_top1": clean, "seed": 0,
               "files": ["corruptions.csv", "corruptions.json", "corruptions.png"]}  # fmt: skip
    summary["mca_ratio"] = summary["mca"] / clean
    (run_dir / "corruptions.json").write_text(json.dumps(summary | {"table": table}))
    return summary


def _case(tmp_path: Path) -> list[dict]:
    """best (two seeds), near (4 samples from best's seed 0, 1200 img/s), worse (15 pt below, a corruption table, a
    hostile name, 400 img/s), old (no predictions file, no throughput). Text order of the img/s would be 1200, 400,
    800."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 600)
    preds = {}
    for name, acc, seed in [("best0", 0.70, 1), ("best1", 0.71, 2), ("worse", 0.55, 3)]:
        p = y.copy()
        wrong = np.random.default_rng(seed).permutation(600)[: round((1 - acc) * 600)]
        p[wrong] = (y[wrong] + 1 + np.arange(len(wrong)) % 6) % 7
        preds[name] = p
    near = preds["best0"].copy()
    near[np.flatnonzero(near == y)[:4]] = (y[np.flatnonzero(near == y)[:4]] + 1) % 7
    worse = _with_predictions(tmp_path, "worse", preds["worse"], y, model=EVIL, run_id="worse", infer_model_img_s=400.0)
    worse["corruptions"] = _corruption_table(tmp_path / "worse", worse["test"]["top1"])
    return [_with_predictions(tmp_path, "best0", preds["best0"], y, model="best", seed=0),
            _with_predictions(tmp_path, "best1", preds["best1"], y, model="best", seed=1),
            _with_predictions(tmp_path, "near", near, y, model="near", params=29.9e6, infer_model_img_s=1200.0),
            worse, _row("old", None, top1=30.0, f1=20.0, infer_model_img_s=None, params=0.4e6)]  # fmt: skip


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each <tr> of the leaderboard tables' bodies, in order."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self._in_body = self._in_table = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_table = self._in_table or (tag == "table" and dict(attrs).get("class") == "lb")
        self._in_body = self._in_body or (self._in_table and tag == "tbody")  # a browser adds one to every table
        if tag == "tr" and self._in_body:
            self.rows.append([])

    def handle_endtag(self, tag):
        self._in_body = self._in_body and tag != "tbody"
        self._in_table = self._in_table and tag != "table"

    def handle_data(self, data):
        if self._in_body and self.rows and data.strip():
            self.rows[-1].append(data.strip())


def _parse(text: str) -> _Tags:
    p = _Tags()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    d = tmp_path_factory.mktemp("page")
    frame = lb.frame_from_rows(_case(d))
    agg = lb.aggregate(frame)
    return frame, agg, page.render(frame, agg, published=True, source="runs/x")


def _section(text: str, sid: str) -> str:
    """The content of the page's ``<section id=sid>``."""
    return text.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]


def test_the_page_holds_every_row_and_section_and_nothing_outside_itself(built):
    frame, agg, text = built
    tags = _parse(text)
    n_pub = len(lb.published_rows())
    classes = [a.get("class") for t, a in tags.tags if t == "tr" and a.get("class")]
    assert classes.count("measured") == len(agg) == 4 and classes.count("published") == n_pub
    for model in ("best", "near", "old"):
        assert f"<td>{model}</td>" in text
    assert [t for t, _ in tags.tags].count("img") == 1 + 1 + 4 + 1  # Pareto, heatmap, 4 reliability, 1 corruption
    for tag, attrs in tags.tags:  # self-contained: no file, CDN or link leaves the page
        assert not re.match(r"(https?:)?//", attrs.get("src") or attrs.get("href") or ""), (tag, attrs)
        assert tag != "link" and not (tag == "script" and "src" in attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
            assert base64.b64decode(attrs["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    sections = [a["id"] for t, a in tags.tags if t == "section"]
    assert sections == ["table", "conditions", "pareto", "curves", "per-class", "reliability", "corruptions"]
    # the one line saying what is missing, never a vanished section: old has no predictions file
    (note,) = re.findall(r'<p class="missing">([^<]*)</p>', _section(text, "reliability"))
    assert "old" in note and "best" not in note and "near" not in note, note


def test_every_string_from_a_row_is_escaped(built):
    text = built[2]
    assert EVIL not in text and html.escape(EVIL) in text
    assert text.count("<script") == 1  # the page's own script only


def test_the_table_carries_its_marks_conditions_and_sort_keys(built):
    _, agg, text = built
    assert '<td data-v="0.0" class="sig-best">best</td>' in text  # best is the first line: the best mark, no p
    title = r'title="p = [0-9.e-]+ ± [0-9.e-]+ \(Monte Carlo SE\), Holm-adjusted [0-9.e-]+"'
    assert re.search(rf'class="sig-near" {title}>−[0-9.]+ ≈</td>', text)  # the default's Δ best and its mark
    assert re.search(rf'class="sig-runs" {title}>−[0-9.]+ ‹</td>', text)  # one seed: the runs', no claim
    full = page.render(built[0], agg, published=True, source="runs/x", columns=["comparison"])
    assert '<td class="sig-best">best</td>' in full  # the comparison group's difference with its interval
    diff = r"[−+][0-9.]+ \([−+][0-9.]+, [−+][0-9.]+\)"  # the difference to the best line and its interval
    assert re.search(rf'class="sig-near" {title}>{diff} ≈</td>', full)
    assert re.search(rf'class="sig-runs" {title}>{diff} ‹</td>', full)
    assert '<span class="badge">published</span>' in text
    for needle in ("α = 0.05", "Holm", "macro-F1 − best", "fer2013", "x86_64 (2 threads)", "runs/x", "seeds per line"):
        assert needle in text, needle
    rows = _parse(text).rows
    assert [r[1] for r in rows[:4]] == agg["model"].tolist()  # ranked order, as in the other formats
    for v in agg["top1"]:  # each number sorts by its raw value, not its rounded text
        assert f'<td data-v="{float(v)!r}">' in text


def test_sections_without_inputs_say_so_in_one_line(tmp_path):
    frame = lb.frame_from_rows([_row("old", None, top1=30.0, f1=20.0, infer_model_img_s=None)])
    text = page.render(frame, lb.aggregate(frame))
    for sid in ("pareto", "curves", "reliability", "corruptions"):  # one note in place of the figure
        section = _section(text, sid)
        assert section.count('<p class="missing">') == 1 and "<img" not in section, sid
    per_class = _section(text, "per-class")  # per-class F1 is in the row
    assert "<img" in per_class and 'class="missing"' not in per_class


def test_a_corruption_table_that_is_not_one_is_an_error(tmp_path):
    from fer_bench.utils.errors import DataError

    d = tmp_path / "r"
    d.mkdir()
    (d / "corruptions.json").write_text('{"table": [{"corruption": "jpeg"}]}')
    row = _row("m", d, top1=50.0, f1=40.0, corruptions={"files": ["corruptions.json"]})
    frame = lb.frame_from_rows([row])
    with pytest.raises(DataError, match=r"corruptions\.json"):
        page.render(frame, lb.aggregate(frame))


def _overlaps(boxes: np.ndarray) -> list[tuple[int, int]]:
    return [(i, j) for i, j in combinations(range(len(boxes)), 2)
            if min(boxes[i][2], boxes[j][2]) > max(boxes[i][0], boxes[j][0])
            and min(boxes[i][3], boxes[j][3]) > max(boxes[i][1], boxes[j][1])]  # fmt: skip


def test_labels_are_placed_without_overlap_even_on_one_point():
    anchors = np.array([[200.0, 150.0]] * 8 + [[205.0, 152.0], [400.0, 40.0]])
    sizes = np.array([[70.0, 11.0]] * 10)
    boxes = page_figures.place_labels(anchors, sizes, (0, 0, 600, 300))
    assert not _overlaps(boxes)
    assert np.allclose(boxes[:, 2:] - boxes[:, :2], sizes)  # sizes kept
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 600).all() and (boxes[:, 3] <= 300).all()
    dots = np.hstack([anchors - 7, anchors + 7])
    assert not any(_overlaps(np.array([b, d])) for b in boxes for d in dots)  # no label covers a point
    naive = np.hstack([anchors + 5, anchors + 5 + sizes])  # matplotlib's fixed offset: every label on the others
    assert _overlaps(naive)


def test_the_pareto_plot_has_a_marker_per_protocol_and_no_overlapping_labels():
    from matplotlib.text import Text

    rows = [{"model": f"m{i}", "recipe": f"r{i % 3}", "protocol_hash": f"p{i % 3}", "split": "test",
             "infer_model_img_s": 500.0 + (i % 2), "top1": 60 + 0.05 * i, "macro_f1": 50 + 0.05 * i}
            for i in range(9)]  # fmt: skip
    agg = pd.DataFrame(rows)
    fig = page_figures.pareto_figure(agg)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_gid() == "label"]
        assert len(labels) == 9
        # the text's own box (an Annotation's window extent would include its leader line)
        assert not _overlaps(np.array([Text.get_window_extent(t, renderer).extents for t in labels]))
        shapes = {c.get_paths()[0].vertices.shape for c in ax.collections}
        assert len(shapes) == 3  # one marker shape per protocol
    from fer_bench.report.mpl import pyplot

    pyplot().close(fig)


def test_the_pareto_plot_marks_the_lines_the_table_marks_as_not_converged():
    """A snapshot on the plot carries the table's † and the title says what it means; a converged line does not."""
    rows = [{"model": m, "recipe": "r", "protocol_hash": m, "split": "private", "infer_model_img_s": v, "top1": t,
             "macro_f1": t - 5, "convergence": c}
            for m, v, t, c in (("a", 400.0, 60.0, "converged"),
                               ("b", 900.0, 50.0, "snapshot, not converged"))]  # fmt: skip
    fig = page_figures.pareto_figure(pd.DataFrame(rows))
    labels = {t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "label"}
    assert labels == {"a · private", "b · private †"}
    assert fig._suptitle.get_text().endswith("\n† snapshot, not converged")
    fig2 = page_figures.pareto_figure(pd.DataFrame(rows[:1]))
    assert "†" not in fig2._suptitle.get_text()
    from fer_bench.report.mpl import pyplot

    pyplot().close(fig)
    pyplot().close(fig2)


def test_the_cli_writes_the_page_and_leaves_the_table_as_it_was(tmp_path, capsys):
    runs, evals = tmp_path / "runs", tmp_path / "evals"
    (tmp_path / "x").mkdir()
    rows = _case(tmp_path / "x")
    for r in rows[:4]:  # the eval folder holds the corruption table; the run folders do not
        r.pop("corruptions", None)
        d = runs / r["run_id"]
        d.mkdir(parents=True, exist_ok=True)
        (d / "result.json").write_text(json.dumps({k: v for k, v in r.items() if k != "_dir"}))
        for f in Path(r["_dir"]).glob("*.npz"):
            (d / f.name).write_bytes(f.read_bytes())
    ev = evals / "eval-worse"
    ev.mkdir(parents=True)
    worse = dict(rows[3], infer_model_img_s=999.0, run_id="eval-worse")
    worse.pop("predictions")
    worse.pop("_dir")
    worse["corruptions"] = _corruption_table(ev, worse["test"]["top1"])
    (ev / "result.json").write_text(json.dumps(worse))
    from fer_bench.cli import main

    plain = lb.aggregate(lb.frame_from_rows(lb.read_rows([runs])))
    assert plain["mca"].isna().all()  # the run folders hold no corruption table
    args = ["leaderboard", "--from-results", str(runs), "--format", "md", "--columns", "robustness"]
    capsys.readouterr()
    assert main([*args, "--page", str(tmp_path / "p.html"), "--corruption-runs", str(evals)]) == 0
    table = capsys.readouterr().out
    assert "999.0" not in table
    # the eval row is not a line of its own: the scored model's name is on exactly one line of the table
    assert sum(EVIL in line for line in table.splitlines() if " | " in line) == 1, table
    # the same table as without the evals, except that the line they scored gets their mCA
    cells = [[c.strip() for c in r.split("|")] for r in table.splitlines() if " | " in r and not r.startswith("**")]
    head, body = cells[0], {c[1]: c for c in cells[1:]}
    assert len(body) == len(plain)
    mca = [head.index("mCA % (corruptions) ↑"), head.index("mCA / clean ↑")]
    assert [body[EVIL][i] for i in mca] == [
        f"{worse['corruptions'][k]:{f}}" for k, f in (("mca", ".2f"), ("mca_ratio", ".3f"))
    ]
    assert all([c[i] for i in mca] == ["–", "–"] for name, c in body.items() if name != EVIL)
    text = (tmp_path / "p.html").read_text()
    corruptions = _section(text, "corruptions")
    assert "mCA" in text and "<img" in corruptions and 'class="missing"' not in corruptions
    assert text.count("<figure>") == 4 + 1  # the runs' reliability diagrams and the eval folder's corruption curves
    code = main([*args, "--screenshot", str(tmp_path / "s.png")])  # a user mistake: one line, nothing written
    one_line_error(code, capsys.readouterr().err, "--screenshot", "--page")
    assert not (tmp_path / "s.png").exists()
    code = main([*args, "--page", str(tmp_path / "q.html"), "--screenshot-height", "50"])
    one_line_error(code, capsys.readouterr().err, "--screenshot-height 50", "900")
    assert not (tmp_path / "q.html").exists()


def _chromium_or_skip() -> None:
    if page.find_chromium() is None:
        why = f"no headless Chromium on PATH ({', '.join(page.CHROMIUM)}); CI installs Debian's `chromium`"
        if os.environ.get("FER_BENCH_REQUIRE_CHROMIUM"):
            pytest.fail(why)
        pytest.skip(why)


def test_chromium_draws_the_page_and_its_script_sorts_the_table(built, tmp_path):
    _chromium_or_skip()
    from PIL import Image

    path = tmp_path / "page.html"
    path.write_text(built[2], encoding="utf-8")
    shot = tmp_path / "page.png"
    page.screenshot(path, shot)
    im = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert im.shape == (900, 1440)
    assert (im < 200).mean() > 0.02 and im.std() > 20  # text, table and figures drawn, not a blank page
    tall = tmp_path / "page-tall.png"  # --screenshot-height: the figures below the tables too
    page.screenshot(path, tall, height=2400)
    assert np.asarray(Image.open(tall).convert("L")).shape == (2400, 1440)

    def order(query: str) -> list[str]:
        dom = page.dump_dom(path, query)
        assert 'data-page-ready="1"' in dom  # the script ran
        assert f'data-sorted="{query.split("=")[1].split("&")[0]}:{query.rsplit("=", 1)[1]}"' in dom
        return [r[1] for r in _parse(dom).rows]

    # inference img/s: numbers as numbers (as text 1200 < 400 < 800); blanks (old, the published rows) last either
    # way, in the table's order
    up, down = order("sort=infer_model_img_s&dir=asc"), order("sort=infer_model_img_s&dir=desc")
    blanks = ["old", *lb.published_rows()["model"]]
    assert up == [EVIL, "best", "near", *blanks] and down == ["near", "best", EVIL, *blanks]


def test_mean_corruption_accuracy_is_a_column_in_every_format(tmp_path):
    """mCA and its ratio to clean: averaged over a line's seeds, in md/CSV/LaTeX/HTML, "–" where a line was not
    scored under corruptions; an eval that scored no run's weights is an error, not a silent gap."""
    from fer_bench.utils.errors import DataError

    rows = _case(tmp_path)
    second = tmp_path / "best1"  # line "best": seed 0 without, seed 1 with a corruption table → its mCA is seed 1's
    rows[1]["corruptions"] = _corruption_table(second, rows[1]["test"]["top1"])
    frame = lb.frame_from_rows(rows)
    agg = lb.aggregate(frame)
    worse = rows[3]["corruptions"]
    got = agg.set_index("model")[["mca", "mca_ratio"]]
    assert got.loc[EVIL].tolist() == pytest.approx([worse["mca"], worse["mca_ratio"]])
    seed1 = rows[1]["corruptions"]
    assert got.loc["best"].tolist() == pytest.approx([seed1["mca"], seed1["mca_ratio"]])
    assert got.loc[["near", "old"]].isna().all().all()
    csv = pd.read_csv(__import__("io").StringIO(lb.render(agg, "csv")))
    assert csv.set_index("model").loc[EVIL, "mca"] == pytest.approx(worse["mca"], abs=1e-4)
    for fmt, head in (("md", "mCA % (corruptions) ↑"), ("latex", r"mCA \% (corruptions) $\uparrow$"),
                      ("html", "mCA % (corruptions) ↑")):  # fmt: skip
        text = lb.render(agg, fmt, columns=["robustness"])
        assert head in text and f"{worse['mca']:.2f}" in text and f"{worse['mca_ratio']:.3f}" in text, fmt
        assert "mCA:" in text, fmt  # the legend explains the column
    # matched on model, protocol, split, device and seed: an eval of other weights is refused
    stray = lb.frame_from_rows([dict(rows[3], seed=7, run_id="eval-7")])
    with pytest.raises(DataError, match="eval-7.*scored weights of no run"):
        lb.apply_corruptions(lb.frame_from_rows(rows), stray)
    plain = [r for r in rows if r["run_id"] != "worse"] + [{k: v for k, v in rows[3].items() if k != "corruptions"}]
    filled = lb.apply_corruptions(lb.frame_from_rows(plain), lb.frame_from_rows([dict(rows[3], run_id="eval-w")]))
    assert lb.aggregate(filled).set_index("model").loc[EVIL, "mca"] == pytest.approx(worse["mca"])


def test_the_tables_fit_a_laptops_window(built, tmp_path):
    """At 1440 × 900 the default tables (published rows included) fit the window: the models and their top-1 are
    seen without scrolling sideways."""
    _chromium_or_skip()
    path = tmp_path / "page.html"
    path.write_text(built[2], encoding="utf-8")
    dom = page.dump_dom(path, width=1440, height=900)
    right = re.search(r'data-tables-right="(\d+)"', dom)
    assert right and 0 < int(right[1]) <= 1440, right
    wide = page.render(built[0], built[1], published=True, columns=["all"])  # the test can fail: all is wider
    path.write_text(wide, encoding="utf-8")
    assert int(re.search(r'data-tables-right="(\d+)"', page.dump_dom(path, width=1440, height=900))[1]) > 1440


def test_a_line_that_did_not_converge_is_marked_on_the_page(tmp_path):
    rows = [_row("done", None, top1=60.0, f1=50.0, converged=True, epochs=40),
            _row("short", None, top1=50.0, f1=40.0, epochs_run=3),
            _row("rising", None, top1=55.0, f1=45.0, converged=False, epochs=40)]  # fmt: skip
    frame = lb.frame_from_rows(rows)
    text = page.render(frame, lb.aggregate(frame))
    marked = re.findall(r'<tr class="measured not-converged" title="([^"]+)">.*?<td>(\w+)</td>', text)
    assert sorted(marked) == [("not converged", "rising"), ("snapshot, not converged", "short")]
    assert text.count('class="nc">') == 2 and "snapshot, not converged: 5 epochs or fewer" in text


def _history(walls: list[float], f1s: list[float]) -> list[dict]:
    return [{"epoch": e, "epoch_wall_s": w, "val_macro_f1": f, "val_top1": f + 5}
            for e, (w, f) in enumerate(zip(walls, f1s, strict=True), start=1)]  # fmt: skip


def test_the_learning_curves_show_each_lines_seed_mean_and_range_against_training_minutes():
    """One curve per trained line: both splits of a cell are one training, so they add no curve and no seed."""
    f1s = {("a", 0): [20, 30, 40], ("a", 1): [22, 34, 38], ("a", 2): [18, 32, 45], ("b", 0): [10, 15, 19, 25]}
    rows = [_row(m, None, top1=50.0, f1=f[-1], seed=s, split=split, history=_history([60.0] * len(f), f))
            for (m, s), f in f1s.items() for split in ("public", "private")]  # fmt: skip
    frame = lb.frame_from_rows(rows)
    assert frame.loc[0, "curve"] == ((1.0, 20.0), (2.0, 30.0), (3.0, 40.0))
    text = page.render(frame, lb.aggregate(frame))
    sections = [a["id"] for t, a in _parse(text).tags if t == "section"]
    assert "curves" in sections and "training minutes" in text
    curves = {m: [list(enumerate(f1s[(m, s)], start=1)) for s in range(3) if (m, s) in f1s] for m in "ab"}
    fig = page_figures.curves_figure(curves)
    ax = fig.axes[0]
    mean_a, only_b = ax.lines[0], ax.lines[1]
    assert np.allclose(mean_a.get_ydata(), [20, 32, 41]) and np.allclose(only_b.get_ydata(), f1s[("b", 0)])
    (band,) = ax.collections  # line b has one seed: no band
    ys = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.min(), 18) and np.isclose(ys.max(), 45)
    assert "(3 seed(s))" in mean_a.get_label() and "(1 seed(s))" in only_b.get_label()


def test_leaderboard_curves_writes_the_pages_curves_figure_as_a_png(tmp_path, capsys):
    """`leaderboard --curves PNG`: the page's figure on its own (for a README); rows without a timed history are
    refused in one line."""
    from fer_bench import api
    from fer_bench.utils.errors import FerBenchError

    f1s = {("a", 0): [20, 30, 40], ("a", 1): [22, 34, 38], ("b", 0): [10, 15, 19, 25]}
    for (m, s), f in f1s.items():
        row = _row(m, None, top1=50.0, f1=f[-1], seed=s, history=_history([90.0] * len(f), f))
        (tmp_path / "runs" / f"{m}{s}").mkdir(parents=True)
        (tmp_path / "runs" / f"{m}{s}" / "result.json").write_text(json.dumps(row))
    board = api.leaderboard([tmp_path / "runs"])
    lines = page.curve_lines(board.frame, board.rows)
    assert list(lines) == ["a · baseline", "b · baseline"]  # the table's order: a ranks first (macro-F1 39 > 25)
    assert lines["a · baseline"] == [tuple((1.5 * e, v) for e, v in enumerate(f1s[("a", s)], start=1)) for s in (0, 1)]
    board.save_curves(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bare" / "x").mkdir(parents=True)
    (tmp_path / "bare" / "x" / "result.json").write_text(json.dumps(_row("c", None, top1=50.0, f1=40.0)))
    with pytest.raises(FerBenchError, match="--curves: no row has a timed validation history"):
        api.leaderboard([tmp_path / "bare"]).save_curves(tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    code, err, _ = cli(capsys, "leaderboard", "--curves", str(tmp_path / "none.png"), "--tracking-uri",
                       f"sqlite:///{tmp_path}/m.db")  # fmt: skip
    one_line_error(code, err, "--curves", "--from-results")  # refused before any table is read or written


def test_a_budgeted_suites_tables_and_page_carry_its_budget_as_their_title():
    from fer_bench.experiment.suite import SuiteSpec, suite_title

    title = suite_title(SuiteSpec(name="x", budget_s=2700))
    assert title == "45 CPU-minutes per backbone" and suite_title(SuiteSpec(name="x")) == ""
    frame = lb.frame_from_rows([_row("a", None, top1=50.0, f1=40.0), _row("b", None, top1=45.0, f1=38.0)])
    agg = lb.aggregate(frame)
    assert lb.render(agg, "md", title=title).splitlines()[0] == "## 45 CPU-minutes per backbone"
    assert lb.render(agg, "html", title=title).startswith("<h2>45 CPU-minutes per backbone</h2>")
    assert "CPU-minutes" not in lb.render(agg, "csv", title=title) and "##" not in lb.render(agg, "md")
    assert re.search(r"<title>([^<]*)</title>", page.render(frame, agg, title=title))[1].endswith(f" · {title}")


def test_a_table_that_mixes_long_recipe_names_keeps_to_120_columns_and_names_each_recipe():
    lines = [("resnet18", "compare-48"), ("vgg_khaireddin", "compare-48"), ("efficientnet_b2", "compare-48"),
             ("efficientnetv2_s", "compare-48"), ("efficientnetv2_s", "insideout-effnetv2s-scratch")]  # fmt: skip
    rows = [_row(m, None, top1=60.0 - i + s, f1=50.0 - i + s, seed=s, split=split, recipe=r, recipe_version=1,
                 protocol_hash=f"{m}-{r}")
            for i, (m, r) in enumerate(lines) for s in range(3) for split in ("public", "private")]  # fmt: skip
    agg = lb.aggregate(lb.frame_from_rows(rows))
    md = lb.render(agg, "md", published=True, title="45 CPU-minutes per backbone")
    assert max(map(len, md.splitlines())) <= 120, max(md.splitlines(), key=len)
    first = md.split("\n\n")[1].replace("\n", " ")  # the first table's heading
    assert "recipes A = compare-48 v1, B = insideout-effnetv2s-scratch v1" in first
    assert "scratch · 48 px · 3 seeds" in first
    table = md.split("\n\n")[2].splitlines()
    assert table[0].split(" | ")[:3] == ["#", "model           ", "recipe"]
    assert [r.split(" | ")[2].strip() for r in table[2:]] == ["A", "A", "A", "A", "B"]
    one = lb.render(lb.aggregate(lb.frame_from_rows([r for r in rows if r["recipe"] == "compare-48"])), "md")
    assert "| weights |" in one.splitlines()[2] and "| seeds" in one.splitlines()[2]  # one recipe: the usual columns
