"""Check that a results folder's plan was committed before any of its rows was produced.

    python tools/plan_check.py results/fer2013-compare results/fer2013-compare/PLAN.md

A plan fixed before any figure exists is only shown to be so by git: the commit that last changed the plan's text
must be an ancestor of (or equal to) the commit every row (``result.json``, ``validation.json``) names in
``git_sha``. A row made from uncommitted changes (``<sha>-dirty``) or from a commit this repository does not hold
fails too. A plan may be amended only by appending dated entries under a final ``## Amendments`` heading: the text
above it is the plan that rows descend from, and an amendment that rewrites an earlier one is a problem. Exit code 1
and one line per problem.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROW_FILES = ("result.json", "validation.json")
AMENDMENTS = re.compile(r"^## Amendments\s*$", re.M)  # the plan's last section: dated entries, appended only


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)


def _checkout(path: Path) -> Path:
    """The nearest existing folder at or above ``path``: where git runs (the plan may not exist yet)."""
    path = path.resolve()
    return next(p for p in (path, *path.parents) if p.is_dir())


def split_plan(text: str) -> tuple[str, str]:
    """(the plan, its amendments section or ""): the text before (trailing blank lines aside) and from the
    ``## Amendments`` heading."""
    m = AMENDMENTS.search(text)
    return (text[: m.start()].rstrip(), text[m.start() :]) if m else (text.rstrip(), "")


def _versions(plan_file: Path) -> list[tuple[str, str]]:
    """(commit, the file's text at it) for every commit that changed ``plan_file``, newest first."""
    plan_file = plan_file.resolve()
    repo = _checkout(plan_file)
    shas = _git(repo, "log", "--format=%H", "--", str(plan_file)).stdout.split()
    top = _git(repo, "rev-parse", "--show-toplevel").stdout.strip()
    rel = plan_file.relative_to(Path(top).resolve()).as_posix() if top else plan_file.name
    return [(sha, _git(repo, "show", f"{sha}:{rel}").stdout) for sha in shas]


def plan_commit(plan_file: Path) -> str | None:
    """The commit that last changed the plan's text above its amendments, or None when no commit holds the file."""
    versions = _versions(plan_file)
    if not versions:
        return None
    latest = split_plan(versions[0][1])[0]
    commit = versions[0][0]
    for sha, text in versions[1:]:  # back in time while only the amendments changed
        if split_plan(text)[0] != latest:
            break
        commit = sha
    return commit


def amendment_problems(plan_file: Path, first_test_row: datetime | None = None) -> list[str]:
    """Amendments that rewrote (rather than appended to) the ones before them, and amendments committed after the
    first row with test figures (``first_test_row``: a plan is never changed once a test figure exists)."""
    versions = _versions(plan_file)[::-1]
    problems = []
    repo = _checkout(plan_file.resolve())
    for (_, before), (sha, after) in zip(versions, versions[1:], strict=False):
        if first_test_row is None or split_plan(before)[1] == split_plan(after)[1]:
            continue
        when = datetime.fromisoformat(_git(repo, "log", "-1", "--format=%cI", sha).stdout.strip())
        if when > first_test_row:
            problems.append(f"{plan_file}: commit {sha[:12]} amended the plan at {when.isoformat()}, after the first "
                            f"row with test figures ({first_test_row.isoformat()})")  # fmt: skip
    for (_, before), (sha, after) in zip(versions, versions[1:], strict=False):
        old, new = split_plan(before)[1], split_plan(after)[1]
        if split_plan(before)[0] == split_plan(after)[0] and not new.startswith(old):
            problems.append(f"{plan_file}: commit {sha[:12]} rewrote an earlier amendment; amendments are appended")
    return problems


def _first_test_row(rows: list[Path]) -> datetime | None:
    """When the earliest row with test figures (a ``result.json`` holding ``test``) was written, or None."""
    times = []
    for path in rows:
        row = json.loads(path.read_text())
        if path.name == "result.json" and "test" in row and row.get("timestamp"):
            times.append(datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%S%z"))
    return min(times, default=None)


def check_plan_precedes_rows(results_dir: Path, plan_file: Path, allow_dirty: bool = False) -> list[str]:
    """The problems found: rows whose ``git_sha`` does not descend from the plan's commit; empty when all do.

    Example (in a checkout whose results folder follows its plan): ``check_plan_precedes_rows(d, d / "README.md")
    == []``.
    """
    plan = plan_commit(plan_file)
    if plan is None:
        return [f"{plan_file}: not committed; commit the plan before the first row"]
    repo = _checkout(plan_file)
    rows = sorted(f for name in ROW_FILES for f in Path(results_dir).rglob(name))
    if not rows:
        return [f"{results_dir}: no rows ({' or '.join(ROW_FILES)}) to check"]
    problems = amendment_problems(plan_file, _first_test_row(rows))
    for path in rows:
        sha = str(json.loads(path.read_text()).get("git_sha", ""))
        base = sha.removesuffix("-dirty")
        if sha != base and not allow_dirty:
            problems.append(f"{path}: git_sha {sha} ran from uncommitted changes")
            continue
        rc = _git(repo, "merge-base", "--is-ancestor", plan, base).returncode if base else 128
        if rc == 1:
            problems.append(f"{path}: git_sha {sha} does not descend from the plan's commit {plan[:12]}")
        elif rc != 0:
            problems.append(f"{path}: git_sha {sha!r} is not a commit of this repository")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results_dir", type=Path)
    p.add_argument("plan_file", type=Path)
    p.add_argument("--allow-dirty", action="store_true", help="accept rows made from uncommitted changes")
    args = p.parse_args(argv)
    problems = check_plan_precedes_rows(args.results_dir, args.plan_file, args.allow_dirty)
    for line in problems:
        print(line)
    if not problems:
        print(f"every row under {args.results_dir} descends from the commit of {args.plan_file}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
