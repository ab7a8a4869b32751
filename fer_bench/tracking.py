"""Experiment tracking. This is the only module that imports mlflow; :class:`NullTracker` is used when it is off.

A ``fer-bench run`` is one parent run; each model × seed is a child run holding the resolved recipe as
params, per-epoch metrics at ``step=epoch``, the final test and cost metrics, provenance tags and
artifacts. A run that raises is ended FAILED, an interrupted one KILLED; only a clean finish is FINISHED.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "fer-bench"
KIND_TAG = "fer_bench.kind"  # "suite" (parent) or "model" (a child: a result row once FINISHED)


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
        """Everything needed to rebuild the row: params, metrics, tags and artifacts."""
        from fer_bench.recipes import flatten

        params = {k: json.dumps(v) if isinstance(v, list | tuple | dict) else v for k, v in flatten(recipe).items()}
        params |= {"model": row["model"], "dataset": row["dataset"], "img_size": row["img_size"]}
        _log_params_batched(self.mlflow, params)
        self.mlflow.log_metrics(result_metrics(row))
        self.mlflow.set_tags(result_tags(row))
        from fer_bench.plots import save_run_plots

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


def result_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The final metrics of a row under their MLflow keys (``test_top1``, ``test_f1_angry``, ``gmacs``...)."""
    out = {f"test_{k}": float(v) for k, v in row["test"].items()}
    for tta, m in row.get("test_tta", {}).items():
        out |= {f"test_{tta}_{k}": float(v) for k, v in m.items()}
    out |= {f"tta_gmacs_{t}": float(v) for t, v in row.get("test_tta_gmacs", {}).items()}
    if c := row.get("corruptions"):  # the corruption suite (fer_bench.evaluation.corruption_eval)
        out |= {"corruption_mca": float(c["mca"])} | ({"corruption_mca_ratio": float(c["mca_ratio"])}
                                                       if c["mca_ratio"] is not None else {})  # fmt: skip
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

    from fer_bench.errors import ConfigError

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
             f"tags.`fer_bench.suite` = '{suite}'")  # fmt: skip
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string=query, max_results=50_000)
    if runs.empty:
        return set()
    if "tags.fer_bench.protocol_hash" not in runs:  # rows from before protocol hashes: none can be reused
        return set()
    return set(zip(runs["tags.fer_bench.cell"], runs["tags.fer_bench.split"], runs["tags.fer_bench.protocol_hash"],
                   strict=True))  # fmt: skip
