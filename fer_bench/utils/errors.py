"""User-facing errors: the CLI prints these as one message and exits 2, without a traceback."""

from __future__ import annotations


class FerBenchError(Exception):
    """A mistake the user can fix: the message says what is wrong, where, and what to do."""

    exit_code = 2


class DataError(FerBenchError):
    """A dataset could not be found or read."""


class ConfigError(FerBenchError):
    """A recipe, option or registry name is invalid."""
