"""What fer-bench prints on a terminal: tables and notes that fit its width, and quiet third-party loggers.

Torch-free and light (``fer-bench ls`` and ``--help`` import it).
"""

from __future__ import annotations

import logging
import os
import shutil
import textwrap
from collections.abc import Sequence

MIN_COLUMN = 8  # a wrapped column never gets narrower than this; a table that still does not fit overflows
# Libraries that log INFO lines a user did not ask for (MLflow's store migrations, its run URLs; alembic's)
NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "git", "matplotlib", "PIL", "timm", "optuna")


def width() -> int:
    """The terminal's width: ``$COLUMNS``, else the terminal's, else 80 (output to a file or a pipe)."""
    return shutil.get_terminal_size((80, 24)).columns


def wrap(text: str, columns: int | None = None, indent: str = "") -> str:
    """``text`` wrapped to ``columns`` (default: :func:`width`), paragraph by paragraph; paths and URLs stay whole."""
    cols = columns or width()
    return "\n".join(
        textwrap.fill(par, cols, initial_indent=indent, subsequent_indent=indent, break_long_words=False,
                      break_on_hyphens=False) if par.strip() else par
        for par in text.split("\n")
    )  # fmt: skip


def wrap_notes(text: str, columns: int | None = None) -> str:
    """A rendered table with its notes wrapped to ``columns``: table lines (any line with a ``|``, rules of ``-``
    and ``+``, indented lines) stay as they are; a table wider than the terminal overflows, never breaks."""
    cols = columns or width()
    keep = lambda line: "|" in line or line.startswith(("+", "-", " ")) or len(line) <= cols  # noqa: E731
    return "\n".join(line if keep(line) else wrap(line, cols) for line in text.split("\n"))


def fit_table(headers: Sequence[str], rows: Sequence[Sequence], columns: int | None = None) -> str:
    """A plain table (tabulate's ``simple``) at most ``columns`` wide: the widest columns are wrapped, the first
    (the names a user types) never.

    Example:
        >>> print(fit_table(["name", "what"], [["a", "one two three four"]], columns=16))
        name    what
        ------  -------
        a       one two
                three
                four
    """
    from tabulate import tabulate

    cols = columns or width()
    texts = [[str(c) for c in r] for r in rows]
    widths = [max([len(headers[i])] + [len(r[i]) for r in texts]) for i in range(len(headers))]

    def render(ws: list[int]) -> str:
        # names a user types (a recipe, a model, a path) are never cut: a word longer than its column overflows
        cell = lambda s, w: "\n".join(textwrap.wrap(s, w, break_on_hyphens=False, break_long_words=False)) or s  # noqa: E731
        body = [[cell(c, ws[i]) for i, c in enumerate(r)] for r in texts]
        return tabulate(body, headers=[cell(h, ws[i]) for i, h in enumerate(headers)], disable_numparse=True)

    text = render(widths)
    while (over := max(map(len, text.splitlines())) - cols) > 0 and len(widths) > 1:
        order = sorted(range(1, len(widths)), key=widths.__getitem__, reverse=True)
        i, runner_up = order[0], (widths[order[1]] if len(order) > 1 else 0)
        if widths[i] <= MIN_COLUMN:
            break
        # the widest column gives way first, down to the next widest, so wrapping is shared among the wide ones
        widths[i] = max(MIN_COLUMN, widths[i] - max(1, min(over, widths[i] - runner_up)))
        text = render(widths)
    return text


def quiet_libraries(verbose: bool = False) -> None:
    """Silence the INFO chatter of third-party libraries (warnings still show); ``verbose`` leaves them as they are."""
    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its loggers from this when imported
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
