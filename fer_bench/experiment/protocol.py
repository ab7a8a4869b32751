"""A result's identity: the protocol hash that says which numbers may be averaged, compared and reused.

Two rows share a protocol hash exactly when everything that changes their numbers, apart from the seed and the
evaluation split, is the same: the resolved recipe (without seed, split, name, version and description), the
dataset and a fingerprint of its content, the dedup protocol, the input size, the starting weights and their
digest, and the numeric precision. The model is not part of it (models are compared *under* one protocol), nor is
the device (its model name is a grouping key of its own: throughput belongs to a device, not to a protocol).

Nothing here imports torch at module level; the data fingerprint needs numpy only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from fer_bench.recipes.schema import without_unset_additions
from fer_bench.utils.io import file_sha256

# Bump when what a hash stands for changes, so old and new hashes never collide. 1: hold-outs and subsets drawn in
# load order, recipe fields as written; 2: samples in content order, recipe fields
# resolved (precision, channels_last, input size), evaluation batch size and TTA list left out.
VERSION = 2
# Recipe fields that do not change a row's headline numbers: names and descriptions, the seed and the split (grouping
# keys of their own), the evaluation batch size, the TTA list (TTA figures are columns beside the headline), and
# train.compile (like the device, it changes how fast the same computation runs; compiled and eager rows average).
RECIPE_EXCLUDED = ("name", "version", "description", "train.seed", "eval.split", "eval.batch_size", "eval.tta",
                   "train.compile")  # fmt: skip

_DIGESTS: dict[int, tuple[Any, list[bytes]]] = {}


def _sample_digests(data) -> list[bytes]:
    """One 16-byte digest per sample over its decoded pixels, label and split id (cached per in-memory dataset)."""
    key = id(data.images)
    hit = _DIGESTS.get(key)
    if hit is not None and hit[0] is data.images:
        return hit[1]
    images = np.ascontiguousarray(data.images)
    # Label distributions (FER+ crossentropy mode) are part of a sample's content; data without them hashes as before.
    soft = getattr(data, "soft", None)
    extra = (lambda i: b"") if soft is None else (lambda i: np.ascontiguousarray(soft[i], dtype=np.float32).tobytes())
    digests = [
        hashlib.blake2b(
            images[i].tobytes()
            + int(data.labels[i]).to_bytes(2, "little")
            + int(data.splits[i]).to_bytes(1, "little")
            + extra(i),
            digest_size=16,
        ).digest()
        for i in range(len(images))
    ]
    _DIGESTS[key] = (data.images, digests)
    return digests


def data_fingerprint(data) -> str:
    """sha256 (16 hex) of a dataset's content: every sample's decoded pixels, label and split id, in any order.

    Order-independent (per-sample digests are sorted), so the Kaggle folder tree and a CSV rebuilt from the same
    pixels agree; paths, mtimes and file formats never enter. Class names enter, so a relabelled copy differs.
    Runs see samples in :func:`content_rank` order, so equal fingerprints also mean equal hold-outs and batches.
    """
    images = data.images
    h = hashlib.sha256(json.dumps([list(data.classes), list(images.shape[1:]), str(images.dtype)]).encode())
    for d in sorted(_sample_digests(data)):
        h.update(d)
    return h.hexdigest()[:16]


def content_rank(data) -> np.ndarray:
    """Each sample's position when samples are ordered by content (their digests); ties keep load order.

    The protocol orders every index set by this before splitting, subsetting or batching, so the same content
    gives the same hold-out, the same training subset and the same batches whatever order the files loaded in.
    """
    digests = _sample_digests(data)
    order = sorted(range(len(digests)), key=digests.__getitem__)
    rank = np.empty(len(digests), dtype=np.int64)
    rank[order] = np.arange(len(digests))
    return rank


def sample_ids(data) -> np.ndarray:
    """A 16-hex-digit id per sample that names its content, never its file, row or load order.

    blake2b over the sample's content digest (pixels, label, split) and its occurrence number among samples of
    identical content. NOTE: a pixel hash alone collides: FER2013 holds identical faces, some under different
    labels, and some identical (face, label) pairs more than once; the occurrence number keeps every id unique,
    and since such samples are indistinguishable, which of them gets which number changes nothing.
    """
    digests = _sample_digests(data)
    seen: dict[bytes, int] = {}
    ids = np.empty(len(digests), dtype="<U16")
    for i, d in enumerate(digests):
        k = seen[d] = seen.get(d, -1) + 1
        ids[i] = hashlib.blake2b(d + k.to_bytes(4, "little"), digest_size=8).hexdigest()
    return ids


def weights_identity(weights: str | None, pretrained: bool, model_name: str) -> dict[str, str | None]:
    """Where a run's starting weights come from, as the protocol sees them.

    ``{"source": "scratch"}``, ``{"source": "file", "sha256": …}`` (the file's name does not matter, its bytes do)
    or ``{"source": "timm-pretrained", "model": …, "tag": <arch.tag>, "sha256": …}``: timm's tag and the cached
    file's digest, resolved without loading the model (``sha256`` None while the file is not cached yet), since
    one model name stands for other weights under another timm version's default tag or another cache.
    """
    if weights:
        return {"source": "file", "sha256": file_sha256(weights)}
    if pretrained:
        from fer_bench.models.weights import pretrained_identity  # torch: imported only where pretrained is asked

        return {"source": "timm-pretrained", "model": model_name} | pretrained_identity(model_name)
    return {"source": "scratch"}


def weights_label(identity: dict[str, Any]) -> str:
    """A short name for a run's starting weights, for tables: ``scratch``, ``file:<sha256[:12]>``, ``timm:<tag>``."""
    if identity["source"] == "file":
        return f"file:{identity['sha256'][:12]}"
    if identity["source"] == "timm-pretrained":
        return f"timm:{identity.get('tag') or identity.get('model')}"
    return identity["source"]


def precision_label(precision: str, device_type: str, device_index: int | None = None) -> str:
    """The resolved precision, with TF32 named when CUDA may run fp32 matmuls or convolutions in TF32.

    Reads the flags through :func:`fer_bench.utils.provenance.tf32` (one reader of that fact: it knows torch's two TF32
    interfaces and the compute capability), so the row's ``tf32`` field and its protocol never disagree.
    """
    if precision != "fp32" or device_type != "cuda":
        return precision
    import torch

    from fer_bench.utils.provenance import tf32 as tf32_flags

    flags = tf32_flags(torch.device("cuda", device_index) if device_index is not None else torch.device("cuda"))
    on = [name for name, value in flags.items() if value]
    return f"fp32+tf32({','.join(on)})" if on else precision


def recipe_fields(recipe_dict: dict[str, Any]) -> dict[str, Any]:
    """The resolved recipe as a dict without the fields in :data:`RECIPE_EXCLUDED`, nor the options added after
    protocol v2 while they hold their defaults (``fer_bench.recipes.schema.HASHED_WHEN_SET``: old hashes stay)."""
    out = without_unset_additions(json.loads(json.dumps(recipe_dict, default=list)))  # a deep copy, tuples as lists
    for dotted in RECIPE_EXCLUDED:
        *parents, leaf = dotted.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return out


def protocol_fields(
    recipe_dict: dict[str, Any],
    *,
    dataset: str,
    fingerprint: str,
    dedup: dict | None,
    img_size: int,
    weights: dict[str, str],
    precision: str,
) -> dict[str, Any]:
    """Everything that makes up a protocol, as one JSON-able dict (written beside each result as protocol.json)."""
    dedup_id = "standard"
    if dedup is not None:
        blob = json.dumps(sorted(dedup.get("drop_test_hashes", [])))
        dedup_id = f"{dedup.get('name', 'dedup')}:{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
    return {
        "version": VERSION,
        "recipe": recipe_fields(recipe_dict),
        "dataset": dataset,
        "data_fingerprint": fingerprint,
        "dedup": dedup_id,
        "img_size": int(img_size),
        "epochs": int(recipe_dict["train"]["epochs"]),
        "weights": weights,
        "precision": precision,
    }


def protocol_hash(fields: dict[str, Any]) -> str:
    """12 hex digits of sha256 over the canonical JSON of :func:`protocol_fields`."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def run_name(
    model: str,
    recipe: str,
    dataset: str,
    split: str,
    seed: int | None,
    key: str,
    *,
    dedup: str = "standard",
    kind: str | None = None,
) -> str:
    """The one name of a run folder: ``[<kind>-]<model>-<recipe>-<dataset>-<split>[-<dedup>][-s<seed>]-<key>``.

    ``key`` is what makes the numbers: a trained run's protocol hash (:func:`protocol_hash`: its epochs, overrides,
    weights and data), an evaluation's digest of checkpoint and samples. Runs of another protocol never share a
    folder, so a rerun with other settings writes beside the earlier one; a rerun of the same protocol finds its
    folder (and ``last.pt``) again. ``kind`` marks folders that are not trainings (``eval``).

    Example:
        >>> run_name("timm:resnet18", "baseline", "fer2013", "test", 0, "0123456789ab")
        'timm_resnet18-baseline-fer2013-test-s0-0123456789ab'
    """
    safe = model.replace(":", "_").replace("/", "_")
    parts = [kind, safe, recipe, dataset, split, None if dedup == "standard" else dedup,
             None if seed is None else f"s{seed}", key]  # fmt: skip
    return "-".join(p for p in parts if p)
