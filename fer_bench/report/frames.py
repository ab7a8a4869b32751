"""Result rows → one frame of runs: from result JSON files or from MLflow, normalised to the same columns and dtypes,
so the two give the same table. Works on dicts and pandas; never imports torch or mlflow.

The headline metrics a frame carries are those of the metric registry (:data:`fer_bench.evaluation.metrics.METRICS`)
that some table shows, read when a frame is built, so a metric registered at run time gets its column too.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fer_bench.evaluation import metrics as metric_registry
from fer_bench.evaluation.comparison import macro_classes
from fer_bench.report import columns as layout
from fer_bench.utils.errors import DataError
from fer_bench.utils.io import row_files

# One leaderboard line per distinct combination. The dataset scored is part of it: an eval of a run's weights on
# another dataset (`fer-bench eval --dataset`) keeps the run's protocol hash and split name.
KEYS = ["model", "protocol_hash", "dataset", "train_dataset", "split", "device_name"]
# Descriptive columns: fixed by the protocol within a line (recipe names may differ for identical settings).
DESCRIBE = ["recipe", "img_size", "epochs", "weights", "precision"]
CROSS = layout.CROSS
# The numbers of a line besides the headline metrics (:func:`value_columns`), averaged over seeds.
OTHER_VALUES = ["params_m", "gmacs", "infer_model_img_s", "train_e2e_img_s", "train_min", "val_near_best_min", "mca",
                "mca_ratio", "mca_above_majority", *CROSS]  # fmt: skip
BENCH = ["bench_infer_img_s", "bench_train_img_s"]
RUN_KEYS = [*KEYS, "seed"]  # one run of a line
tta_columns = layout.tta_columns


def headline_columns() -> list[str]:
    """The registry's headline metrics that some leaderboard table shows, in registration order."""
    return [m.name for m in metric_registry.headline() if m.tables]


def value_columns() -> list[str]:
    """Every number of a line that seeds are averaged over: the shown headline metrics, then the rest."""
    return [*headline_columns(), *OTHER_VALUES]


def read_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every ``result.json`` under the given files or folders (``_dir``: its folder, where its predictions are), none
    below a ``superseded/`` folder."""
    rows = []
    for p in paths:
        files = row_files(p) if p.is_dir() else [p]
        rows += [json.loads(f.read_text()) | {"_dir": str(f.parent)} for f in files]
    return rows


def _unknown_protocol(run_id: Any) -> str:
    # a row from before protocol hashes never aggregates with anything: its protocol cannot be checked
    return f"unknown:{run_id}"


def learning_curve(history: list[dict[str, Any]] | None) -> tuple[tuple[float, float], ...] | None:
    """A run's validation curve as (training minutes at the epoch's end, validation macro-F1) per epoch; None
    without a timed history (a row from before epochs were timed, or a weights file scored by eval).

    Example:
        >>> learning_curve([{"epoch_wall_s": 60.0, "val_macro_f1": 30.0}, {"epoch_wall_s": 90.0, "val_macro_f1": 41.5}])
        ((1.0, 30.0), (2.5, 41.5))
    """
    if not history or any("epoch_wall_s" not in h or h.get("val_macro_f1") is None for h in history):
        return None
    seconds = itertools.accumulate(float(h["epoch_wall_s"]) for h in history)
    return tuple((round(t / 60, 3), float(h["val_macro_f1"])) for t, h in zip(seconds, history, strict=True))


def frame_from_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Normalise result rows (JSON) to one line per run."""
    records = []
    for r in rows:
        rec = {k: r.get(k) for k in ("model", "recipe", "dataset", "split", "device_name", "seed", "img_size",
                                      "epochs", "gmacs", "infer_model_img_s", "train_e2e_img_s",
                                      "train_frozen_epochs", "recipe_hash", "run_id")}  # fmt: skip
        rec["recipe"] = _versioned(r.get("recipe"), r.get("recipe_version"))
        rec["protocol_hash"] = r.get("protocol_hash") or _unknown_protocol(r.get("run_id"))
        rec["weights"] = r.get("weights_source", "scratch")
        rec["precision"] = r.get("precision_label") or r.get("precision")
        rec["params_m"] = r["params"] / 1e6
        rec["train_min"] = r["train_wall_s"] / 60 if r.get("train_wall_s") is not None else None
        rec["val_near_best_min"] = r.get("val_near_best_min")
        ran = r.get("epochs_run", len(r["history"]) if r.get("history") else None)
        rec["convergence"] = layout.convergence(r.get("converged"), ran)
        rec["curve"] = learning_curve(r.get("history"))
        rec |= _prediction_refs(r)
        rec["corruptions_path"] = _corruptions_ref(r)
        rec["mca"], rec["mca_ratio"], rec["mca_above_majority"] = (
            (r.get("corruptions") or {}).get(k) for k in ("mca", "mca_ratio", "mca_above_majority")
        )
        cross = r.get("cross_dataset") or {}
        # a cross-dataset row whose weights file named no training dataset is still not the scored dataset's own
        rec["train_dataset"] = (cross.get("trained_on") or "(unnamed)") if cross else r.get("dataset")
        rec |= {k: r["test"].get(k) for k in CROSS} if cross else {}
        average = macro_classes(r)  # the predictions' columns its macro-F1 averages (None: all)
        rec["macro_classes"] = ",".join(map(str, average)) if average is not None else None
        headline = headline_columns()
        rec |= {k: v for k, v in r["test"].items() if k in headline or k.startswith("f1_")}
        for t, m in r.get("test_tta", {}).items():
            if t != "none":
                rec |= {f"top1_{t}": m["top1"], f"macro_f1_{t}": m["macro_f1"]}
                rec[f"gmacs_{t}"] = r.get("test_tta_gmacs", {}).get(t)
        records.append(rec)
    return _typed(pd.DataFrame.from_records(records))


def _versioned(recipe: Any, version: Any) -> Any:
    """A recipe's name with its version ("fast-48 v2"), so that two versions of one recipe read as two recipes."""
    if recipe is None or version is None or (isinstance(version, float) and pd.isna(version)):
        return recipe
    return f"{recipe} v{int(version)}"


def _prediction_refs(row: dict[str, Any]) -> dict[str, str | None]:
    """Where a row's predictions file is (beside its result.json) and the digests the row recorded."""
    ref, valid = row.get("predictions") or {}, row.get("predictions_valid") or {}
    path = str(Path(row["_dir"]) / ref["file"]) if ref and row.get("_dir") else None
    return {"predictions_path": path, "predictions_sha256": ref.get("sha256"),
            "predictions_valid_sha256": valid.get("sha256")}  # fmt: skip


def _corruptions_ref(row: dict[str, Any]) -> str | None:
    """The corruption table (``corruptions.json``) beside a row that ran the corruption suite, for the page."""
    files = (row.get("corruptions") or {}).get("files") or []
    return str(Path(row["_dir"]) / "corruptions.json") if "corruptions.json" in files and row.get("_dir") else None


def _artifact_path(uri: Any, digest: Any) -> str | None:
    """The predictions artifact of an MLflow run: a local path, or the URI of a remote store; None when the run
    recorded none."""
    if not isinstance(digest, str) or not isinstance(uri, str):
        return None
    local = uri.removeprefix("file://")
    return f"{local}/predictions.npz" if "://" not in local and not local.startswith("mlflow-artifacts:") else uri


def frame_from_mlflow(runs: pd.DataFrame) -> pd.DataFrame:
    """Normalise an ``mlflow.search_runs`` frame (child runs with result rows) to one line per run."""
    if runs.empty:
        return pd.DataFrame(columns=[*KEYS, *DESCRIBE, "seed", *value_columns()])
    tag = lambda k: runs.get(f"tags.fer_bench.{k}", pd.Series([None] * len(runs), index=runs.index))  # noqa: E731
    out = pd.DataFrame({k: tag(k) for k in ("model", "recipe", "dataset", "split", "device_name", "recipe_hash",
                                            "run_id")})  # fmt: skip
    out["protocol_hash"] = [p if isinstance(p, str) and p else _unknown_protocol(r)
                            for p, r in zip(tag("protocol_hash"), runs["run_id"], strict=True)]  # fmt: skip
    out["recipe"] = [_versioned(r, v) for r, v in zip(out["recipe"], tag("recipe_version"), strict=True)]
    out["weights"] = tag("weights_source").fillna("scratch")
    out["precision"] = tag("precision_label").fillna(tag("precision"))
    for k in ("seed", "img_size", "epochs"):
        out[k] = pd.to_numeric(tag(k))
    verdict = tag("converged").map({"True": True, "False": False})  # a tag where the run logged its verdict
    ran = runs.get("metrics.epochs_run", pd.Series([None] * len(runs), index=runs.index))
    out["convergence"] = [layout.convergence(c, e) for c, e in zip(verdict, ran, strict=True)]
    for m in headline_columns():  # a store from before a metric was registered has no column for it
        out[m] = runs.get(f"metrics.test_{m}")
    out["params_m"] = runs["metrics.params"] / 1e6
    for m in ("gmacs", "infer_model_img_s", "train_e2e_img_s", "train_frozen_epochs", "val_near_best_min"):
        out[m] = runs.get(f"metrics.{m}")
    out["mca"], out["mca_ratio"] = runs.get("metrics.corruption_mca"), runs.get("metrics.corruption_mca_ratio")
    out["mca_above_majority"] = runs.get("metrics.corruption_mca_above_majority")
    out["train_dataset"] = tag("trained_on").fillna(out["dataset"])
    for m in CROSS:
        out[m] = runs.get(f"metrics.test_{m}")
    out["train_min"] = runs["metrics.train_wall_s"] / 60 if "metrics.train_wall_s" in runs else None
    for k in ("predictions_sha256", "predictions_valid_sha256"):
        out[k] = tag(k)
    uris = runs.get("artifact_uri", pd.Series([None] * len(runs), index=runs.index))
    out["predictions_path"] = [_artifact_path(u, d) for u, d in zip(uris, out["predictions_sha256"], strict=True)]
    for col in runs.columns:
        if col.startswith("metrics.test_f1_"):
            out[col.removeprefix("metrics.test_")] = runs[col]
        for t in tta_columns():
            if col in (f"metrics.test_{t}_top1", f"metrics.test_{t}_macro_f1", f"metrics.tta_gmacs_{t}"):
                key = col.removeprefix("metrics.").removeprefix("test_").removeprefix("tta_")
                out[f"{key.removeprefix(t + '_')}_{t}" if not key.startswith("gmacs") else key] = runs[col]
    return _typed(out.reset_index(drop=True))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The same dtypes whichever source a frame came from (so MLflow and result files give equal tables)."""
    if "train_dataset" not in frame and "dataset" in frame:
        frame["train_dataset"] = frame["dataset"]
    for k in ("seed", "img_size", "epochs", "train_frozen_epochs"):
        if k in frame:
            frame[k] = pd.to_numeric(frame[k]).astype("Int64")
    values = value_columns()
    numeric = [c for c in frame.columns if c in values or c.startswith(("f1_", "top1_", "macro_f1_", "gmacs_"))]
    for c in numeric:
        frame[c] = pd.to_numeric(frame[c]).astype("float64")
    return frame


def apply_bench(frame: pd.DataFrame, bench: pd.DataFrame) -> pd.DataFrame:
    """Add `fer-bench bench` figures as columns of their own (never in place of the run's own figures).

    A bench run matches a row on model, image size, the device's model name and precision; the newest wins. Its
    batch size, precision and memory format go into ``bench_conditions``.
    """
    if bench.empty or "img_size" not in frame:
        return frame
    b = pd.DataFrame({
        "model": bench["tags.fer_bench.model"], "img_size": pd.to_numeric(bench["tags.fer_bench.img_size"]),
        "device_name": bench["tags.fer_bench.device_name"], "precision": bench["tags.fer_bench.precision"],
        "bench_infer_img_s": bench["metrics.infer_img_s_median"],
        "bench_train_img_s": bench["metrics.train_img_s_median"],
        "bench_conditions": [f"b{bs}, {p}, {'NHWC' if str(cl) == 'True' else 'NCHW'}" for bs, p, cl in zip(
            bench["tags.fer_bench.batch_size"], bench["tags.fer_bench.precision"],
            bench["tags.fer_bench.channels_last"], strict=True)],
        "start": bench["start_time"],
    }).sort_values("start").drop_duplicates(["model", "img_size", "device_name", "precision"], keep="last")  # fmt: skip
    b["img_size"] = b["img_size"].astype("Int64")
    # a run's precision label names TF32 ("fp32+tf32(cudnn)"); bench records the asked-for precision beside it
    out = frame.assign(_precision=frame["precision"].astype(str).str.replace(r"\+tf32\(.*\)$", "", regex=True))
    b = b.rename(columns={"precision": "_precision"}).drop(columns="start")
    return out.merge(b, on=["model", "img_size", "device_name", "_precision"], how="left").drop(columns="_precision")


BENCH_KEYS = ["model", "img_size", "batch_size", "precision", "channels_last", "compile", "device_name"]


def bench_frame_from_csv(paths: Sequence[Path]) -> pd.DataFrame:
    """`fer-bench bench` CSV files (``bench-infer-*.csv``, ``bench-train-*.csv``; a folder: every such file in it) as
    the frame :func:`apply_bench` reads, the form of MLflow's bench runs: one line per measured model and conditions,
    its inference and training medians side by side, the newest measurement of each kind."""
    files = []
    for p in map(Path, paths):
        found = sorted(p.glob("bench-*.csv")) if p.is_dir() else [p]
        if not found:
            raise DataError(f"{p}: no bench-infer-*.csv or bench-train-*.csv in it; give the folder that "
                            "`fer-bench bench --out` wrote.")  # fmt: skip
        files += found
    parts = {"infer": [], "train": []}
    for f in files:
        kind = next((k for k in parts if f.name.startswith(f"bench-{k}-")), None)
        if kind is None:
            raise DataError(f"{f}: not a `fer-bench bench` CSV (bench-infer-*.csv or bench-train-*.csv); give the "
                            "files, or the folder, that bench's --out wrote.")  # fmt: skip
        try:
            frame = pd.read_csv(f, keep_default_na=False, na_values=[""])
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"{f}: not a readable CSV ({exc}); give a CSV that `fer-bench bench` wrote.") from None
        if missing := [c for c in [*BENCH_KEYS, f"{kind}_img_s_median", "timestamp"] if c not in frame]:
            raise DataError(f"{f}: no column {', '.join(missing)}; give a CSV that `fer-bench bench` wrote.")
        parts[kind].append(frame[[*BENCH_KEYS, f"{kind}_img_s_median", "timestamp"]])
    merged = None
    for kind, frames in parts.items():
        if not frames:
            continue
        one = pd.concat(frames).astype({"compile": str}).sort_values("timestamp")
        one = one.drop_duplicates(BENCH_KEYS, keep="last").rename(columns={"timestamp": f"{kind}_timestamp"})
        merged = one if merged is None else merged.merge(one, on=BENCH_KEYS, how="outer")
    if merged is None:
        return pd.DataFrame()
    stamps = [c for c in ("infer_timestamp", "train_timestamp") if c in merged]
    out = pd.DataFrame({f"tags.fer_bench.{k}": merged[k].astype(str) for k in BENCH_KEYS})
    for kind in parts:
        out[f"metrics.{kind}_img_s_median"] = merged.get(f"{kind}_img_s_median")
    out["start_time"] = [max(v for v in row if isinstance(v, str)) for row in merged[stamps].itertuples(index=False)]
    return out


def apply_corruptions(frame: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """Give each run the corruption figures (mCA, its ratio, the table's path) of an eval that scored the same
    weights under the corruption suite (`fer-bench eval --run DIR --corruptions all`): matched on the line and the
    seed (model, protocol, split, device model, seed). The evals never become rows of their own; a run's own
    corruption figures are kept. An eval that matches no run is an error: its figures would silently go missing.
    """
    cols = ["mca", "mca_ratio", "mca_above_majority", "corruptions_path"]
    evals = evals.dropna(subset=["mca"]) if "mca" in evals else evals.iloc[0:0]
    if evals.empty:
        return frame
    lost = evals.merge(frame[RUN_KEYS].drop_duplicates(), on=RUN_KEYS, how="left", indicator=True)
    lost = lost[lost["_merge"] == "left_only"]
    if not lost.empty:
        names = ", ".join(f"{r.model} {r.split} seed {r.seed} ({r.run_id})" for r in lost.itertuples())
        raise DataError(f"--corruption-runs: {names} scored weights of no run among the inputs (matched on model, "
                        "protocol, dataset, split, device and seed). Give the run folders it evaluated, or leave it "
                        "out.")  # fmt: skip
    found = evals.groupby(RUN_KEYS, dropna=False, sort=False)[cols].first().add_prefix("_e_").reset_index()
    out = frame.merge(found, on=RUN_KEYS, how="left")
    for c in cols:
        mine = out[c] if c in out else pd.Series([None] * len(out), index=out.index)
        out[c] = mine.where(mine.notna(), out[f"_e_{c}"])
    return _typed(out.drop(columns=[f"_e_{c}" for c in cols]))
