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

**The same faces under both label sets.** A cross-dataset top-1 beside the model's top-1 on its own test split
compares different faces. Where the two datasets share faces (FER+ relabels FER2013's), :func:`same_face_pairs`
matches them by a label-free content id (:func:`face_ids`: pixels and occurrence number), and :func:`same_faces`
scores the model on exactly those faces under each dataset's labels, from the two predictions files; two models are
then compared face by face under each label set with an exact McNemar test (:func:`paired_same_faces`).

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

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from fer_bench.evaluation.metrics import classification_metrics, confusion_matrix, per_class
from fer_bench.utils.errors import ConfigError

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
    shared = [m.model_classes.index(c) for c in m.shared]
    # top1 over every sample (the LACKING column is 0); every class-averaged metric over the shared classes
    out = classification_metrics(p_ext, y, m.scoring_classes, averaged=np.array(shared, dtype=np.int64))
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


def face_ids(images: np.ndarray) -> np.ndarray:
    """A 16-hex-digit id per face from its pixels alone (no label, no split), numbered among identical faces in order,
    so two datasets that hold the same faces under other labels give them the same ids."""
    seen: dict[bytes, int] = {}
    ids = np.empty(len(images), dtype="<U16")
    for i, img in enumerate(np.ascontiguousarray(images)):
        d = hashlib.blake2b(img.tobytes(), digest_size=16).digest()
        k = seen[d] = seen.get(d, -1) + 1
        ids[i] = hashlib.blake2b(d + k.to_bytes(4, "little"), digest_size=8).hexdigest()
    return ids


def same_face_pairs(source_images, source_ids, target_images, target_ids) -> np.ndarray:
    """(N, 2) sample ids ``[source id, target id]`` of the faces both sets hold, in the target's order: the faces
    are matched by :func:`face_ids` over each set as given (pass one split of each, in its dataset order)."""
    src = {f: s for f, s in zip(face_ids(source_images), source_ids, strict=True)}
    pairs = [(src[f], t) for f, t in zip(face_ids(target_images), target_ids, strict=True) if f in src]
    return np.array(pairs, dtype="<U16").reshape(-1, 2)


def _rows(ids: np.ndarray, wanted: np.ndarray, where: str) -> np.ndarray:
    pos = {i: j for j, i in enumerate(ids)}
    missing = [w for w in wanted if w not in pos]
    if missing:
        raise ConfigError(f"{where}: {len(missing)} paired face(s) missing from its predictions (first: {missing[0]}). "
                          "Pair the predictions files of the split the pairs were made for.")  # fmt: skip
    return np.array([pos[w] for w in wanted], dtype=np.int64)


def correct_on_pairs(own: dict, own_classes, cross: dict, m: ClassMap, pairs: np.ndarray, side: str = "source"):
    """Per paired face: (right under the model's own dataset's labels, right under the other dataset's labels).

    ``own``: the model's predictions file on its own dataset (``probs`` over ``own_classes``, labels in that order);
    ``cross``: its cross-dataset file (:func:`extend`'s space, ``m``). ``side`` says which column of ``pairs``
    (``source`` or ``target``) holds the own file's ids.
    """
    own_col, cross_col = (0, 1) if side == "source" else (1, 0)
    io, ic = _rows(own["ids"], pairs[:, own_col], "own"), _rows(cross["ids"], pairs[:, cross_col], "cross")
    to_model = np.array([m.model_classes.index(c) for c in own_classes])  # own labels → model class indices
    pred_own = to_model[own["probs"][io].argmax(1)]
    right_own = pred_own == to_model[own["labels"][io]]
    right_cross = cross["probs"][ic][:, :-1].argmax(1) == cross["labels"][ic]
    return right_own, right_cross


def same_faces(right_own: np.ndarray, right_cross: np.ndarray) -> dict[str, float]:
    """Top-1 (%) on the same faces under the model's own dataset's labels and under the other dataset's."""
    return {"n_faces": int(len(right_own)), "top1_own_labels": float(np.mean(right_own) * 100),
            "top1_other_labels": float(np.mean(right_cross) * 100)}  # fmt: skip


def mcnemar_exact(right_a: np.ndarray, right_b: np.ndarray) -> dict[str, float]:
    """A − B top-1 (pt) on paired faces and the exact McNemar test: a two-sided binomial test on the discordant
    faces (SciPy's ``binomtest``, p = 0.5)."""
    a_only, b_only = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return {
        "diff_pt": float((np.mean(right_a) - np.mean(right_b)) * 100),
        "a_only": a_only,
        "b_only": b_only,
        "n": int(len(right_a)),
        "p": float(p),
        "test": "exact McNemar (two-sided binomial on discordant faces)",
    }


def paired_same_faces(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> dict[str, dict]:
    """Two models' (right_own, right_cross) on the same paired faces → A − B under each label set."""
    if len(a[0]) != len(b[0]):
        raise ConfigError(f"paired same-faces figures over {len(a[0])} and {len(b[0])} faces: pair the same faces.")
    return {"own_labels": mcnemar_exact(a[0], b[0]), "other_labels": mcnemar_exact(a[1], b[1])}
