"""The leaderboard page's figures as PNG bytes: the Pareto plot, the per-class F1 heatmap, reliability diagrams and
corruption curves (matplotlib, Agg; no torch).

The Pareto plot places its labels itself (:func:`place_labels`): matplotlib has no label-overlap avoidance, and a
leaderboard's lines often sit on top of each other (the splits of one model share their throughput).

Example:
    >>> boxes = place_labels(np.array([[50.0, 50.0]] * 3), np.array([[40.0, 10.0]] * 3), (0, 0, 200, 200))
    >>> bool(np.all(boxes[:, 2] - boxes[:, 0] == 40))  # each label keeps its size; none overlaps another
    True
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.report.columns import CONVERGED, MARK
from fer_bench.report.mpl import pyplot

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")  # one shape per protocol, in table order
RADII = (8, 14, 22, 32, 45, 60, 80, 105, 135)  # label distance from its point (pixels), nearest first
ANGLES = 16  # candidate directions per radius
MARKER_AREA = 55  # pt²: about 11 px across at the plot's 110 dpi, so labels keep 7 px from a point's centre


def png(fig) -> bytes:
    """A figure's PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    return buf.getvalue()


def plain(text: object) -> str:
    """Text that matplotlib draws as written: a ``$`` in a model name would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


# Label placement ---------------------------------------------------------------------------------------------------


def _overlap(box: np.ndarray, others: np.ndarray) -> float:
    """Total overlap area of ``box`` (x0, y0, x1, y1) with each of ``others`` (n, 4)."""
    if not len(others):
        return 0.0
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    return float(np.sum(w * h))


def _outside(box: np.ndarray, bounds: tuple[float, float, float, float]) -> float:
    inner_w = max(0.0, min(box[2], bounds[2]) - max(box[0], bounds[0]))
    inner_h = max(0.0, min(box[3], bounds[3]) - max(box[1], bounds[1]))
    return float((box[2] - box[0]) * (box[3] - box[1]) - inner_w * inner_h)


def _candidates(anchor: np.ndarray, size: np.ndarray):
    """Boxes around ``anchor``, nearest first: in each direction (dx, dy), the box centre at
    anchor + (dx (r + w/2), dy (r + h/2)), so its edge (or corner) facing the anchor is about ``r`` away."""
    w, h = size
    for r in RADII:
        for k in range(ANGLES):
            a = 2 * math.pi * k / ANGLES
            cx, cy = anchor[0] + math.cos(a) * (r + w / 2), anchor[1] + math.sin(a) * (r + h / 2)
            yield np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def place_labels(
    anchors: np.ndarray, sizes: np.ndarray, bounds: tuple[float, float, float, float], point_radius: float = 7.0
) -> np.ndarray:
    """Greedy placement of one (w, h) label per anchor point, in pixels: each label takes the nearest candidate box
    that overlaps no label placed before it, no point and stays inside ``bounds`` (x0, y0, x1, y1); when none is
    free, the candidate with the least overlap. Returns (n, 4) boxes (x0, y0, x1, y1).

    Points are placed from the most crowded first, so the labels with the least room choose first.
    """
    anchors, sizes = np.asarray(anchors, float).reshape(-1, 2), np.asarray(sizes, float).reshape(-1, 2)
    dots = np.hstack([anchors - point_radius, anchors + point_radius])
    crowd = [np.sum(np.hypot(*(anchors - a).T) < 60) for a in anchors]
    order = sorted(range(len(anchors)), key=lambda i: (-crowd[i], anchors[i][0], anchors[i][1]))
    placed = np.full((len(anchors), 4), np.nan)
    for i in order:
        done = placed[~np.isnan(placed[:, 0])]
        best, best_cost = None, math.inf
        for box in _candidates(anchors[i], sizes[i]):
            cost = _overlap(box, done) + _overlap(box, dots) + 10 * _outside(box, bounds)
            if cost < best_cost:
                best, best_cost = box, cost
            if cost == 0:
                break
        placed[i] = best
    return placed


# Pareto plot -------------------------------------------------------------------------------------------------------


def protocol_markers(agg: pd.DataFrame) -> dict[str, str]:
    """Protocol hash → marker shape, in the table's order (shapes repeat after twelve protocols)."""
    hashes = list(dict.fromkeys(str(h) for h in agg["protocol_hash"]))
    return {h: MARKERS[i % len(MARKERS)] for i, h in enumerate(hashes)}


def pareto_figure(agg: pd.DataFrame, *, x: str = "infer_model_img_s", ys: tuple[str, ...] = ("top1", "macro_f1")):
    """Accuracy (one panel per metric in ``ys``) against inference img/s for the lines that have both: one marker
    shape per protocol, one colour per split, the Pareto front of each split dashed, every point labelled (model,
    split) without overlaps. Returns the figure (labels carry ``gid="label"``)."""
    from fer_bench.report.leaderboard import header

    plt = pyplot()
    df = agg.dropna(subset=[x, *ys]).reset_index(drop=True)
    markers, splits = protocol_markers(df), list(dict.fromkeys(df["split"]))
    colours = {s: f"C{i % 10}" for i, s in enumerate(splits)}
    fig, axes = plt.subplots(1, len(ys), figsize=(6.2 * len(ys), 5.2), dpi=110, squeeze=False)
    for ax, y in zip(axes[0], ys, strict=True):
        for (h, split), part in df.groupby(["protocol_hash", "split"], sort=False):
            ax.scatter(
                part[x], part[y], marker=markers[str(h)], s=MARKER_AREA, color=colours[split], edgecolors="k", zorder=3
            )
        for split, part in df.groupby("split", sort=False):
            front = pareto_front(part, x, y)
            ax.plot(front[x], front[y], "--", color=colours[split], lw=1, zorder=2)
        ax.set_xscale("log")
        _pad_limits(ax, df[x], df[y])
        ax.set_xlabel(f"{header(x)} ↑ (log)")
        ax.set_ylabel(f"{header(y)} ↑")
        ax.grid(alpha=0.3)
    _legend(fig, axes[0][-1], markers, colours, df)
    title = "accuracy against inference throughput (upper right is better)"
    found = {c for c in _convergence(df) if unconverged_mark(c)}
    if found:  # the table's mark, said on the figure too: a snapshot is where training stood, not what it reaches
        title += f"\n{MARK} {' / '.join(sorted(found))}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    for ax, y in zip(axes[0], ys, strict=True):
        _label_points(fig, ax, df, x, y)
    return fig


def _convergence(df: pd.DataFrame) -> list:
    return list(df["convergence"]) if "convergence" in df else [None] * len(df)


def unconverged_mark(convergence) -> str:
    """`` †`` for a line the table marks as not converged (a snapshot or no plateau), else ``""``."""
    return f" {MARK}" if isinstance(convergence, str) and convergence != CONVERGED else ""


def save_pareto(agg: pd.DataFrame, path: Path) -> None:
    """:func:`pareto_figure` as a PNG file (``leaderboard --plot``, a suite's ``pareto.png``)."""
    fig = pareto_figure(agg)
    fig.savefig(path)
    pyplot().close(fig)


def pareto_front(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows no other row beats on both ``x`` and ``y`` (higher is better on each), in ``x`` order."""
    best, keep = -float("inf"), []
    for i, r in df.sort_values(x, ascending=False).iterrows():
        if r[y] > best:
            best = r[y]
            keep.append(i)
    return df.loc[keep].sort_values(x)


def curves_figure(lines: dict[str, list[list[tuple[float, float]]]]):
    """Validation macro-F1 against training minutes: per line (name -> one (minutes, macro-F1) curve per seed), the
    seeds' mean at each epoch, drawn at the seeds' mean minutes, with the seeds' range as a band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.4, 4.8), dpi=110)
    for i, (name, seeds) in enumerate(lines.items()):
        n = min(len(c) for c in seeds)
        arr = np.array([c[:n] for c in seeds], dtype=float)  # seeds x epochs x (minutes, macro-F1)
        minutes, f1 = arr[:, :, 0].mean(axis=0), arr[:, :, 1]
        colour = f"C{i % 10}"
        ax.plot(minutes, f1.mean(axis=0), "-o", ms=3, color=colour, label=f"{name} ({len(seeds)} seed(s))")
        if len(seeds) > 1:
            ax.fill_between(minutes, f1.min(axis=0), f1.max(axis=0), color=colour, alpha=0.2, lw=0)
    ax.set_xlabel("training minutes (training + validation)")
    ax.set_ylabel("validation macro-F1 ↑")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _pad_limits(ax, xs: pd.Series, ys: pd.Series) -> None:
    """Room around the points for their labels (fixed, so pixel positions computed later stay true)."""
    lo, hi = float(xs.min()), float(xs.max())
    ax.set_xlim(lo / 2.2, hi * 2.2)
    span = max(float(ys.max() - ys.min()), 2.0)
    ax.set_ylim(float(ys.min()) - 0.6 * span, float(ys.max()) + 0.6 * span)


def _legend(fig, ax, markers: dict[str, str], colours: dict[str, str], df: pd.DataFrame) -> None:
    from matplotlib.lines import Line2D

    recipes = df.groupby("protocol_hash", sort=False)["recipe"].first()
    handles = [
        Line2D([], [], marker=m, ls="", color="grey", mec="k", label=plain(f"{h[:8]} ({recipes[h]})"))
        for h, m in markers.items()
    ]
    handles += [
        Line2D([], [], marker="o", ls="--", color=c, mec="k", label=plain(f"split: {s}")) for s, c in colours.items()
    ]
    fig.legend(handles=handles, loc="center right", fontsize=8, title="protocol (recipe) · split", title_fontsize=8)


def _label_points(fig, ax, df: pd.DataFrame, x: str, y: str) -> None:
    """Label every point with its model and split, placed by :func:`place_labels` in figure pixels."""
    renderer = fig.canvas.get_renderer()
    texts = [plain(f"{m} · {s}{unconverged_mark(c)}") for m, s, c in zip(df["model"], df["split"], _convergence(df),
                                                                            strict=True)]  # fmt: skip
    sizes = []
    for t in texts:
        probe = ax.text(0, 0, t, fontsize=7, transform=None)
        bb = probe.get_window_extent(renderer)
        sizes.append((bb.width + 2, bb.height + 2))
        probe.remove()
    anchors = ax.transData.transform(np.column_stack([df[x], df[y]]))
    boxes = place_labels(anchors, np.array(sizes), tuple(ax.get_window_extent(renderer).extents))
    for text, (px, py), box in zip(texts, anchors, boxes, strict=True):
        gap = math.hypot(max(box[0] - px, 0, px - box[2]), max(box[1] - py, 0, py - box[3]))
        far = gap > 12  # a leader line only when the label had to move away from its point
        ax.annotate(
            text,
            xy=(px, py),
            xycoords="figure pixels",
            xytext=(box[0] + 1, box[1] + 1),
            textcoords="figure pixels",
            fontsize=7,
            ha="left",
            va="bottom",
            gid="label",
            arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6} if far else None,
        )


# Per-class F1 heatmap ----------------------------------------------------------------------------------------------


def heatmap_figure(names: list[str], classes: list[str], values: np.ndarray):
    """Lines (rows) × classes, the F1 written in each cell; missing values grey and marked "–"."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.0 * len(classes) + 4.5, 0.42 * len(names) + 1.6), dpi=110)
    masked = np.ma.masked_invalid(values)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(masked, cmap=cmap, vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(classes)), [plain(c) for c in classes], rotation=30, ha="right")
    ax.set_yticks(range(len(names)), [plain(n) for n in names], fontsize=8)
    for i in range(len(names)):
        for j in range(len(classes)):
            v = values[i, j]
            text, dark = ("–", False) if np.isnan(v) else (f"{v:.1f}", v < 55)
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="F1 (test) ↑", fraction=0.04)
    ax.set_title("per-class F1 (mean over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


# Reliability diagrams and corruption curves ------------------------------------------------------------------------


def reliability_png(probs: np.ndarray, labels: np.ndarray, title: str, temperature: float | None) -> bytes:
    """:func:`fer_bench.report.run_plots.reliability_diagram` as PNG bytes (the same figure a run folder holds)."""
    from fer_bench.report.run_plots import reliability_diagram

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reliability.png"
        reliability_diagram(probs, labels, path, title=plain(title), temperature=temperature)
        return path.read_bytes()


def corruption_figure(table: list[dict], clean_top1: float, title: str, majority_rate: float | None = None):
    """Top-1 against severity, one line per corruption, severity 0 being the clean test set; with the scored split's
    majority-class rate, a dashed line there (a cell on or under it is a collapse to one class)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    names = list(dict.fromkeys(r["corruption"] for r in table))
    for i, name in enumerate(names):
        pts = sorted((int(r["severity"]), float(r["top1"])) for r in table if r["corruption"] == name)
        ax.plot(
            [0] + [s for s, _ in pts],
            [clean_top1] + [t for _, t in pts],
            marker=MARKERS[i % len(MARKERS)],
            color=f"C{i % 10}",
            ms=4,
            lw=1.2,
            label=plain(name),
        )
    ax.axhline(clean_top1, color="grey", ls=":", lw=1)
    if majority_rate is not None:
        ax.axhline(majority_rate, color="black", ls="--", lw=0.8, label=f"majority class ({majority_rate:.1f} %)")
    ax.set(xlabel="severity (0 = clean)", ylabel="top-1 % ↑", title=plain(title))
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig
