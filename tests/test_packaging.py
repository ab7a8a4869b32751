"""Issue 13 item 10: a regular (non-editable) install carries its recipes and reference rows.

A wheel is built from a copy of the source, installed offline into a fresh virtual environment, and the installed
``fer-bench`` is run from a folder outside the source tree. Before, the recipes lived outside the package: such an
install listed none and ran every model under the schema defaults named "baseline".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "configs" / "recipes"  # the source tree's recipes (configs/ links to fer_bench/configs)
pytestmark = pytest.mark.slow


def _sh(*cmd, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _missing_tools() -> str | None:
    """Why this environment cannot build and install a wheel offline at all, or None when it can.

    Only absent tools skip the tests; with them present, a failing build is a broken build config and fails.
    """
    import importlib.metadata
    import importlib.util
    import tomllib

    for module in ("pip", "setuptools", "venv"):
        if importlib.util.find_spec(module) is None:
            return f"no {module!r} in this environment: a wheel cannot be built and installed offline"
    if importlib.util.find_spec("packaging") is None:  # only to compare versions; the build itself does not need it
        return None
    from packaging.requirements import Requirement

    for req in map(Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]):
        have = importlib.metadata.version(req.name)
        if have not in req.specifier:  # e.g. an older setuptools than the build needs: absent, not broken
            return f"{req.name} {have} is installed; the build needs {req}"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline (no build isolation: the running environment's setuptools) from a copy of the source."""
    if reason := _missing_tools():
        pytest.skip(reason)
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "fer_bench", src / "fer_bench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    res = _sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src,
              cwd=src)  # fmt: skip
    wheels = list(dist.glob("fer_bench-*.whl"))
    assert res.returncode == 0 and len(wheels) == 1, f"the wheel build failed: {(res.stderr + res.stdout)[-3000:]}"
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, dict]:
    """A fresh venv with the wheel installed (not editable); its dependencies come from this environment's
    site-packages through a .pth file, so nothing is downloaded."""
    env_dir = tmp_path_factory.mktemp("venv")
    res = _sh(sys.executable, "-m", "venv", "--without-pip", env_dir, cwd=env_dir)
    assert res.returncode == 0, f"cannot create a virtual environment: {res.stderr[-2000:]}"
    py = env_dir / "bin" / "python"
    site = Path(_sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=env_dir).stdout.strip())
    (site / "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"HF_HUB_OFFLINE": "1", "PATH": f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    # --ignore-installed: this environment's editable fer-bench (seen through the .pth) is neither used nor touched
    res = _sh(py, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel, cwd=env_dir, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    return env_dir, env


def test_the_wheel_ships_recipes_search_spaces_and_reference_rows(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {Path(n).stem for n in names if n.startswith("fer_bench/configs/recipes/") and n.endswith(".yaml")}
    assert recipes == {p.stem for p in RECIPES.glob("*.yaml")}
    assert "fer_bench/configs/published.yaml" in names
    assert any(n.startswith("fer_bench/configs/search/") for n in names)


def test_an_installed_wheel_lists_its_recipes_and_trains_outside_the_source_tree(installed, tmp_path):
    env_dir, env = installed
    where = _sh(env_dir / "bin" / "python", "-c", "import fer_bench; print(fer_bench.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(env_dir)), where.stdout + where.stderr  # the wheel's, not the source

    res = _sh(env_dir / "bin" / "fer-bench", "ls", "recipes", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    shipped = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    assert len(shipped) >= 5 and all(name in res.stdout for name in shipped)
    assert str(env_dir) in res.stdout  # "(from <installed package>/configs/recipes)"

    out = tmp_path / "out"
    res = _sh(env_dir / "bin" / "fer-bench", "run", "--models", "simple_cnn", "--dataset", "synthetic", "--epochs", "1",
              "--limit-train", "200", "--no-track", "--no-progress", "--set", "eval.tta=[none]", "--out", out,
              cwd=tmp_path, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (row_file,) = out.rglob("result.json")
    row = json.loads(row_file.read_text())
    baseline = yaml.safe_load((RECIPES / "baseline.yaml").read_text())
    # the recipe file's own version, learning rate and crops, not the schema defaults that carried the same name
    assert (row["recipe"], row["recipe_version"]) == ("baseline", baseline["version"])
    recipe = yaml.safe_load((row_file.parent / "recipe.yaml").read_text())
    assert recipe["optim"]["lr"] == baseline["optim"]["lr"] and recipe["description"] == baseline["description"]
    assert recipe["augment"]["crop_scale"] == baseline["augment"]["crop_scale"] != [0.8, 1.0]  # not the default's

    res = _sh(env_dir / "bin" / "fer-bench", "leaderboard", "--from-results", out, "--published", cwd=tmp_path, env=env)
    # the published figures are FER2013's: they stand beside FER2013 lines only, never beside this synthetic one
    assert res.returncode == 0 and "simple_cnn" in res.stdout and "(published)" not in res.stdout, res.stderr[-2000:]
    count = "from fer_bench.report import leaderboard as lb; print(len(lb.published_rows()))"
    res = _sh(env_dir / "bin" / "python", "-c", count, cwd=tmp_path, env=env)
    assert res.returncode == 0 and int(res.stdout) >= 5, res.stderr[-2000:]  # the wheel ships published.yaml
