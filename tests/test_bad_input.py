"""Every user mistake in the data gets one clear message: what, where, what to do; exit 2; no traceback; no row."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from helpers import write_csv, write_tree
from test_cli import fer_bench

GOOD_ROW = "3," + " ".join(["7"] * 2304) + ",Training"


def _csv(tmp_path, body: bytes | str) -> str:
    path = tmp_path / "fer2013.csv"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return str(path)


def _good_csv_with(tmp_path, line_no: int, replacement: str) -> str:
    """A valid CSV whose data line ``line_no`` (1-based, header = line 1) is replaced."""
    path = tmp_path / "fer2013.csv"
    write_csv(path)
    lines = path.read_text().splitlines()
    lines[line_no - 1] = replacement
    path.write_text("\n".join(lines) + "\n")
    return str(path)


PIX = " ".join(["7"] * 2304)
CSV_CASES = {
    "wrong pixel count": (lambda t: _good_csv_with(t, 5, "3," + " ".join(["7"] * 2000) + ",Training"),
                          ["line 5", "2000 values, expected 2304"]),
    "non-numeric pixel": (lambda t: _good_csv_with(t, 6, "3," + PIX.replace("7", "x7", 1) + ",Training"),
                          ["line 6", "'x7'", "0..255"]),
    "out-of-range pixel": (lambda t: _good_csv_with(t, 7, "3," + PIX.replace("7", "300", 1) + ",Training"),
                           ["line 7", "'300'", "0..255"]),
    "unknown usage": (lambda t: _good_csv_with(t, 8, "3," + PIX + ",Validation"),
                      ["line 8", "Usage", "'Validation'", "Training, PublicTest, PrivateTest"]),
    "label out of range": (lambda t: _good_csv_with(t, 9, "9," + PIX + ",Training"),
                           ["line 9", "emotion", "'9'", "0..6"]),
    "missing column": (lambda t: _csv(t, "emotion,Usage\n3,Training\n"), ["line 1", "missing column(s) pixels"]),
    "no header": (lambda t: _csv(t, GOOD_ROW + "\n"), ["line 1", "no header row", "emotion,pixels,Usage"]),
    "only a header": (lambda t: _csv(t, "emotion,pixels,Usage\n"), ["header but no data rows"]),
    "empty file": (lambda t: _csv(t, b""), ["the file is empty"]),
    "truncated file": (lambda t: _csv(t, "emotion,pixels,Usage\n" + GOOD_ROW + "\n" + GOOD_ROW[:3000]),
                       ["line 3", "truncated"]),
    "binary garbage": (lambda t: _csv(t, bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))),
                       ["not a text CSV"]),
}  # fmt: skip


@pytest.mark.parametrize("case", CSV_CASES)
def test_bad_csv(tmp_path, case):
    make, expected = CSV_CASES[case]
    path = make(tmp_path)
    _assert_clean_failure(tmp_path, ["--data-dir", path], [os.path.basename(path), *expected])


def _tree(tmp_path):
    root = tmp_path / "fer"
    write_tree(root, n_per=1)
    return root


def _empty_class(t):
    root = _tree(t)
    for f in (root / "train" / "disgust").iterdir():
        f.unlink()
    return root


def _unknown_class(t):
    root = _tree(t)
    (root / "train" / "contempt").mkdir()
    Image.new("L", (48, 48)).save(root / "train" / "contempt" / "Training_1.png")
    return root


def _corrupt_image(t):
    root = _tree(t)
    (root / "test" / "happy" / "PublicTest_0.png").write_bytes(b"\x89PNG not really")
    return root


def _no_test_split(t):
    root = _tree(t)
    shutil.rmtree(root / "test")
    return root


def _nothing(t):
    (t / "empty").mkdir()
    return t / "empty"


TREE_CASES = {
    "empty class folder": (_empty_class, ["train/disgust", "holds no images"]),
    "unknown class folder": (_unknown_class, ["contempt", "unknown class folder", "angry, disgust"]),
    "corrupt image": (_corrupt_image, ["PublicTest_0.png", "cannot decode image", "Replace or delete"]),
    "no test split": (_no_test_split, ["no test/ folder"]),
    "nothing at all": (_nothing, ["expected folders train/ and test/", "msambare/fer2013"]),
}


@pytest.mark.parametrize("case", TREE_CASES)
def test_bad_folder_tree(tmp_path, case):
    make, expected = TREE_CASES[case]
    _assert_clean_failure(tmp_path, ["--data-dir", str(make(tmp_path))], expected)


def _assert_clean_failure(tmp_path, data_args: list[str], expected: list[str]) -> None:
    out = tmp_path / "out"
    res = fer_bench("run", "--models", "simple_cnn", "--dataset", "fer2013", *data_args, "--epochs", "1",
                    "--out", str(out), "--no-progress")  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.startswith("fer-bench: error:")
    for part in expected:
        assert part in res.stderr, (part, res.stderr)
    assert not out.exists() or not list(out.rglob("result.json"))
