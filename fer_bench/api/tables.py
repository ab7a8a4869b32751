"""Ranking rows from Python: :func:`leaderboard` (what `fer-bench leaderboard` does)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_bench.utils.errors import FerBenchError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Leaderboard:
    """A ranked table: ``rows`` (one per run), ``frame`` (one per line: mean, sd and intervals over seeds), ``text``
    (rendered in the format asked for)."""

    rows: pd.DataFrame
    frame: pd.DataFrame
    text: str
    page_options: dict[str, Any] = field(default_factory=dict)  # what the page shows, as the table was asked for

    def __str__(self) -> str:
        return self.text

    def save_plot(self, path: str | Path) -> None:
        """The accuracy-against-throughput Pareto figure of the lines (PNG)."""
        from fer_bench.report.figures import save_pareto

        save_pareto(self.frame, Path(path))

    def save_curves(self, path: str | Path) -> None:
        """Validation macro-F1 against training minutes, one curve per line with its seeds as a band (PNG), as on the
        page; a :class:`~fer_bench.utils.errors.FerBenchError` when no row has a timed validation history."""
        from fer_bench.report import figures, page

        lines = page.curve_lines(self.frame, self.rows)
        if not lines:
            raise FerBenchError("--curves: no row has a timed validation history (epoch times and validation "
                                "macro-F1); rows written by `fer-bench run` have one.")  # fmt: skip
        fig = figures.curves_figure(lines)
        fig.savefig(Path(path))
        figures.pyplot().close(fig)

    def write_page(
        self, path: str | Path, screenshot: str | Path | None = None, screenshot_height: int | None = None
    ) -> None:
        """The self-contained HTML page (tables, figures, per-class F1), and its headless-Chromium ``screenshot``
        (1440 px wide, ``screenshot_height`` high: default the first screen)."""
        from fer_bench.report import page

        page.write(self.rows, self.frame, Path(path), **self.page_options)
        if screenshot:
            page.screenshot(Path(path), Path(screenshot), height=screenshot_height or page.SCREEN[1])


def leaderboard(
    results: Sequence[str | Path] | None = None,
    *,
    tracking_uri: str | None = None,
    experiment: str = "fer-bench",
    filter: str = "",  # noqa: A002  (MLflow's word for it)
    corruption_runs: Sequence[str | Path] = (),
    bench: Sequence[str | Path] = (),
    fmt: str = "md",
    columns: Sequence[str] = (),
    per_class: bool = False,
    published: bool = False,
    title: str = "",
) -> Leaderboard:
    """Rank the rows of ``results`` (run folders, their parents, or result.json files), or else of an MLflow store.

    Args:
        results: where ``fer-bench run --out`` wrote (default: read the tracking store instead).
        tracking_uri, experiment, filter: the MLflow store, experiment and extra search filter.
        corruption_runs: ``fer-bench eval --corruptions`` folders whose mCA fills the table's mCA columns.
        bench: ``fer-bench bench`` CSV files or their --out folders, whose figures fill the bench columns (default:
            from an MLflow store, the experiment's bench runs; from result folders, none).
        fmt: ``md``, ``csv``, ``latex`` or ``html``; columns, per_class, published, title: as `fer-bench leaderboard`.
    """
    from fer_bench.report import leaderboard as lb

    if fmt not in (formats := ("csv", *lb.FORMATS)):
        raise FerBenchError(f"--format {fmt}: expected one of {', '.join(formats)}.")
    lb.layout.groups(list(columns))
    made_by = {"--from-results": "run", "--corruption-runs": "eval --corruptions", "--bench": "bench"}
    for flag, paths in (("--from-results", results or ()), ("--corruption-runs", corruption_runs), ("--bench", bench)):
        if missing := [str(p) for p in paths if not Path(p).exists()]:
            raise FerBenchError(f"{flag}: {', '.join(missing)} does not exist. Give the --out folder of a "
                                f"`fer-bench {made_by[flag]}` (or the files in it).")  # fmt: skip
    if results:
        frame = lb.frame_from_rows(lb.read_rows([Path(p) for p in results]))
    else:
        from fer_bench.experiment.tracking import search_bench_runs, search_model_runs

        frame = lb.frame_from_mlflow(search_model_runs(tracking_uri, experiment, filter))
        if not bench:
            frame = lb.apply_bench(frame, search_bench_runs(tracking_uri, experiment))
    if bench and not frame.empty:
        measured = lb.bench_frame_from_csv([Path(p) for p in bench])
        frame = lb.apply_bench(frame, measured)
        if not any(c in frame and frame[c].notna().any() for c in ("bench_infer_img_s", "bench_train_img_s")):
            have = sorted({f"{m} {s} px, {p}, {d}" for m, s, p, d in zip(
                measured.get("tags.fer_bench.model", ()), measured.get("tags.fer_bench.img_size", ()),
                measured.get("tags.fer_bench.precision", ()), measured.get("tags.fer_bench.device_name", ()),
                strict=True)})  # fmt: skip
            raise FerBenchError(f"--bench: no measurement matches a line (same model, size, precision and device); "
                                f"it measured {'; '.join(have) or 'nothing'}. Bench the lines' models on their "
                                "device.")  # fmt: skip
    if corruption_runs and not frame.empty:
        frame = lb.apply_corruptions(frame, lb.frame_from_rows(lb.read_rows([Path(p) for p in corruption_runs])))
    if frame.empty:
        where = ", ".join(map(str, results)) if results else f"experiment {experiment!r}"
        raise FerBenchError(f"no finished model runs in {where}{' matching ' + repr(filter) if filter else ''}. "
                            "Run `fer-bench run` first.")  # fmt: skip
    agg = lb.aggregate(frame)
    text = lb.render(agg, fmt, columns=list(columns), per_class=per_class, published=published, title=title)
    source = (" ".join(str(p) for p in results) if results
              else f"MLflow experiment {experiment!r}" + (f" ({filter})" if filter else ""))  # fmt: skip
    options = {"published": published, "per_class": per_class, "columns": list(columns), "source": source,
               "title": title}  # fmt: skip
    return Leaderboard(frame, agg, text, options)
