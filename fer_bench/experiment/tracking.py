"""Experiment tracking. This is the only module that imports mlflow; :class:`NullTracker` is used when it is off.

A ``fer-bench run`` is one parent run; each model × seed is a child run holding the resolved recipe as
params, per-epoch metrics at ``step=epoch``, the final test and cost metrics, provenance tags, artifacts and
its dataset as an MLflow input (digest: the content fingerprint). The parent carries the summary: the best
line per model as metrics and tags, the leaderboard as an artifact. A run that raises is ended FAILED, an
interrupted one KILLED; only a clean finish is FINISHED.

The experiment is marked as model development and holds a saved view of the runs table (children flat,
sorted by macro-F1, top-1 and macro-F1 as columns); :meth:`MlflowTracker.runs_url` is the address that opens it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fer_bench.evaluation.metrics import shown_in
from fer_bench.utils.errors import ConfigError

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "fer-bench"
KIND_TAG = "fer_bench.kind"  # "suite" (parent) or "model" (a child: a result row once FINISHED)
# A suite's runs: the suite's name and the cell's id. Stored in every tracking store a suite wrote: never renamed, or
# a suite would no longer find the cells it finished.
SUITE_TAG = "fer_bench.suite"
CELL_TAG = "fer_bench.cell"
# NOTE: MLflow's UI (3.x) opens an experiment on its GenAI overview unless told otherwise: the kind tag asks for
# the classic runs page where the UI reads it, the URL's workflowType where the UI reads that instead.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# A saved runs-table view is an experiment tag under this prefix; ?viewStateShareKey=<key> opens it.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "fer-bench-results"
VIEW_SORT = "metrics.`test_macro_f1`"  # the leaderboard's order; sorting by a metric also lists children flat
# the figures first, beside the run's name, so that a 1440 px screen shows them without scrolling sideways
VIEW_COLUMNS = (*(f"metrics.`test_{m}`" for m in shown_in("default")), "attributes.`Dataset`",
                "tags.`fer_bench.recipe`", "tags.`fer_bench.img_size`", "tags.`fer_bench.epochs`",
                "tags.`fer_bench.split`")  # fmt: skip


class NullTracker:
    """Tracking switched off: every call is a no-op."""

    enabled = False

    @contextlib.contextmanager
    def run(self, name: str, *, tags: dict[str, str] | None = None, nested: bool = False) -> Iterator[None]:
        yield None

    def log_epoch(self, entry: dict[str, Any]) -> None:
        pass

    def log_result(self, row: dict[str, Any], run_dir: Path, recipe: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tag(self, key: str, value: str) -> None:
        pass

    def log_summary(self, run_id: str | None, frame: Any, files: list[Path]) -> None:
        pass

    def runs_url(self) -> str | None:
        return None


def resolve_uri(uri: str | None) -> str:
    """``--tracking-uri`` > ``$MLFLOW_TRACKING_URI`` > a SQLite file in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


class MlflowTracker:
    """Logs to MLflow. The experiment is created once, up front, before any parallel work."""

    enabled = True
    # A run of another process that this one's top-level nested runs go under (a --jobs cell: the suite's run).
    parent_run_id: str | None = None

    def __init__(
        self, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, log_checkpoint: bool = False
    ) -> None:
        import mlflow

        self.log_checkpoint = log_checkpoint
        self.mlflow = mlflow
        self.uri = resolve_uri(uri)
        mlflow.set_tracking_uri(self.uri)
        # NOTE: get-or-create once here; concurrent creation races in MLflow (and SQLite migrations too).
        exp = mlflow.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else mlflow.create_experiment(experiment)
        _mark_experiment(mlflow.MlflowClient(self.uri), mlflow.get_experiment(self.experiment_id))

    @contextlib.contextmanager
    def run(self, name: str, *, tags: dict[str, str] | None = None, nested: bool = False) -> Iterator[str]:
        """A run that ends FINISHED only when its block completes; FAILED on an error, KILLED on interrupt."""
        parent = self.parent_run_id if nested and self.mlflow.active_run() is None else None
        active = self.mlflow.start_run(run_name=name, experiment_id=self.experiment_id, nested=nested, tags=tags,
                                       parent_run_id=parent)  # fmt: skip
        self._stages: dict[str, int] = {}
        with _sigterm_as_interrupt():
            try:
                yield active.info.run_id
            except (KeyboardInterrupt, SystemExit):
                self.mlflow.end_run("KILLED")
                raise
            except BaseException:
                self.mlflow.end_run("FAILED")
                raise
        self.mlflow.end_run("FINISHED")

    def log_epoch(self, entry: dict[str, Any]) -> None:
        """Numeric values at ``step=epoch``; the stage as a ``stage_index`` metric plus a ``stage.<epoch>`` tag."""
        metrics = {k: float(v) for k, v in entry.items() if isinstance(v, int | float) and k != "epoch"}
        if "stage" in entry:
            self._stages.setdefault(entry["stage"], len(self._stages))
            metrics["stage_index"] = float(self._stages[entry["stage"]])
            self.mlflow.set_tag(f"fer_bench.stage.{int(entry['epoch'])}", entry["stage"])
        self.mlflow.log_metrics(metrics, step=int(entry["epoch"]))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        _log_params_batched(self.mlflow, params)

    def set_tag(self, key: str, value: str) -> None:
        self.mlflow.set_tag(key, value)

    def log_result(self, row: dict[str, Any], run_dir: Path, recipe: dict[str, Any]) -> None:
        """Everything needed to rebuild the row: params, metrics, tags, its dataset as an input, and artifacts."""
        from fer_bench.recipes import flatten

        params = {k: json.dumps(v) if isinstance(v, list | tuple | dict) else v for k, v in flatten(recipe).items()}
        params |= {"model": row["model"], "dataset": row["dataset"], "img_size": row["img_size"]}
        _log_params_batched(self.mlflow, params)
        self.mlflow.log_metrics(result_metrics(row))
        self.mlflow.set_tags(result_tags(row))
        if row.get("data_fingerprint"):
            dataset, context, tags = dataset_input(row)
            self.mlflow.log_input(dataset, context=context, tags=tags)
        from fer_bench.report.run_plots import save_run_plots

        save_run_plots(row, run_dir)
        files = (
            "result.json",
            "recipe.yaml",
            "protocol.json",
            "per_class.csv",
            "confusion_matrix.png",
            "learning_curve.png",
            "predictions.npz",
            "predictions-valid.npz",
            "reliability.png",
            "corruptions.csv",
            "corruptions.json",
            "corruptions.png",
        )
        for name in files:
            if (run_dir / name).exists():
                self.mlflow.log_artifact(str(run_dir / name))
        if self.log_checkpoint and (run_dir / "best.pt").exists():
            self.mlflow.log_artifact(str(run_dir / "best.pt"))

    def log_summary(self, run_id: str | None, frame: Any, files: list[Path]) -> None:
        """The parent run's summary, after its children: the best line (seed mean) of each model as metrics
        ``best_<metric>/<model>`` for each metric of the default table (``best_top1``, ``best_macro_f1``...) and a
        tag ``fer_bench.best.<model>``, those lines as the run's description, and ``files`` (the leaderboard) as
        artifacts. ``frame``: the runs' leaderboard frame."""
        if run_id is None:
            return
        client = self.mlflow.MlflowClient(self.uri)
        best = best_lines(frame)
        metrics = {f"best_{m}/{_key(line['model'])}": float(line[m]) for line in best for m in shown_in("default")}
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        for line in best:
            client.set_tag(run_id, f"fer_bench.best.{_key(line['model'])}", _describe(line))
        note = "Best line per model (mean over seeds); the whole table is the artifact leaderboard.md.\n\n"
        note += "\n".join(f"- **{line['model']}**: {_describe(line)}" for line in best)
        client.set_tag(run_id, "mlflow.note.content", note)
        for path in files:
            if path.is_file():
                client.log_artifact(run_id, str(path))

    def runs_url(self) -> str:
        """Where the runs table of this experiment opens on the saved results view (a command first, for a local
        store that needs ``mlflow ui`` to be served)."""
        query = f"#/experiments/{self.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"
        if self.uri.startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/{query}"
        return f"mlflow ui --backend-store-uri {self.uri}  then  http://127.0.0.1:5000/{query}"


def _mark_experiment(client, exp) -> None:
    """Land ``mlflow ui`` on the runs table: the experiment kind (unless a user chose one) and the results view.
    Written only when missing or different, so that --jobs workers reading the experiment never write it."""
    if EXPERIMENT_KIND[0] not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
    key, value = VIEW_TAG_PREFIX + VIEW_KEY, runs_view(exp.creation_time or 0)
    if exp.tags.get(key) != value:
        client.set_experiment_tag(exp.experiment_id, key, value)


def runs_view(created_ms: int) -> str:
    """The saved view of the runs table as MLflow's UI stores one: a named envelope around its JSON state."""
    state = {
        "orderByKey": VIEW_SORT,
        "orderByAsc": False,
        "selectedColumns": list(VIEW_COLUMNS),
        "columnOrder": list(VIEW_COLUMNS),
    }
    return json.dumps({"name": "fer-bench results", "createdAt": created_ms, "updatedAt": created_ms,
                       "state": json.dumps(state)})  # fmt: skip


def dataset_input(row: dict[str, Any]):
    """(dataset, context, tags) of a row for ``mlflow.log_input``: named by the dataset, its digest the content
    fingerprint the protocol hash covers, its source the file or folder it was read from where that is a path."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    where = str(row.get("data_source") or row["dataset"])
    source = resolve_dataset_source(where) if Path(where).exists() else CodeDatasetSource({"source": where})
    dataset = MetaDataset(source, name=row["dataset"], digest=row["data_fingerprint"])
    # an eval row scored weights trained elsewhere: this dataset was only evaluated on
    context = "evaluation" if "eval" in row or row.get("cross_dataset") else "training"
    tags = {"fer_bench.split": str(row.get("split"))}
    tags |= {f"fer_bench.{k}": str(row[k]) for k in ("n_train", "n_val", "n_test") if row.get(k) is not None}
    return dataset, context, tags


def best_lines(frame: Any) -> list[dict[str, Any]]:
    """The best line of each model in a leaderboard frame: its seeds averaged, the highest macro-F1 (the
    leaderboard's order), in the leaderboard's order."""
    from fer_bench.report.leaderboard import aggregate

    if frame is None or frame.empty:
        return []
    agg = aggregate(frame)
    return agg.loc[agg.groupby("model", sort=False)["macro_f1"].idxmax()].to_dict("records")


def _describe(line: dict[str, Any]) -> str:
    """One line of the summary: "top-1 61.20 · macro-F1 58.10 · fast-48 v4 · fer2013 private · 48 px · …"."""
    recipe = f"{line.get('recipe')} · " if line.get("recipe") else ""
    return (f"top-1 {line['top1']:.2f} · macro-F1 {line['macro_f1']:.2f} · {recipe}{line['dataset']} "
            f"{line['split']} · {line['img_size']} px · {line['epochs']} epochs · "
            f"{line['seeds']} seed(s)")  # fmt: skip


def _key(model: str) -> str:
    """A model name as an MLflow key part: ``timm:name`` → ``timm_name`` (``:`` is refused on Windows)."""
    return re.sub(r"[^\w.\- /]", "_", str(model))


def result_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The final metrics of a row under their MLflow keys (``test_top1``, ``test_f1_angry``, ``gmacs``...): every
    headline metric of the registry the row's ``test`` holds is ``test_<name>``."""
    out = {f"test_{k}": float(v) for k, v in row["test"].items()}
    # "none" (no TTA) is the headline itself: already test_* and gmacs, never a second key for one figure
    for tta, m in row.get("test_tta", {}).items():
        if tta != "none":
            out |= {f"test_{tta}_{k}": float(v) for k, v in m.items()}
    out |= {f"tta_gmacs_{t}": float(v) for t, v in row.get("test_tta_gmacs", {}).items() if t != "none"}
    if c := row.get("corruptions"):  # the corruption suite (fer_bench.experiment.corruption_scoring.corruption_eval)
        out |= {"corruption_mca": float(c["mca"])} | ({"corruption_mca_ratio": float(c["mca_ratio"])}
                                                       if c["mca_ratio"] is not None else {})  # fmt: skip
        if c.get("mca_above_majority") is not None:  # without the cells at or below the majority-class rate
            out["corruption_mca_above_majority"] = float(c["mca_above_majority"])
    # NOTE: one key, one meaning: per-epoch figures are logged at step=epoch under epoch_* / val_* keys, never these
    for key in ("params", "trainable_params", "gmacs", "infer_model_img_s", "infer_batch_size", "train_e2e_img_s",
                "train_frozen_epochs", "epochs_run", "best_epoch", "wall_s", "train_wall_s", "val_near_best_epoch",
                "val_near_best_min", "n_train", "n_val", "n_test"):  # fmt: skip
        if row.get(key) is not None:
            out[key] = float(row[key])
    return out


def result_tags(row: dict[str, Any]) -> dict[str, str]:
    # an eval row (`fer-bench eval`: a checkpoint scored again) never enters a leaderboard beside its run's row
    tags = {KIND_TAG: "eval" if "eval" in row else "model"}
    for key in ("model", "family", "recipe", "recipe_version", "recipe_hash", "dataset", "data_source", "split",
                "seed", "precision", "precision_label", "channels_last", "device", "device_name", "git_sha",
                "batch_size", "img_size", "epochs", "protocol", "protocol_hash", "data_fingerprint", "weights_source",
                "run_id", "suite", "cell", "trained_run_id", "converged"):  # fmt: skip
        if key in row:
            tags[f"fer_bench.{key}"] = str(row[key])
    if cross := row.get("cross_dataset"):  # scored on another dataset than the one it was trained on
        tags["fer_bench.trained_on"] = str(cross.get("trained_on"))
    tags |= {f"fer_bench.version.{k}": v for k, v in row.get("versions", {}).items()}
    if "predictions" in row:  # the per-sample file (an artifact): its digest says which file the row scored
        tags["fer_bench.predictions_sha256"] = row["predictions"]["sha256"]
    if "predictions_valid" in row:
        tags["fer_bench.predictions_valid_sha256"] = row["predictions_valid"]["sha256"]
    tags |= {f"fer_bench.eval.{k}": str(v) for k, v in row.get("eval", {}).items() if v is not None}
    return tags


def _log_params_batched(mlflow, params: dict[str, Any]) -> None:
    items = list(params.items())
    for i in range(0, len(items), 90):  # MLflow caps a batch at 100 params
        mlflow.log_params(dict(items[i : i + 90]))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt inside a run, so `kill` marks it KILLED instead of leaving it RUNNING."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def search_model_runs(uri: str | None, experiment: str, extra_filter: str = ""):
    """Finished child runs that carry a result row, as the ``mlflow.search_runs`` pandas frame."""
    import mlflow

    mlflow.set_tracking_uri(resolve_uri(uri))
    if mlflow.get_experiment_by_name(experiment) is None:
        raise ConfigError(f"no MLflow experiment {experiment!r} at {resolve_uri(uri)}. Check --experiment and "
                          "--tracking-uri (or $MLFLOW_TRACKING_URI).")  # fmt: skip
    query = f"tags.`{KIND_TAG}` = 'model' and attributes.status = 'FINISHED'"
    if extra_filter:
        query += f" and {extra_filter}"
    try:
        return mlflow.search_runs(experiment_names=[experiment], filter_string=query, max_results=50_000)
    except mlflow.exceptions.MlflowException as exc:
        raise ConfigError(f"--filter {extra_filter!r}: {exc.message}") from None


def log_bench_rows(uri: str | None, experiment: str, rows: list[dict[str, Any]]) -> None:
    """One parent run per `fer-bench bench`, one child per measured (model, size) with every figure as a metric."""
    tracker = MlflowTracker(uri, experiment)
    with tracker.run("bench", tags={KIND_TAG: "bench-suite"}):
        for row in rows:
            if row.get("error"):
                continue
            tags = {KIND_TAG: "bench"} | {f"fer_bench.{k}": str(row[k]) for k in (
                "model", "img_size", "batch_size", "precision", "channels_last", "compile", "device_name", "torch",
                "git_sha") if k in row}  # fmt: skip
            with tracker.run(f"bench-{row['model']}-{row['img_size']}", tags=tags, nested=True):
                tracker.mlflow.log_metrics({k: float(v) for k, v in row.items()
                                            if isinstance(v, int | float) and not isinstance(v, bool)})  # fmt: skip


def search_bench_runs(uri: str | None, experiment: str):
    """Finished bench child runs (``fer-bench bench`` with tracking on), or an empty frame."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(resolve_uri(uri))
    if mlflow.get_experiment_by_name(experiment) is None:
        return pd.DataFrame()
    query = f"tags.`{KIND_TAG}` = 'bench' and attributes.status = 'FINISHED'"
    return mlflow.search_runs(experiment_names=[experiment], filter_string=query, max_results=50_000)


def finished_suite_rows(uri: str | None, experiment: str, suite: str) -> set[tuple[str, str, str]]:
    """(cell, split, protocol hash) of every FINISHED result row of ``suite`` in ``experiment``.

    A rerun may skip a (cell, split) only when a row of the *same protocol* is among these: a tracked smoke run
    (``--epochs 1``, another dataset, ``--set``…) of the same cell has another protocol hash and never counts.
    """
    import mlflow

    mlflow.set_tracking_uri(resolve_uri(uri))
    if mlflow.get_experiment_by_name(experiment) is None:
        return set()
    query = (f"tags.`{KIND_TAG}` = 'model' and attributes.status = 'FINISHED' and "
             f"tags.`{SUITE_TAG}` = '{suite}'")  # fmt: skip
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string=query, max_results=50_000)
    if runs.empty:
        return set()
    if "tags.fer_bench.protocol_hash" not in runs:  # rows from before protocol hashes: none can be reused
        return set()
    return set(zip(runs[f"tags.{CELL_TAG}"], runs["tags.fer_bench.split"], runs["tags.fer_bench.protocol_hash"],
                   strict=True))  # fmt: skip
