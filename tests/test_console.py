"""What a newcomer sees on the console: `ls` that fits the terminal, help on every option, quiet libraries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fer_bench.cli import main
from fer_bench.cli.ls import KINDS

# ---- `ls` fits $COLUMNS; --long is the full form ----


@pytest.mark.parametrize("columns", [100, 120])
@pytest.mark.parametrize("kind", KINDS)
def test_ls_fits_the_terminal(kind, columns, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["ls", kind]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= columns, max(lines, key=len)


def test_ls_wraps_without_losing_words_and_long_gives_every_column(capsys, monkeypatch):
    from fer_bench.recipes import list_recipes, load_recipe

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["ls", "recipes"]) == 0
    short = capsys.readouterr().out
    words = short.split()
    for name in list_recipes():
        assert name in words and all(w in words for w in load_recipe(name).description.split())
    assert main(["ls", "datasets", "--long"]) == 0
    full = capsys.readouterr().out
    assert max(map(len, full.splitlines())) > 120 and "angry disgust fear happy sad surprise neutral" in full


@pytest.mark.parametrize("kind", KINDS)
def test_ls_never_cuts_a_name_a_user_types(kind, capsys, monkeypatch):
    from fer_bench.recipes import list_recipes
    from fer_bench.utils.console import fit_table

    assert "naik-effnetb2" in fit_table(["name", "recipe"], [["a", "naik-effnetb2 and more"]], columns=12).split()
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["ls", kind, "--long"]) == 0
    names = {w for w in capsys.readouterr().out.split() if w in set(list_recipes())}
    assert main(["ls", kind]) == 0
    short = capsys.readouterr().out.split()
    assert names <= set(short), names - set(short)


def test_a_table_on_a_narrow_console_overflows_and_never_breaks(capsys):
    from fer_bench.utils.console import wrap_notes

    md = (Path(__file__).resolve().parents[1] / "results" / "fer2013-converged" / "leaderboard.md").read_text()
    rows = [line for line in md.splitlines() if "|" in line]
    assert rows and max(map(len, rows)) > 80  # the case: a table wider than a piped console's 80 columns
    assert [line for line in wrap_notes(md, 80).splitlines() if "|" in line] == rows
    notes = [line for line in wrap_notes(md, 80).splitlines() if "|" not in line and not line.startswith("-")]
    assert notes and max(map(len, notes)) <= 80  # the notes wrap


# ---- help on every option, its default shown; --version; both spellings of --model(s) ----


def _options(parser, name: str = "fer-bench"):
    """(command, action) of every option of every (sub)command."""
    import argparse

    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub, p in a.choices.items():
                yield from _options(p, f"{name} {sub}")
        elif (
            a.option_strings
            and a.help != argparse.SUPPRESS
            and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
        ):
            yield name, parser, a


def test_every_option_has_help_that_shows_its_default():
    from fer_bench.cli import build_parser

    found = list(_options(build_parser()))
    assert len(found) > 100  # every command's options, not a few
    no_help, no_default = [], []
    for cmd, parser, a in found:
        text = parser._get_formatter()._expand_help(a) if a.help else ""
        if not text.strip():
            no_help.append(f"{cmd} {a.option_strings[0]}")
        elif a.nargs != 0 and not a.required and "default:" not in text:  # a flag is off unless given
            no_default.append(f"{cmd} {a.option_strings[0]}")
    assert no_help == [] and no_default == []
    assert not [f"{cmd} {a.option_strings[0]}" for cmd, parser, a in found
                if "(default: )" in parser._get_formatter()._expand_help(a)]  # fmt: skip


def test_version_and_what_fer_bench_is(capsys):
    from importlib.metadata import version

    from fer_bench.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"fer-bench {version('fer-bench')}"
    assert "facial" in build_parser().description and "import" not in build_parser().description


def test_model_and_models_are_both_accepted(capsys):
    from fer_bench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "--model", "simple_cnn"]).models == ["simple_cnn"]
    search = str(Path(__file__).resolve().parents[1] / "fer_bench" / "configs" / "search" / "loss-aug.yaml")
    for cmd in (["tune", "--search", search], ["eval", "--weights", "w.pt"]):
        assert parser.parse_args([*cmd, "--models", "simple_cnn"]).model == "simple_cnn"
    assert main(["tune", "--search", search, "--models", "resnet18,simple_cnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "one model" in err and "resnet18,simple_cnn" in err


def test_bench_offers_no_checkpoint_to_log():
    from fer_bench.cli import build_parser

    opts = {a.option_strings[0] for cmd, _, a in _options(build_parser()) if cmd == "fer-bench bench"}
    assert "--no-track" in opts and "--log-checkpoint" not in opts


# ---- the console of a run: quiet libraries, "model i/N" and "epoch i/N", a line per phase, wrapped notes ----


def _child(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"} | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "fer_bench", *args], capture_output=True, text=True, env=env)


def test_no_third_party_log_lines_unless_verbose(tmp_path):
    """A fresh MLflow store logs its table creation at INFO: not shown by default, shown with --verbose."""
    res = _child("leaderboard", "--tracking-uri", f"sqlite:///{tmp_path}/a.db")
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1, res.stderr  # the one-line error alone
    assert res.stderr.startswith("fer-bench: error:") and "--experiment" in res.stderr and "a.db" in res.stderr
    res = _child("--verbose", "leaderboard", "--tracking-uri", f"sqlite:///{tmp_path}/b.db")
    assert "INFO mlflow" in res.stderr


def test_a_run_says_model_and_epoch_of_n_and_each_phase(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["run", "--models", "simple_cnn", "--seeds", "0,1", "--epochs", "1", "--limit-train", "70",
                 "--no-track", "--no-progress", "--out", str(tmp_path), "--set", "eval.tta=[none,hflip]",
                 "--set", "eval.batch_size=512"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    heads = [line for line in err.splitlines() if line.startswith("==")]
    assert [h.split(":")[0] for h in heads] == ["== model 1/2", "== model 2/2"]
    assert all(h.count("synthetic") == 1 for h in heads)  # the dataset said once
    assert sum(line.strip().startswith("epoch 1/1") for line in err.splitlines()) == 2
    for said in ("testing on test", "TTA hflip", "validation hold-out", "inference throughput", "writing plots"):
        assert err.count(said) == 2, said
    notes = [line for line in out.splitlines() if "|" not in line and not line.startswith("**")]  # not the table
    assert notes and max(map(len, notes)) <= 100  # footnotes wrapped to the terminal
