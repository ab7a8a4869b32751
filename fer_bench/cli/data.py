"""`fer-bench data check`: load a dataset and audit it; optionally write a leakage-free protocol."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_bench.cli.common import add_data_args


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="inspect a dataset")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    c = dsub.add_parser("check", help="load a dataset and audit it: counts, duplicates, leakage, label conflicts")
    add_data_args(c, default="fer2013")
    c.add_argument(
        "--json", type=Path, help="also write the full report (with every listed file) as JSON here (default: none)"
    )
    c.add_argument("--write-protocol", type=Path, metavar="FILE",
                   help="write a leakage-free protocol (drop test images with an identical training copy); "
                        "use it with `fer-bench run --protocol FILE` (default: none)")  # fmt: skip
    c.set_defaults(handler=cmd_data_check)


def cmd_data_check(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from fer_bench.data import load_dataset
    from fer_bench.data.audit import audit, describe, write_protocol

    data = load_dataset(args.dataset, args.data_dir, args.cache_dir)
    result = audit(data)
    print(f"{data.name}: {data.source}")
    for note in data.notes:
        print(f"note: {note}")
    splits = list(result.counts)
    table = [[c] + [result.counts[s][c] for s in splits] for c in data.classes]
    table.append(["total"] + [sum(result.counts[s].values()) for s in splits])
    print(tabulate(table, headers=["class", *splits], tablefmt="github"))
    print()
    for key, value in result.summary().items():
        print(f"{key.replace('_', ' ')}: {value}")
    for title, idx in (
        ("blank images", result.blank),
        ("conflicting-label groups (first 5)", result.conflicting_groups[:5]),
    ):
        print(f"\n{title}:")
        for item in idx:
            print(
                "  " + (" = ".join(describe(data, i) for i in item) if isinstance(item, list) else describe(data, item))
            )
    if args.json:
        report = result.summary() | {"counts": result.counts,
                                     "blank": [describe(data, i) for i in result.blank],
                                     "leaked_test": [describe(data, i) for i in result.leaked_test],
                                     "conflicting_groups": [[describe(data, i) for i in g]
                                                            for g in result.conflicting_groups]}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.write_protocol:
        proto = write_protocol(data, result, args.write_protocol)
        print(f"\nprotocol {proto['name']!r}: drops {proto['n_dropped_images']} test images → {args.write_protocol}")
    return 0
