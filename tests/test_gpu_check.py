"""The converged CPU suite, the GPU sprint suite and scripts/gpu-check.sh, rehearsed end to end on CPU.

A lent GPU gives 15 minutes in all; the script must work the first time. Here it runs with tiny settings
(GPU_CHECK_TINY=1: one seed, one epoch, 14 training faces, 32 px, CPU) through the same phases, with mlflow and optuna
made unimportable as on the GPU machine, from a FER2013 pack made by scripts/fer2013_pack.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fer_bench.experiment.suite import cells, load_suite
from helpers import write_tree

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "scripts" / "fer2013_pack.py"
SPRINT = ROOT / "benchmarks" / "fer2013-gpu-sprint.yaml"
CONVERGED = ROOT / "benchmarks" / "fer2013-cpu-converged.yaml"

# sitecustomize for the rehearsal's Python: the GPU machine's image has torch, timm, pandas, sklearn, no mlflow/optuna
BLOCK = """
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "optuna"):
            raise ModuleNotFoundError(f"No module named {name!r} (absent on the GPU machine)")
sys.meta_path.insert(0, _Absent())
"""


def _pack(src: Path, dest: Path, action: str = "pack") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PACK), action, str(src), str(dest)], capture_output=True, text=True)


def test_the_sprint_suite_covers_five_families_three_seeds_with_the_fast_recipe():
    suite = load_suite(SPRINT)
    models = {m.model for m in suite.models}
    assert len(models) >= 5 and models <= {
        "vgg_khaireddin",
        "vgg16_bn",
        "resnet18",
        "resnet50",
        "efficientnet_b2",
        "efficientnetv2_s",
    }
    assert any(m.startswith("vgg") for m in models) and any(m.startswith("resnet") for m in models)
    assert any(m.startswith("efficientnet") for m in models)
    assert suite.seeds == (0, 1, 2) and set(suite.splits) == {"public", "private"}
    sprint = cells(suite)
    assert len(sprint) == len(models) * 3
    assert {c.recipe.name for c in sprint} == {"fast-48"} and all(not c.recipe.input.pretrained for c in sprint)
    assert {c.recipe.train.batch_size for c in sprint} == {256}


def test_the_converged_cpu_suite_is_resnet18_at_48_px_with_fast_48():
    converged = cells(load_suite(CONVERGED))
    assert [(c.model, c.recipe.name, c.recipe.input.img_size) for c in converged] == [("resnet18", "fast-48", 48)]
    assert converged[0].recipe.train.precision == "fp32" and set(converged[0].splits) == {"public", "private"}


def test_the_pack_carries_the_tree_byte_for_byte_and_refuses_a_corrupt_one(tmp_path):
    write_tree(tmp_path / "tree", n_per=1)
    assert _pack(tmp_path / "tree", tmp_path / "pack").returncode == 0
    assert _pack(tmp_path / "pack", tmp_path / "back", "unpack").returncode == 0
    files = sorted(p.relative_to(tmp_path / "tree") for p in (tmp_path / "tree").rglob("*.png"))
    assert files == sorted(p.relative_to(tmp_path / "back") for p in (tmp_path / "back").rglob("*.png"))
    assert files and all((tmp_path / "tree" / f).read_bytes() == (tmp_path / "back" / f).read_bytes() for f in files)
    blob = bytearray((tmp_path / "pack" / "fer2013.pack").read_bytes())
    blob[100] ^= 0xFF
    (tmp_path / "pack" / "fer2013.pack").write_bytes(bytes(blob))
    res = _pack(tmp_path / "pack", tmp_path / "again", "unpack")
    assert res.returncode != 0 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "fer2013.pack" in res.stderr and "sha256" in res.stderr


@pytest.mark.timeout(900)
def test_gpu_check_rehearses_every_phase_on_cpu_without_mlflow(tmp_path):
    write_tree(tmp_path / "tree", n_per=4)
    assert _pack(tmp_path / "tree", tmp_path / "pack").returncode == 0
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK)
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_TINY": "1", "OUT": str(out), "DATA": str(tmp_path / "pack"),
           "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path / "site"), "TMPDIR": str(tmp_path),
           "FER_BENCH_GIT_SHA": "rehearsal"}  # fmt: skip
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh")], env=env, capture_output=True, text=True)
    log = (out / "gpu-check.log").read_text()
    assert res.returncode == 0, log[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "bench.tar.gz",
        "conditions.txt",
        "gpu-check.log",
        "sprint.tar.gz",
    ]  # ≤ 8 files come back
    conditions = (out / "conditions.txt").read_text()
    assert "mlflow: absent" in conditions and "sprint_exit: 0" in conditions and "git_sha: rehearsal" in conditions

    with tarfile.open(out / "sprint.tar.gz") as tar:
        names = tar.getnames()
        rows = [json.load(tar.extractfile(n)) for n in names if n.endswith("result.json")]
        assert not [n for n in names if n.endswith(".pt")]  # checkpoints stay behind: 8 files of 16 MiB come back
        assert any(n.endswith("leaderboard.md") for n in names)
    models = {m.model for m in load_suite(SPRINT).models}
    # every model line, one seed (tiny), both splits; each row with its predictions file and the sprint's recipe
    assert sorted((r["model"], r["split"]) for r in rows) == sorted(
        (m, s) for m in models for s in ("public", "private")
    )
    assert {(r["recipe"], r["n_train"], r["git_sha"]) for r in rows} == {("fast-48", 14, "rehearsal")}
    assert all(r["predictions"]["file"] == "predictions.npz" and "converged" in r for r in rows)

    with tarfile.open(out / "bench.tar.gz") as tar:
        table = [n for n in tar.getnames() if n.endswith(".csv") and "train" in Path(n).name]
        assert table, tar.getnames()
        bench = list(csv.DictReader(tar.extractfile(table[0]).read().decode().splitlines()))
    assert {(b["model"], b["channels_last"], b["precision"]) for b in bench} == {("resnet18", "True", "fp32")}
