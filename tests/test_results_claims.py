"""What the committed results' READMEs claim stays within what their files show: the number of test looks is stated,
a target is not claimed as met by one seed after many looks, and links point at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
CONVERGED = RESULTS / "fer2013-converged"
TARGET_CLAIMS = re.compile(r"meets issue #15|reaches #15's targets|meets #15|clears? #15", re.IGNORECASE)


def _test_looked_variants() -> list[Path]:
    """The fer2013-converged configurations whose suites scored the test splits: each committed a runs/ folder."""
    return sorted(p for p in (CONVERGED / "variants").iterdir() if (p / "runs").is_dir()) + [CONVERGED]


def test_the_converged_readme_counts_its_test_looks_and_claims_no_target():
    text = (CONVERGED / "README.md").read_text()
    configs = len(_test_looked_variants())
    assert configs == 6
    assert f"{configs} configurations" in text and f"{2 * configs} clean test looks" in text
    # the FER+ test scorings and the corruption runs score the same PrivateTest faces: they are looks too
    ferplus = len(list(CONVERGED.rglob("cross-dataset/**/result.json")))
    corrupted = len(list(CONVERGED.rglob("corruptions-private/result.json")))
    assert (ferplus, corrupted) == (5, 5)
    flat = " ".join(text.split())
    assert f"{ferplus} FER+ test scorings" in flat and f"{corrupted} PrivateTest corruption runs" in flat
    assert f"{2 * configs + ferplus + corrupted} test looks in all, {configs + ferplus + corrupted} of them" in flat
    assert "consistent with, not shown to exceed" in text
    assert not TARGET_CLAIMS.search(text)
    assert "seed-to-seed spread" in text and "not yet measured" in text


@pytest.mark.parametrize("readme", [ROOT / "README.md", RESULTS / "README.md"], ids=["README.md", "results/README.md"])
def test_the_top_level_readmes_use_the_same_wording(readme):
    text = readme.read_text()
    assert not TARGET_CLAIMS.search(text)
    assert "consistent with, not shown to exceed" in text


def test_the_committed_recipe_choice_table_recomputes_from_the_histories():
    import json

    from fer_bench.experiment.row import plateau_figure

    text = (CONVERGED / "README.md").read_text()
    row = json.loads((CONVERGED / "runs/resnet18-fast-48-fer2013-public-s0/result.json").read_text())
    figure = plateau_figure(row["history"])["plateau_val_macro_f1"]
    assert f"| fast-48 v4 | 64 | 61.60 (39) | {figure:.2f} (last 13) |" in text
    assert f"{figure:.2f}" in (CONVERGED / "recipe-choice.md").read_text()


def test_committed_corruption_tables_use_todays_definitions_or_are_superseded():
    import json

    from fer_bench.data.corruptions import CORRUPTIONS

    tables = sorted(RESULTS.rglob("corruptions.json"))
    assert tables
    for path in tables:
        if "superseded" in path.relative_to(RESULTS).parts:
            assert (path.parents[1] / "README.md").is_file(), f"{path}: superseded without a README saying why"
            continue
        for cell in json.loads(path.read_text())["table"]:
            spec = CORRUPTIONS.get(cell["corruption"])
            param = spec.params[cell["severity"] - 1]
            assert cell["param"] == (list(param) if isinstance(param, tuple) else param), (path, cell)
        assert "mca_above_majority" in json.loads(path.read_text()), path


def test_readme_links_to_corruption_tables_resolve():
    checked = 0
    for readme in RESULTS.rglob("README.md"):
        for ref in re.findall(r"`((?:[\w.-]+/)*corruptions-private)/", readme.read_text()):
            where = ROOT / ref if ref.startswith("results/") else readme.parent / ref
            assert where.is_dir(), f"{readme}: `{ref}/` does not exist"
            checked += 1
    assert checked > 0  # the results READMEs cite their corruption tables: a changed pattern must not pass empty
