"""Imports point one way only: config <- providers <- gateway; the sandbox (provider fakes)
sits beside gateway and is never imported by config or providers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> top-level packages it must never import
FORBIDDEN = {
    "config": {"providers", "gateway", "sandbox"},
    "providers": {"gateway", "sandbox"},
    "sandbox": {"gateway"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_never_imports_a_higher_layer(package: str) -> None:
    modules = _modules(package)
    assert modules, f"no modules found under {package}/"

    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in sorted(_imported_packages(path) & FORBIDDEN[package])
    ]

    assert violations == []


def test_import_scanner_sees_function_level_and_from_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "import os.path\nfrom . import sibling\n"
        "def f():\n    from gateway.app import create_app\n    import providers.base\n",
        encoding="utf-8",
    )

    assert _imported_packages(source) == {"os", "gateway", "providers"}
