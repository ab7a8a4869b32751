"""A result's identity: the protocol hash covers what changes a number and nothing that doesn't."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fer_bench.data import load_dataset
from fer_bench.data.labels import SPLITS
from fer_bench.evaluation import predictions
from fer_bench.experiment.plan import RunOptions, run_protocol
from fer_bench.experiment.protocol import data_fingerprint, protocol_fields, protocol_hash, sample_ids, weights_identity
from fer_bench.recipes import load_recipe, recipe_hash, recipe_to_dict
from fer_bench.utils import cpu_caps
from helpers import write_tree

USAGE = {0: "Training", 1: "PublicTest", 2: "PrivateTest"}


def _csv_from(data, path) -> None:
    """Rebuild a FER2013 CSV from decoded pixels, rows in reverse order (as a copy made elsewhere might be)."""
    lines = ["emotion,pixels,Usage"]
    for i in reversed(range(len(data))):
        pix = " ".join(map(str, data.images[i].ravel()))
        lines.append(f"{data.labels[i]},{pix},{USAGE[int(data.splits[i])]}")
    path.write_text("\n".join(lines) + "\n")


def test_the_folder_tree_and_a_csv_rebuilt_from_it_have_one_fingerprint(tmp_path):
    write_tree(tmp_path / "tree", n_per=2)
    tree = load_dataset("fer2013", tmp_path / "tree", tmp_path / "cache")
    _csv_from(tree, tmp_path / "fer2013.csv")
    csv = load_dataset("fer2013", tmp_path / "fer2013.csv", tmp_path / "cache")
    assert csv.source != tree.source and not np.array_equal(csv.labels, tree.labels)  # other file, other order
    assert data_fingerprint(csv) == data_fingerprint(tree)


@pytest.mark.parametrize("change", ["pixel", "label", "split"])
def test_any_change_of_content_changes_the_fingerprint(tmp_path, change):
    write_tree(tmp_path / "tree", n_per=2)
    data = load_dataset("fer2013", tmp_path / "tree", tmp_path / "cache")
    images, labels, splits = data.images.copy(), data.labels.copy(), data.splits.copy()
    if change == "pixel":
        images[3, 10, 10] ^= 1
    elif change == "label":
        labels[3] = (labels[3] + 1) % 7
    else:
        splits[-1] = SPLITS.index("public") if splits[-1] != SPLITS.index("public") else SPLITS.index("private")
    other = dataclasses.replace(data, images=images, labels=labels, splits=splits)
    assert data_fingerprint(other) != data_fingerprint(data)


def _hash(recipe, **kw) -> str:
    args = {"dataset": "fer2013", "fingerprint": "f" * 16, "dedup": None, "img_size": 48,
            "weights": {"source": "scratch"}, "precision": "fp32"} | kw  # fmt: skip
    return protocol_hash(protocol_fields(recipe_to_dict(recipe), **args))


def test_seed_split_name_and_description_are_not_part_of_the_protocol():
    base = load_recipe("baseline")
    for sets in (["train.seed=7"], ["eval.split=private"], ["name=other", "description=words", "version=9"]):
        assert _hash(load_recipe("baseline", sets)) == _hash(base), sets


@pytest.mark.parametrize("what", ["epochs", "lr", "size", "data", "dataset", "weights", "precision", "dedup"])
def test_everything_that_changes_a_number_changes_the_protocol(what):
    base = load_recipe("baseline")
    changed = {
        "epochs": lambda: _hash(load_recipe("baseline", ["train.epochs=30"])),
        "lr": lambda: _hash(load_recipe("baseline", ["optim.lr=0.01"])),
        "size": lambda: _hash(base, img_size=224),
        "data": lambda: _hash(base, fingerprint="0" * 16),
        "dataset": lambda: _hash(base, dataset="synthetic"),
        "weights": lambda: _hash(base, weights={"source": "file", "sha256": "ab"}),
        "precision": lambda: _hash(base, precision="amp_bf16"),
        "dedup": lambda: _hash(base, dedup={"name": "dedup", "drop_test_hashes": ["x"]}),
    }[what]()
    assert changed != _hash(base)


def test_recipe_hash_names_the_recipe_without_its_seed():
    assert recipe_hash(load_recipe("baseline", ["train.seed=1"])) == recipe_hash(load_recipe("baseline"))
    assert recipe_hash(load_recipe("baseline", ["train.epochs=2"])) != recipe_hash(load_recipe("baseline"))


def test_weights_enter_by_their_bytes_not_their_name(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"weights")
    (tmp_path / "b.pt").write_bytes(b"weights")
    (tmp_path / "c.pt").write_bytes(b"other")
    ident = [weights_identity(str(tmp_path / n), False, "resnet18") for n in ("a.pt", "b.pt", "c.pt")]
    assert ident[0] == ident[1] != ident[2]
    assert weights_identity(None, False, "resnet18") == {"source": "scratch"}
    assert weights_identity(None, True, "resnet18")["source"] == "timm-pretrained"


def test_a_run_and_its_suite_check_compute_one_protocol(tmp_path):
    """run_protocol before training (what a suite compares) equals the hash the run writes on its row."""
    from fer_bench.experiment.runner import run_model

    data = load_dataset("synthetic")
    recipe = load_recipe("baseline", ["train.epochs=1", "data.limit_train=70", "eval.batch_size=512"])
    opts = RunOptions(out=tmp_path, device="cpu", progress=False)
    expected, fields = run_protocol("simple_cnn", recipe, data, opts)
    row = run_model("simple_cnn", recipe, data, opts)
    assert row["protocol_hash"] == expected and row["data_fingerprint"] == fields["data_fingerprint"]
    assert (tmp_path / row["run_id"] / "protocol.json").is_file()


def test_the_load_order_changes_no_number(tmp_path):
    """A CSV and a folder tree of the same faces: one protocol, and the same hold-out, subset, batches and figures."""
    from fer_bench.experiment.runner import run_model

    write_tree(tmp_path / "tree", n_per=6)
    tree = load_dataset("fer2013", tmp_path / "tree", tmp_path / "cache")
    _csv_from(tree, tmp_path / "fer2013.csv")
    csv = load_dataset("fer2013", tmp_path / "fer2013.csv", tmp_path / "cache")
    recipe = load_recipe("baseline", ["train.epochs=1", "data.limit_train=60", "data.val_fraction=0.2",
                                      "eval.split=public", "train.batch_size=16"])  # fmt: skip
    rows = [run_model("simple_cnn", recipe, d, RunOptions(out=tmp_path / f"out{i}", device="cpu", progress=False))
            for i, d in enumerate((tree, csv))]  # fmt: skip
    assert rows[0]["protocol_hash"] == rows[1]["protocol_hash"]
    strip = lambda h: {k: v for k, v in h.items() if not k.endswith("_s")}  # noqa: E731  (timings differ)
    assert [strip(h) for h in rows[0]["history"]] == [strip(h) for h in rows[1]["history"]]
    assert rows[0]["test"] == rows[1]["test"]
    # per-sample predictions: the same ids (content, not file or row), labels and probabilities, to the byte
    files = [tmp_path / f"out{i}" / r["run_id"] / r["predictions"]["file"] for i, r in enumerate(rows)]
    tree_pred, csv_pred = (predictions.read(f) for f in files)
    assert len(set(tree_pred["ids"])) == len(tree_pred["ids"]) == rows[0]["n_test"]
    assert tree_pred["ids"].tolist() == csv_pred["ids"].tolist()
    assert all(np.array_equal(tree_pred[k], csv_pred[k]) for k in ("labels", "probs"))
    assert rows[0]["predictions"]["sha256"] == rows[1]["predictions"]["sha256"]
    # the file gives the row's own figures back, exactly
    for row, f in zip(rows, files, strict=True):
        again = predictions.score(f, tree.classes)
        assert (again["top1"], again["macro_f1"]) == (row["test"]["top1"], row["test"]["macro_f1"])


def test_sample_ids_are_unique_among_identical_faces_and_follow_content_not_load_order(tmp_path):
    """FER2013 holds identical faces, some under different labels: a pixel hash alone would collide."""
    write_tree(tmp_path / "tree", n_per=2)
    data = load_dataset("fer2013", tmp_path / "tree", tmp_path / "cache")
    n, copies = len(data), [0, 0, 0]  # two copies of face 0 under its label, one under another label
    images = np.concatenate([data.images, data.images[copies]])
    labels = np.concatenate([data.labels, [data.labels[0], data.labels[0], (data.labels[0] + 1) % 7]])
    dup = dataclasses.replace(
        data, images=images, labels=labels, splits=np.concatenate([data.splits, data.splits[copies]])
    )
    ids = sample_ids(dup)
    assert len(set(ids)) == len(ids) == n + 3
    order = np.random.default_rng(0).permutation(len(ids))  # another load order, as another file format gives
    moved = dataclasses.replace(dup, images=dup.images[order], labels=dup.labels[order], splits=dup.splits[order])
    back = sample_ids(moved)[np.argsort(order)]  # the moved ids, in the original sample order
    assert back[1:n].tolist() == ids[1:n].tolist() and back[n + 2] == ids[n + 2]
    # the three identical (face, label) samples are indistinguishable: which gets which of their ids is free
    assert set(back[[0, n, n + 1]]) == set(ids[[0, n, n + 1]])


@pytest.mark.parametrize("sets", [["train.precision=fp32"], ["train.channels_last=false"], ["input.img_size=null"],
                                  ["eval.batch_size=64"], ["eval.tta=[tencrop]"]])  # fmt: skip
def test_settings_that_resolve_to_the_same_run_share_a_protocol(sets, monkeypatch):
    """On a CPU without bf16 instructions (and no committed grid), precision auto is fp32 and channels_last null is
    false; simple_cnn's native size is 48."""
    monkeypatch.setattr(cpu_caps, "probe", lambda: cpu_caps.CpuCaps(frozenset({"avx2"}), "AVX2", 2))
    monkeypatch.setattr(cpu_caps, "MEASURED", {})
    data = load_dataset("synthetic")
    opts = RunOptions(out=None, device="cpu", progress=False)
    base = run_protocol("simple_cnn", load_recipe("baseline"), data, opts)[0]
    assert run_protocol("simple_cnn", load_recipe("baseline", sets), data, opts)[0] == base


def test_what_the_cpu_rule_resolves_is_in_the_protocol(monkeypatch):
    """On a processor whose committed grid and accuracy check adopted bf16, precision auto is the run that amp_bf16
    names, not the fp32 one; a channels_last that the rule turns on (from a committed grid) is in the hash too."""
    bf16 = cpu_caps.CpuCaps(frozenset({"avx512f", "avx512_bf16"}), "AVX512", 2)
    monkeypatch.setattr(cpu_caps, "probe", lambda: bf16)
    adopted = cpu_caps.GridFacts("results/x", amp_bf16=1.3, bf16_accuracy_ok=True)
    monkeypatch.setattr(cpu_caps, "MEASURED", {"avx512_bf16": adopted})
    data = load_dataset("synthetic")
    opts = RunOptions(out=None, device="cpu", progress=False)
    auto = run_protocol("simple_cnn", load_recipe("baseline"), data, opts)
    assert auto[1]["precision"] == "amp_bf16" and auto[1]["recipe"]["train"]["channels_last"] is False
    assert auto[0] == run_protocol("simple_cnn", load_recipe("baseline", ["train.precision=amp_bf16"]), data, opts)[0]
    assert auto[0] != run_protocol("simple_cnn", load_recipe("baseline", ["train.precision=fp32"]), data, opts)[0]
    grid = cpu_caps.GridFacts("results/x", amp_bf16=1.3, bf16_accuracy_ok=True, channels_last={"amp_bf16": 1.2})
    monkeypatch.setattr(cpu_caps, "MEASURED", {"avx512_bf16": grid})
    fields = run_protocol("simple_cnn", load_recipe("baseline"), data, opts)[1]
    assert fields["recipe"]["train"]["channels_last"] is True
    assert protocol_hash(fields) != auto[0]
