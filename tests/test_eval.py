"""`fer-bench eval`: a run's checkpoint scored again gives the run's figures exactly; the validation hold-out's
predictions; the corruption suite's files; every bad input is one exit-2 line with nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fer_bench.cli import main
from fer_bench.data import load_dataset
from fer_bench.data.corruptions import corrupt
from fer_bench.evaluation import predictions
from fer_bench.experiment.corruption_scoring import GRID_CELL_PX, grid_size
from fer_bench.experiment.plan import RunOptions, make_norms
from fer_bench.experiment.runner import run_model
from fer_bench.experiment.suite import load_suite
from fer_bench.experiment.tracking import result_tags
from fer_bench.models import create_model
from fer_bench.recipes import load_recipe
from fer_bench.utils.errors import ConfigError
from helpers import one_line_error

SETS = ["train.epochs=1", "data.limit_train=140", "eval.batch_size=512", "eval.tta=[none, hflip]", "train.seed=1",
        "eval.split=public"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny finished run (row, folder): every test here scores its best.pt."""
    out = tmp_path_factory.mktemp("run")
    row = run_model("simple_cnn", load_recipe(None, SETS), load_dataset("synthetic"),
                    RunOptions(out=out, device="cpu", progress=False))  # fmt: skip
    return row, out / row["run_id"]


def _eval(*args: str) -> None:
    assert main(["eval", *args, "--device", "cpu", "--no-track"]) == 0


def _row(out) -> dict:
    (path,) = out.rglob("result.json")
    return json.loads(path.read_text())


def _predict_by_hand(run_dir, images: torch.Tensor) -> np.ndarray:
    """The run's best.pt on uint8 ``images`` with the recipe's evaluation normalisation, outside fer-bench's eval."""
    model, spec = create_model("simple_cnn")
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True))
    model.eval()
    norm = make_norms(load_recipe(None, SETS), spec, 48)["eval"]
    with torch.no_grad():
        return model(norm(images)).argmax(1).numpy()


def test_eval_of_a_runs_checkpoint_gives_its_test_figures_exactly(trained, tmp_path):
    row, run_dir = trained
    _eval("--run", str(run_dir), "--out", str(tmp_path))
    got = _row(tmp_path)
    assert got["test"] == row["test"] and got["test_tta"] == row["test_tta"]
    assert got["confusion_matrix"] == row["confusion_matrix"]
    assert got["predictions"]["sha256"] == row["predictions"]["sha256"]  # the same probabilities, bit for bit
    digest = hashlib.sha256((run_dir / "best.pt").read_bytes()).hexdigest()
    assert got["eval"] | {"checkpoint": None} == {
        "checkpoint": None, "checkpoint_sha256": digest, "from_run": row["run_id"], "dataset": "synthetic",
        "data_source": "synthetic(seed=0)", "data_fingerprint": row["data_fingerprint"], "split": "public",
        "batch_size": 512}  # fmt: skip
    assert got["trained_run_id"] == row["run_id"] and got["run_id"] != row["run_id"]
    assert result_tags(got)["fer_bench.kind"] == "eval" and result_tags(row)["fer_bench.kind"] == "model"
    # a bare weights file of the same model under the same evaluation settings scores the same
    _eval("--weights", str(run_dir / "best.pt"), "--model", "simple_cnn", "--set", "eval.batch_size=512",
          "--split", "public", "--out", str(tmp_path / "w"))  # fmt: skip
    bare = _row(tmp_path / "w")
    assert bare["test"] == row["test"] and bare["test_tta"] == row["test_tta"]
    assert bare["weights"]["sha256"] == digest and bare["weights_source"] == f"file:{digest[:12]}"


def test_runs_write_validation_predictions_and_eval_writes_them_for_older_runs(trained, tmp_path):
    row, run_dir = trained
    ref = row["predictions_valid"]
    valid = predictions.read(run_dir / ref["file"])
    assert ref["file"] == "predictions-valid.npz" and len(valid["ids"]) == row["n_val"] == 240
    assert not set(valid["ids"]) & set(predictions.read(run_dir / "predictions.npz")["ids"])
    older = tmp_path / "older"  # the run as an older fer-bench left it: no validation predictions
    shutil.copytree(run_dir, older)
    (older / "predictions-valid.npz").unlink()
    (older / "result.json").write_text(json.dumps({k: v for k, v in row.items() if k != "predictions_valid"}))
    _eval("--run", str(older), "--split", "valid", "--out", str(tmp_path / "ev"))
    assert json.loads((older / "result.json").read_text())["predictions_valid"] == ref
    assert hashlib.sha256((older / "predictions-valid.npz").read_bytes()).hexdigest() == ref["sha256"]
    got = _row(tmp_path / "ev")
    assert got["split"] == "valid" and got["n_test"] == 240 and got["predictions"]["sha256"] == ref["sha256"]


def test_eval_under_corruptions_writes_the_table_and_the_grid(trained, tmp_path):
    row, run_dir = trained
    _eval("--run", str(run_dir), "--out", str(tmp_path), "--set", "eval.tta=[none]",
          "--corruptions", "occlusion_eyes,gaussian_noise", "--severities", "1,5")  # fmt: skip
    got = _row(tmp_path)
    folder = tmp_path / got["run_id"]
    table = json.loads((folder / "corruptions.json").read_text())["table"]
    assert [(r["corruption"], r["severity"]) for r in table] == [
        ("occlusion_eyes", 1), ("occlusion_eyes", 5), ("gaussian_noise", 1), ("gaussian_noise", 5)]  # fmt: skip
    summary = got["corruptions"]
    assert summary["mca"] == pytest.approx(np.mean([r["top1"] for r in table]), abs=1e-4)
    assert summary["mca_ratio"] == pytest.approx(summary["mca"] / row["test"]["top1"], abs=1e-4)
    # cells at or below the scored split's majority-class rate are marked; mCA is also given without them
    labels = load_dataset("synthetic").labels[load_dataset("synthetic").split_indices("public")]
    majority = np.bincount(labels).max() / len(labels) * 100
    assert summary["majority_rate"] == pytest.approx(majority, abs=1e-4)
    low = [r for r in table if r["top1"] <= majority]
    assert [r["at_or_below_majority"] for r in table] == [r["top1"] <= majority for r in table]
    assert summary["cells_at_or_below_majority"] == [f"{r['corruption']} {r['severity']}" for r in low]
    above = [r["top1"] for r in table if r["top1"] > majority]
    assert summary["mca_above_majority"] == (pytest.approx(np.mean(above), abs=1e-4) if above else None)
    assert len((folder / "corruptions.csv").read_text().splitlines()) == 1 + 4
    assert Image.open(folder / "corruptions.png").size == grid_size(2, 2) == (3 * GRID_CELL_PX, 2 * GRID_CELL_PX)
    # cross-check one cell by hand: the eye box (no random draw) over the whole test set at once, in one batch
    data = load_dataset("synthetic")
    test = data.split_indices("public")
    pred = _predict_by_hand(run_dir, corrupt(torch.from_numpy(data.images[test]), "occlusion_eyes", 5))
    assert table[1]["top1"] == pytest.approx(100 * np.mean(pred == data.labels[test]), abs=1e-6)


@pytest.fixture(scope="module")
def bad_inputs(trained, tmp_path_factory):
    _, run_dir = trained
    root = tmp_path_factory.mktemp("bad")
    no_best = root / "no_best"
    shutil.copytree(run_dir, no_best)
    (no_best / "best.pt").unlink()
    five, _ = create_model("simple_cnn", num_classes=5)
    torch.save(five.state_dict(), root / "five.pt")
    return {"RUN": str(run_dir), "BEST": str(run_dir / "best.pt"), "NO_BEST": str(no_best),
            "FIVE": str(root / "five.pt")}  # fmt: skip


@pytest.mark.parametrize("args, expected", [
    (["--weights", "/no/such.pt", "--model", "simple_cnn"], ["/no/such.pt", "no such file"]),
    (["--run", "NO_BEST"], ["no best.pt", "--weights FILE --model NAME"]),
    (["--run", "/no/such/run"], ["/no/such/run", "no such folder"]),
    (["--weights", "BEST", "--model", "resnet18"], ["not a checkpoint of 'resnet18'", "--model it was trained as"]),
    (["--weights", "FIVE", "--model", "simple_cnn"], ["a 5-class head", "synthetic has 7 classes"]),
    (["--weights", "BEST"], ["--weights needs --model"]),
    (["--run", "RUN", "--corruptions", "jpg"], ["unknown corruption 'jpg'", "jpeg"]),
])  # fmt: skip
def test_bad_input_is_one_exit_2_line_and_nothing_is_written(bad_inputs, tmp_path, capsys, args, expected):
    args = [bad_inputs.get(a, a) for a in args]
    store = tmp_path / "mlflow.db"
    code = main(["eval", *args, "--device", "cpu", "--out", str(tmp_path / "out"), "--tracking-uri",
                 f"sqlite:///{store}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.startswith("fer-bench: error: "), err
    assert len(err.strip().splitlines()) == 1, err
    for part in expected:
        assert part in err, err
    assert not (tmp_path / "out").exists() and not store.exists()  # no row, no folder, no tracked run


SUITE = """
name: corrupt
dataset: synthetic
seeds: [0]
splits: [public, private]
set: ["train.epochs=1", "data.limit_train=140", "eval.batch_size=512", "eval.tta=[none]"]
models:
  - {model: simple_cnn, recipe: baseline}
leaderboard: {formats: [md], per_class: false, published: false, plot: false}
corruptions: [occlusion_mouth]
corruption_severities: [2, 4]
"""


def test_a_suite_with_corruptions_scores_every_row_of_its_cells(tmp_path):
    suite = tmp_path / "corrupt.yaml"
    suite.write_text(SUITE)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--no-track", "--no-progress"]) == 0
    rows = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").rglob("result.json"))]
    assert sorted(r["split"] for r in rows) == ["private", "public"]
    for path in (tmp_path / "out").rglob("result.json"):
        row = json.loads(path.read_text())
        c = row["corruptions"]
        assert (c["corruptions"], c["severities"]) == (["occlusion_mouth"], [2, 4])
        assert c["clean_top1"] == row["test"]["top1"]
        assert c["files"] and all((path.parent / f).is_file() for f in c["files"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(SUITE.replace("[occlusion_mouth]", "[occlusion_nose]"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: corruptions: .*'occlusion_nose'"):
        load_suite(bad)


# --- cross-dataset evaluation: a head's classes matched by name to another dataset's --------------------------------


def _cross_folder(root, data, classes: dict[str, int]) -> None:
    """root/{train,test}/<class>/*.png: synthetic private faces of the named classes (None: noise images)."""
    rng = np.random.default_rng(0)
    test = data.split_indices("private")
    for split in ("train", "test"):
        for name, n in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            if name in data.classes:
                faces = data.images[test[data.labels[test] == data.classes.index(name)][:n]]
            else:
                faces = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
            for i, face in enumerate(faces):
                Image.fromarray(face).save(folder / f"{i:03d}.png")


def test_a_run_scored_on_a_dataset_with_other_classes_counts_what_it_lacks(trained, tmp_path):
    from sklearn.metrics import f1_score

    row, run_dir = trained
    synthetic = load_dataset("synthetic")
    root = tmp_path / "faces"
    _cross_folder(root, synthetic, {"happy": 12, "sad": 9, "neutral": 7, "contempt": 5})  # contempt: not in the head
    _eval("--run", str(run_dir), "--dataset", "folder", "--data-dir", str(root), "--split", "private",
          "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"))  # fmt: skip
    got = _row(tmp_path / "out")
    x = got["cross_dataset"]
    assert x["shared"] == ["happy", "neutral", "sad"] and x["lacking"] == ["contempt"]  # the folder's sorted order
    assert x["extra"] == ["angry", "disgust", "fear", "surprise"] and x["trained_on"] == "synthetic"
    assert got["test"]["n_lacking"] == 5 and got["test"]["n_shared"] == 28 and got["n_test"] == 33
    # independently: the model on the folder's test images, labels from the folder names, scored with scikit-learn
    folder = load_dataset("folder", root, tmp_path / "cache")
    idx = folder.split_indices("private")
    pred = _predict_by_hand(run_dir, torch.from_numpy(folder.images[idx]))
    names = [folder.classes[i] for i in folder.labels[idx]]
    truth = np.array([synthetic.classes.index(n) if n in synthetic.classes else -1 for n in names])
    assert got["test"]["top1"] == pytest.approx(100 * np.mean(pred == truth), abs=1e-9)  # contempt: always wrong
    shared = [synthetic.classes.index(c) for c in ("happy", "neutral", "sad")]
    assert got["test"]["macro_f1"] == pytest.approx(100 * f1_score(truth, pred, labels=shared, average="macro",
                                                                    zero_division=0), abs=1e-9)  # fmt: skip
    on = truth >= 0
    assert got["test"]["top1_shared"] == pytest.approx(100 * np.mean(pred[on] == truth[on]), abs=1e-9)
    # the predictions file gives back the top-1 in its label space (the head's classes, then "lacked by the model")
    assert got["classes"] == [*synthetic.classes, "(lacked by the model)"]
    assert predictions.score(tmp_path / "out" / got["run_id"] / "predictions.npz", tuple(got["classes"]))["top1"] \
        == got["test"]["top1"]  # fmt: skip


def test_a_head_with_a_class_the_dataset_lacks_counts_its_predictions_as_errors(tmp_path):
    from fer_bench.data.spec import DATASETS

    ferplus = DATASETS.get("ferplus").classes
    torch.manual_seed(0)
    model, _ = create_model("simple_cnn", num_classes=len(ferplus))
    with torch.no_grad():
        model.get_classifier().bias[ferplus.index("contempt")] += 0.5  # make sure contempt is predicted sometimes
    torch.save(model.state_dict(), tmp_path / "ferplus.pt")
    _eval("--weights", str(tmp_path / "ferplus.pt"), "--model", "simple_cnn", "--trained-on", "ferplus",
          "--split", "private", "--set", "eval.tta=[none]", "--out", str(tmp_path / "out"))  # fmt: skip
    got = _row(tmp_path / "out")
    assert got["cross_dataset"]["extra"] == ["contempt"] and got["test"]["n_lacking"] == 0
    p = predictions.read(tmp_path / "out" / got["run_id"] / "predictions.npz")
    pred = p["probs"].argmax(1)
    assert (pred == ferplus.index("contempt")).any()
    assert got["test"]["top1"] == pytest.approx(100 * np.mean(pred == p["labels"]), abs=1e-9)
    assert got["test"]["top1_restricted"] >= got["test"]["top1"]  # dropping contempt's output can only help here
    # a bare weights file's --trained-on is recorded, so the leaderboard keeps the row apart from synthetic's own,
    # and its macro-F1 interval is over the shared classes (the figure's own classes), never all the columns
    from fer_bench.evaluation import stats
    from fer_bench.report import leaderboard as lb

    assert got["cross_dataset"]["trained_on"] == "ferplus"
    agg = lb.aggregate(lb.frame_from_rows(lb.read_rows([tmp_path / "out"])))
    assert agg["train_dataset"].tolist() == ["ferplus"] and agg["dataset"].tolist() == ["synthetic"]
    shared = [got["classes"].index(c) for c in got["cross_dataset"]["shared"]]
    ci = stats.bootstrap_interval(p["labels"], pred, p["probs"].shape[1], average=shared)["macro_f1"]
    assert (agg.loc[0, "macro_f1_ci_lo"], agg.loc[0, "macro_f1_ci_hi"]) == pytest.approx(ci)
    assert ci[0] <= got["test"]["macro_f1"] <= ci[1]


def test_a_dataset_that_shares_no_class_is_one_exit_2_line(trained, tmp_path, capsys):
    _, run_dir = trained
    root = tmp_path / "faces"
    _cross_folder(root, load_dataset("synthetic"), {"contempt": 2, "pain": 2})
    code = main(["eval", "--run", str(run_dir), "--dataset", "folder", "--data-dir", str(root), "--split", "private",
                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--no-track", "--out",
                 str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    one_line_error(code, err, "--run", run_dir.name)
    assert not (tmp_path / "out").exists()


def test_mca_is_given_with_and_without_the_cells_at_or_below_the_majority_rate():
    from fer_bench.experiment.corruption_scoring import mca_summary

    table = [{"corruption": "contrast", "severity": s, "top1": v} for s, v in enumerate([60.0, 40.0, 24.5, 18.0], 1)]
    got = mca_summary(table, 24.5, clean_top1=64.0)
    assert [r["at_or_below_majority"] for r in table] == [False, False, True, True]  # at the rate counts as below
    assert got["cells_at_or_below_majority"] == ["contrast 3", "contrast 4"]
    assert got["mca"] == pytest.approx(35.625) and got["mca_above_majority"] == pytest.approx(50.0)
    assert got["mca_above_majority_ratio"] == pytest.approx(50.0 / 64.0, abs=1e-4)
