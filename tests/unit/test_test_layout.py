"""The tests' own layout: no test module imports another (shared helpers live in tests/support/), so a
module can be moved, renamed or run alone without dragging another module's tests into its collection."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def imported_modules(source: str, package: str) -> list[str]:
    """Every module a source file imports, relative imports resolved against its package."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.append(base)
            # `from tests.e2e_local import test_x` imports the module test_x.
            found += [f"{base}.{alias.name}" for alias in node.names]
    return found


def test_imports_between_test_modules_are_found() -> None:
    """The check itself: absolute, `from package import module` and relative imports are all seen."""
    assert is_test_module("tests.e2e_local.test_token_refresher")
    assert not is_test_module("tests.support.e2e")
    for source in (
        "from tests.e2e_local.test_token_refresher import connect",
        "import tests.local.test_local_sigv4",
        "from tests.local import test_local_sigv4",
        "from .test_local_sigv4 import signed",
    ):
        assert any(is_test_module(name) for name in imported_modules(source, "tests.local")), source
    assert not any(is_test_module(name) for name in imported_modules(
        "from tests.support.e2e import connect\nimport pytest", "tests.local"))


def test_no_test_module_imports_another() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        package = ".".join(path.relative_to(TESTS.parent).parent.parts)
        imports = imported_modules(path.read_text(encoding="utf-8"), package)
        offenders += [f"{path.relative_to(TESTS.parent)} imports {name}" for name in imports if is_test_module(name)]

    assert len(list(TESTS.rglob("test_*.py"))) > 50, "the walk found too few test modules to mean anything"
    assert offenders == [], "move shared helpers to tests/support/: " + "; ".join(offenders)
