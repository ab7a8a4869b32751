"""Per-run figures (confusion matrix, learning curve) and the per-class table, written next to the result row."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.report.mpl import pyplot


def save_run_plots(row: dict[str, Any], run_dir: Path) -> None:
    save_per_class_table(row, run_dir / "per_class.csv")
    save_confusion_matrix(row, run_dir / "confusion_matrix.png")
    if row.get("history"):  # an eval row of a bare weights file has no training history
        save_learning_curve(row, run_dir / "learning_curve.png")
    if (run_dir / "predictions.npz").is_file():
        save_reliability(run_dir, f"{row.get('model')} · {row.get('split')} · seed {row.get('seed')}: reliability")


def save_reliability(run_dir: Path, title: str = "") -> None:
    """``reliability.png``: the reliability diagram of the row's headline probabilities (``predictions.npz``), and
    after temperature scaling when the validation hold-out's predictions are beside them."""
    from fer_bench.evaluation import calibration, comparison, predictions

    test = predictions.read(run_dir / predictions.FILE)
    valid = run_dir / comparison.VALID_FILE
    t = None
    if valid.is_file():
        v = predictions.read(valid)
        t = calibration.fit_temperature(v["probs"], v["labels"])
    reliability_diagram(test["probs"], test["labels"], run_dir / "reliability.png", title=title,
                                    temperature=t)  # fmt: skip


def save_per_class_table(row: dict[str, Any], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1", "support"])
        for i, c in enumerate(row["classes"]):
            t = row["test"]
            w.writerow([c, f"{t[f'precision_{c}']:.2f}", f"{t[f'recall_{c}']:.2f}", f"{t[f'f1_{c}']:.2f}",
                        sum(row["confusion_matrix"][i])])  # fmt: skip


def save_confusion_matrix(row: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    cm = np.array(row["confusion_matrix"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    classes = row["classes"]
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (row-normalised)")
    ax.set_title(f"{row['model']} · {row['recipe']} · {row['split']} · top-1 {row['test']['top1']:.1f} %", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_learning_curve(row: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    h = row["history"]
    epochs = [e["epoch"] for e in h]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120)
    a.plot(epochs, [e["train_loss"] for e in h], "o-", label="train loss")
    a.plot(epochs, [e["val_loss"] for e in h], "o-", label="val loss")
    a.set_xlabel("epoch")
    a.legend()
    b.plot(epochs, [e["val_top1"] for e in h], "o-", label="val top-1")
    b.plot(epochs, [e["val_macro_f1"] for e in h], "o-", label="val macro-F1")
    b.set_xlabel("epoch")
    b.legend()
    fig.suptitle(f"{row['model']} · {row['recipe']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, path: Path, *, title: str = "",
                        temperature: float | None = None) -> None:  # fmt: skip
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration and each bin's share of
    samples; with ``temperature``, the scaled probabilities' bars beside the raw ones."""
    from fer_bench.evaluation.calibration import N_BINS, ece, reliability, scale

    plt = pyplot()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.8, 5.6), dpi=120, height_ratios=[3, 1], sharex=True)
    width = 1 / N_BINS
    centres = (np.arange(N_BINS) + 0.5) * width
    sets = [("raw", probs, "tab:blue")]
    if temperature is not None:
        sets.append((f"T = {temperature:.2f}", scale(probs, temperature), "tab:orange"))
    shift = width / (2 * len(sets))
    for i, (name, p, colour) in enumerate(sets):
        r = reliability(p, labels)
        x = centres + (i - (len(sets) - 1) / 2) * 2 * shift
        label = f"{name}: ECE {ece(p, labels):.2f} %"
        ax.bar(x, np.nan_to_num(r["acc"]), width=2 * shift, color=colour, alpha=0.75, edgecolor="k", label=label)
        hist.bar(x, r["count"] / r["count"].sum(), width=2 * shift, color=colour, alpha=0.75)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title or "reliability (15 equal-width bins)")
    ax.legend(fontsize=7, loc="upper left")
    hist.set(xlabel="confidence (max class probability)", ylabel="share")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
