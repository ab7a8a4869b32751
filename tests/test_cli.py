"""The command line end to end, in a subprocess like a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import cli, fer_bench


def test_run_on_synthetic_writes_a_row_with_provenance_and_a_table(tmp_path):
    out = tmp_path / "out"
    res = fer_bench("run", "--models", "simple_cnn", "--epochs", "2", "--limit-train", "400", "--out", str(out),
                    "--no-progress", "--seed", "3")  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = list(out.rglob("result.json"))
    assert len(rows) == 1
    row = json.loads(rows[0].read_text())
    for key in ("model", "recipe", "recipe_hash", "dataset", "split", "seed", "epochs", "img_size", "batch_size",
                "git_sha", "versions", "device", "precision", "params", "gmacs", "infer_model_img_s",
                "train_e2e_img_s", "protocol_hash", "data_fingerprint", "weights", "confusion_matrix",
                "history"):  # fmt: skip
        assert key in row, key
    assert row["seed"] == 3 and row["epochs_run"] == 2 and row["n_train"] == 400 and row["split"] == "test"
    assert row["versions"]["torch"] and row["versions"]["timm"]
    assert set(row["test"]) >= {"top1", "macro_f1", "weighted_f1", "top2", "f1_disgust", "recall_neutral"}
    assert sum(map(sum, row["confusion_matrix"])) == row["n_test"]
    assert set(row["test_tta"]) == {"none", "hflip"}
    assert (rows[0].parent / "recipe.yaml").is_file() and (rows[0].parent / "best.pt").is_file()
    assert "simple_cnn" in res.stdout and "macro-F1" in res.stdout


@pytest.mark.slow
def test_small_cnn_beats_chance_clearly_on_synthetic(tmp_path):
    res = fer_bench("run", "--models", "simple_cnn", "--epochs", "3", "--out", str(tmp_path), "--no-progress")
    assert res.returncode == 0, res.stderr
    row = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert row["test"]["top1"] > 45  # chance is 14 %, the majority class 25 %
    assert row["test"]["macro_f1"] > 30


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--models", "resnet81"], ["unknown model 'resnet81'", "resnet18", "fer-bench ls models"]),
        (["run", "--models", "resnet18", "--dataset", "fer2013"], ["needs --data-dir", "msambare/fer2013"]),
        (["run", "--models", "resnet18", "--dataset", "fer2013", "--data-dir", "/no/such/dir"],
         ["/no/such/dir", "does not exist", "--dataset synthetic"]),
        (["run", "--models", "resnet18", "--dataset", "ferr2013"], ["unknown dataset 'ferr2013'", "fer2013"]),
        (["run", "--models", "resnet18", "--recipe", "baselin"], ["unknown recipe", "baseline"]),
        (["run", "--models", "resnet18", "--set", "optim.lrr=1"], ["unknown key 'optim.lrr'", "optim.lr"]),
        (["leaderboard", "--from-results", "/no/such/dir"], ["/no/such/dir", "does not exist", "--out folder"]),
        (["run", "--models", "simple_cnn", "--seed", "1", "--seeds", "0,1"], ["--seed 1 and --seeds 0,1", "give one"]),
        (["run", "--models", "simple_cnn", "--seeds", "0,0"], ["repeats a seed"]),
    ],
)  # fmt: skip
def test_user_mistakes_get_one_clear_message_and_exit_2(tmp_path, capsys, args, expected):
    code, err, _ = cli(capsys, *args, "--out", tmp_path / "out")  # in this process; test_ls_and_validate starts one
    assert code == 2, err
    assert "Traceback" not in err
    for part in expected:
        assert part in err
    assert not list(tmp_path.rglob("result.json"))


def test_seeds_train_each_model_once_per_seed_and_a_pipe_gets_one_line_per_epoch(tmp_path):
    """--seeds with --models: a row, run folder and MLflow child per seed. stderr is a pipe here (as a log file is):
    no progress-bar redraws, exactly one line per epoch."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = fer_bench("run", "--models", "simple_cnn", "--seeds", "0,1", "--epochs", "2", "--limit-train", "200",
                    "--split", "public", "--set", "eval.tta=[none]", "--set", "eval.batch_size=512", "--out",
                    str(tmp_path / "out"), "--tracking-uri", uri, "--experiment", "seeds")  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").rglob("result.json"))]
    assert sorted(r["seed"] for r in rows) == [0, 1] and len({r["run_id"] for r in rows}) == 2
    assert rows[0]["protocol_hash"] == rows[1]["protocol_hash"]  # two seeds of one protocol: one leaderboard line
    mlflow.set_tracking_uri(uri)
    children = mlflow.search_runs(experiment_names=["seeds"], filter_string="tags.`fer_bench.kind` = 'model'")
    assert sorted(children["tags.fer_bench.seed"]) == ["0", "1"]
    assert "\r" not in res.stderr and "img/s]" not in res.stderr  # no tqdm bar, not even a final one
    epoch_lines = [line for line in res.stderr.splitlines() if line.lstrip().startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2", "1/2", "2/2"]


def test_ls_and_validate():
    res = fer_bench("ls", "models")
    assert res.returncode == 0 and "vgg_khaireddin" in res.stdout and "29.89" in res.stdout
    res = fer_bench("validate")
    assert res.returncode == 0 and "0 invalid" in res.stdout


def test_help_does_not_import_torch():
    code = "import sys; from fer_bench.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "False"
