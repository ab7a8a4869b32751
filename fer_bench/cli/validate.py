"""`fer-bench validate`: load each YAML file as the command that reads it would, report the first problem."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fer_bench.utils.errors import FerBenchError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="check recipes, suites, search spaces and reference rows: unknown keys, types, ranges, choices",
        description="Tell each YAML file's kind (by content, else by location) and load it as its command would: "
        "a recipe as `fer-bench run --recipe` (includes resolved, every key, type and range checked), a suite "
        "(`models:`) as `fer-bench run --suite` (every cell's recipe resolved), a search space (`params:`) as "
        "`fer-bench tune --search` (every path, bound and choice checked against the recipe schema), reference "
        "rows (a list: published.yaml) as `fer-bench leaderboard --published`. Prints the kind and the first "
        "problem of each file.",
    )
    p.add_argument("paths", nargs="*", type=Path,
                   help="YAML files or folders (default: the shipped configs)")  # fmt: skip
    p.set_defaults(handler=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from fer_bench.recipes import RECIPE_DIR

    files: list[Path] = []
    for p in args.paths or [RECIPE_DIR.parent]:
        files += sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")]) if p.is_dir() else [p]
    checkers = _validators()
    failed = 0
    for f in files:
        kind = _file_kind(f)
        try:
            loaded = checkers[kind](f)
            print(f"ok      {kind:<14} {f}")
            _note_needs_weights(loaded, f)
        except FerBenchError as exc:
            failed += 1
            msg = str(exc)
            for shown in (f"{f}: ", f"{f.resolve()}: "):  # the file leads the line once, not twice
                msg = msg.removeprefix(shown)
            print(f"INVALID {kind:<14} {f}: {msg}")
    print(f"{len(files) - failed} valid, {failed} invalid")
    return 2 if failed else 0


def _note_needs_weights(loaded: object, path: Path) -> None:
    """A recipe that freezes part of the model is valid, but runs only with loaded weights: say so."""
    from fer_bench.recipes.checks import frozen_without_weights, scratch_variant
    from fer_bench.recipes.schema import Recipe

    if isinstance(loaded, Recipe) and frozen_without_weights(loaded, has_weights=loaded.input.pretrained):
        alt = f"; from scratch: --recipe {v}" if (v := scratch_variant(loaded)) else ""
        print(f"info    {'':<14} {path}: needs --pretrained or --weights (it freezes part of the model{alt})")


def _validators() -> dict[str, Callable[[Path], object]]:
    """Each kind of file `validate` knows, checked by the loader that `run`, `tune` or `leaderboard` uses."""
    from fer_bench.experiment.pilots import read_pilots
    from fer_bench.experiment.tune_space import read_space
    from fer_bench.recipes import load_recipe
    from fer_bench.report.published import load_published

    return {"recipe": lambda f: load_recipe(str(f)), "suite": _suite, "search space": read_space,
            "reference rows": load_published, "pilot timings": read_pilots}  # fmt: skip


def _suite(path: Path) -> object:
    """A suite as `run --suite` loads it; a budgeted suite whose pilots file is not written yet is valid (its
    cells resolve at the recipes' epochs) and says that `--pilot` comes first."""
    from fer_bench.experiment.suite import load_suite

    suite = load_suite(path, pilot=True)
    if suite.budget_s is not None and not Path(suite.pilots or "").is_file():
        print(
            f"info    {'':<14} {path}: pilots file {suite.pilots} not written yet; "
            f"`fer-bench run --suite {path} --pilot` writes it before the first cell"
        )
        return suite
    return load_suite(path)


def _file_kind(path: Path) -> str:
    """What a YAML file is, by content: a list is reference rows, `models:` makes a suite, `params:` a search space.
    Content that says none of these falls back to where the file lies (a ``search/`` folder, ``benchmarks/``,
    ``published*.yaml``), so a broken search space is reported as one; anything else is a recipe."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        data = None  # the kind's own loader reports it
    if isinstance(data, list):
        return "reference rows"
    for key, kind in (("models", "suite"), ("params", "search space"), ("lines", "pilot timings")):
        if isinstance(data, dict) and key in data:
            return kind
    if path.name.startswith("published"):
        return "reference rows"
    return {"search": "search space", "benchmarks": "suite"}.get(path.parent.name, "recipe")
