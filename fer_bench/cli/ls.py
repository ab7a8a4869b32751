"""`fer-bench ls`: list what a registry holds: models, recipes, datasets, corruptions, and the parts a recipe picks
by name (losses, optimizers, schedules, TTA modes, augmentation ops: ``fer_bench.recipes.parts``). Building the parser
imports no torch (a test checks it); ``ls models|corruptions`` import it in the handler."""

from __future__ import annotations

import argparse
from functools import reduce

from fer_bench.recipes.parts import PARTS

KINDS = ("models", "recipes", "datasets", "corruptions", *PARTS)


def add_parser(sub) -> None:
    p = sub.add_parser("ls", help=f"list registered {', '.join(KINDS)}")
    p.add_argument("what", choices=KINDS, help="the registry to list")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument(
        "--long",
        action="store_true",
        help="every column, lines as long as they need (default: the main columns, wrapped to $COLUMNS)",
    )
    p.set_defaults(handler=cmd_ls)


def cmd_ls(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from fer_bench.utils.console import fit_table, wrap

    headers, rows, short, note = _listing(args.what, args.pattern)
    if args.long:
        print(tabulate(rows, headers=headers))
    else:  # the main columns, wrapped to the terminal
        print(fit_table([headers[i] for i in short], [[r[i] for i in short] for r in rows]))
        hidden = [h for i, h in enumerate(headers) if i not in short]
        note = " ".join([note, f"--long adds {', '.join(hidden)}." if hidden else ""]).strip()
    if note:
        print("\n" + (note if args.long else wrap(note)))
    return 0


def _listing(what: str, pattern: str) -> tuple[list[str], list[tuple], tuple[int, ...], str]:
    """(headers, rows, the columns of the short form, a note below) of ``ls WHAT PATTERN``."""
    if what == "models":
        from fer_bench.models import MODELS

        rows = [(s.name, s.source, s.family, s.input_size, s.in_chans, f"{s.params / 1e6:.2f}", s.default_recipe,
                 s.paper) for s in map(MODELS.get, MODELS.names(pattern))]  # fmt: skip
        headers = ["model", "source", "family", "input", "chans", "params (M, 7 classes)", "recipe", "paper"]
        return headers, rows, (0, 2, 3, 5, 6, 7), "Any timm architecture also works as timm:<name>, e.g. --models " \
            "timm:convnext_atto."  # fmt: skip
    if what == "recipes":
        from fer_bench.recipes import RECIPE_DIR, list_recipes, load_recipe

        rows = [(n, (r := load_recipe(n)).version, r.description) for n in list_recipes()]
        return ["recipe", "version", "description"], rows, (0, 1, 2), f"(from {RECIPE_DIR})"
    if what == "corruptions":
        from fer_bench.data.corruptions import CORRUPTIONS, PUBLISHED, RULES, format_params

        rows = [(c.name, c.param, format_params(c.params), format_params(c.published) if c.published else "–",
                 RULES[c.rule][0], "yes" if c.random else "no", c.description)
                for c in map(CORRUPTIONS.get, CORRUPTIONS.names(pattern))]  # fmt: skip
        headers = ["corruption", "parameter", "severities 1–5 at 48 px", "published at 32 px", "rule", "random", "what"]
        note = (
            f"Published: {PUBLISHED}. Rule: parameters in pixels × 48/32; intensities and fractions of the side "
            "unchanged. Pixel parameters are for a 48-px face and scale with the image side."
        )
        return headers, rows, (0, 1, 2, 4), note
    if what in PARTS:
        reg = PARTS[what]
        ordered = what == "augment-ops"  # in the order a batch goes through them
        rows = [_part_row(reg.get(n)) for n in reg.names(pattern, ordered=ordered)]
        note = "In the order a batch goes through them; an op set by a probability or a magnitude is off at 0."
        return ([reg.kind, "what", "set by (schema default)", "notes", "reference"], rows, (0, 1, 2),
                note if ordered else "")  # fmt: skip
    from fer_bench.data import DATASETS

    rows = [_dataset_row(DATASETS.get(n)) for n in DATASETS.names(pattern)]
    headers = ["dataset", "classes (label order)", "size", "chans", "labels", "splits (images)", "options",
               "description"]  # fmt: skip
    return headers, rows, (0, 2, 3, 4, 7), ""


def _dataset_row(spec) -> tuple:
    """One ``ls datasets`` line: what the spec says, or "from the data" where only reading the data tells."""
    known = lambda v, fmt=str: "from the data" if v is None else fmt(v)  # noqa: E731
    splits = ", ".join(f"{ours}={theirs}: {spec.split_sizes.get(ours, 'from the data')}"
                       for ours, theirs in spec.splits.items())  # fmt: skip
    options = ", ".join(f"{k}={o.default or '…'}" for k, o in spec.options.items())
    return (spec.name, known(spec.classes, " ".join), known(spec.size, lambda s: f"{s}×{s}"), known(spec.channels),
            spec.labels, splits, options, spec.description)  # fmt: skip


def _part_row(part) -> tuple:
    """One ``ls losses|optimizers|schedules|tta|augment-ops`` line, with the recipe fields that set it (defaults)."""

    from fer_bench.recipes.schema import Recipe

    default = Recipe()  # the schema's defaults, which a recipe overrides
    fields = ", ".join(f"{f}={_shown(reduce(getattr, f.split('.'), default))}" for f in part.fields)
    notes = [n for n, on in (("trains on label distributions", part.takes_distributions),
                             (f"{part.passes} passes per image", part.passes > 1),
                             ("steered by validation top-1", part.uses_validation)) if on]  # fmt: skip
    return part.name, part.description, fields, "; ".join(notes), part.reference


def _shown(v) -> str:
    return "null" if v is None else "[" + ", ".join(map(str, v)) + "]" if isinstance(v, tuple) else str(v)
