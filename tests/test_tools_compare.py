"""The comparison's project checks: the plan's commit precedes every row, and the CPU-share sampler."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import cpu_share  # noqa: E402
import plan_check  # noqa: E402


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, env=env).stdout.strip()


def _commit(repo: Path, name: str, text: str) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    _git(repo, "add", name)
    _git(repo, "commit", "-q", "-m", name)
    return _git(repo, "rev-parse", "HEAD")


def _row(repo: Path, cell: str, sha: str, name: str = "result.json") -> None:
    path = repo / "results" / "cmp" / cell / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"git_sha": sha}))


def test_rows_must_descend_from_the_commit_of_the_plan(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    before = _commit(repo, "code.py", "x = 1\n")
    plan_file = repo / "results" / "cmp" / "README.md"
    assert plan_check.check_plan_precedes_rows(repo / "results" / "cmp", plan_file) == [
        f"{plan_file}: not committed; commit the plan before the first row"]  # fmt: skip
    plan = _commit(repo, "results/cmp/README.md", "# plan\n")
    after = _commit(repo, "code.py", "x = 2\n")
    _row(repo, "a", plan)  # the plan's own commit counts as its descendant
    _row(repo, "b", after, "validation.json")  # a blind cell's row too
    assert plan_check.check_plan_precedes_rows(repo / "results" / "cmp", plan_file) == []
    assert plan_check.plan_commit(plan_file) == plan
    _row(repo, "c", before)
    _row(repo, "d", f"{after}-dirty")
    _row(repo, "e", "0" * 40)
    _git(repo, "checkout", "-q", "-b", "side", before)  # a branch that never saw the plan
    side = _commit(repo, "other.py", "y = 1\n")
    _git(repo, "checkout", "-q", "-")
    _row(repo, "f", side)
    problems = plan_check.check_plan_precedes_rows(repo / "results" / "cmp", plan_file)
    assert [p.split("/cmp/")[1].split("/")[0] for p in problems] == ["c", "d", "e", "f"]
    assert "does not descend" in problems[0] and "uncommitted" in problems[1] and "not a commit" in problems[2]
    assert "does not descend" in problems[3]
    assert len(plan_check.check_plan_precedes_rows(repo / "results" / "cmp", plan_file, allow_dirty=True)) == 3
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "plan_check.py"), str(repo / "results" / "cmp"),
                          str(plan_file)], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 1 and res.stdout.count("\n") == 4


def test_a_plan_changed_after_a_row_fails_it(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    first = _commit(repo, "results/cmp/README.md", "# plan\n")
    _row(repo, "a", first)
    _commit(repo, "results/cmp/README.md", "# plan, changed after the row\n")
    problems = plan_check.check_plan_precedes_rows(repo / "results" / "cmp", repo / "results" / "cmp" / "README.md")
    assert len(problems) == 1 and "does not descend" in problems[0]


def _planned_repo(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """A git repository holding results/cmp/PLAN.md: (repo, the plan file, its folder, the plan's commit)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    plan = _commit(repo, "results/cmp/PLAN.md", "# plan\n\nE = 3\n")
    return repo, repo / "results" / "cmp" / "PLAN.md", repo / "results" / "cmp", plan


def test_an_amendment_after_the_first_test_row_is_a_problem_and_blank_lines_change_no_plan(tmp_path):
    repo, plan_file, cmp, plan = _planned_repo(tmp_path)
    _commit(repo, "results/cmp/PLAN.md", "# plan\n\nE = 3\n## Amendments\n\n- E = 4\n")  # no blank line above
    assert plan_check.plan_commit(plan_file) == plan
    row = cmp / "a" / "result.json"
    row.parent.mkdir(parents=True)
    row.write_text(json.dumps({"git_sha": plan, "test": {"top1": 50.0}, "timestamp": "2000-01-01T00:00:00+0000"}))
    problems = plan_check.check_plan_precedes_rows(cmp, plan_file)  # the amendment came after that test row
    assert len(problems) == 1 and "after the first row with test figures" in problems[0]
    row.write_text(json.dumps({"git_sha": plan, "test": {"top1": 50.0}, "timestamp": "2999-01-01T00:00:00+0000"}))
    assert plan_check.check_plan_precedes_rows(cmp, plan_file) == []


def test_a_plan_amended_at_its_end_keeps_the_rows_made_before_the_amendment(tmp_path):
    repo, plan_file, cmp, plan = _planned_repo(tmp_path)
    _row(repo, "a", plan)
    amended = _commit(repo, "results/cmp/PLAN.md", "# plan\n\nE = 3\n\n## Amendments\n\n- 2026-12-07: E = 4 for b\n")
    _row(repo, "b", amended)
    assert plan_check.plan_commit(plan_file) == plan
    assert plan_check.check_plan_precedes_rows(cmp, plan_file) == []
    # a second amendment appended: still fine
    _commit(repo, "results/cmp/PLAN.md", "# plan\n\nE = 3\n\n## Amendments\n\n- 2026-12-07: E = 4 for b\n- later\n")
    assert plan_check.check_plan_precedes_rows(cmp, plan_file) == []
    # rewriting an earlier amendment is a problem; so is a change above the amendments (both rows then fail)
    _commit(repo, "results/cmp/PLAN.md", "# plan\n\nE = 3\n\n## Amendments\n\n- 2026-12-07: E = 5 for b\n")
    problems = plan_check.check_plan_precedes_rows(cmp, plan_file)
    assert len(problems) == 1 and "rewrote an earlier amendment" in problems[0]
    body = _commit(repo, "results/cmp/PLAN.md", "# plan\n\nE = 6\n\n## Amendments\n\n- 2026-12-07: E = 5 for b\n")
    assert plan_check.plan_commit(plan_file) == body
    problems = plan_check.check_plan_precedes_rows(cmp, plan_file)
    assert sum("does not descend" in p for p in problems) == 2


BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_cpu_share_counts_the_trainers_tree_against_the_busy_machine(tmp_path):
    # the "trainer" burns CPU itself and in a child, as a trainer with worker processes does
    code = ("import subprocess, sys\n"
            f"child = subprocess.Popen([sys.executable, '-c', {BURN.format(s=30)!r}])\n"
            + BURN.format(s=30) + "child.wait()\n")  # fmt: skip
    trainer = subprocess.Popen([sys.executable, "-c", code])
    tree = [trainer.pid]
    try:
        deadline = time.time() + 60
        while len(tree) < 2 and time.time() < deadline:  # the child is started
            time.sleep(0.2)
            tree = cpu_share.process_tree(trainer.pid)
        assert len(tree) == 2
        out = tmp_path / "cpu-share.txt"
        start = time.time()
        assert cpu_share.main(["--pid", str(trainer.pid), "--interval", "1", "--count", "3", "--out", str(out)]) == 0
        assert time.time() - start >= 3
        own = cpu_share.tree_cpu_s(trainer.pid)
    finally:
        for pid in reversed(tree):  # the child, then the trainer: each by its own id
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        trainer.wait()
    lines = out.read_text().splitlines()
    assert lines[0] == f"# utc trainer_cpu_s machine_busy_cpu_s share_pct (since start; pid {trainer.pid}; every 1 s)"
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 3 and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r[0]) for r in rows)
    cpu, busy, share = ([float(r[i]) for r in rows] for i in (1, 2, 3))
    assert cpu == sorted(cpu) and busy == sorted(busy) and busy[0] > 0
    assert all(c <= b + 0.05 for c, b in zip(cpu, busy, strict=True))  # the trainer is part of the machine
    for c, b, s in zip(cpu, busy, share, strict=True):  # 100 c / b from the unrounded seconds (printed to 0.05)
        assert 100 * max(c - 0.05, 0) / (b + 0.05) - 0.05 <= s <= 100 * (c + 0.05) / max(b - 0.05, 1e-9) + 0.05
    assert cpu[-1] <= own  # since the sampler's start, not since the trainer's


def test_cpu_share_refuses_a_pid_that_is_not_running(capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert cpu_share.main(["--pid", str(dead.pid), "--count", "1"]) == 2
    assert "no live process" in capsys.readouterr().out


def test_cpu_share_sums_the_segments_files_into_cpu_hours(tmp_path, capsys):
    head = "# utc trainer_cpu_s machine_busy_cpu_s share_pct (since start; pid 1; every 60 s)\n"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(head + "2026-12-07T01:00:00Z 60.0 61.0 98.4\n2026-12-07T01:01:00Z 3600.0 4000.0 90.0\n")
    b.write_text("".join(head + f"2026-12-07T0{h}:00:00Z 1800.0 1800.0 100.0\n" for h in (2, 3)))  # two sampler runs
    assert cpu_share.main(["--sum", str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "a.txt 2026-12-07T01:00:00Z 2026-12-07T01:01:00Z 3600.0 4000.0 90.0"  # each run's last sample
    assert out[2:4] == [f"b.txt 2026-12-07T0{h}:00:00Z 2026-12-07T0{h}:00:00Z 1800.0 1800.0 100.0" for h in (2, 3)]
    assert out[-1] == "total: trainer 2.00 CPU h of 2.11 busy CPU h (94.7 %), 2 file(s)"  # 7200 / 7600
    assert cpu_share.main(["--sum", str(tmp_path / "none.txt")]) == 2
    assert "no sample file" in capsys.readouterr().out
    assert cpu_share.main(["--sum", str(a), str(a)]) == 2  # one trainer sampled twice: counted once or refused
    assert "overlap" in capsys.readouterr().out
    (tmp_path / "bad.txt").write_text("not a sample\n")
    assert cpu_share.main(["--sum", str(tmp_path / "bad.txt")]) == 2
    assert "not a sample file" in capsys.readouterr().out


def _cell_row(path: Path, cell: str, walls: list[float], classes: list[str] | None = None) -> None:
    classes = classes or ["avx2"] * len(walls)
    history = [{"epoch": e, "epoch_wall_s": w, "cpu_class": c, "val_macro_f1": 10.0 * e}
               for e, (w, c) in enumerate(zip(walls, classes, strict=True), start=1)]  # fmt: skip
    path.mkdir(parents=True, exist_ok=True)
    (path / "validation.json").write_text(json.dumps({"cell": cell, "history": history, "segments": 1}))


def test_budget_check_passes_cells_near_their_pilot_and_fails_one_off_by_more_than_the_tolerance(tmp_path, capsys):
    import budget_check

    pilots = tmp_path / "pilots.yaml"
    pilots.write_text(
        "lines:\n  r18-compare-48: {median_epoch_s: 100.0}\n  vgg-compare-48-0cb4b1: {median_epoch_s: 300}\n"
    )
    rows = tmp_path / "runs"
    _cell_row(rows / "a", "r18-compare-48-s0", [104.0, 96.0, 109.0])  # mean 103: within 10 %
    _cell_row(rows / "b", "vgg-compare-48-0cb4b1-s1", [300.0, 900.0], ["avx2", "avx512"])  # avx512: not judged
    assert budget_check.main([str(rows), str(pilots), "--cpu-class", "avx2"]) == 0
    out = capsys.readouterr().out
    assert "| r18-compare-48-s0 | 3 | 3 | 0 | 1 | 5.2 | 103.0 | 100.0 | 1.030 | yes |" in out
    assert "| vgg-compare-48-0cb4b1-s1 | 2 | 1 | 1 |" in out and "every cell within it" in out
    _cell_row(rows / "c", "r18-compare-48-s1", [112.0, 111.0])  # 11.5 % slower than its pilot
    assert budget_check.main([str(rows), str(pilots), "--cpu-class", "avx2"]) == 1
    assert "| r18-compare-48-s1 | 2 | 2 | 0 | 1 | 3.7 | 111.5 | 100.0 | 1.115 | NO |" in capsys.readouterr().out
    records, ok = budget_check.check(rows, pilots, "avx512")  # no pilot epoch on this class for r18: it fails
    assert not ok and [r["on_class"] for r in records] == [0, 0, 1]
    assert budget_check.line_of("x-s12") == "x" and budget_check.line_of("nosplit") == "nosplit"
    # a cell a rule set aside (superseded/) is not read, even when it sorts first
    _cell_row(rows / "0-superseded-first" / "superseded" / "c-old", "r18-compare-48-s1", [500.0])
    assert [r["mean_epoch_s"] for r in budget_check.check(rows, pilots, "avx2")[0]] == [103.0, 111.5, 300.0]
    (rows / "c" / "validation.json").unlink()
    assert [r["cell"] for r in budget_check.check(rows, pilots, "avx2")[0]] == [
        "r18-compare-48-s0",
        "vgg-compare-48-0cb4b1-s1",
    ]


def test_budget_watch_stops_the_suite_when_a_first_cell_is_off_and_keeps_a_rederived_line(tmp_path):
    import budget_watch

    pilots = tmp_path / "pilots.yaml"
    pilots.write_text(
        "lines:\n  r18-compare-48: {median_epoch_s: 100.0}\n"
        "  v2s-compare-48: {median_epoch_s: 200.0, rederived_from: {cell: v2s-compare-48-s0}}\n"
    )
    rows, pid_file, seen = tmp_path / "runs", tmp_path / "cells.pid", set()
    suite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file.write_text(f"{suite.pid}\n")
    try:
        _cell_row(rows / "a", "r18-compare-48-s1", [150.0])  # off, but not a first cell: not judged here
        _cell_row(rows / "b", "v2s-compare-48-s0", [260.0])  # off by 30 %, in a line re-derived once: kept
        said = budget_watch.poll(rows, pilots, "avx2", 0, seen, pid_file)
        assert len(said) == 1 and "v2s-compare-48-s0" in said[0] and "kept" in said[0]
        assert suite.poll() is None
        _cell_row(rows / "c", "r18-compare-48-s0", [104.0])  # within
        assert "yes" in budget_watch.poll(rows, pilots, "avx2", 0, seen, pid_file)[0] and suite.poll() is None
        assert budget_watch.poll(rows, pilots, "avx2", 0, seen, pid_file) == []  # each row is said once
        (rows / "c" / "validation.json").unlink()
        seen.clear()
        _cell_row(rows / "d", "r18-compare-48-s0", [115.0])  # 15 % over: the suite is stopped
        said = budget_watch.poll(rows, pilots, "avx2", 0, {"v2s-compare-48-s0"}, pid_file)
        assert said and said[0].endswith("NO; suite stopped")
        assert suite.wait(timeout=10) == -signal.SIGTERM
    finally:
        suite.kill()


def test_rederive_gives_the_line_its_first_cells_mean_once_and_made_the_committed_amendment(tmp_path, capsys):
    import budget_check
    import yaml

    pilots = tmp_path / "pilots.yaml"
    pilots.write_text("lines:\n  r18-compare-48: {median_epoch_s: 100.0}\n  vgg-compare-48: {median_epoch_s: 300}\n")
    rows, out = tmp_path / "runs", tmp_path / "pilots-amended.yaml"
    _cell_row(rows / "a", "r18-compare-48-s0", [130.0, 126.0])
    args = [str(rows), str(pilots), "--cpu-class", "avx2", "--rederive", "r18-compare-48-s0", "--write", str(out)]
    assert budget_check.main(args) == 0
    assert "t 100.0 -> 128.0 s (E 27 -> 21: its cells rerun)" in capsys.readouterr().out
    lines = yaml.safe_load(out.read_text())["lines"]
    assert lines["r18-compare-48"]["median_epoch_s"] == 128.0 and lines["vgg-compare-48"] == {"median_epoch_s": 300}
    assert lines["r18-compare-48"]["rederived_from"]["pilot_median_epoch_s"] == 100.0
    assert budget_check.main([str(rows), str(out), *args[2:]]) == 2  # a line is re-derived once
    assert "once already" in capsys.readouterr().err
    assert budget_check.main([*args[:5], "vgg-compare-48-s0", *args[6:]]) == 2  # no row of that cell
    _cell_row(rows / "v", "vgg-compare-48-s0", [310.0])  # off the tolerance? no, but E stays 9 either way
    out.write_text("# the pilots, amended\n# twice\n" + out.read_text())
    assert budget_check.main([str(rows), str(out), *args[2:5], "vgg-compare-48-s0", "--write", str(out)]) == 0
    assert "E stays 9: its finished cells stand" in capsys.readouterr().out
    assert out.read_text().startswith("# the pilots, amended\n# twice\n")  # rewritten in place: its comment kept
    lines = yaml.safe_load(out.read_text())["lines"]
    assert lines["vgg-compare-48"]["median_epoch_s"] == 310.0 and lines["r18-compare-48"]["median_epoch_s"] == 128.0
    other = tmp_path / "v.yaml"  # another file, not the pilots: its own old comment is not kept
    other.write_text("# some other file\n")
    assert budget_check.main([*args[:5], "vgg-compare-48-s0", "--write", str(other)]) == 0
    assert not other.read_text().startswith("#") and yaml.safe_load(other.read_text())["amends"] == "pilots.yaml"
    # the committed amendment is what the rule gives from the superseded cells, line after line
    folder = ROOT / "results" / "fer2013-compare"
    committed = yaml.safe_load((folder / "pilots-amended.yaml").read_text())["lines"]
    source = folder / "pilots.yaml"
    for i, entry in enumerate(v for v in committed.values() if "rederived_from" in v):
        again = tmp_path / f"again{i}.yaml"
        budget_check.rederive(folder / "superseded", source, entry["rederived_from"]["cell"], "avx2", again)
        source = again
    assert i >= 1 and yaml.safe_load(source.read_text())["lines"] == committed  # v2-S and InsideOut so far


def test_seal_check_passes_rows_scored_from_the_sealed_logits_and_names_any_other(tmp_path):
    """tools/seal_cell.py --check-runs: each scored row's plain probabilities against its cell's sealed logits (the
    public row is the cell's own folder, the private one names it in trained_run_id); a changed face, other faces or
    a missing seal fail, by name."""
    import numpy as np
    import seal_cell

    from fer_bench.evaluation import predictions

    rng = np.random.default_rng(0)
    n, k = 50, 7
    ids = np.array([f"face{i}" for i in range(n)])
    logits = {s: rng.normal(size=(n, k)).astype(np.float32) for s in ("public", "private")}
    kept, runs = tmp_path / "cells", tmp_path / "runs"
    cell = "r18-public-s0-abc"
    (kept / cell).mkdir(parents=True)
    np.savez_compressed(kept / cell / seal_cell.SEALED, **{f"logits_none_{s}": v for s, v in logits.items()},
                        ids_public=ids, ids_private=ids)  # fmt: skip

    def scored(folder: str, split: str, probs, trained: str | None = None, faces=ids) -> None:
        (runs / folder).mkdir(parents=True, exist_ok=True)
        row = {"run_id": folder, "split": split} | ({"trained_run_id": trained} if trained else {})
        (runs / folder / "result.json").write_text(json.dumps(row))
        predictions.write(runs / folder / predictions.FILE, probs, rng.integers(0, k, n), faces)

    softmax = {s: np.exp(v) / np.exp(v).sum(1, keepdims=True) for s, v in logits.items()}
    scored(cell, "public", softmax["public"])
    scored("r18-private-s0-abc", "private", softmax["private"], trained=cell)
    assert seal_cell.check_runs(runs, kept) == 0
    changed = softmax["private"].copy()
    changed[3] = changed[3][::-1]  # one face's prediction is not the sealed one
    scored("r18-private-s0-abc", "private", changed, trained=cell)
    assert seal_cell.check_runs(runs, kept) == 1
    ok, line = seal_cell.check(kept / cell / seal_cell.SEALED, runs / "r18-private-s0-abc", "private")
    assert not ok and line.startswith("r18-private-s0-abc: DIFFERENT")
    scored("r18-private-s0-abc", "private", softmax["private"], trained=cell, faces=ids[::-1])  # other faces' order
    assert not seal_cell.check(kept / cell / seal_cell.SEALED, runs / "r18-private-s0-abc", "private")[0]
    scored("r18-private-s0-abc", "private", softmax["private"], trained=cell)
    scored("b2-public-s0-def", "public", softmax["public"])  # a row whose cell was never sealed
    assert seal_cell.check_runs(runs, kept) == 1


def test_seal_verify_wants_every_cell_sealed_from_the_weights_it_has(tmp_path):
    """tools/seal_cell.py --verify, before the test look: a cell without a whole seal (sealed.json is the mark), one
    sealed from other weights than its best.pt, an altered npz, and with --need-weights a cell without last.pt all
    fail; a cell sealed from its own weights passes."""
    import numpy as np
    import seal_cell

    runs, kept = tmp_path / "runs", tmp_path / "cells"
    cell = runs / "r18-public-s0-abc"
    cell.mkdir(parents=True)
    (cell / "validation.json").write_text("{}")
    (cell / "best.pt").write_bytes(b"weights")
    (cell / "last.pt").write_bytes(b"state")
    assert seal_cell.verify(runs, kept, need_weights=False) == 1  # no kept folder at all
    (kept / cell.name).mkdir(parents=True)
    np.savez_compressed(kept / cell.name / seal_cell.SEALED, logits_none_public=np.zeros((2, 7), np.float32))
    assert seal_cell.verify(runs, kept, need_weights=False) == 1  # the npz without its sealed.json: half a seal
    meta = {"npz_sha256": seal_cell.sha256(kept / cell.name / seal_cell.SEALED),
            "best_pt_sha256": seal_cell.sha256(cell / "best.pt")}  # fmt: skip
    (kept / cell.name / seal_cell.META).write_text(json.dumps(meta))
    assert seal_cell.verify(runs, kept, need_weights=True) == 0
    assert seal_cell.verify(runs, kept, need_weights=True, expect=15) == 1  # 1 cell of 15: no test look yet
    # scoring from the seals is the test look: never for fewer cells than the suite has
    given = ["--data-dir", str(tmp_path), "--score", str(tmp_path / "scored")]
    assert seal_cell.main([str(kept / cell.name), *given]) == 2
    assert seal_cell.main([str(kept / cell.name), *given, "--expect", "15"]) == 2
    assert not (tmp_path / "scored").exists()
    (cell / "last.pt").unlink()
    assert seal_cell.verify(runs, kept, need_weights=False) == 0
    assert seal_cell.verify(runs, kept, need_weights=True) == 1  # --unblind would train it again
    (cell / "best.pt").write_bytes(b"other weights")
    assert seal_cell.verify(runs, kept, need_weights=False) == 1
    (cell / "best.pt").write_bytes(b"weights")
    np.savez_compressed(kept / cell.name / seal_cell.SEALED, logits_none_public=np.ones((2, 7), np.float32))
    assert seal_cell.verify(runs, kept, need_weights=False) == 1


def test_readme_table_gives_mean_and_seed_sd_both_intervals_and_leaves_published_rows_out(tmp_path):
    """tools/readme_table.py: the READMEs' table from a leaderboard CSV: mean ± the seeds' sd (not the bootstrap
    half-width), the face and seed intervals, the difference to the best with its mark; one split; published rows
    (no rank number) never ranked in it; more than 8 lines refused."""
    import csv as csvlib

    import pytest
    import readme_table

    base = {"dataset": "fer2013", "epochs": "12", "seeds": "3", "convergence": "snapshot, not converged",
            "params_m": "11.18", "gmacs": "0.0981", "train_min": "46.2", "train_min_std": "1.5",
            "bench_infer_img_s": "1500"}  # fmt: skip
    rows = [
        base | {"rank": "1", "model": "resnet18", "recipe": "compare-48 v1", "split": "private", "macro_f1": "55.0",
                "macro_f1_std": "0.8", "macro_f1_ci_lo": "53.1", "macro_f1_ci_hi": "56.9",
                "macro_f1_seeds_ci_lo": "53.0", "macro_f1_seeds_ci_hi": "57.0", "top1": "60.0", "top1_std": "0.5",
                "sig": "best"},
        base | {"rank": "2", "model": "efficientnet_b2", "recipe": "compare-48 v1", "split": "private",
                "macro_f1": "14.0", "macro_f1_std": "2.0", "macro_f1_ci_lo": "13.0", "macro_f1_ci_hi": "15.0",
                "macro_f1_seeds_ci_lo": "-5.0", "macro_f1_seeds_ci_hi": "33.0", "top1": "28.0", "top1_std": "1.0",
                "vs_best_diff": "-41.0", "vs_best_lo": "-43.0", "vs_best_hi": "-39.0", "vs_best_seeds_lo": "-46.0",
                "vs_best_seeds_hi": "-36.0", "sig": "<"},
        base | {"rank": "1", "model": "resnet18", "recipe": "compare-48 v1", "split": "public", "macro_f1": "54.0",
                "sig": "best"},
        base | {"rank": "pub", "model": "efficientnetv2_s", "recipe": "InsideOut (paper)", "split": "private",
                "macro_f1": "59.0", "sig": ""},
    ]  # fmt: skip
    path = tmp_path / "leaderboard.csv"
    fields = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as f:
        writer = csvlib.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    text = readme_table.table(list(csvlib.DictReader(path.open())), "private")
    lines = text.strip().splitlines()
    assert len(lines) == 4 and "InsideOut (paper)" not in text and "54.0" not in text  # header, rule, two lines
    assert "| 1 | resnet18 · compare-48 v1 | 3 | 55.0 ± 0.8 | 53.1 … 56.9 · 53.0 … 57.0 | 60.0 ± 0.5 | best |" in text
    assert "| 14.0 ± 2.0 | 13.0 … 15.0 · −5.0 … 33.0 |" in lines[3]
    assert "| −41.0 (−43.0 … −39.0 · −46.0 … −36.0) < |" in lines[3] and "| 46.2 ± 1.5 · 12 | no |" in lines[3]
    many = [rows[0] | {"rank": str(i)} for i in range(1, 10)]
    with pytest.raises(SystemExit, match="at most 8"):
        readme_table.table(many, "private")
