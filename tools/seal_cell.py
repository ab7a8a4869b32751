"""Seal a blind cell's test outputs: its picked checkpoint's per-face logits on each test split, no figure computed.

    /work/run-compare/.venv/bin/python tools/seal_cell.py /work/compare-runs/CELL_FOLDER --data-dir DIR

A blind suite scores its test splits once, at ``--unblind``, from the cells' ``best.pt``. Those weights live outside
git, so a lost machine loses them; this tool writes what the test look needs from them, so that the cell's folder
can be committed without weights and still be scored (results/fer2013-compare/PLAN.md, amendment of 2026-12-07
19:05 UTC). It imports the cells' own code (f18e428's layout: ``fer_bench.runner``, ``fer_bench.suite``), so sealing
and scoring run with the run worktree's interpreter; ``--check`` and ``--check-runs`` need numpy only. Sealing writes
into the cell's folder:

- ``sealed.npz``: ``logits_<mode>_<split>`` (float32, faces x classes) for the plain pass (``none``) and each TTA of
  the recipe's ``eval.tta``, on each test split (``public``, ``private``) and the validation hold-out (``valid``),
  with ``ids_<split>``, the faces' sample ids in the runner's order. No labels: nothing in the file is a figure.
- ``sealed.json``: the checkpoint's sha256, the code's commit, the arrays and when they were written.

Nothing reads ``sealed.npz`` before the test look; at the look the figures of a cell whose weights exist must come
from the same logits (``--check RUN_FOLDER``: the unblinded row's predictions.npz against the sealed plain pass;
``--check-runs RUNS --kept CELLS``: every scored row). A kept cell whose weights are gone is scored from its seal alone
(``--score OUT``), through the run code's own scoring functions fed the sealed logits instead of a forward pass.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SEALED = "sealed.npz"
META = "sealed.json"  # written last: a cell is sealed when this exists and names the npz's sha256
SPLITS = ("public", "private")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seal(cell_dir: Path, data_dir: Path) -> Path:
    """Write ``sealed.npz`` and ``sealed.json`` into ``cell_dir`` (a blind cell's folder) and return the npz."""
    import torch

    from fer_bench import engine
    from fer_bench.data import load_dataset
    from fer_bench.models import create_model
    from fer_bench.parts import TTA_MODES
    from fer_bench.protocol import sample_ids
    from fer_bench.recipes import load_recipe
    from fer_bench.runner import RunOptions, _context, _device_tensors, make_norms, make_protocol
    from fer_bench.suite import split_recipe

    row = json.loads((cell_dir / "validation.json").read_text())
    best = cell_dir / "best.pt"
    recipe = load_recipe(str(cell_dir / "recipe.yaml"))
    data = load_dataset(row["dataset"], data_dir)
    _, ctx = _context(recipe, RunOptions(out=cell_dir.parent, device="cpu"))
    model, spec = create_model(row["model"], num_classes=len(data.classes), drop_rate=recipe.model.drop_rate)
    model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
    model = model.to(ctx.device, memory_format=torch.channels_last if ctx.channels_last else torch.preserve_format)
    norms = make_norms(recipe, spec, row["img_size"])
    crop = norms["eval"].crop or norms["eval"].size
    modes = list(dict.fromkeys(["none", *recipe.eval.tta]))
    ids = sample_ids(data)
    arrays: dict[str, np.ndarray] = {}
    for split in (*SPLITS, "valid"):
        proto = make_protocol(data, split_recipe(recipe, split if split != "valid" else recipe.eval.split))
        idx = proto.val if split == "valid" else proto.test
        arrays[f"ids_{split}"] = ids[idx]
        batches = engine.Batches(*_device_tensors(data, idx, ctx.device), batch_size=recipe.eval.batch_size)
        for mode in modes if split != "valid" else ["none"]:
            norm = norms["eval"] if mode == "none" else norms[TTA_MODES.get(mode).pipeline]
            tta = {} if mode == "none" else {"tta": mode}
            logits, _ = engine.predict(model, batches.epoch(), transform=norm, ctx=ctx, crop=crop, **tta)
            arrays[f"logits_{mode}_{split}"] = np.asarray(logits, dtype=np.float32)
        said = ", ".join(modes if split != "valid" else ["none"])
        print(f"  {cell_dir.name}: {split} sealed ({len(idx)} faces, {said})", file=sys.stderr)
    out = cell_dir / SEALED
    (cell_dir / META).unlink(missing_ok=True)  # the marker goes first and comes back last: a half seal is no seal
    tmp = cell_dir / "sealed.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    code = Path(engine.__file__).parent
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=code).stdout.strip()
    meta = {"cell": row.get("cell"), "run_id": row.get("run_id"), "best_pt_sha256": sha256(best),
            "code_commit": commit or None, "torch": torch.__version__, "modes": modes, "arrays": sorted(arrays),
            "npz_sha256": sha256(out), "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    tmp = cell_dir / "sealed.tmp.json"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, cell_dir / META)
    return out


@contextmanager
def sealed_forward(arrays, split: str, ids):
    """Inside: the run code's forward pass (``fer_bench.engine.predict``) returns the sealed logits of ``split`` for
    the mode it is asked for, with the labels of the batches it is given; the faces must be the sealed ones."""
    from fer_bench import engine

    real = engine.predict
    if not np.array_equal(np.asarray(ids).astype(str), arrays[f"ids_{split}"].astype(str)):
        raise SystemExit(f"seal_cell: the {split} faces of this data are not the sealed ones (ids differ)")

    def predict(model, batches, *, transform, ctx, tta="none", crop=None):
        labels = np.concatenate([y.cpu().numpy() for _, y in batches])
        return arrays[f"logits_{tta}_{split}"].copy(), labels

    engine.predict = predict
    try:
        yield
    finally:
        engine.predict = real


def score(cell_dir: Path, data_dir: Path, out: Path) -> list[Path]:
    """The two test rows of a kept cell whose weights are gone, scored from its sealed logits by the run code's own
    scoring path (``--unblind``'s: the public row as ``run_model`` finishes a resumed run, the private one as
    ``evaluate_on_split``); written under ``out`` in the suite's folders. The cost columns come from the untrained
    architecture (parameters and GMACs do not depend on the weights; throughput is measured now)."""
    import shutil

    import yaml

    from fer_bench import predictions
    from fer_bench.data import load_dataset
    from fer_bench.models import create_model
    from fer_bench.parts import TTA_MODES
    from fer_bench.plots import save_run_plots
    from fer_bench.protocol import sample_ids
    from fer_bench.recipes import load_recipe, recipe_hash, recipe_to_dict
    from fer_bench.runner import (
        RunOptions,
        _context,
        _cost,
        _save_predictions,
        _test,
        make_norms,
        make_protocol,
        predict_plain,
        run_id,
        write_json,
    )
    from fer_bench.suite import split_recipe

    start = time.perf_counter()
    trained = json.loads((cell_dir / "validation.json").read_text())
    trained.pop("blind", None)
    recipe = load_recipe(str(cell_dir / "recipe.yaml"))
    data = load_dataset(trained["dataset"], data_dir)
    _, ctx = _context(recipe, RunOptions(out=out, device="cpu"))
    model, spec = create_model(trained["model"], num_classes=len(data.classes), drop_rate=recipe.model.drop_rate)
    norms = make_norms(recipe, spec, trained["img_size"])
    ids = sample_ids(data)
    arrays = dict(np.load(cell_dir / SEALED))
    meta = json.loads((cell_dir / META).read_text())
    written = []
    for split in SPLITS:
        rec = split_recipe(recipe, split)
        proto = make_protocol(data, rec)
        first = split == recipe.eval.split
        rid = trained["run_id"] if first else run_id(trained["model"], rec, data, trained["protocol_hash"], proto.name)
        run_dir = out / rid
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(rec), sort_keys=False))
        row = dict(trained)
        if not first:
            row |= {"split": split, "recipe_hash": recipe_hash(rec), "n_test": len(proto.test), "run_id": rid,
                    "trained_run_id": trained["run_id"]}  # fmt: skip
        row["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with sealed_forward(arrays, split, ids[proto.test]):
            figures = _test(model, rec, data, proto.test, norms, ctx)
        row["test"], row["test_tta"], row["confusion_matrix"], plain = figures
        row["predictions"] = _save_predictions(run_dir, data, proto.test, *plain)
        if first:
            with sealed_forward(arrays, "valid", ids[proto.val]):
                valid = predict_plain(model, rec, data, proto.val, norms, ctx)
            row["predictions_valid"] = _save_predictions(run_dir, data, proto.val, *valid, name=predictions.VALID_FILE)
            row |= _cost(model, spec, trained["img_size"], ctx)
            row["test_tta_gmacs"] = {t: round(row["gmacs"] * TTA_MODES.get(t).passes, 4) for t in row["test_tta"]}
            row["wall_s"] = round(time.perf_counter() - start, 1)
            trained = row
        else:
            shutil.copyfile(out / trained["run_id"] / predictions.VALID_FILE, run_dir / predictions.VALID_FILE)
        row["scored_from"] = {"file": SEALED, "sha256": meta["npz_sha256"], "best_pt_sha256": meta["best_pt_sha256"]}
        write_json(run_dir / "result.json", row)
        save_run_plots(row, run_dir)
        written.append(run_dir)
        print(f"  {rid}: scored from {SEALED}", file=sys.stderr)
    return written


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _same_probs(sealed_logits: np.ndarray, sealed_ids: np.ndarray, file: Path) -> tuple[bool, float, np.ndarray]:
    """(equal, max |difference|, the file's labels): a predictions file's probabilities and faces against a seal."""
    with np.load(file) as p:
        probs, labels, ids = np.asarray(p["probs"], np.float64), np.asarray(p["labels"]), np.asarray(p["ids"])
    logits = sealed_logits.astype(np.float64)
    if probs.shape != logits.shape or not np.array_equal(ids.astype(str), sealed_ids.astype(str)):
        return False, float("inf"), labels
    diff = float(np.abs(probs - _softmax(logits)).max())
    return diff < 1e-5 and bool((probs.argmax(1) == logits.argmax(1)).all()), diff, labels


def check(sealed: Path, run_dir: Path, split: str) -> tuple[bool, str]:
    """An unblinded row against its cell's seal: the plain test probabilities and faces (predictions.npz), each TTA's
    top-1 in the row recomputed from the sealed TTA logits, and the hold-out's probabilities (predictions-valid.npz)."""
    row = json.loads((run_dir / "result.json").read_text())
    with np.load(sealed) as s:
        arrays = {k: s[k] for k in s.files}
    ok, diff, labels = _same_probs(arrays[f"logits_none_{split}"], arrays[f"ids_{split}"], run_dir / "predictions.npz")
    said = [f"plain max |p - sealed p| {diff:.1e}"]
    for mode, figures in (row.get("test_tta") or {}).items():
        if mode == "none":
            continue
        key = f"logits_{mode}_{split}"
        top1 = 100 * float((arrays[key].argmax(1) == labels).mean()) if key in arrays else float("nan")
        ok &= abs(top1 - figures["top1"]) < 1e-9
        said.append(f"{mode} top-1 {'as sealed' if abs(top1 - figures['top1']) < 1e-9 else 'NOT as sealed'}")
    if (run_dir / "predictions-valid.npz").is_file() and "logits_none_valid" in arrays:
        same, vdiff, _ = _same_probs(
            arrays["logits_none_valid"], arrays["ids_valid"], run_dir / "predictions-valid.npz"
        )
        ok &= same
        said.append(f"hold-out max |p - sealed p| {vdiff:.1e}")
    return ok, f"{run_dir.name}: {'equal' if ok else 'DIFFERENT'} ({'; '.join(said)})"


def verify(runs: Path, kept: Path, need_weights: bool, expect: int | None = None) -> int:
    """Before the test look: every cell with a validation row under ``runs`` has a whole seal under ``kept``, made from
    the best.pt it has now, committed unchanged (when ``kept`` is in a git checkout); ``need_weights``: and it still
    has its best.pt and last.pt (``--unblind`` would train a cell without last.pt from scratch)."""
    if not kept.is_dir():
        print(f"{kept}: no such folder of kept cells (results/fer2013-compare/keep_cell.sh makes it)")
        return 1
    problems = []
    cells = sorted(p.parent for p in runs.glob("*/validation.json"))
    in_git = (
        subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=kept, capture_output=True).returncode == 0
    )
    for cell in cells:
        k = kept / cell.name
        if not (k / META).is_file() or not (k / SEALED).is_file():
            problems.append(f"{cell.name}: not sealed under {kept} (results/fer2013-compare/keep_cell.sh seals it)")
            continue
        meta = json.loads((k / META).read_text())
        if sha256(k / SEALED) != meta["npz_sha256"]:
            problems.append(f"{cell.name}: {k / SEALED} is not the file its {META} names")
        if (cell / "best.pt").is_file() and sha256(cell / "best.pt") != meta["best_pt_sha256"]:
            problems.append(f"{cell.name}: sealed from another best.pt than the one in {cell}")
        if need_weights and not ((cell / "best.pt").is_file() and (cell / "last.pt").is_file()):
            problems.append(f"{cell.name}: no best.pt/last.pt in {cell}: --unblind would train it again; score every "
                            "cell from its seal instead (the README's rescue, FIN_FROM_SEALS=1)")  # fmt: skip
        if in_git:
            tracked = subprocess.run(["git", "ls-files", "--error-unmatch", SEALED, META], cwd=k, capture_output=True)
            changed = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=k, capture_output=True, text=True)
            if tracked.returncode or changed.stdout.strip():
                problems.append(f"{cell.name}: its kept folder {k} is not committed as it is")
    if expect is not None and len(cells) != expect:
        problems.append(f"{runs}: {len(cells)} cell(s) with a validation row, the suite has {expect}: no test look yet")
    for line in problems:
        print(line)
    print(f"{len(cells) - len({p.split(':')[0] for p in problems})} of {len(cells)} cell(s) sealed, kept"
          f"{' and committed' if in_git else ''}{', with their weights' if need_weights else ''}")  # fmt: skip
    return 1 if problems or not cells else 0


def check_runs(runs: Path, kept: Path) -> int:
    """Every scored row under ``runs`` against the sealed logits of the cell whose weights it used (kept copies under
    ``kept``); 0 when all are equal, 1 otherwise (a row without its cell's sealed file counts as different)."""
    bad = n = 0
    for result in sorted(runs.glob("*/result.json")):
        row = json.loads(result.read_text())
        cell = row.get("trained_run_id") or row["run_id"]
        sealed = kept / cell / SEALED
        n += 1
        if not sealed.is_file():
            print(f"{result.parent.name}: no sealed file for its cell ({sealed})")
            bad += 1
            continue
        ok, line = check(sealed, result.parent, row["split"])
        bad += not ok
        print(line)
    print(f"{n - bad} of {n} scored row(s) equal their cell's sealed logits")
    return 1 if bad or not n else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cells", nargs="*", type=Path, help="blind cell folders (validation.json, recipe.yaml, best.pt)")
    p.add_argument("--data-dir", type=Path, help="the dataset's folder the cells trained on")
    p.add_argument(
        "--check",
        type=Path,
        metavar="RUN_FOLDER",
        help="with one sealed cell: compare RUN_FOLDER's predictions.npz (an unblinded row) with it",
    )
    p.add_argument("--split", choices=SPLITS, default="private", help="the split --check compares")
    p.add_argument("--check-runs", type=Path, metavar="RUNS", help="every scored row under RUNS against --kept")
    p.add_argument("--kept", type=Path, help="with --check-runs: the folder of the kept cells (their sealed.npz)")
    p.add_argument(
        "--verify",
        type=Path,
        metavar="RUNS",
        help="before the look: every cell under RUNS sealed from its best.pt and kept under --kept",
    )
    p.add_argument(
        "--expect",
        type=int,
        metavar="N",
        help="with --verify and --score: the suite's number of cells; fewer is no test look",
    )
    p.add_argument("--need-weights", action="store_true", help="with --verify: and every cell still has its weights")
    p.add_argument(
        "--score",
        type=Path,
        metavar="OUT",
        help="kept cells whose weights are gone: write their two test rows under OUT from sealed.npz",
    )
    args = p.parse_args(argv)
    if args.check_runs or args.verify:
        if args.kept is None:
            p.error("--check-runs and --verify need --kept (the folder of the kept cells)")
        if args.verify:
            return verify(args.verify, args.kept, args.need_weights, args.expect)
        return check_runs(args.check_runs, args.kept)
    if not args.cells:
        p.error("name the cell folders to seal")
    if args.check:
        ok, line = check(args.cells[0] / SEALED, args.check, args.split)
        print(line)
        return 0 if ok else 1
    if args.data_dir is None:
        p.error("--data-dir is needed to seal or score (the dataset's folder the cells trained on)")
    if args.score:
        sealed = [c for c in args.cells if (c / META).is_file()]
        if args.expect is None or len(sealed) != args.expect or len(args.cells) != args.expect:
            print(f"seal_cell: --score is the test look: it scores all of a suite's cells at once, after every one "
                  f"is sealed; give --expect N (the suite's cells): {len(sealed)} sealed of {len(args.cells)} "
                  "given", file=sys.stderr)  # fmt: skip
            return 2
        for cell in args.cells:
            score(cell, args.data_dir, args.score)
        return 0
    for cell in args.cells:
        missing = [f for f in ("validation.json", "recipe.yaml", "best.pt") if not (cell / f).is_file()]
        if missing:
            print(f"seal_cell: {cell} lacks {', '.join(missing)}: not a finished blind cell's folder", file=sys.stderr)
            return 2
    for cell in args.cells:
        print(seal(cell, args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
