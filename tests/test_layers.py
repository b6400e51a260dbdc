"""The import graph points one way: each package or top-level module of minbert imports only those below it in
`LAYERS`. Every import counts, those inside functions and under TYPE_CHECKING too: a lazy import is still a
dependency, and a circle it hides is still a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import minbert

PACKAGE = Path(minbert.__file__).parent
# lowest first; a unit may import any unit before it, never one after it
LAYERS = ["errors", "names", "options", "terminal", "interrupts", "allocator", "device", "metrics", "outputs",
          "model_dir", "tokenizer", "data", "model", "optim", "tasks", "sentence_encoder", "evaluation", "training",
          "export", "predictor", "reporting", "runs", "tuning", "serving", "bench", "cli", "__init__", "__main__"]


def unit_of(module: str) -> str:
    """minbert.training.loop -> training; minbert.cli -> cli; minbert -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> dict[tuple[str, str], set[str]]:
    """(importing unit, imported unit) -> the modules that import it."""
    arrows: dict[tuple[str, str], set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "minbert":  # from minbert import X
                targets = [f"minbert.{a.name}" for a in node.names
                           if (PACKAGE / f"{a.name}.py").exists() or (PACKAGE / a.name).is_dir()]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minbert."):
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("minbert.")]
            else:
                continue
            for target in targets:
                if unit_of(target) != unit_of(module):
                    arrows.setdefault((unit_of(module), unit_of(target)), set()).add(module)
    return arrows


def test_every_unit_has_a_layer():
    units = {unit_of(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"))
             for p in PACKAGE.rglob("*.py")}
    assert units <= set(LAYERS), f"place these in LAYERS: {sorted(units - set(LAYERS))}"


def test_imports_point_down_only():
    rank = {unit: i for i, unit in enumerate(LAYERS)}
    upward = {f"{a} -> {b}": sorted(m) for (a, b), m in imports().items() if rank[a] < rank[b]}
    assert upward == {}  # with no arrow up there is no circle either


def test_the_check_sees_an_arrow_up(tmp_path, monkeypatch):
    """The graph is read from the source: a module of a low layer importing a high one is found."""
    fake = tmp_path / "minbert"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "files.py").write_text("def f():\n    from minbert.runs.run import train_run\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    assert imports() == {("data", "runs"): {"minbert.data.files"}}


def module_imports() -> dict[str, set[str]]:
    """Module -> the minbert modules it imports (every import, as above): `from minbert.x import y` counts as
    importing minbert.x.y where y is a module, else minbert.x."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minbert"):
                targets.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                               for a in node.names)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in modules)
        targets.discard(module)
    return graph


def import_rings(graph: dict[str, set[str]]) -> list[list[str]]:
    """The sets of modules of one unit that import each other, directly or round a ring (strongly connected
    components of the unit's own import arrows), each sorted."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.csgraph import connected_components

    names = sorted(graph)
    index = {name: i for i, name in enumerate(names)}
    arrows = lil_matrix((len(names), len(names)))
    for module, targets in graph.items():
        for target in targets:
            if target in index and unit_of(target) == unit_of(module):
                arrows[index[module], index[target]] = 1
    _, component = connected_components(arrows.tocsr(), directed=True, connection="strong")
    rings: dict[int, list[str]] = {}
    for name, label in zip(names, component, strict=True):
        rings.setdefault(label, []).append(name)
    return sorted(ring for ring in rings.values() if len(ring) > 1)


def test_no_two_files_of_a_unit_import_each_other():
    assert import_rings(module_imports()) == []


def test_the_ring_check_sees_a_ring():
    graph = {"minbert.model.bert": {"minbert.model.loading"}, "minbert.model.loading": {"minbert.model.config"},
             "minbert.model.config": {"minbert.model.bert"}, "minbert.data.files": {"minbert.model.bert"}}
    assert import_rings(graph) == [["minbert.model.bert", "minbert.model.config", "minbert.model.loading"]]
