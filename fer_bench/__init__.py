"""fer-bench: train, measure and rank facial-emotion-recognition backbones under one protocol."""

__version__ = "0.1.0"
