"""A row's per-sample predictions: one compact ``.npz`` beside its ``result.json``, reusable without retraining.

The file holds, for every test sample of the row's split in the run's order, the class probabilities of the plain
headline evaluation (single crop, no TTA) as float32, the label and a sample id that names the face's content
(:func:`fer_bench.experiment.protocol.sample_ids`), so rows of one split can be paired sample by sample (ensembles,
paired tests, error analysis) whichever file format their data came from. The row's headline figures are computed from
these very probabilities, so :func:`score` gives them back exactly.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / FILE
    >>> digest = write(path, np.array([[0.9, 0.1], [0.2, 0.8]], np.float32), np.array([0, 0]), np.array(["a", "b"]))
    >>> score(path, ("x", "y"))["top1"]
    50.0
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from fer_bench.evaluation.metrics import classification_metrics

FILE = "predictions.npz"
VALID_FILE = "predictions-valid.npz"  # the same for the validation hold-out (best checkpoint): calibration fits on it
FIELDS = ("probs", "labels", "ids")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (float32) from logits, row by row."""
    z = np.asarray(logits, dtype=np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def write(path: Path, probs: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> str:
    """Write the file atomically and return its sha256.

    The bytes depend on the arrays only (NOTE: ``np.savez_compressed`` stamps each member with the current time,
    so equal predictions would get other digests; here every member has a fixed date), so two runs that predict
    the same get the same digest.
    """
    arrays = {"probs": np.asarray(probs, np.float32), "labels": np.asarray(labels, np.int64), "ids": np.asarray(ids)}
    if not len(arrays["probs"]) == len(arrays["labels"]) == len(arrays["ids"]):
        raise ValueError(f"predictions of unequal length: { {k: len(v) for k, v in arrays.items()} }")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def read(path: Path) -> dict[str, np.ndarray]:
    """``probs`` (N×K float32), ``labels`` (N, int64) and ``ids`` (N, str) of a predictions file."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in FIELDS}


def score(path: Path, classes: tuple[str, ...]) -> dict[str, float]:
    """Recompute a row's headline metrics (``top1``, ``macro_f1``, per-class...) from its predictions file."""
    p = read(path)
    return classification_metrics(p["probs"], p["labels"], classes)
