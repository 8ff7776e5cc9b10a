"""No import cycles among acd modules: every `import` counts, also the ones inside functions (a lazy import is
still a dependency; it only hides the cycle until the call). A package's own __init__ re-exporting its
submodules is not an edge back (Python runs the parent first), so `from acd.review import labelstudio`
points at acd.review.labelstudio, not at acd.review."""
from __future__ import annotations

import ast
from pathlib import Path

import acd

PKG = Path(acd.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = ["acd", *p.relative_to(PKG).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = p
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The acd modules `name` imports anywhere in its body (TYPE_CHECKING blocks included: they are a
    dependency of the reader, too)."""

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in mods:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_pkg else name.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        out |= {m for t in targets if t.split(".")[0] == "acd" and (m := owner(t)) and m != name}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "acd.sources.synthetic" in graph["acd.sources.factory"]  # imported inside make_source
    assert "acd.review.labelstudio" in graph["acd.review.stage"]  # `from acd.review import labelstudio`
    assert "acd.review" not in graph["acd.review.stage"]


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_acd_modules():
    graph = import_graph()
    cycles = _cycles(graph)
    detail = [{m: sorted(graph[m] & set(c)) for m in c} for c in cycles]
    assert not cycles, f"import cycles: {detail}"


def package_of(module: str) -> str:
    """The package node of a module: acd.checks.rules -> acd.checks; a top-level module (acd.pipeline,
    acd.textstats) is its own node, and so is acd itself."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to package nodes; an import inside one package is no edge."""
    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        node = out.setdefault(package_of(m), set())
        node |= {package_of(d) for d in deps} - {package_of(m)}
    return out


def test_modules_collapse_to_their_packages():
    graph = {"acd.checks.rules": {"acd.checks.length", "acd.taxonomy"}, "acd.checks.length": set(),
             "acd.grounded.compose": {"acd.grounded.facts", "acd.checks.rules"}, "acd.grounded.facts": set(),
             "acd.taxonomy": set(), "acd": set()}
    assert package_graph(graph) == {"acd.checks": {"acd.taxonomy"}, "acd.grounded": {"acd.checks"},
                                    "acd.taxonomy": set(), "acd": set()}
    # no module-level cycle, but the packages loop: checks.a -> grounded.b -> checks.c
    loop = {"acd.checks.a": {"acd.grounded.b"}, "acd.grounded.b": {"acd.checks.c"}, "acd.checks.c": set()}
    assert not _cycles(loop)
    assert _cycles(package_graph(loop)) == [["acd.checks", "acd.grounded"]]


def test_no_import_cycles_among_acd_packages():
    graph = import_graph()
    packages = package_graph(graph)
    cycles = _cycles(packages)
    detail = [sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                     if package_of(m) in c and package_of(d) in c and package_of(m) != package_of(d))
              for c in cycles]
    assert not cycles, f"package import cycles: {cycles}; the edges in them: {detail}"
