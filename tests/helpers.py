"""What several test modules share: builders of small, real-format datasets (FER2013 CSVs, Kaggle-style folder
trees, FER+, RAF-DB, image folders), the CLI run in a child process or in this one, and short training runs.
Imports of torch and the runner sit inside the functions that need them, so a module that only writes data stays
light."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fer_bench.data.labels import FER2013_CLASSES

ROOT = Path(__file__).resolve().parents[1]
USAGES = ("Training", "PublicTest", "PrivateTest")
SUITES = sorted((ROOT / "benchmarks").glob("fer2013-*.yaml"))


def write_csv(path: Path, n_per: int = 2, *, icml: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """A FER2013-format CSV with ``n_per`` rows per (class, usage); returns (images, labels, usages)."""
    rng = np.random.default_rng(seed)
    rows, images, labels, usages = [], [], [], []
    for usage in USAGES:
        for label in range(7):
            for _ in range(n_per):
                img = rng.integers(0, 256, (48, 48), dtype=np.uint8)
                images.append(img), labels.append(label), usages.append(usage)
                pix = " ".join(map(str, img.ravel()))
                rows.append(f"{label},{usage},{pix}" if icml else f"{label},{pix},{usage}")
    # The icml_face_data.csv variant orders the columns differently and names them with a leading space.
    header = "emotion, Usage, pixels" if icml else "emotion,pixels,Usage"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return np.stack(images), np.array(labels), usages


def write_tree(root: Path, n_per: int = 2, *, spellings: dict[str, str] | None = None, prefixes: bool = True) -> None:
    """A Kaggle-layout tree: train/<class>/Training_*.png and test/<class>/{Public,Private}Test_*.png."""
    rng = np.random.default_rng(0)
    names = {c: (spellings or {}).get(c, c) for c in FER2013_CLASSES}
    for split, usages in (("train", ("Training",)), ("test", ("PublicTest", "PrivateTest"))):
        for c in FER2013_CLASSES:
            d = root / split / names[c]
            d.mkdir(parents=True, exist_ok=True)
            for usage in usages:
                for i in range(n_per):
                    name = f"{usage}_{i}.png" if prefixes else f"{usage.lower()}{i}.png"
                    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(d / name)


def fer_bench(*args: str, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``fer-bench ARGS`` in a child process; one that hangs is killed after ``timeout`` s and fails the test."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "fer_bench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def cli(capsys, *argv: str) -> tuple[int, str, float]:
    """``fer-bench ARGV`` in this process: (exit code, stderr, seconds); argparse's own exits count as returns."""
    from fer_bench.cli import main

    start = time.perf_counter()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err, time.perf_counter() - start


def one_line_error(code: int, err: str, *named: str) -> None:
    """Exit 2, one line on stderr, no traceback, and ``named`` (the option or file) in it."""
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for part in named:
        assert part in err, (part, err)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def write_folder(root: Path, classes=("angry", "happy", "sad"), n: int = 2, splits=("train", "test")) -> Path:
    """root/<split>/<class>/<i>.png: tiny 20-pixel grey faces."""
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def write_ferplus(folder: Path, n_per: int = 2, *, drop_row: bool = False) -> np.ndarray:
    """fer2013.csv (helpers.write_csv) and a fer2013new.csv for it: row i's votes make label (i % 8) a majority,
    every 5th row unknown; returns the votes."""
    from fer_bench.data.ferplus import HEADER

    _, _, usages = write_csv(folder / "fer2013.csv", n_per)
    votes = np.zeros((len(usages), 10), dtype=int)
    for i in range(len(usages)):
        votes[i, (i % 8) if i % 5 else 8] = 8
        votes[i, 9 - (i % 2)] += 2 if i % 5 else 0
        votes[i, (i + 1) % 8] += 2 - (2 if i % 5 == 0 else 0)
    lines = [",".join(HEADER)]
    lines += [
        f"{u},fer{i:07d}.png," + ",".join(map(str, v)) for i, (u, v) in enumerate(zip(usages, votes, strict=True))
    ]
    (folder / "fer2013new.csv").write_text("\n".join(lines[:-1] if drop_row else lines) + "\n")
    return votes


def write_rafdb(root: Path, n_per: int = 4, n_test: int = 2) -> list[tuple[str, int]]:
    """A RAF-DB basic release in miniature: coloured 100×100 JPEGs, each class its own colour cast."""
    rng = np.random.default_rng(0)
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for label in range(1, 8):
        for k in range(n_per + n_test):
            name = f"{'train' if k < n_per else 'test'}_{label:02d}{k:03d}"
            img = rng.integers(0, 120, (100, 100, 3)) + np.array([label * 15, 100, 200 - label * 20])
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "Image" / "aligned" / f"{name}_aligned.jpg")
            lines.append((f"{name}.jpg", label))
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {k}\n" for n, k in lines))
    return lines


# Two stages that both train every layer (so no frozen-random check can refuse them) at different LRs: the
# second must start from the first's weights with its own fresh optimizer and schedule.
TWO_STAGES = ["stages=[{name: warm, epochs: 1, lr: 0.01}, {name: main, lr: 0.002}]", "train.epochs=3",
              "data.limit_train=140", "input.img_size=48", "eval.batch_size=512", "eval.tta=[none]",
              "train.seed=1"]  # fmt: skip


class _Killed(Exception):
    pass


def _run(out, data, sets, *, resume: bool = False) -> dict:
    from fer_bench.experiment.plan import RunOptions
    from fer_bench.experiment.runner import run_model
    from fer_bench.recipes import load_recipe

    return run_model("simple_cnn", load_recipe(None, sets), data,
                     RunOptions(out=out, device="cpu", progress=False, resume=resume))  # fmt: skip


def _killed_after(monkeypatch, epoch: int):
    """Make the run die right after ``last.pt`` of ``epoch`` is on disk (before ``best.pt``, the worst moment)."""
    from fer_bench.engine import checkpoint

    real = checkpoint.save

    def save(path, state):
        real(path, state)
        if path.name == "last.pt" and state["epoch"] == epoch:
            raise _Killed

    monkeypatch.setattr(checkpoint, "save", save)


def _untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if not k.endswith("_s")} for h in history]


# The schedule tests' tiny run; _run_recording adds a test's own settings to it.
BASE = ["data.limit_train=140", "input.img_size=48", "eval.batch_size=512", "eval.tta=[none]", "train.seed=3"]


def _run_recording(tmp_path, data, sets: list[str]) -> tuple[dict, list[list[float]]]:
    """Run simple_cnn; also return, per epoch, the LR of every optimizer step (all parameter groups agree)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from fer_bench.experiment.plan import RunOptions
    from fer_bench.experiment.runner import run_model
    from fer_bench.recipes import load_recipe

    steps: list[float] = []
    per_epoch: list[list[float]] = []

    def hook(optimizer, args, kwargs):
        lrs = {g["lr"] for g in optimizer.param_groups}
        assert len(lrs) == 1, f"parameter groups at different LRs: {lrs}"
        steps.append(lrs.pop())

    handle = register_optimizer_step_pre_hook(hook)
    try:
        recipe = load_recipe(None, [*BASE, *sets])
        row = run_model("simple_cnn", recipe, data, RunOptions(out=tmp_path, device="cpu", progress=False),
                        on_epoch=lambda _: (per_epoch.append(list(steps)), steps.clear()))  # fmt: skip
    finally:
        handle.remove()
    return row, per_epoch


def schema_mismatches(row: dict) -> dict[str, str]:
    """The fields of ``row`` that the result-row schema (fer_bench.experiment.row.ResultRow) lacks or types otherwise:
    field → what was found."""
    import types
    import typing

    from fer_bench.experiment.row import ResultRow

    def conforms(value, hint) -> bool:
        origin = typing.get_origin(hint)
        if hint is typing.Any:
            return True
        if origin in (typing.Union, types.UnionType):
            return any(conforms(value, h) for h in typing.get_args(hint))
        if hint is type(None):
            return value is None
        if hint is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if origin in (list, dict):
            return isinstance(value, origin)
        return isinstance(value, hint)

    hints = typing.get_type_hints(ResultRow)
    return {k: ("not in the schema" if k not in hints else type(v).__name__) for k, v in row.items()
            if k not in hints or not conforms(v, hints[k])}  # fmt: skip
