"""MLflow tracking with a temporary SQLite store, and leaderboards built from the tracked runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

mlflow = pytest.importorskip("mlflow")

from helpers import fer_bench  # noqa: E402


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One two-model synthetic run, logged to a fresh SQLite store."""
    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root}/mlflow.db"
    res = fer_bench("run", "--models", "simple_cnn,timm:mobilenetv3_small_050", "--epochs", "2", "--limit-train",
                    "300", "--out", str(root / "out"), "--no-progress", "--tracking-uri", uri,
                    "--experiment", "t")  # fmt: skip
    assert res.returncode == 0, res.stderr
    (root / "stderr.txt").write_text(res.stderr)
    return uri, root


def _runs(uri: str, experiment: str = "t"):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_one_parent_and_two_children_with_params_metrics_tags_artifacts(tracked):
    uri, _ = tracked
    runs = _runs(uri)
    parents = [r for r in runs if r.data.tags.get("fer_bench.kind") == "suite"]
    children = [r for r in runs if r.data.tags.get("fer_bench.kind") == "model"]
    assert len(parents) == 1 and len(children) == 2
    client = mlflow.MlflowClient(uri)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        params, metrics, tags = child.data.params, child.data.metrics, child.data.tags
        # baseline v4's lr equals the schema default; its shift-only crops do not, so they show the recipe was logged
        assert params["optim.lr"] == "0.001" and params["train.epochs"] == "2"
        assert params["augment.crop_scale"] == "[1.0, 1.0]"
        for key in ("test_top1", "test_macro_f1", "test_weighted_f1", "test_f1_disgust", "params", "gmacs",
                    "infer_model_img_s", "train_e2e_img_s"):  # fmt: skip
            assert key in metrics, key
        for key in ("git_sha", "version.torch", "device", "precision", "split", "recipe", "recipe_hash",
                    "protocol_hash", "data_fingerprint", "device_name", "weights_source"):  # fmt: skip
            assert f"fer_bench.{key}" in tags, key
        # one key, one meaning: the row's median img/s is what MLflow returns, not the last epoch's figure
        row = json.loads(open(client.download_artifacts(child.info.run_id, "result.json")).read())
        assert metrics["train_e2e_img_s"] == pytest.approx(row["train_e2e_img_s"])
        for key in ("train_wall_s", "val_near_best_epoch", "val_near_best_min"):  # time to accuracy, as on the row
            assert metrics[key] == pytest.approx(row[key]), key
        assert 1 <= row["val_near_best_epoch"] <= 2 and 0 < row["val_near_best_min"] * 60 <= row["train_wall_s"] + 0.1
        assert tags["fer_bench.predictions_sha256"] == row["predictions"]["sha256"]
        per_epoch = client.get_metric_history(child.info.run_id, "epoch_train_img_s")
        assert [m.step for m in per_epoch] == [1, 2]
        assert not client.get_metric_history(child.info.run_id, "train_e2e_img_s")[0].step
        history = client.get_metric_history(child.info.run_id, "val_macro_f1")
        assert [m.step for m in history] == [1, 2]
        assert {
            m.key
            for m in [
                *client.get_metric_history(child.info.run_id, "train_loss"),
                *client.get_metric_history(child.info.run_id, "lr"),
            ]
        } == {"train_loss", "lr"}
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert artifacts >= {"result.json", "recipe.yaml", "per_class.csv", "confusion_matrix.png",
                             "learning_curve.png", "predictions.npz", "reliability.png"}  # fmt: skip


def test_leaderboard_is_built_from_mlflow(tracked, tmp_path):
    uri, root = tracked
    res = fer_bench("leaderboard", "--tracking-uri", uri, "--experiment", "t", "--format", "csv", "--plot",
                    str(tmp_path / "pareto.png"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("rank,model,recipe,dataset,split,img_size,epochs,weights,tta,top1,macro_f1")
    assert len(lines) == 3
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    # The same numbers as the result rows on disk.
    rows = {json.loads(p.read_text())["model"]: json.loads(p.read_text()) for p in root.rglob("result.json")}
    for line in lines[1:]:
        cells = line.split(",")
        assert float(cells[10]) == pytest.approx(rows[cells[1]]["test"]["macro_f1"], abs=5e-5)  # CSV: 4 decimals


@pytest.mark.parametrize("fmt", ["md", "csv", "latex", "html"])
def test_the_leaderboard_from_mlflow_equals_the_one_from_result_files(tracked, fmt):
    uri, root = tracked
    from_mlflow = fer_bench("leaderboard", "--tracking-uri", uri, "--experiment", "t", "--format", fmt,
                            "--per-class")  # fmt: skip
    from_files = fer_bench("leaderboard", "--from-results", str(root / "out"), "--format", fmt, "--per-class")
    assert from_mlflow.returncode == 0 and from_files.returncode == 0, from_mlflow.stderr + from_files.stderr
    assert from_mlflow.stdout == from_files.stdout


def test_one_store_keeps_every_protocol_on_its_own_line(tmp_path):
    """A synthetic run and FER2013 runs of one model at two sizes: three lines per split, none averaged."""
    from helpers import write_csv

    csv = tmp_path / "fer2013.csv"
    write_csv(csv, n_per=6)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--models", "simple_cnn", "--epochs", "1", "--split", "public", "--no-progress", "--tracking-uri", uri,
              "--experiment", "p", "--out", str(tmp_path / "out")]  # fmt: skip
    for extra in (["--dataset", "synthetic", "--limit-train", "140"],
                  ["--dataset", "fer2013", "--data-dir", str(csv), "--img-size", "48"],
                  ["--dataset", "fer2013", "--data-dir", str(csv), "--img-size", "32"]):  # fmt: skip
        res = fer_bench("run", *common, *extra)
        assert res.returncode == 0, res.stderr
    res = fer_bench("leaderboard", "--tracking-uri", uri, "--experiment", "p", "--format", "csv")
    assert res.returncode == 0, res.stderr
    import io

    import pandas as pd

    table = pd.read_csv(io.StringIO(res.stdout))
    assert len(table) == 3 and set(table["seeds"]) == {1}
    assert sorted(zip(table["dataset"], table["img_size"], strict=True)) == [
        ("fer2013", 32), ("fer2013", 48), ("synthetic", 48)]  # fmt: skip
    assert table["protocol_hash"].nunique() == 3


def test_a_killed_run_is_not_finished(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = [sys.executable, "-m", "fer_bench", "run", "--models", "simple_cnn", "--epochs", "500", "--limit-train",
           "200", "--out", str(tmp_path / "out"), "--no-progress", "--tracking-uri", uri,
           "--experiment", "k"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.time() + 120
    # NOTE: wait for the child's first last.pt (written after the epoch was logged) before reading the store: a
    # reader that opens the SQLite file while the child still migrates its schema races the migration (CI saw
    # "table _alembic_tmp_model_version_tags already exists" kill the child).
    while time.time() < deadline:
        time.sleep(1)
        if any((tmp_path / "out").rglob("last.pt")):
            runs = [r for r in _runs(uri, "k") if r.data.tags.get("fer_bench.kind") == "model"]
            if runs and runs[0].data.metrics.get("val_top1") is not None:
                break
    else:
        proc.kill()
        pytest.fail(f"no epoch logged in 120 s: {proc.communicate()[1][-2000:]}")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    runs = _runs(uri, "k")
    assert runs and all(r.info.status == "KILLED" for r in runs)
    assert proc.returncode != 0


def test_stages_are_logged_per_epoch(tmp_path):
    """naik-effnetb2's two stages are visible in the logged per-epoch metrics and tags."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    import torch

    from fer_bench.models import create_model

    torch.save(create_model("simple_cnn")[0].state_dict(), tmp_path / "w.pt")  # the warm-up freezes the backbone
    res = fer_bench("run", "--models", "simple_cnn", "--recipe", "naik-effnetb2", "--epochs", "4", "--img-size", "48",
                    "--limit-train", "140", "--out", str(tmp_path / "out"), "--no-progress", "--tracking-uri", uri,
                    "--experiment", "s", "--set", "eval.tta=[none]", "--weights", str(tmp_path / "w.pt"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    child = next(r for r in _runs(uri, "s") if r.data.tags.get("fer_bench.kind") == "model")
    stages = [child.data.tags[f"fer_bench.stage.{e}"] for e in range(1, 5)]
    assert stages == ["warmup", "warmup", "warmup", "finetune"]
    history = mlflow.MlflowClient(uri).get_metric_history(child.info.run_id, "stage_index")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(1, 0), (2, 0), (3, 0), (4, 1)]


def test_the_headline_is_not_logged_again_as_the_none_tta():
    """The plain pass ("none") is the headline: test_* and gmacs hold it, no test_none_* or tta_gmacs_none copy."""
    from fer_bench.experiment.tracking import result_metrics

    test = {"top1": 50.0, "macro_f1": 40.0, "weighted_f1": 45.0}
    row = {"test": test, "test_tta": {"none": test, "hflip": {"top1": 51.0, "macro_f1": 41.0, "weighted_f1": 46.0}},
           "test_tta_gmacs": {"none": 0.5, "hflip": 1.0}, "gmacs": 0.5}  # fmt: skip
    assert result_metrics(row) == {"test_top1": 50.0, "test_macro_f1": 40.0, "test_weighted_f1": 45.0,
                                   "test_hflip_top1": 51.0, "test_hflip_macro_f1": 41.0, "test_hflip_weighted_f1": 46.0,
                                   "tta_gmacs_hflip": 1.0, "gmacs": 0.5}  # fmt: skip


def test_no_logged_run_holds_a_none_tta_copy(tracked):
    uri, _ = tracked
    for run in _runs(uri):
        assert not [k for k in run.data.metrics if k.startswith(("test_none_", "tta_gmacs_none"))], run.info.run_name


def test_the_parent_run_carries_the_best_line_per_model_and_the_leaderboard(tracked):
    uri, root = tracked
    runs = _runs(uri)
    parent = next(r for r in runs if r.data.tags.get("fer_bench.kind") == "suite")
    children = {r.data.tags["fer_bench.model"]: r for r in runs if r.data.tags.get("fer_bench.kind") == "model"}
    keys = {"simple_cnn": "simple_cnn", "timm:mobilenetv3_small_050": "timm_mobilenetv3_small_050"}
    for model, key in keys.items():  # one seed each: the best line is the child's own figures
        child = children[model].data.metrics
        assert parent.data.metrics[f"best_top1/{key}"] == pytest.approx(child["test_top1"])
        assert parent.data.metrics[f"best_macro_f1/{key}"] == pytest.approx(child["test_macro_f1"])
        tag = parent.data.tags[f"fer_bench.best.{key}"]
        assert tag.startswith(f"top-1 {child['test_top1']:.2f} · macro-F1 {child['test_macro_f1']:.2f} · "), tag
        assert f"**{model}**: {tag}" in parent.data.tags["mlflow.note.content"]
    client = mlflow.MlflowClient(uri)
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["leaderboard.md"]
    logged = open(client.download_artifacts(parent.info.run_id, "leaderboard.md")).read()
    assert logged == (root / "out" / "leaderboard.md").read_text()


def test_each_row_logs_its_dataset_as_an_input_with_its_content_fingerprint(tracked):
    uri, _ = tracked
    children = [r for r in _runs(uri) if r.data.tags.get("fer_bench.kind") == "model"]
    for child in children:
        (used,) = child.inputs.dataset_inputs
        assert used.dataset.name == "synthetic"
        assert used.dataset.digest == child.data.tags["fer_bench.data_fingerprint"]
        tags = {t.key: t.value for t in used.tags}
        assert tags["mlflow.data.context"] == "training" and tags["fer_bench.split"] == "test"
        assert tags["fer_bench.n_train"] == str(int(child.data.metrics["n_train"]))


def test_the_experiment_opens_on_a_runs_table_of_the_results_and_the_run_prints_its_address(tracked):
    uri, root = tracked
    exp = mlflow.MlflowClient(uri).get_experiment_by_name("t")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI overview
    view = json.loads(exp.tags["mlflow.sharedViewState.fer-bench-results"])
    state = json.loads(view["state"])
    assert isinstance(view["name"], str) and isinstance(view["createdAt"], int)
    assert state["orderByKey"] == "metrics.`test_macro_f1`" and state["orderByAsc"] is False
    assert {"metrics.`test_top1`", "metrics.`test_macro_f1`", "attributes.`Dataset`"} <= set(state["selectedColumns"])
    printed = (root / "stderr.txt").read_text()
    assert (
        f"runs in MLflow: mlflow ui --backend-store-uri {uri}  then  http://127.0.0.1:5000/#/experiments/"
        f"{exp.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey=fer-bench-results"
    ) in printed
