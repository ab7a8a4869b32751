"""The package's layers are a contract: imports flow one way, no module imports itself back in a circle, and the
heavy libraries stay at the edge. docs/architecture.md draws the same layers."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fer_bench"

# Top to bottom. A module may import its own subpackage and any subpackage of a LOWER layer; packages that share
# a layer are independent of each other.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("api",),
    ("experiment",),
    ("bench", "report"),
    ("engine",),
    ("data",),
    ("models", "recipes", "evaluation"),
    ("utils",),
]
ENTRY = {"fer_bench", "fer_bench.__main__"}  # the package root re-exports the API lazily; __main__ runs the CLI

# Heavy or optional libraries and the only subpackages (or modules) allowed to import them.
EDGES = {
    "mlflow": ("fer_bench.experiment.tracking",),
    "optuna": ("fer_bench.experiment.tune",),
    "matplotlib": ("fer_bench.report",),
}
TORCH_FREE = ("fer_bench.evaluation", "fer_bench.report", "fer_bench.recipes")


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = p
    return out


def imports(path: Path) -> list[str]:
    """Every name an import statement in ``path`` brings in (``from a.b import c`` gives ``a.b.c``), at module level
    or inside a function; imports under ``if TYPE_CHECKING:`` only name types, and are left out."""
    names = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.orelse:  # the else branch runs: its imports count
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.extend(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return names


def graph() -> dict[str, set[str]]:
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {t for n in imports(p) if n.startswith("fer_bench") and (t := resolve(n)) and t != m}
            for m, p in mods.items()}  # fmt: skip


def layer_of(module: str) -> tuple[int, str] | None:
    top = module.split(".")[1] if "." in module else ""
    for i, group in enumerate(LAYERS):
        if top in group:
            return i, top
    return None


def test_every_module_sits_in_a_layer():
    loose = [m for m in modules() if m not in ENTRY and layer_of(m) is None]
    assert not loose, f"modules outside every layer (add their package to LAYERS and docs/architecture.md): {loose}"


def test_imports_flow_down_the_layers():
    upward = []
    for m, targets in graph().items():
        if m in ENTRY:
            continue
        (lm, pm) = layer_of(m)
        for t in targets:
            if t in ENTRY:
                upward.append(f"{m} -> {t} (the package root)")
                continue
            lt, pt = layer_of(t)
            if pt != pm and lt <= lm:
                upward.append(f"{m} -> {t}")
    assert not upward, "imports that run upward or sideways:\n" + "\n".join(sorted(upward))


def test_no_module_imports_itself_back_through_a_circle():
    g = graph()
    seen, stack, on_stack, circles = set(), [], set(), []

    def visit(m: str) -> None:
        seen.add(m)
        stack.append(m)
        on_stack.add(m)
        for t in sorted(g.get(m, ())):
            if t in on_stack:
                circles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in seen:
                visit(t)
        stack.pop()
        on_stack.discard(m)

    for m in sorted(g):
        if m not in seen:
            visit(m)
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("library", sorted(EDGES))
def test_heavy_libraries_stay_at_the_edge(library):
    allowed = EDGES[library]
    users = sorted(m for m, p in modules().items()
                   if any(n == library or n.startswith(library + ".") for n in imports(p)))  # fmt: skip
    assert users and all(u.startswith(allowed) for u in users), f"{library} imported by {users}, allowed: {allowed}"


def test_matplotlib_is_set_up_in_one_place():
    setups = sorted(m for m, p in modules().items() if "matplotlib.use(" in p.read_text())
    assert setups == ["fer_bench.report.mpl"], f"matplotlib's backend chosen in {setups}: use fer_bench.report.mpl"


def test_torch_free_layers_import_no_torch():
    users = sorted(m for m, p in modules().items() if m.startswith(TORCH_FREE)
                   and any(n == "torch" or n.startswith("torch.") for n in imports(p)))  # fmt: skip
    assert not users, f"torch imported where the layer promises none: {users}"


def test_the_contract_catches_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a utils module that imports the runner is reported."""
    fake = tmp_path / "fer_bench"
    for p in modules().values():
        dest = fake / p.relative_to(PKG)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(p.read_text())
    (fake / "utils" / "leak.py").write_text("from fer_bench.experiment.runner import run_model\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match=r"fer_bench\.utils\.leak -> fer_bench\.experiment\.runner"):
        test_imports_flow_down_the_layers()


def _planted(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    """A copy of the package with ``files`` (path under fer_bench/ → source) added, read by the checks above."""
    fake = tmp_path / "fer_bench"
    for p in modules().values():
        dest = fake / p.relative_to(PKG)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(p.read_text())
    for rel, text in files.items():
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)


def test_the_contract_catches_a_circle_and_a_sideways_import(tmp_path, monkeypatch):
    _planted(tmp_path, monkeypatch, {
        "utils/ring_a.py": "def f():\n    from fer_bench.utils import ring_b\n",
        "utils/ring_b.py": "from fer_bench.utils import ring_a\n",
        "models/leak.py": "from fer_bench.evaluation.metrics import classification_metrics\n",
    })  # fmt: skip
    with pytest.raises(
        AssertionError, match=r"fer_bench\.utils\.ring_a -> fer_bench\.utils\.ring_b -> fer_bench\.utils\.ring_a"
    ):
        test_no_module_imports_itself_back_through_a_circle()
    with pytest.raises(AssertionError, match=r"fer_bench\.models\.leak -> fer_bench\.evaluation\.metrics"):
        test_imports_flow_down_the_layers()


def test_the_architecture_note_draws_these_layers():
    note = (ROOT / "docs" / "architecture.md").read_text()
    drawn = re.findall(r"^\s*(\w+)(?:/|\.py)\s", note.split("```")[1], re.M)
    assert [p for group in LAYERS for p in group] == drawn, "docs/architecture.md's picture lists other layers"


def test_the_recipe_parts_name_their_builders_in_the_engine():
    """The one upward reference: recipes/parts.py names each part's torch builder as a ``module:attribute`` string
    (so the schema imports no torch). Every built-in one points into the engine layer and names a function there."""
    from fer_bench.recipes.parts import PARTS

    named = {f"{kind}/{n}": reg.get(n).builder for kind, reg in PARTS.items() for n in reg if reg.get(n).builder}
    assert named, "no part names a builder"
    outside = {k: b for k, b in named.items() if not b.startswith("fer_bench.engine.")}
    assert not outside, f"builders outside fer_bench.engine: {outside}"
    for key, path in named.items():
        module, _, attr = path.partition(":")
        file = PKG.joinpath(*module.split(".")[1:]).with_suffix(".py")
        tree = ast.parse(file.read_text())
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        assert attr in defined, f"{key}: {path} is not defined at the top of {file.relative_to(ROOT)}"
