"""Regenerate committed result rows and tables with the fixed code (issue "numbers you can cite"), from the files.

Rows written before protocol hashes lack what a row needs now. Everything missing can be recomputed from the
committed files and the data, without retraining:

- ``protocol_hash``, ``data_fingerprint``, ``weights_source``, ``precision_label``: from the run's own
  ``recipe.yaml`` (resolved recipe, re-read through today's schema so new fields take their defaults), the dataset
  named by the row (fingerprint of its decoded content), the row's image size and precision; ``protocol.json`` is
  written beside the row;
- throughput under names that say what they measured: the run's end-to-end training img/s (``train_e2e_img_s``,
  the median over its epochs' ``epoch_train_img_s``) and its model-only inference (``infer_model_img_s``, batch 64);
- ``train_frozen_epochs``, ``test_tta_gmacs``; ``recipe_hash`` without the seed.

A row whose *headline* cannot be recomputed (a TTA figure stood in for it and the plain per-class figures were not
kept) or whose training was wrong (a frozen random backbone) is not regenerated: the caller moves it under
``superseded/``. Every regenerated row says so in ``regenerated``.

    python scripts/regenerate_results.py results/fer2013-cpu/runs --data-dir ../shared/data/fer2013
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

from fer_bench.data import load_dataset
from fer_bench.parts import TTA_MODES
from fer_bench.protocol import data_fingerprint, protocol_fields, protocol_hash, weights_identity
from fer_bench.recipes import from_dict, recipe_hash, recipe_to_dict
from fer_bench.recipes.schema import Recipe, stage_plan
from fer_bench.runner import write_json


def upgrade(row: dict, recipe_file: Path, data) -> dict:
    """The row as today's code writes it (see the module docstring); refuses a TTA headline."""
    recipe = from_dict(Recipe, yaml.safe_load(recipe_file.read_text()), str(recipe_file))
    plain = row.get("test_tta", {}).get("none")
    if plain is None or abs(plain["top1"] - row["test"]["top1"]) > 1e-9:
        raise ValueError(f"{recipe_file.parent}: the headline is a TTA figure; the plain one cannot be rebuilt")
    weights = weights_identity(None, recipe.input.pretrained, row["model"])
    fields = protocol_fields(recipe_to_dict(recipe), dataset=row["dataset"], fingerprint=data_fingerprint(data),
                             dedup=None, img_size=row["img_size"], weights=weights,
                             precision=row["precision"])  # fmt: skip
    for h in row["history"]:
        if "train_img_s" in h:
            h["epoch_train_img_s"] = h.pop("train_img_s")
    frozen = {s.name for s, _ in stage_plan(recipe) if tuple(s.trainable) != ("all",)}
    out = {k: v for k, v in row.items() if k not in ("train_img_s", "infer_img_s")}
    out |= {
        "recipe_hash": recipe_hash(recipe), "protocol_hash": protocol_hash(fields),
        "data_fingerprint": fields["data_fingerprint"], "weights_source": weights["source"],
        "precision_label": fields["precision"],
        "train_e2e_img_s": round(statistics.median(h["epoch_train_img_s"] for h in row["history"]), 1),
        "train_frozen_epochs": sum(1 for h in row["history"] if h["stage"] in frozen),
        "infer_model_img_s": row["infer_img_s"], "infer_batch_size": 64,
        "test_tta_gmacs": {t: round(row["gmacs"] * TTA_MODES.get(t).passes, 4) for t in row.get("test_tta", {})},
        "regenerated": {"by": "scripts/regenerate_results.py", "original_git_sha": row.get("git_sha"),
                        "what": "row fields renamed/added from the committed files; metrics unchanged"},
    }  # fmt: skip
    write_json(recipe_file.parent / "protocol.json", fields)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--data-dir", required=True)
    args = p.parse_args(argv)
    data = {}
    for folder in args.folders:
        for f in sorted(folder.rglob("result.json")):
            row = json.loads(f.read_text())
            if "regenerated" in row or ("protocol_hash" in row and "regenerated" not in row):
                print(f"up to date: {f}", file=sys.stderr)
                continue
            if row["dataset"] not in data:
                data[row["dataset"]] = load_dataset(row["dataset"], args.data_dir)
            write_json(f, upgrade(row, f.parent / "recipe.yaml", data[row["dataset"]]))
            print(f"regenerated: {f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
