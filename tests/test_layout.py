"""The test tree's own rules: shared plumbing lives in tests/fixtures; no test module imports another
test module or tests.conftest (a fixture imported by hand runs twice, or not as declared)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _forbidden(module: str) -> bool:
    parts = module.split(".")
    if parts[0] != "tests":
        return False
    return parts[1:2] == ["conftest"] or any(part.startswith("test_") for part in parts[1:])


def test_no_test_module_imports_conftest_or_another_test_module() -> None:
    offenders = {
        str(path.relative_to(TESTS)): sorted(m for m in _imported_modules(path) if _forbidden(m))
        for path in TESTS.rglob("*.py")
        if path.parent.name != "__pycache__"
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_rule_would_catch_such_an_import() -> None:
    assert _forbidden("tests.conftest")
    assert _forbidden("tests.test_compose")
    assert _forbidden("tests.auth.test_rbac")
    assert not _forbidden("tests.fixtures.helpers")
    assert not _forbidden("userapi.test_thing")
