"""Every documented option of `run`, `eval`, `bench`, `tune` and of each dataset reader, given a value of the wrong
type or out of range, ends in one line that names it, exit 2, no traceback, before any work starts: fast, and with
nothing written."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fer_bench.cli import build_parser
from fer_bench.data import DATASETS
from helpers import cli, files_under, one_line_error, write_folder

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "fer2013-cpu.yaml"
SPACE = ROOT / "fer_bench" / "configs" / "search" / "loss-aug.yaml"
MAX_SECONDS = 20  # a check, not a load: even this slow CPU answers well within it

# Options whose value is free text that no local check can refuse (a name, a URL, a store).
FREE = {"--experiment", "--tracking-uri"}

# command -> the arguments every case starts from ({out}, {folder}, {weights}, {file}, {missing} are filled in)
BASE = {
    "run": ["run", "--models", "simple_cnn", "--no-track", "--no-progress", "--out", "{out}"],
    "suite": ["run", "--suite", str(SUITE), "--no-track", "--no-progress", "--out", "{out}"],
    "eval": ["eval", "--weights", "{weights}", "--model", "simple_cnn", "--dataset", "folder", "--data-dir", "{folder}",
             "--no-track", "--out", "{out}"],
    "eval-run": ["eval", "--no-track", "--out", "{out}"],
    "bench": ["bench", "--models", "simple_cnn", "--no-track", "--out", "{out}"],
    "bench-data": ["bench", "--data", "--no-track", "--out", "{out}"],
    "tune": ["tune", "--search", str(SPACE), "--no-track", "--out", "{out}"],
}  # fmt: skip

# (base, option, value, what the message must name; None: the option itself)
CASES = [
    ("run", "--models", "no_such_model", "no_such_model"),
    ("run", "--suite", "{missing}", None),
    ("run", "--suite", "{folder}", None),
    ("suite", "--shard", "3/2", None),
    ("suite", "--shard", "abc", None),
    ("suite", "--jobs", "0", None),
    ("suite", "--jobs", "abc", None),
    ("suite", "--gpus", "x,x", None),
    ("run", "--seeds", "a,b", None),
    ("run", "--seeds", "-1", None),
    ("run", "--recipe", "no_such_recipe", "no_such_recipe"),
    ("run", "--dataset", "no_such_data", "no_such_data"),
    ("run", "--data-dir", "{missing}", None),
    ("run", "--cache-dir", "{file}", None),
    ("run", "--epochs", "abc", None),
    ("run", "--epochs", "0", None),
    ("run", "--img-size", "abc", None),
    ("run", "--img-size", "0", None),
    ("run", "--batch-size", "0", None),
    ("run", "--batch-size", "1.5", None),
    ("run", "--seed", "abc", None),
    ("run", "--seed", "-1", None),
    ("run", "--lr", "abc", None),
    ("run", "--lr", "0", None),
    ("run", "--lr", "nan", None),
    ("run", "--split", "bogus", None),
    ("run", "--limit-train", "abc", None),
    ("run", "--limit-train", "3", None),
    ("run", "--precision", "fp8", None),
    ("run", "--device", "tpu", None),
    ("run", "--device", "cuda:x", None),
    ("run", "--weights", "{missing}", None),
    ("run", "--weights", "{file}", None),
    ("run", "--set", "no_equals", None),
    ("run", "--set", "train.epochs=0", "--set train.epochs=0"),
    ("run", "--set", "train.nope=1", "--set train.nope=1"),
    ("run", "--set", "optim.lr=abc", "--set optim.lr=abc"),
    ("run", "--out", "{file}", None),
    ("run", "--protocol", "{missing}", None),
    ("eval-run", "--run", "{missing}", None),
    ("eval", "--weights", "{missing}", None),
    ("eval", "--weights", "{file}", None),
    ("eval", "--model", "no_such_model", "no_such_model"),
    ("eval", "--recipe", "no_such_recipe", "no_such_recipe"),
    ("eval", "--trained-on", "no_such_data", "no_such_data"),
    ("eval", "--dataset", "folder:size=0", None),
    ("eval", "--data-dir", "{missing}", None),
    ("eval", "--cache-dir", "{file}", None),
    ("eval", "--split", "bogus", None),
    ("eval", "--img-size", "abc", None),
    ("eval", "--img-size", "0", None),
    ("eval", "--img-size", "-4", None),
    ("eval", "--set", "eval.batch_size=0", "--set eval.batch_size=0"),
    ("eval", "--set", "eval.tta=7", "--set eval.tta=7"),
    ("eval", "--device", "tpu", None),
    ("eval", "--protocol", "{missing}", None),
    ("eval", "--corruptions", "no_such_corruption", "no_such_corruption"),
    ("eval", "--severities", "0,9", None),
    ("eval", "--severities", "abc", None),
    ("eval", "--corruption-seed", "abc", None),
    ("eval", "--corruption-seed", "-1", None),
    ("eval", "--out", "{file}", None),
    ("bench", "--models", "no_such_model", "no_such_model"),
    ("bench", "--img-size", "abc", None),
    ("bench", "--img-size", "48,0", None),
    ("bench", "--batch-size", "0", None),
    ("bench", "--precision", "fp8", None),
    ("bench", "--grid-cap-s", "0", None),
    ("bench", "--compile", "fastest", None),
    ("bench", "--device", "tpu", None),
    ("bench", "--repeats", "0", None),
    ("bench", "--steps", "0", None),
    ("bench", "--warmup-s", "-1", None),
    ("bench", "--warmup-s", "abc", None),
    ("bench-data", "--pairs", "3", None),
    ("bench-data", "--data-batch-size", "0", None),
    ("bench-data", "--window", "60", None),
    ("bench-data", "--window", "0,0", None),
    ("bench-data", "--e2e-model", "no_such_model", "no_such_model"),
    ("bench-data", "--e2e-steps", "0", None),
    ("bench-data", "--e2e-pairs", "3", None),
    ("bench", "--data-dir", "{missing}", None),
    ("bench", "--dataset", "no_such_data", "no_such_data"),
    ("bench", "--out", "{file}", None),
    ("tune", "--search", "{missing}", None),
    ("tune", "--storage", "{file}", None),  # a file Optuna did not write: never appended to
    ("tune", "--storage", "sqlite:///x.db", None),
    ("tune", "--model", "no_such_model", "no_such_model"),
    ("tune", "--recipe", "no_such_recipe", "no_such_recipe"),
    ("tune", "--dataset", "no_such_data", "no_such_data"),
    ("tune", "--data-dir", "{missing}", None),
    ("tune", "--cache-dir", "{file}", None),
    ("tune", "--trials", "0", None),
    ("tune", "--trials", "abc", None),
    ("tune", "--epochs", "0", None),
    ("tune", "--img-size", "0", None),
    ("tune", "--limit-train", "3", None),
    ("tune", "--set", "train.nope=1", "--set train.nope=1"),
    ("tune", "--workers", "0", None),
    ("tune", "--gpus", "x,x", None),
    ("tune", "--device", "tpu", None),
    ("tune", "--seed", "-1", None),
    ("tune", "--out", "{file}", None),
    ("tune", "--final-seeds", "a", None),
]

# dataset -> {option: bad values}; every option `fer-bench ls datasets` lists, and one that is no option
DATASET_CASES = {
    "folder": {"classes": ["happy+happy", "happy++sad"], "size": ["abc", "-3", "0"], "channels": ["2"]},
    "ferplus": {"labels": ["votes"], "fer2013": ["/no/such/fer2013"]},
}
NOT_AN_OPTION = "nope=1"


def _command(base: str) -> str:
    return BASE[base][0]


def documented_options(command: str) -> set[str]:
    """The options `fer-bench COMMAND --help` shows that take a value, each by its first long spelling (an alias
    such as `run --model` for `--models` is the same option)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {next(s for s in a.option_strings if s.startswith("--")) for a in sub._actions
            if a.option_strings and a.nargs != 0 and a.help != argparse.SUPPRESS}  # fmt: skip


@pytest.mark.parametrize("command", ["run", "eval", "bench", "tune"])
def test_every_documented_option_has_a_bad_value_case(command):
    covered = {opt for base, opt, _, _ in CASES if _command(base) == command}
    assert documented_options(command) - FREE - covered == set()


def test_every_dataset_option_has_a_bad_value_case():
    assert {n: set(s.options) for n in DATASETS.names() if (s := DATASETS.get(n)).options} == {
        n: set(c) for n, c in DATASET_CASES.items()
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """What the cases point at, made once: an image folder, a 3-class simple_cnn state dict, a plain file."""
    import torch

    # The handlers' imports (torch, timm, pandas, optuna), once: the time limit is for the checks, not for imports.
    import fer_bench.bench.model  # noqa: F401
    import fer_bench.experiment.rescoring  # noqa: F401
    import fer_bench.experiment.runner  # noqa: F401
    import fer_bench.experiment.tune  # noqa: F401
    import fer_bench.report.leaderboard  # noqa: F401
    from fer_bench.models import create_model

    root = tmp_path_factory.mktemp("inputs")
    write_folder(root / "faces")
    model, _ = create_model("simple_cnn", num_classes=3)
    torch.save(model.state_dict(), root / "w3.pt")
    (root / "a-file.txt").write_text("a file, not a folder or a checkpoint")
    return root


@pytest.fixture
def where(inputs, tmp_path) -> dict[str, str]:
    return {"out": str(tmp_path / "out"), "folder": str(inputs / "faces"), "weights": str(inputs / "w3.pt"),
            "file": str(inputs / "a-file.txt"), "missing": str(tmp_path / "no-such-thing")}  # fmt: skip


def _check(capsys, roots: list[Path], argv: list[str], named: str) -> None:
    before = [files_under(r) for r in roots]
    code, err, seconds = cli(capsys, *argv)
    one_line_error(code, err, named)
    assert seconds < MAX_SECONDS, f"{seconds:.1f} s: the check came after some work"
    assert [files_under(r) for r in roots] == before, "something was written"


@pytest.mark.parametrize(("base", "option", "value", "named"), CASES, ids=[f"{b} {o} {v}" for b, o, v, _ in CASES])
def test_bad_option_value_is_one_line_exit_2_before_any_work(capsys, tmp_path, inputs, where, base, option, value,
                                                            named):  # fmt: skip
    argv = [a.format(**where) for a in BASE[base]] + [option, value.format(**where)]
    _check(capsys, [tmp_path, inputs], argv, named or option)


DATA_ARGS = [(name, opt, bad) for name, opts in DATASET_CASES.items() for opt, bads in opts.items() for bad in bads]
DATA_ARGS += [(name, None, NOT_AN_OPTION) for name in DATASETS.names()]


@pytest.mark.parametrize(("dataset", "option", "value"), DATA_ARGS, ids=[f"{d}:{o}={v}" for d, o, v in DATA_ARGS])
@pytest.mark.parametrize("command", ["run", "eval"])
def test_bad_dataset_option_is_one_line_exit_2_before_any_work(capsys, tmp_path, inputs, where, dataset, option,
                                                               value, command):  # fmt: skip
    text = f"{option}={value}" if option else value
    base = [a.format(**where) for a in BASE[command]]
    i = base.index("--dataset") if "--dataset" in base else len(base)
    base[i : i + 2] = []
    argv = base + ["--dataset", f"{dataset}:{text}", "--data-dir", where["folder"]]
    _check(capsys, [tmp_path, inputs], argv, f"{dataset}:{text}")
