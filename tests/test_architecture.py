"""The package's layering, held by reading every import in src/sodakit (module level and inside functions).

Stage packages, low to high: tokens, data, audio, model, train, generate, eval, scaling, report, demo,
cli (README "Package layout"). A module may import its own stage and the stages below it, never one
above. Top-level modules that are not stages (config, fileio, errors, ...) are shared utilities: every
stage may import them, and they import no stage. There are no import cycles between modules: none at
module level, and none closed by an import inside a function either (such a cycle only works because
the import is deferred, and it hides which layer owns what).

An import `from P import x` is an edge to the module P.x when x is a module, else to P; a package's
implicit `__init__` is not an edge (importing P.x runs P/__init__.py, but that is Python's doing, not a
dependency the code states).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "sodakit"
STAGES = ("tokens", "data", "audio", "model", "train", "generate", "eval", "scaling", "report", "demo", "cli")
ENTRY_POINTS = {"sodakit.__main__": "cli"}  # `python -m sodakit` runs the command line

# Violations of today's code that other work in progress removes. This set must become empty: when the
# change that fixes one is merged, delete its line (the test fails while a listed violation is gone, so
# the list cannot go stale).
KNOWN_VIOLATIONS: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


class Import:
    def __init__(self, source: str, target: str, line: int, in_function: bool, type_only: bool):
        self.source, self.target, self.line = source, target, line
        self.in_function, self.type_only = in_function, type_only


def imports_of(name: str, path: Path) -> list[Import]:
    """Every import of a sodakit module in `path`, with where it sits."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        return [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]

    def visit(nodes: list[ast.stmt], in_function: bool, type_only: bool) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in targets(node):
                    if t == "sodakit" or t.startswith("sodakit."):
                        found.append(Import(name, t, node.lineno, in_function, type_only))
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, True, type_only)
                continue
            is_type_check = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if isinstance(block, list):
                    visit(block, in_function, type_only or (is_type_check and field == "body"))
            for case in getattr(node, "cases", []):  # match statements
                visit(case.body, in_function, type_only)

    visit(ast.parse(path.read_text(), str(path)).body, False, False)
    return found


IMPORTS = [imp for name, path in MODULES.items() for imp in imports_of(name, path)]


def stage_of(module: str) -> str | None:
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def layering_violations() -> set[str]:
    out = set()
    for imp in IMPORTS:
        src, dst = stage_of(imp.source), stage_of(imp.target)
        if dst is None:
            continue  # shared utilities may be imported by all
        if src is None and imp.source != "sodakit":
            out.add(f"shared module imports a stage: {imp.source} -> {imp.target}")
        elif src is not None and STAGES.index(dst) > STAGES.index(src):
            out.add(f"upward: {imp.source} -> {imp.target}")
    return out


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one module, or one importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
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
                if len(comp) > 1 or v in edges.get(v, ()):
                    found.append(sorted(comp))
    return found


def import_graph(include_functions: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.target in MODULES and not imp.type_only and (include_functions or not imp.in_function):
            edges[imp.source].add(imp.target)
    return edges


def cycle_violations() -> set[str]:
    """Cycles at module level and those closed by function-level imports (reported alike)."""
    return {f"cycle: {', '.join(c)}" for c in strongly_connected(import_graph(include_functions=True))}


def test_every_import_is_seen():
    """The walk finds imports at module level and inside functions (a check on the checker itself)."""
    assert len(MODULES) > 100
    assert any(imp.in_function for imp in IMPORTS) and any(not imp.in_function for imp in IMPORTS)
    sources = {(i.source, i.target) for i in IMPORTS}
    assert ("sodakit.tokens.documents", "sodakit.tokens.templates") in sources
    assert ("sodakit.cli", "sodakit.errors") in sources


def test_no_upward_imports_between_stages():
    found = layering_violations()
    new = sorted(found - KNOWN_VIOLATIONS)
    assert not new, "imports against the layering (low to high: " + ", ".join(STAGES) + "):\n  " + "\n  ".join(new)


def test_no_import_cycles():
    module_level = strongly_connected(import_graph(include_functions=False))
    assert not module_level, f"module-level import cycles: {module_level}"
    new = sorted(cycle_violations() - KNOWN_VIOLATIONS)
    assert not new, "import cycles closed inside functions:\n  " + "\n  ".join(new)


def test_known_violations_are_still_real():
    """A fixed violation must leave KNOWN_VIOLATIONS, so that the set only shrinks."""
    gone = sorted(KNOWN_VIOLATIONS - layering_violations() - cycle_violations())
    assert not gone, "fixed, remove from KNOWN_VIOLATIONS:\n  " + "\n  ".join(gone)


def test_the_checks_catch_what_they_should():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"], ["d"]]
    assert stage_of("sodakit.generate.tasks") == "generate" and stage_of("sodakit.config") is None
    assert stage_of("sodakit.cli") == "cli" and stage_of("sodakit.__main__") == "cli"


# Installed code reads the package's own files and the paths its user names, nothing else: no paths
# built upward from __file__ (into a checkout), no hard-coded outside folders.
OUTSIDE_PATHS = re.compile(r"__file__\)?(?:\.resolve\(\))?\.parents\[|__file__\)?(?:\.resolve\(\))?\.parent\.parent|"
                           r"shared/data|\.\./shared|/work/")
KNOWN_OUTSIDE: set[str] = set()


def test_installed_code_reads_nothing_outside_the_package():
    hits, clean_known = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        found = [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
                 if OUTSIDE_PATHS.search(line)]
        if rel in KNOWN_OUTSIDE and not found:
            clean_known.append(rel)
        elif rel not in KNOWN_OUTSIDE:
            hits += found
    assert not hits, "paths outside the package or the user's paths:\n" + "\n".join(hits)
    assert not clean_known, f"no longer reach outside the package, remove from KNOWN_OUTSIDE: {clean_known}"
