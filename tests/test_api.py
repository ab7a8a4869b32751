"""The Python API, used the way lm-evaluation-harness's ``simple_evaluate`` is: train, score, rank, in one process."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import pytest

import fer_bench
from fer_bench import api
from fer_bench.utils.errors import FerBenchError

TINY = ["train.epochs=1", "data.limit_train=64", "train.batch_size=32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    rows = fer_bench.run(["simple_cnn"], sets=TINY, seeds=[0, 1], out=out, progress=False)
    return out, rows


def test_run_returns_the_rows_it_wrote(trained):
    out, rows = trained
    assert [r["seed"] for r in rows] == [0, 1] and {r["model"] for r in rows} == {"simple_cnn"}
    for row in rows:
        on_disk = json.loads((out / row["run_id"] / "result.json").read_text())
        assert on_disk["test"]["macro_f1"] == row["test"]["macro_f1"]
        assert on_disk["protocol_hash"] == row["protocol_hash"]
    assert "| simple_cnn " in (out / "leaderboard.md").read_text()


def test_evaluate_rescores_a_run_folder_to_its_own_figures(trained, tmp_path):
    out, rows = trained
    row = fer_bench.evaluate(out / rows[0]["run_id"], out=tmp_path, device="cpu")
    assert row["test"]["top1"] == pytest.approx(rows[0]["test"]["top1"])
    assert row["test"]["macro_f1"] == pytest.approx(rows[0]["test"]["macro_f1"])


def test_leaderboard_ranks_the_rows_as_the_cli_does(trained):
    out, rows = trained
    board = fer_bench.leaderboard([out])
    assert list(board.frame["model"]) == ["simple_cnn"] and len(board.rows) == 2
    assert board.frame["macro_f1"].iloc[0] == pytest.approx(sum(r["test"]["macro_f1"] for r in rows) / 2)
    cli = subprocess.run([sys.executable, "-m", "fer_bench", "leaderboard", "--from-results", str(out)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert cli.stdout.strip() == board.text.strip()
    assert str(board) == board.text


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda out, maker: fer_bench.run(["no_such_net"], out=out, tracker=maker), "no_such_net"),
        (lambda out, maker: fer_bench.run(["simple_cnn"], device="cuda:7", out=out, tracker=maker), "cuda"),
        (lambda out, maker: fer_bench.run(["simple_cnn"], seeds=[0, 0], out=out, tracker=maker), "--seeds 0,0"),
        (
            lambda out, maker: fer_bench.run(["simple_cnn"], sets=["eval.split=valid"], out=out, tracker=maker),
            "eval.split",
        ),
        (lambda out, maker: fer_bench.evaluate(out=out, tracker=maker), "--run"),
        (lambda out, maker: fer_bench.evaluate(weights="w.pt", out=out, tracker=maker), "--model"),
        (lambda out, maker: fer_bench.leaderboard(["/no/such/folder"]), "/no/such/folder"),
        (lambda out, maker: fer_bench.leaderboard([out], fmt="markdown"), "--format markdown"),
    ],
)
def test_a_callers_mistake_is_one_error_naming_it_and_nothing_is_written(tmp_path, call, names):
    made = []
    out = tmp_path / "out"
    with pytest.raises(FerBenchError, match=names):
        call(out, lambda: made.append(1))
    assert not made and not out.exists()


def test_the_package_root_loads_the_api_on_first_use():
    code = "import sys, fer_bench; assert 'torch' not in sys.modules; fer_bench.leaderboard; print(fer_bench.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "run" in out and "evaluate" in out and "leaderboard" in out
    with pytest.raises(AttributeError, match="no_such"):
        fer_bench.no_such  # noqa: B018


def test_the_api_docstring_example_runs():
    failed, tried = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert tried >= 8 and failed == 0
