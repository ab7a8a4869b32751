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
    assert f"{configs} configurations" in text and f"{2 * configs} test looks" in text
    assert "consistent with, not shown to exceed" in text
    assert not TARGET_CLAIMS.search(text)
    assert "seed-to-seed spread" in text and "not yet measured" in text


@pytest.mark.parametrize("readme", [ROOT / "README.md", RESULTS / "README.md"], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_top_level_readmes_use_the_same_wording(readme):
    text = readme.read_text()
    assert not TARGET_CLAIMS.search(text)
    assert "consistent with, not shown to exceed" in text
