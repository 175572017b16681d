"""The package's folders are layers: every import goes down the list below, and no two folders
import each other (directly or round a loop). Imports inside functions count too: a lazy import is
still a dependency. Imports under ``if TYPE_CHECKING:`` are annotations only and do not count.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PKG = REPO / "olivepipe"
# bottom -> top; parts on one line are peers (they may import each other, but not both ways)
LAYERS = [
    {"core"},  # errors, confined files, digests, keys, the lock file, jobs, YAML with positions
    {"olive", "azure"},  # what olivepipe knows about Olive and about the Azure SDK
    {"models"},  # model tooling the kinds use
    {"kinds"},  # node kinds
    {"spec"},  # workflow file -> validated Workflow -> typed steps and graph
    {"stores"},  # results by key
    {"run"},  # the node runtime, workers, executors
    {"flow"},  # Workspace, plan, scheduler, metrics, review, variants
    {"report"},  # read-only views
    {"cli"},  # the commands
    {"fastpath"},  # fastpath.py, the console script: a no-op answered from its stamp, else the commands
    {"olivepipe"},  # the package's public API (olivepipe/__init__.py)
]
LEVEL = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    """olivepipe.spec.workflow -> spec; olivepipe.fastpath -> fastpath; olivepipe -> olivepipe.
    A ``__main__`` module is a program (`python -m olivepipe.cli`), imported by nothing: it sits
    with the console script."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "fastpath"
    return parts[1] if len(parts) > 1 else "olivepipe"


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import node, skipping the bodies of `if TYPE_CHECKING:`."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def _edges() -> dict[tuple[str, str], list[str]]:
    """(from part, to part) -> the imports that make the arrow, as 'file: module'."""
    edges: dict[tuple[str, str], list[str]] = {}
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(REPO).with_suffix("")
        module = ".".join(rel.parts)
        package = module if rel.name == "__init__" else module.rpartition(".")[0]
        package = package.removesuffix(".__init__")
        module = module.removesuffix(".__init__")
        for node in _imports(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` names modules (or package attributes) of that package
                targets = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            else:
                targets = [f"{node.module}.{a.name}" for a in node.names] if node.module == "olivepipe" \
                    else [node.module or ""]
            for t in targets:
                if not t.startswith("olivepipe."):
                    continue  # `import olivepipe` (its folder) and other packages
                if t.count(".") == 1 and t.split(".")[1] not in LEVEL:
                    continue  # `from olivepipe import __version__`: the package's own, loaded first anyway
                a, b = _part(module), _part(t)
                if a != b:
                    edges.setdefault((a, b), []).append(f"{f.relative_to(REPO)}: {t}")
    return edges


def test_every_folder_is_on_a_layer():
    found = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    found |= {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    assert found <= set(LEVEL), f"put {sorted(found - set(LEVEL))} on a layer in LAYERS"
    assert found >= set(LEVEL) - {"olivepipe"}, f"LAYERS names parts that are gone: {sorted(set(LEVEL) - found)}"


def test_imports_go_down_the_layers():
    up = {e: where for e, where in _edges().items() if LEVEL[e[1]] > LEVEL[e[0]]}
    assert not up, "imports that climb a layer:\n" + "\n".join(
        f"  {a} -> {b}: {', '.join(w)}" for (a, b), w in sorted(up.items()))


def test_no_package_level_import_cycle():
    edges = _edges()
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str) -> list[str] | None:
        seen, stack = set(), [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == goal:
                    return path + [nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    loops = []
    for (a, b) in sorted(edges):
        back = reaches(b, a)
        if back:
            loops.append(f"  {a} -> {' -> '.join(back)}: {edges[(a, b)][0]}, ...")
    assert not loops, "package-level import cycles:\n" + "\n".join(loops)


def test_the_checks_see_a_planted_loop(tmp_path, monkeypatch):
    """The walk over the sources finds a lazy import that climbs (so the tests above can fail)."""
    import test_layers as me

    pkg = tmp_path / "olivepipe"
    for part, body in {"core/__init__.py": "", "core/a.py": "def f():\n    from ..kinds import x\n",
                       "kinds/__init__.py": "from ..core import a\n"}.items():
        (pkg / part).parent.mkdir(parents=True, exist_ok=True)
        (pkg / part).write_text(body)
    monkeypatch.setattr(me, "PKG", pkg)
    monkeypatch.setattr(me, "REPO", tmp_path)
    edges = me._edges()
    assert ("core", "kinds") in edges and ("kinds", "core") in edges
