"""The leaderboard page: one self-contained HTML file.

Everything is inline: the CSS, a small vanilla script that sorts the table by a clicked header (numbers as numbers,
blanks last in either direction), and every figure as a base64 ``data:`` PNG, so the file opens offline and can be
mailed or committed as it is. Sections, in order: the ranked tables as every format draws them (one per dataset and
split under its heading line, the default columns that fit a laptop's screen, the papers' published rows in a table
of their own), the conditions (datasets, splits, protocols, devices, seeds and the statistics' note: α, correction,
the ≈ best rule), the Pareto plot, the per-class F1 heatmap, the reliability diagram of every run
with a predictions file, and the corruption curves of every run folder holding a corruption table. A section
whose inputs are missing says so in one line. Every string from a row goes through ``html.escape``.

``?sort=<column>&dir=asc|desc`` in the page's URL sorts every table on load (headless browsers cannot click); the
script marks ``<html data-page-ready="1">``, each table's ``data-sorted``, and ``data-tables-right``: the right edge
of the widest table in CSS pixels, so a test can tell that the tables fit the window.

Example:
    >>> from fer_bench import leaderboard as lb
    >>> frame = lb.frame_from_rows(lb.read_rows([Path("runs/fer2013")]))  # doctest: +SKIP
    >>> write(frame, lb.aggregate(frame), Path("leaderboard-page.html"), published=True)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.report import columns as layout
from fer_bench.report import figures as page_figures
from fer_bench.report import leaderboard as lb
from fer_bench.report import table_stats as leaderboard_stats
from fer_bench.report.browser import CHROMIUM, SCREEN, dump_dom, find_chromium, screenshot  # noqa: F401 (re-exported)
from fer_bench.report.page_assets import CSS, JS
from fer_bench.utils.errors import DataError

SIG_CLASS = {"best": "sig-best", "≈": "sig-near", "<": "sig-below", "‹": "sig-runs"}  # ‹: one seed, no claim
RUN_KEYS = [*lb.KEYS, "seed"]
WRAPPED = ("recipe", "device_name", "source", "bench_conditions")  # long text cells wrap, so the table fits a screen
RUN_FIELDS = (
    "recipe",
    "curve",
    "run_id",
    "predictions_path",
    "predictions_sha256",
    "predictions_valid_sha256",
    "corruptions_path",
)  # what the page reads of each run


def esc(value: object) -> str:
    """``html.escape`` of any cell or name (model names and notes are user input)."""
    return html.escape(str(value), quote=True)


def img(data: bytes, alt: str) -> str:
    """An ``<img>`` holding the PNG itself as a data URI."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def write(frame: pd.DataFrame, agg: pd.DataFrame, path: Path, **options) -> None:
    """Write the page of ``agg`` (:func:`fer_bench.report.leaderboard.aggregate` of ``frame``, the runs) to ``path``;
    ``options`` as :func:`render` takes them."""
    page = render(frame, agg, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")


def render(
    frame: pd.DataFrame,
    agg: pd.DataFrame,
    *,
    published: bool = False,
    per_class: bool = False,
    columns: Sequence[str] = (),
    source: str = "",
    corruption_runs: pd.DataFrame | None = None,
    title: str = "",
) -> str:
    """The page as one HTML string.

    Args:
        frame: the runs (one row per result), for their predictions and corruption tables.
        agg: the ranked lines of ``frame``.
        published: add the papers' published rows to the table and the heatmap.
        per_class: per-class F1 columns in the table too (the heatmap has them always).
        columns: named column groups to show beside the default ones (``fer_bench.report.columns.GROUPS``).
        source: where the rows came from, for the conditions block.
        title: what the comparison holds fixed (e.g. "45 CPU-minutes per backbone"), after the page's title.
        corruption_runs: more runs (a frame of rows) whose corruption tables to draw, matched to the table's lines
            by model, protocol, split, device and seed; they never enter the table (an eval that scored the same
            weights under corruptions is the same run, its throughput measured again).
    """
    measured = agg.assign(tta="none")  # measured headlines are plain single-crop; published rows keep their TTA
    shown = lb.with_published(measured) if published else measured
    runs = _runs(frame)
    sections = [
        ("table", "Ranking", _table(shown, layout.groups(columns, per_class=per_class))),
        ("conditions", "Conditions", _conditions(agg, shown, source)),
        ("pareto", "Accuracy against throughput (Pareto)", _pareto(agg)),
        ("curves", "Validation macro-F1 against training minutes", _curves(agg, runs)),
        ("per-class", "Per-class F1", _heatmap(shown)),
        ("reliability", "Reliability diagrams", _reliability(agg, runs)),
        ("corruptions", "Corruption curves", _corruptions(agg, _with_corruption_runs(runs, corruption_runs))),
    ]
    parts = [*_distinct(agg, "dataset"), *_distinct(agg, "split"), *([title] if title else [])]
    title = "fer-bench leaderboard · " + " · ".join(esc(v) for v in parts)
    body = "\n".join(f'<section id="{sid}"><h2>{name}</h2>\n{content}\n</section>' for sid, name, content in sections)
    head = f'<head>\n<meta charset="utf-8">\n<title>{title}</title>\n<style>{CSS}</style>\n</head>'
    tail = f"<script>{JS}</script>\n</body>\n</html>\n"
    return f'<!DOCTYPE html>\n<html lang="en">\n{head}\n<body>\n<h1>{title}</h1>\n{body}\n{tail}'


def _distinct(df: pd.DataFrame, col: str) -> list[str]:
    return [str(v) for v in dict.fromkeys(df[col].dropna())] if col in df else []


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One run per (line, seed): the first non-empty file references of the rows that share them (an eval folder
    with the corruption table and the run folder with the predictions are one run)."""
    cols = [c for c in RUN_FIELDS if c in frame]
    if frame.empty:
        return frame
    return frame.groupby(RUN_KEYS, dropna=False, sort=False)[cols].first().reset_index()


def _with_corruption_runs(runs: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """The runs and the extra runs that hold a corruption table (each table once)."""
    if extra is None or extra.empty or "corruptions_path" not in extra:
        return runs
    more = _runs(extra.dropna(subset=["corruptions_path"]))
    both = pd.concat([runs, more], ignore_index=True)
    has = both["corruptions_path"].notna()
    return pd.concat([both[~has], both[has].drop_duplicates("corruptions_path")], ignore_index=True)


# Conditions --------------------------------------------------------------------------------------------------------


def _conditions(agg: pd.DataFrame, shown: pd.DataFrame, source: str) -> str:
    items = [("datasets", ", ".join(_distinct(agg, "dataset"))), ("splits", ", ".join(_distinct(agg, "split")))]
    protocols = []
    for h, part in agg.groupby("protocol_hash", sort=False):
        r = part.iloc[0]
        short = "unknown (a row from before protocol hashes)" if str(h).startswith("unknown:") else str(h)[:8]
        protocols.append(
            f"{short}: {' / '.join(_distinct(part, 'recipe'))}, {lb._cell(r, 'img_size')} px, "
            f"{lb._cell(r, 'epochs')} epochs, weights {lb._cell(r, 'weights')}, "
            f"{lb._cell(r, 'precision')}"
        )
    items += [("protocols", "; ".join(protocols)), ("devices", ", ".join(_distinct(agg, "device_name")))]
    seeds = sorted({int(s) for s in agg["seeds"].dropna()}) if "seeds" in agg else []
    items.append(("seeds per line", ", ".join(map(str, seeds)) or "–"))
    items.append(
        ("lines", f"{len(agg)} measured" + (f" + {len(shown) - len(agg)} published" if len(shown) > len(agg) else ""))
    )
    if source:
        items.append(("source", source))
    rows = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    notes = [leaderboard_stats.note(agg)]
    if "train_frozen_epochs" in agg and (agg["train_frozen_epochs"].fillna(0) > 0).any():
        notes.append(lb.FROZEN_NOTE)
    if len(shown) > len(agg):
        notes.append(
            "Rows marked published are the papers' own figures under their own protocols (see their "
            "source column); they are references, never ranked or tested."
        )
    return f'<table class="conditions">\n{rows}\n</table>\n' + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)


# The table ---------------------------------------------------------------------------------------------------------


def _sort_value(row: pd.Series, col: str) -> str | None:
    """The number a cell sorts by (the interval's lower end for an interval); None for text and blanks."""
    key = f"{col}_lo" if col in ("top1_ci", "macro_f1_ci") else col
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or pd.isna(v):
        return None
    return repr(float(v))


def _header(col: str) -> str:
    """The column's header as the other formats write it, with its ↑/↓."""
    return f"{lb.header(col)} {lb.arrow(col)}".strip()


def _table(shown: pd.DataFrame, names: list[str]) -> str:
    """The lines as the other formats draw them: one sortable table per (dataset, trained on, split), each under its
    heading line; the notes follow the tables."""
    tables = [_one_table(t, i) for i, t in enumerate(layout.tables(shown, names, lb._ranks(shown)))]
    notes = layout.notes(shown) + [lb.INFER_NOTE]
    return (
        '<p class="hint">Click a header to sort (again to reverse); blanks stay last.</p>\n'
        + "\n".join(tables)
        + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    )


def _one_table(table, index: int) -> str:
    keys = [layout.DERIVED.get(c, c) for c in table.columns]  # ?sort= takes the number's own key: top1, not top1_pm
    head = ['<th data-key="rank">#</th>'] + [f'<th data-key="{esc(k)}">{esc(_header(c))}</th>'
                                             for c, k in zip(table.columns, keys, strict=True)]  # fmt: skip
    body = []
    for _, r in table.rows.iterrows():
        rank, pub = r["_rank"], r.get("device_name") == "published"
        # published rows are not ranked: their "pub" sorts with the blanks, last
        cells = [f'<td data-v="{rank}">{rank}</td>' if rank.isdigit() else f'<td data-blank="1">{esc(rank)}</td>']
        cells += [_td(r, c, pub) for c in table.columns]
        status = r.get("convergence")
        cls = "published" if pub else "measured" + (" not-converged" if status in layout.CONVERGENCE_NOTE else "")
        title = f' title="{esc(status)}"' if status in layout.CONVERGENCE_NOTE else ""
        body.append(f'<tr class="{cls}"{title}>{"".join(cells)}</tr>')
    return (
        f'<h3 class="table-heading">{esc(table.heading)}</h3>\n'
        f'<div class="scroll"><table id="leaderboard-{index}" class="lb">\n<thead><tr>{"".join(head)}</tr></thead>\n'
        "<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table></div>"
    )


def _td(r: pd.Series, c: str, pub: bool) -> str:
    text, v = lb._cell(r, c), _sort_value(r, layout.DERIVED.get(c, c))
    text_html = f'{esc(text)} <span class="badge">published</span>' if c == "model" and pub else esc(text)
    attrs = f' data-v="{v}"' if v is not None else ""
    if c in WRAPPED:
        attrs += ' class="wrap"'
    if c == "epochs_shown" and layout.MARK in text:  # a line that did not converge
        attrs += ' class="nc"'
    mark = r.get("sig") if c in ("sig", "vs_best") else text.split()[-1] if c == "to_best" and text else None
    if mark in SIG_CLASS:  # the mark's class, and the test's p on hover
        p, se, holm = r.get("p_vs_best"), r.get("p_vs_best_mc_se"), r.get("p_vs_best_holm")
        title = f"p = {p:.3g} ± {se:.2g} (Monte Carlo SE), Holm-adjusted {holm:.3g}" if pd.notna(p) else ""
        attrs += f' class="{SIG_CLASS[mark]}"' + (f' title="{title}"' if title else "")
    return f"<td{attrs}>{text_html}</td>"


# Figures -----------------------------------------------------------------------------------------------------------


def _missing(text: str) -> str:
    return f'<p class="missing">{esc(text)}</p>'


def _pareto(agg: pd.DataFrame) -> str:
    x = "infer_model_img_s"
    have = agg.dropna(subset=[x, "top1", "macro_f1"]) if x in agg else agg.iloc[:0]
    if have.empty:
        return _missing("No line has an inference img/s figure: nothing to plot.")
    fig = page_figures.pareto_figure(have)
    left = len(agg) - len(have)
    note = f" {left} line(s) without inference img/s are not plotted." if left else ""
    text = (
        "Marker shape: protocol; colour: split; dashed: the Pareto front of each split. Published rows report "
        "no throughput and are not plotted." + note
    )
    return img(page_figures.png(fig), "top-1 and macro-F1 against inference img/s") + f'<p class="note">{esc(text)}</p>'


def curve_lines(agg: pd.DataFrame, runs: pd.DataFrame) -> dict[str, list]:
    """Per trained line (its splits share the training), in the table's order: one (minutes, validation macro-F1)
    curve per seed, for :func:`fer_bench.report.figures.curves_figure`."""
    lines: dict[str, dict] = {}
    for r in _ordered_runs(agg, runs):
        if r.get("device_name") == "published" or not isinstance(r.get("curve"), tuple | list):
            continue
        name = f"{r.get('model')} · {r.get('recipe')}"
        seeds = lines.setdefault(name, {})
        seeds.setdefault(r.get("seed"), r["curve"])  # the first split's row: the others repeat its training
    return {k: list(v.values()) for k, v in lines.items()}


def _curves(agg: pd.DataFrame, runs: pd.DataFrame) -> str:
    """One curve per trained line, the seeds' mean with their range as a band."""
    lines = curve_lines(agg, runs)
    if not lines:
        return _missing("No line has a timed validation history (epoch times, validation macro-F1): nothing to plot.")
    fig = page_figures.curves_figure(lines)
    text = ("Each line: the mean over its seeds of the validation (Training hold-out) macro-F1 at each epoch's end, "
            "against the seeds' mean training minutes (training and validation); the band spans the seeds' lowest "
            "to highest. A line whose seeds ran different numbers of epochs is drawn to the shortest.")  # fmt: skip
    alt = "validation macro-F1 against training minutes"
    return img(page_figures.png(fig), alt) + f'<p class="note">{esc(text)}</p>'


def _line_name(r: pd.Series) -> str:
    tail = " (published)" if r.get("device_name") == "published" else f" · {r.get('split')}"
    return f"{r.get('model')} · {r.get('recipe')}" + ("" if "(published)" in str(r.get("recipe")) else tail)


def _heatmap(shown: pd.DataFrame) -> str:
    classes = layout.GROUPS["per-class"](shown)
    if not classes:
        return _missing("No row has per-class F1 scores.")
    have = shown[shown[classes].notna().any(axis=1)]
    if have.empty:
        return _missing("No row has per-class F1 scores.")
    values = have[classes].to_numpy(dtype=float)
    names = [
        f"{_line_name(r)} [{str(r.get('protocol_hash'))[:8]}]" if r.get("device_name") != "published" else _line_name(r)
        for _, r in have.iterrows()
    ]
    fig = page_figures.heatmap_figure(names, [c.removeprefix("f1_") for c in classes], values)
    left = len(shown) - len(have)
    note = f" {left} row(s) without per-class F1 are left out." if left else ""
    return img(page_figures.png(fig), "per-class F1 heatmap") + (
        f'<p class="note">{esc(note.strip())}</p>' if note else ""
    )


def _run_title(r: pd.Series) -> str:
    seed = "–" if pd.isna(r.get("seed")) else int(r["seed"])
    return f"{r.get('model')} · {r.get('recipe')} · {r.get('split')} · seed {seed}"


def _ordered_runs(agg: pd.DataFrame, runs: pd.DataFrame) -> list[pd.Series]:
    """The runs in the table's order (line by line, seeds ascending)."""
    if runs.empty:
        return []
    order = {tuple(str(v) for v in k): i for i, k in enumerate(agg[lb.KEYS].itertuples(index=False))}
    keyed = runs.assign(
        _line=[order.get(tuple(str(v) for v in k), math.inf) for k in runs[lb.KEYS].itertuples(index=False)]
    )
    return [r for _, r in keyed.sort_values(["_line", "seed"], kind="stable").iterrows()]


def _reliability(agg: pd.DataFrame, runs: pd.DataFrame) -> str:
    from fer_bench.evaluation import calibration

    figures, without = [], []
    for r in _ordered_runs(agg, runs):
        side, why = leaderboard_stats._side(r) if "predictions_path" in r else (None, leaderboard_stats.NO_FILE)
        if side is None:
            without.append(f"{_run_title(r)} ({why})")
            continue
        t = calibration.fit_temperature(*side.valid) if side.valid is not None else None
        png = page_figures.reliability_png(side.probs, side.labels, _run_title(r), t)
        figures.append(
            f"<figure>{img(png, 'reliability: ' + _run_title(r))}<figcaption>{esc(_run_title(r))}</figcaption></figure>"
        )
    out = f'<div class="grid">{"".join(figures)}</div>' if figures else _missing("No run has a predictions file.")
    if without and figures:
        out += _missing("No predictions file: " + "; ".join(without) + ".")
    return out


def read_corruption_table(path: Path) -> dict:
    """A run folder's ``corruptions.json`` (``fer-bench eval --corruptions``), checked for what the curves need."""
    try:
        data = json.loads(path.read_text())
        table = data["table"]
        for row in table:
            row["corruption"], row["severity"], row["top1"] = (
                str(row["corruption"]),
                int(row["severity"]),
                float(row["top1"]),
            )
        data["clean_top1"] = float(data["clean_top1"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"{path}: not a corruption table of `fer-bench eval --corruptions` ({type(e).__name__}: {e}). Re-run the "
            "eval, or leave its folder out of the leaderboard's inputs."
        ) from e
    return data


def _corruptions(agg: pd.DataFrame, runs: pd.DataFrame) -> str:
    figures = []
    for r in _ordered_runs(agg, runs):
        path = r.get("corruptions_path")
        if not isinstance(path, str) or not path:
            continue
        data = read_corruption_table(Path(path))
        mca = data.get("mca")
        ratio = data.get("mca_ratio")
        summary = f"mCA {mca:.2f} % ({ratio:.3f} of clean)" if mca is not None and ratio is not None else ""
        if data.get("mca_above_majority") is not None:
            low = data.get("cells_at_or_below_majority", [])
            summary += (f"; {data['mca_above_majority']:.2f} % without the {len(low)} cell(s) at or below the "
                        f"majority-class rate ({data['majority_rate']:.1f} %)")  # fmt: skip
        title = f"{_run_title(r)}: {summary}".rstrip(": ")
        fig = page_figures.corruption_figure(data["table"], data["clean_top1"], title, data.get("majority_rate"))
        figures.append(
            f"<figure>{img(page_figures.png(fig), 'corruption curves: ' + title)}"
            f"<figcaption>{esc(title)}</figcaption></figure>"
        )
    if not figures:
        return _missing(
            "No run folder among the inputs holds a corruption table (`fer-bench eval --run DIR "
            "--corruptions all`, then pass its --out folder too)."
        )
    return f'<div class="grid">{"".join(figures)}</div>'
