"""The Python API: train and score backbones, rank their rows. The `fer-bench` commands call these functions.

Example:
    >>> import tempfile, fer_bench
    >>> out = tempfile.mkdtemp()
    >>> rows = fer_bench.run(["simple_cnn"], sets=["train.epochs=1", "data.limit_train=64"], out=out, progress=False)
    >>> rows[0]["model"], rows[0]["dataset"], 0 <= rows[0]["test"]["macro_f1"] <= 100
    ('simple_cnn', 'synthetic', True)
    >>> row = fer_bench.evaluate(f"{out}/{rows[0]['run_id']}", split="public", out=tempfile.mkdtemp())
    >>> row["split"], row["n_test"] > 0
    ('public', True)
    >>> board = fer_bench.leaderboard([out])
    >>> list(board.frame["model"])
    ['simple_cnn']

Every function checks its arguments before anything loads and raises :class:`fer_bench.utils.errors.FerBenchError`
(one line: what, where, the fix) for a mistake of the caller's.
"""

from fer_bench.api.runs import recipe_for, run
from fer_bench.api.scoring import evaluate
from fer_bench.api.suites import SuiteResult, run_suite
from fer_bench.api.tables import Leaderboard, leaderboard

__all__ = ["Leaderboard", "SuiteResult", "evaluate", "leaderboard", "recipe_for", "run", "run_suite"]
