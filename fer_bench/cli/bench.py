"""`fer-bench bench`: throughput, latency, memory and cost of models, or of the data path (--data)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_bench.cli.common import (
    add_tracking,
    at_least,
    check_data_args,
    check_device,
    csv_list,
    device,
    list_of,
    out_dir,
)  # fmt: skip
from fer_bench.recipes.schema import COMPILE_MODES, MIN_IMG_SIZE, PRECISIONS
from fer_bench.utils.errors import FerBenchError


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure throughput, latency, memory and cost (or the data path with --data)")
    p.add_argument("--models", type=csv_list, default=None,
                   help="comma-separated models (default: resnet18; with --grid the four families)")  # fmt: skip
    p.add_argument("--img-size", type=list_of(at_least(MIN_IMG_SIZE)), default=[48],
                   help="comma-separated input sizes, e.g. 48,224")  # fmt: skip
    p.add_argument("--batch-size", type=at_least(1), default=64, help="batch size of the timed steps")
    p.add_argument(
        "--precision", choices=[p for p in PRECISIONS if p != "auto"], default="fp32", help="numeric precision"
    )
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE", choices=COMPILE_MODES,
                   help="torch.compile the model in MODE: default, reduce-overhead or max-autotune; --compile alone "
                        "is mode default (default: eager, not compiled)")  # fmt: skip
    p.add_argument("--device", type=device, default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--repeats", type=at_least(1), default=5, help="timed repeats (>= 5 for a meaningful IQR)")
    p.add_argument("--steps", type=at_least(1), default=10, help="timed steps per repeat")
    p.add_argument("--data", action="store_true", help="benchmark the data path instead (fast-data figures)")
    p.add_argument("--warmup-s", type=at_least(0.0, float), default=1.0,
                   help="untimed warm-up before each timed loop, seconds")  # fmt: skip
    p.add_argument("--pairs", type=at_least(5), default=7, help="--data, --grid: interleaved pairs per ratio (>= 5)")
    p.add_argument(
        "--grid",
        action="store_true",
        help="CPU settings grid: fp32/bf16 autocast x NCHW/channels_last x eager/compile, training "
        "(fast-48's step) and inference, in interleaved pairs against fp32 NCHW eager; --steps per "
        "window",
    )
    p.add_argument(
        "--grid-cap-s",
        type=at_least(1.0, float),
        default=600.0,
        help="--grid: seconds of probes and pairs per setting; a part that would overrun it is skipped",
    )
    p.add_argument("--data-batch-size", type=at_least(1), default=256, help="--data: batch size of the two data paths")
    p.add_argument("--window", type=list_of(at_least(1)), default=[60, 15], metavar="OURS,TV",
                   help="--data: batches per timed window, ours and torchvision's")  # fmt: skip
    p.add_argument("--e2e-model", default="resnet18", help="--data: the model of the end-to-end ratio")
    p.add_argument("--e2e-steps", type=at_least(1), default=1, help="--data: training steps per end-to-end window")
    p.add_argument("--e2e-pairs", type=at_least(5), default=61, help="--data: end-to-end/model-only pairs (>= 5)")
    p.add_argument("--data-dir", type=Path, help="FER2013 folder tree or CSV (default: the synthetic set)")
    p.add_argument("--dataset", default=None,
                   help="dataset feeding the end-to-end training figures (default: fer2013 with --data-dir, else "
                        "synthetic); 'none' skips them")  # fmt: skip
    p.add_argument("--out", type=out_dir, default=Path("results/bench"), help="output folder for the CSV/JSON files")
    add_tracking(p, checkpoint=False)
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from fer_bench.models import get_spec

    for m in (*(args.models or []), args.e2e_model):
        get_spec(m)  # unknown names fail before any measuring
    if args.dataset != "none":
        check_data_args(args.dataset or ("fer2013" if args.data_dir else "synthetic"), args.data_dir)
    check_device(args.device)
    if args.grid:
        return _bench_grid(args)
    if args.data:
        from fer_bench.bench.data_path import run_data_bench

        for flag, n in (("--pairs", args.pairs), ("--e2e-pairs", args.e2e_pairs)):
            if n < 5:
                raise FerBenchError(f"{flag} {n}: at least 5 pairs are needed for a median and an IQR")
        say = lambda msg: print(f"bench --data: {msg}", file=sys.stderr, flush=True)  # noqa: E731
        from fer_bench.models import get_spec

        get_spec(args.e2e_model)  # an unknown name fails before any measuring
        if len(args.window) != 2 or min(args.window) < 1:
            raise FerBenchError(f"--window {args.window}: give two positive batch counts, e.g. --window 60,15")
        result = run_data_bench(args.data_dir, args.out, batch_size=args.data_batch_size, pairs=args.pairs,
                                ours_batches=args.window[0], tv_batches=args.window[1], e2e_steps=args.e2e_steps,
                                e2e_pairs=args.e2e_pairs,
                                e2e_model=args.e2e_model, progress=say)  # fmt: skip
        path = args.out / "data-bench-cpu.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict | list)}, indent=2))
        print(f"written: {path}", file=sys.stderr)
        return 0
    return _bench_models(args)


def _bench_grid(args: argparse.Namespace) -> int:
    from fer_bench.bench.cpu_grid import FAMILIES, GridConfig, Setting, run_grid
    from fer_bench.models import get_spec

    models = args.models or list(FAMILIES)
    for m in models:
        get_spec(m)  # unknown names fail before any measuring
    if args.pairs < 5 or args.steps < 1 or args.grid_cap_s <= 0:
        raise FerBenchError(
            f"--pairs {args.pairs}, --steps {args.steps}, --grid-cap-s {args.grid_cap_s}: --grid needs "
            "at least 5 pairs, 1 step and a positive cap, e.g. --pairs 5 --steps 4 --grid-cap-s 600"
        )
    if args.device not in ("auto", "cpu"):
        raise FerBenchError(f"--device {args.device}: --grid measures CPU settings; leave --device out or use cpu")
    say = lambda msg: print(f"bench --grid: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    for size in args.img_size:
        base = GridConfig(models[0], Setting(), size, pairs=args.pairs, steps=args.steps, cap_s=args.grid_cap_s)
        for path in run_grid(models, base, args.out, say).values():
            print(f"written: {path}", file=sys.stderr)
    return 0


def _bench_models(args: argparse.Namespace) -> int:
    import pandas as pd
    from tabulate import tabulate

    from fer_bench.bench.model import BenchConfig, csv_name, run_isolated
    from fer_bench.models import get_spec

    args.models = args.models or ["resnet18"]
    for m in args.models:
        get_spec(m)  # unknown names fail before any measuring
    rows, cfg = [], None
    for model in args.models:
        for size in args.img_size:
            dataset = args.dataset or ("fer2013" if args.data_dir else "synthetic")
            cfg = BenchConfig(model, size, args.batch_size, args.precision, args.channels_last, args.compile,
                              args.device, warmup_s=args.warmup_s, repeats=args.repeats, steps=args.steps,
                              dataset=None if dataset == "none" else dataset,
                              data_dir=str(args.data_dir) if args.data_dir else None)  # fmt: skip
            print(f"bench {model} @ {size}px, batch {args.batch_size}, {args.precision}", file=sys.stderr)
            rows.append(run_isolated(cfg))
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    ok = df[df.get("error").isna()] if "error" in df else df
    if ok.empty:
        raise FerBenchError(f"every measurement failed; first error: {rows[0].get('error')}")
    common = [c for c in ("model", "img_size", "batch_size", "batch_size_requested", "precision", "channels_last",
                          "compile", "device_name", "torch", "cuda", "cudnn", "threads", "warmup", "warmup_s", "steps",
                          "repeats", "params", "gmacs", "ceiling_gflops", "ceiling_matmul_n", "ceiling_dtype")
              if c in df]  # fmt: skip
    infer = common + [c for c in df if c.startswith(("infer_", "latency_"))] + ["git_sha", "timestamp"]
    train = (
        common + [c for c in df if c.startswith(("train_", "e2e_", "peak_mem"))] + ["dataset", "git_sha", "timestamp"]
    )
    for mode, cols in (("infer", infer), ("train", train)):
        path = args.out / csv_name(mode, cfg, ok.iloc[0].to_dict())
        ok[[c for c in cols if c in ok]].to_csv(path, index=False, float_format="%.4g")
        print(f"written: {path}", file=sys.stderr)
    show = ["model", "img_size", "batch_size", "infer_img_s_median", "infer_img_s_iqr", "latency_ms_median",
            "train_img_s_median", "train_img_s_iqr", "e2e_train_img_s_median", "e2e_over_model_only", "peak_mem_mb",
            "params", "gmacs"]  # fmt: skip
    print(tabulate(ok[[c for c in show if c in ok]].values.tolist(), headers=show, floatfmt=".1f"))
    if not args.no_track:
        from fer_bench.experiment.tracking import log_bench_rows

        log_bench_rows(args.tracking_uri, args.experiment, ok.to_dict("records"))
    failed = df[df["error"].notna()] if "error" in df else df.iloc[0:0]
    for _, r in failed.iterrows():
        print(f"failed: {r['model']} @ {r['img_size']}: {r['error']}", file=sys.stderr)
    return 0
