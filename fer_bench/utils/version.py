"""The package version: one place, torch-free (the CLI reads it for --version, every row records it)."""

__version__ = "0.1.0"
