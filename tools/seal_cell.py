"""Seal a blind cell's test outputs: its picked checkpoint's per-face logits on each test split, no figure computed.

    /work/run-compare/.venv/bin/python tools/seal_cell.py /work/compare-runs/CELL_FOLDER --data-dir DIR

A blind suite scores its test splits once, at ``--unblind``, from the cells' ``best.pt``. Those weights live outside
git, so a lost machine loses them; this tool writes what the test look needs from them, so that the cell's folder
can be committed without weights and still be scored (results/fer2013-compare/PLAN.md, amendment of 2026-12-07
19:05 UTC). It runs with the cells' own code (the run worktree's interpreter) and writes into the cell's folder:

- ``sealed.npz``: ``logits_<mode>_<split>`` (float32, faces x classes) for the plain pass (``none``) and each TTA of
  the recipe's ``eval.tta``, on each test split (``public``, ``private``) and the validation hold-out (``valid``),
  with ``ids_<split>``, the faces' sample ids in the runner's order. No labels: nothing in the file is a figure.
- ``sealed.json``: the checkpoint's sha256, the code's commit, the arrays and when they were written.

Nothing reads ``sealed.npz`` before the test look; at the look the figures of a cell whose weights exist must come
from the same logits (``--check RUN_FOLDER``: the unblinded row's predictions.npz against the sealed plain pass).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEALED = "sealed.npz"
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
        print(f"  {cell_dir.name}: {split} sealed ({len(idx)} faces, {', '.join(modes)})", file=sys.stderr)
    out = cell_dir / SEALED
    np.savez_compressed(out, **arrays)
    code = Path(engine.__file__).parent
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=code).stdout.strip()
    meta = {"cell": row.get("cell"), "run_id": row.get("run_id"), "best_pt_sha256": sha256(best),
            "code_commit": commit or None, "torch": torch.__version__, "modes": modes, "arrays": sorted(arrays),
            "npz_sha256": sha256(out), "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    (cell_dir / "sealed.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def check(sealed: Path, run_dir: Path, split: str) -> tuple[bool, str]:
    """Compare an unblinded row's plain predictions (its predictions.npz) with the sealed plain logits of ``split``."""
    with np.load(sealed) as s, np.load(run_dir / "predictions.npz") as p:
        logits = s[f"logits_none_{split}"].astype(np.float64)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        keys = [k for k in p.files if k in ("probs", "probabilities")]
        if not keys:
            return False, f"{run_dir.name}: no probabilities in predictions.npz ({', '.join(p.files)})"
        ids = np.asarray(p["ids"]).astype(str) if "ids" in p.files else None
        same_ids = ids is None or np.array_equal(ids, s[f"ids_{split}"].astype(str))
        diff = float(np.abs(np.asarray(p[keys[0]], dtype=np.float64) - probs).max())
        agree = float((np.asarray(p[keys[0]]).argmax(1) == logits.argmax(1)).mean())
    ok = same_ids and diff < 1e-5 and agree == 1.0
    said = "equal" if ok else "DIFFERENT"
    return ok, f"{run_dir.name}: {said} (max |p - sealed p| {diff:.2e}, argmax agreement {agree:.4f}, ids {same_ids})"


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
    args = p.parse_args(argv)
    if args.check_runs:
        if args.kept is None:
            p.error("--check-runs needs --kept (the folder of the kept cells)")
        return check_runs(args.check_runs, args.kept)
    if not args.cells:
        p.error("name the cell folders to seal")
    if args.check:
        ok, line = check(args.cells[0] / SEALED, args.check, args.split)
        print(line)
        return 0 if ok else 1
    if args.data_dir is None:
        p.error("--data-dir is needed to seal (the dataset's folder the cells trained on)")
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
