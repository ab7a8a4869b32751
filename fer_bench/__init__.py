"""fer-bench: train, measure and rank facial-emotion-recognition backbones under one protocol.

The Python API (:mod:`fer_bench.api`) is reachable from here: ``fer_bench.run``, ``fer_bench.evaluate``,
``fer_bench.leaderboard``. It loads on first use, so ``import fer_bench`` (and ``fer-bench --help``) stays light.
"""

from fer_bench.utils.version import __version__

API = ("run", "evaluate", "leaderboard", "run_suite", "Leaderboard", "SuiteResult")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        from fer_bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'fer_bench' has no attribute {name!r}")
