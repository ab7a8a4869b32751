"""The README is a page a newcomer finishes: short, plain words, the two commands first, every docs page linked."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# words that only this project's authors use; the docs/ pages explain them where they are needed
INSIDER = ("protocol hash", "≈ best", "mCA", "hold-out", "e2e", "b64", "issue #", "(ours)", "lent", "AMD VM")


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 160
    first_block = README.read_text().split("```")[1]
    assert "scripts/demo.sh" in first_block and "scripts/test.sh" in first_block


def test_the_readme_speaks_plainly():
    text = README.read_text()
    assert [w for w in INSIDER if w in text] == []


def test_every_docs_page_is_linked_from_the_readme_and_every_link_resolves():
    text = README.read_text()
    links = set(re.findall(r"\]\(([^)#]+)\)", text))
    local = {link for link in links if not link.startswith("http")}
    assert all((ROOT / link).exists() for link in local), sorted(link for link in local if not (ROOT / link).exists())
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages and pages <= local, sorted(pages - local)


def test_the_docs_speak_of_the_tool_not_of_this_projects_machines():
    """The docs/ pages explain the insider words, but none tells how this project's own machines were lent or named."""
    machines = ("lent", "AMD VM", "Intel VM", "Intel Xeon VM", "issue #", "issue 1", "GPUs are")
    found = {p.name: [w for w in machines if w in p.read_text()] for p in sorted((ROOT / "docs").glob("*.md"))}
    assert {k: v for k, v in found.items() if v} == {}


def test_every_shipped_recipe_is_in_the_recipe_table():
    from fer_bench.recipes import list_recipes

    text = (ROOT / "docs" / "models-and-recipes.md").read_text()
    assert [r for r in list_recipes() if f"| `{r}` |" not in text] == []
