"""The architecture as the code tree shows it: no import circle, no method importing another,
and methods built from the public API and the shared modules only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hashbench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """The hashbench modules ``path`` imports when it is imported (imports inside functions
    run later and cannot make a circle at import time)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        for sub in ast.walk(node) if isinstance(node, ast.If) else [node]:  # TYPE_CHECKING blocks count too
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("hashbench"):
                found.add(sub.module)
                found.update(f"{sub.module}.{alias.name}" for alias in sub.names)
            elif isinstance(sub, ast.Import):
                found.update(alias.name for alias in sub.names if alias.name.startswith("hashbench"))
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: {dep for dep in top_level_imports(path) if dep in MODULES and dep != name
                and not dep.startswith(f"{name}.")}  # a package importing its own modules is no circle
         for name, path in MODULES.items()}


def find_circle() -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = "open"
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == "open":
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (circle := visit(dep, [*stack, dep])):
                return circle
        state[node] = "done"
        return None

    for name in sorted(GRAPH):
        if name not in state and (circle := visit(name, [name])):
            return circle
    return None


def test_no_import_circle():
    assert find_circle() is None, " -> ".join(find_circle() or [])


def test_the_circle_finder_finds_one():
    GRAPH["hashbench.results"].add("hashbench.config")  # config imports results: a circle
    try:
        assert find_circle() is not None
    finally:
        GRAPH["hashbench.results"].discard("hashbench.config")


def test_no_method_imports_another_method():
    methods = {name for name in MODULES if name.startswith("hashbench.methods.")}
    for name in methods:
        assert not GRAPH[name] & methods, f"{name} imports {sorted(GRAPH[name] & methods)}"
        allowed = {"hashbench", "hashbench.method", "hashbench.blocks", "hashbench.losses", "hashbench.validation",
                   "hashbench.models", "hashbench.models.centers"}
        assert GRAPH[name] <= allowed, f"{name} imports {sorted(GRAPH[name] - allowed)}"


TESTS = Path(__file__).resolve().parent
#: Modules a test module must not import: the other test modules and conftest (pytest's, for fixtures).
TEST_MODULES = {path.stem for path in TESTS.glob("*.py") if path.stem == "conftest" or path.stem.startswith("test_")}


def imported_test_modules(source: str) -> list[str]:
    """The test modules (or conftest) ``source`` imports, at any depth (inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                 else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        found += [name for name in names if name.split(".")[0] in TEST_MODULES]
    return found


def test_tests_share_helpers_through_helpers_py_only():
    """What test modules share lives in tests/helpers.py; importing another test module runs its
    module-level code and ties the two together, and conftest is pytest's file for fixtures."""
    assert imported_test_modules("import conftest\ndef f():\n    from test_listfile import make_list_dataset\n") == [
        "conftest", "test_listfile"]
    offenders = {path.name: imported for path in sorted(TESTS.glob("*.py"))
                 if (imported := imported_test_modules(path.read_text()))}
    assert offenders == {}
