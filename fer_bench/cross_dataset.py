"""Scoring a model on a dataset whose classes are not the ones it was trained on (cross-dataset evaluation).

Classes are matched by name (every registered dataset uses the same names: ``angry``, ``happy``, ``contempt``…).
The model predicts over its own head, with no knowledge of the target's label set: its argmax is its answer. Then

- ``top1``: over every sample; a sample whose class the model lacks (FER+'s ``contempt`` for a FER2013 model) is an
  error, and so is a prediction of a class the dataset lacks (``contempt`` on FER2013 for a FER+ model);
- ``macro_f1`` (and macro precision, recall, weighted F1): over the **shared** classes, on every sample
  (scikit-learn's ``f1_score`` with ``labels`` = the shared classes: a prediction outside them is a miss for the true
  class, never a hit); ``f1_<class>`` for each class of the model and for LACKING (0: never predicted);
- ``top1_shared``: over the samples of a shared class only; ``n_lacking``: the samples whose class the model lacks;
- ``top1_restricted`` / ``macro_f1_restricted``: the common alternative, the argmax taken over the shared classes'
  logits only, on the shared samples.

The row's predictions file keeps the model's probabilities in its own class order plus one column of zeros, and
each label as a model class index, or that extra index for a class the model lacks: ``predictions.score`` on it
with :attr:`ClassMap.scoring_classes` gives back ``top1`` exactly.

Example:
    >>> m = class_map(("angry", "happy", "sad"), ("happy", "sad", "contempt"))
    >>> m.shared, m.lacking, m.to_model().tolist()
    (('happy', 'sad'), ('contempt',), [1, 2, 3])
    >>> probs = np.array([[0.1, 0.8, 0.1], [0.7, 0.1, 0.2], [0.1, 0.1, 0.8]], np.float32)
    >>> r = metrics(probs, np.array([0, 1, 2]), m)  # happy right; sad read as angry; a contempt face
    >>> r["top1"], r["top1_shared"], r["n_lacking"], r["top1_restricted"]
    (33.33333333333333, 50.0, 1, 100.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer_bench.errors import ConfigError
from fer_bench.metrics import classification_metrics, confusion_matrix, per_class

LACKING = "(lacked by the model)"  # the extra scoring class: a sample whose class the model was never trained on


@dataclass(frozen=True)
class ClassMap:
    """How a model's classes (its head, in its training order) meet a dataset's (its label order)."""

    model_classes: tuple[str, ...]
    data_classes: tuple[str, ...]

    @property
    def shared(self) -> tuple[str, ...]:
        """The classes both have, in the dataset's order."""
        return tuple(c for c in self.data_classes if c in self.model_classes)

    @property
    def lacking(self) -> tuple[str, ...]:
        """The dataset's classes that the model has no output for."""
        return tuple(c for c in self.data_classes if c not in self.model_classes)

    @property
    def extra(self) -> tuple[str, ...]:
        """The model's classes that the dataset never labels (predicting one is always an error)."""
        return tuple(c for c in self.model_classes if c not in self.data_classes)

    @property
    def scoring_classes(self) -> tuple[str, ...]:
        """The label space of the row's predictions file and confusion matrix: the model's classes, then LACKING."""
        return (*self.model_classes, LACKING)

    def to_model(self) -> np.ndarray:
        """Dataset label index → model class index (``len(model_classes)`` for a class the model lacks)."""
        k = len(self.model_classes)
        return np.array([self.model_classes.index(c) if c in self.model_classes else k for c in self.data_classes])

    def describe(self) -> dict:
        return {"model_classes": list(self.model_classes), "data_classes": list(self.data_classes),
                "shared": list(self.shared), "lacking": list(self.lacking), "extra": list(self.extra),
                "rule": "argmax over the model's head; top1 over all samples (a class the model lacks, or a "
                        "prediction of a class the dataset lacks, is an error); macro_f1 and f1_<class> over the "
                        "shared classes on all samples; *_restricted: argmax over the shared classes only, on the "
                        "shared samples"}  # fmt: skip


def class_map(model_classes, data_classes, where: str = "the model") -> ClassMap:
    """Match by name; at least one class must be shared.

    Raises:
        ConfigError: no class in common (nothing could be scored).
    """
    m = ClassMap(tuple(model_classes), tuple(data_classes))
    if not m.shared:
        raise ConfigError(f"{where}: trained on the classes {list(m.model_classes)}, none of which the dataset "
                          f"has ({list(m.data_classes)}). Score it on a dataset that shares a class.")  # fmt: skip
    return m


def extend(probs: np.ndarray, labels: np.ndarray, m: ClassMap) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities with a zero LACKING column, labels as model class indices): the predictions file's arrays."""
    probs = np.asarray(probs, np.float32)
    return np.hstack([probs, np.zeros((len(probs), 1), np.float32)]), m.to_model()[np.asarray(labels)]


def metrics(probs: np.ndarray, labels: np.ndarray, m: ClassMap) -> dict[str, float]:
    """The cross-dataset figures of ``probs`` (N × model classes) against ``labels`` (dataset indices), with
    ``precision_/recall_/f1_<class>`` for every class of :attr:`ClassMap.scoring_classes` (the shared classes' F1
    are those of the macro-F1) and the macro figures over the shared classes."""
    p_ext, y = extend(probs, labels, m)
    k = len(m.model_classes)
    out = classification_metrics(p_ext, y, m.scoring_classes)  # top1 over every sample: the LACKING column is 0
    shared = [m.model_classes.index(c) for c in m.shared]
    pc = per_class(confusion_matrix(y, p_ext.argmax(1), k + 1))
    support = pc["support"][shared].astype(np.float64)
    out |= {
        "macro_f1": float(pc["f1"][shared].mean() * 100),
        "macro_precision": float(pc["precision"][shared].mean() * 100),
        "macro_recall": float(pc["recall"][shared].mean() * 100),
        "weighted_f1": float((pc["f1"][shared] * support).sum() / max(support.sum(), 1) * 100),
    }
    on_shared = y < k
    pred = p_ext.argmax(1)
    # the restricted alternative: the argmax over the shared classes' outputs, on the shared samples
    restricted = np.array(shared)[p_ext[on_shared][:, shared].argmax(1)]
    f1_r = per_class(confusion_matrix(y[on_shared], restricted, k + 1))["f1"][shared]
    any_shared = bool(on_shared.any())
    return out | {
        "top1_shared": float(np.mean(pred[on_shared] == y[on_shared]) * 100) if any_shared else 0.0,
        "n_shared": int(on_shared.sum()),
        "n_lacking": int((~on_shared).sum()),
        "top1_restricted": float(np.mean(restricted == y[on_shared]) * 100) if any_shared else 0.0,
        "macro_f1_restricted": float(f1_r.mean() * 100),
    }


def confusion(probs: np.ndarray, labels: np.ndarray, m: ClassMap) -> list[list[int]]:
    """The confusion matrix in :attr:`ClassMap.scoring_classes` space (rows: true, columns: predicted)."""
    p_ext, y = extend(probs, labels, m)
    return confusion_matrix(y, p_ext[:, :-1].argmax(1), len(m.scoring_classes)).tolist()
