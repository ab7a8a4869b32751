"""`fer-bench eval`: score a checkpoint (a run folder or a weights file) on any dataset and split, clean or under
the corruption suite, with the same metrics, files and MLflow logging as `fer-bench run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer_bench.cli.common import (
    SEED,
    add_data_args,
    add_tracking,
    at_least,
    device,
    existing_file,
    one_model,
    out_dir,
)  # fmt: skip
from fer_bench.recipes.schema import EVAL_SPLITS, MIN_IMG_SIZE


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="score a checkpoint (--run DIR or --weights FILE --model NAME) on a dataset split")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="a run folder (result.json, recipe.yaml, best.pt); this or --weights (default: none)",
    )
    src.add_argument(
        "--weights", type=Path, metavar="FILE", help="a .pth/.pt/.safetensors state dict (with --model; default: none)"
    )
    p.add_argument(
        "--model",
        "--models",
        help="with --weights: the registry name (or timm:<name>) the weights are for (default: none)",
    )
    p.add_argument("--recipe", help="with --weights: the recipe whose evaluation settings apply (default: the model's)")
    p.add_argument("--trained-on", metavar="DATASET",
                   help="with --weights: the dataset whose classes the head predicts (default: the scored dataset's); "
                        "another dataset's classes are matched by name (cross-dataset evaluation)")  # fmt: skip
    add_data_args(p, default=None, shown="the run's own with --run, else synthetic")
    p.add_argument("--split", choices=(*EVAL_SPLITS, "valid"),
                   help="what to score (default: the run's split, else test); valid = the run's Training hold-out, "
                        "rebuilt from its recipe's data.val_fraction and data.split_seed")  # fmt: skip
    p.add_argument("--img-size", type=at_least(MIN_IMG_SIZE),
                   help="with --weights: input side in pixels (default: the recipe's)")  # fmt: skip
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set eval.tta=[none] --set eval.batch_size=512")  # fmt: skip
    p.add_argument("--device", type=device, default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--protocol",
        type=existing_file,
        metavar="FILE",
        help="a leakage-free protocol (as the run had; default: the standard splits)",
    )
    p.add_argument(
        "--corruptions",
        metavar="all|NAME,…",
        help="also score under these corruptions (all, or names from `fer-bench ls corruptions`; default: none)",
    )
    p.add_argument("--severities", default="1,2,3,4,5", metavar="S,…", help="corruption severities (default: 1–5)")
    p.add_argument("--corruption-seed", type=SEED, default=0, help="seed of the corruptions' random draws")
    p.add_argument("--out", type=out_dir, default=Path("runs/eval"), help="output folder (default: runs/eval)")
    add_tracking(p, checkpoint=False)
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from fer_bench import api
    from fer_bench.cli.common import make_tracker

    one_model(args.model, "eval")
    row = api.evaluate(args.run, weights=args.weights, model=args.model, recipe=args.recipe,
                       trained_on=args.trained_on, img_size=args.img_size, sets=args.sets, dataset=args.dataset,
                       data_dir=args.data_dir, cache_dir=args.cache_dir, split=args.split, device=args.device,
                       protocol=args.protocol, corruptions=args.corruptions, severities=args.severities,
                       corruption_seed=args.corruption_seed, out=args.out,
                       tracker=lambda: make_tracker(args))  # fmt: skip
    _print(row)
    return 0


def _print(row: dict) -> None:
    t = row["test"]
    line = f"{row['model']} · {row['dataset']} {row['split']} (n={row['n_test']}): top-1 {t['top1']:.2f}  " \
           f"macro-F1 {t['macro_f1']:.2f}"  # fmt: skip
    for tta, m in row["test_tta"].items():
        if tta != "none":
            line += f"  ·  {tta}: top-1 {m['top1']:.2f}"
    print(line)
    if x := row.get("cross_dataset"):
        print(f"cross-dataset: trained on {x['trained_on'] or 'the classes ' + ', '.join(x['model_classes'])}, "
              f"scored on {x['scored_on']}; shared {len(x['shared'])} classes: top-1 {t['top1_shared']:.2f} on their "
              f"{t['n_shared']} samples; {t['n_lacking']} samples of a class the model lacks "
              f"({', '.join(x['lacking']) or 'none'}) count as errors in top-1")  # fmt: skip
    if c := row.get("corruptions"):
        low = c.get("cells_at_or_below_majority", [])
        above = "" if c.get("mca_above_majority") is None else f"{c['mca_above_majority']:.2f}"
        rate = c.get("majority_rate", float("nan"))
        print(f"corruptions: mCA {c['mca']:.2f} ({c['mca_ratio']:.3f} of clean); without the {len(low)} cell(s) at or "
              f"below the majority-class rate {rate:.2f} % ({', '.join(low) or 'none'}): {above or '–'} · "
              f"{', '.join(c['files'])}")  # fmt: skip
    print(f"row: {row['run_id']}/result.json", file=sys.stderr)
