"""Run folders: one naming scheme, named by the protocol, so a rerun with other settings never replaces a row."""

from __future__ import annotations

import json

import pytest

from fer_bench.cli import main
from fer_bench.experiment.protocol import run_name

# a few seconds on a slow CPU: 140 images, one epoch, no TTA
TINY = ["run", "--models", "simple_cnn", "--epochs", "1", "--limit-train", "140", "--no-progress", "--no-track",
        "--set", "eval.tta=[none]", "--set", "eval.batch_size=512"]  # fmt: skip


def _files(root) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of other settings into one --out: (out, the first run's files after it, the table after each)."""
    out = tmp_path_factory.mktemp("runs")
    assert main([*TINY, "--out", str(out)]) == 0
    (first,) = [p.parent for p in out.glob("*/result.json")]
    files, table1 = _files(first), (out / "leaderboard.md").read_text()
    assert main([*TINY, "--out", str(out), "--set", "optim.lr=0.003"]) == 0
    return out, first, files, table1, (out / "leaderboard.md").read_text()


def test_a_rerun_with_other_settings_writes_beside_the_first(two_runs):
    out, first, files, _, _ = two_runs
    rows = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/result.json")}
    assert len(rows) == 2 and len({r["protocol_hash"] for r in rows.values()}) == 2
    assert _files(first) == files  # the first run's folder, byte for byte
    for name, r in rows.items():  # each folder is named by its row's protocol (and says which run it is)
        assert name == r["run_id"] == run_name(r["model"], r["recipe"], r["dataset"], r["split"], r["seed"],
                                               r["protocol_hash"])  # fmt: skip
        assert name.endswith(r["protocol_hash"]) and f"-s{r['seed']}-" in name


def test_the_leaderboard_in_out_holds_both_runs(two_runs):
    out, _, _, table1, table2 = two_runs
    lines = lambda t: [ln for ln in t.splitlines() if "simple_cnn" in ln]  # noqa: E731
    assert len(lines(table1)) == 1 and len(lines(table2)) == 2  # one line per protocol: both rows, not the last


def test_other_epochs_are_another_folder(tmp_path):
    """The epochs were missing from the folder name: a longer run took the shorter one's folder."""
    from fer_bench.data import load_dataset
    from fer_bench.experiment.plan import RunOptions, run_folder
    from fer_bench.recipes import load_recipe

    data, opts = load_dataset("synthetic"), RunOptions(out=tmp_path, device="cpu")
    a, b = (run_folder("simple_cnn", load_recipe(None, [f"train.epochs={e}"]), data, opts) for e in (1, 2))
    assert a != b and a.parent == b.parent == tmp_path


def test_suite_rows_use_the_run_folder_name(tmp_path):
    """A suite cell's rows sit in ``OUT/<run folder>`` as `fer-bench run` names them, not a layout of their own."""
    from fer_bench.data import load_dataset
    from fer_bench.experiment.suite import SuiteModel, SuiteSpec, cells, result_file

    (cell,) = cells(SuiteSpec(name="x", models=(SuiteModel("simple_cnn"),), splits=("public", "private")))
    got = result_file(tmp_path, cell, "private", load_dataset("synthetic"), "0123456789ab")
    assert got == tmp_path / run_name("simple_cnn", cell.recipe.name, "synthetic", "private", 0, "0123456789ab") \
        / "result.json"  # fmt: skip


def test_an_evaluation_folder_is_named_by_the_same_function(two_runs, tmp_path):
    out, first, _, _, _ = two_runs
    row = json.loads((first / "result.json").read_text())
    assert main(["eval", "--run", str(first), "--out", str(tmp_path), "--device", "cpu", "--no-track"]) == 0
    (folder,) = [p.parent for p in tmp_path.glob("*/result.json")]
    key = folder.name.rsplit("-", 1)[1]
    assert folder.name == run_name("simple_cnn", row["recipe"], "synthetic", "test", row["seed"], key, kind="eval")
    assert len(key) == 12 and key != row["protocol_hash"]


def test_a_rerun_of_the_same_protocol_says_it_replaces_its_row(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    (folder,) = [p.parent for p in tmp_path.glob("*/result.json")]

    def notes(err: str) -> list[str]:  # the notes that name the run's folder
        return [line for line in err.splitlines() if line.startswith("note:") and folder.name in line]

    assert notes(capsys.readouterr().err) == []
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    (note,) = notes(capsys.readouterr().err)  # the note names the folder and how to continue instead
    assert "--resume" in note
    assert len(list(tmp_path.glob("*/result.json"))) == 1
