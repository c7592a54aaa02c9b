"""The test tree's own rules: a test module imports shared helpers from `tests/support/`,
never from another test module or from a conftest (pytest, not imports, wires fixtures)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def _is_test_module(dotted: str) -> bool:
    """`tests.x.test_y`, `tests.conftest`, or a name inside one (`tests.x.test_y.helper`)."""
    parts = dotted.split(".")
    return parts[0] == "tests" and any(
        part == "conftest" or part.startswith("test_") for part in parts[1:]
    )


def _imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` imports, at any depth (function-level too), relative ones
    resolved against its package; `from a import b` counts as `a` and `a.b`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = list(path.relative_to(root).parts[:-1])
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_test_module_or_conftest_imports_a_test_module() -> None:
    files = _python_files()
    assert any(p.name == "conftest.py" for p in files)

    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(_imported_modules(path))
        if _is_test_module(name)
    ]

    assert violations == []


def test_scanner_sees_every_way_of_importing_a_test_module(tmp_path: Path) -> None:
    package = tmp_path / "tests" / "pkg"
    package.mkdir(parents=True)
    source = package / "test_mod.py"
    source.write_text(
        "from tests.conftest import running\n"
        "from tests.support.app import running as ok\n"
        "from . import test_sibling\n"
        "from ..other.test_far import helper\n"
        "def f():\n    import tests.pkg.test_inner\n",
        encoding="utf-8",
    )

    found = {name for name in _imported_modules(source, tmp_path) if _is_test_module(name)}

    assert found == {
        "tests.conftest",
        "tests.conftest.running",
        "tests.pkg.test_sibling",
        "tests.other.test_far",
        "tests.other.test_far.helper",
        "tests.pkg.test_inner",
    }
