"""Small pieces: no module over 300 lines, no function over 60, no class over 150 in the
product code (config, providers, gateway). The sandbox's fakes and the generated migrations
are exempt; cyclomatic complexity is ruff's C901 (max 15, pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "providers", "gateway")
MODULE_MAX, FUNCTION_MAX, CLASS_MAX = 300, 60, 150


def _modules() -> list[Path]:
    found = [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.relative_to(ROOT).parts
    ]
    assert {p.relative_to(ROOT).parts[0] for p in found} == set(PACKAGES)
    return found


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _lines(node: Definition) -> int:
    """From the `def`/`class` line (decorators not counted) to the last line of the body."""
    end = node.end_lineno
    assert end is not None
    return end - node.lineno + 1


def _oversized(kinds: tuple[type[Definition], ...], limit: int) -> list[str]:
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, kinds) and _lines(node) > limit:
                found.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {_lines(node)} lines"
                )
    return found


def test_no_module_over_300_lines() -> None:
    too_long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MODULE_MAX
    ]

    assert too_long == [], "\n".join(too_long)


def test_no_function_over_60_lines() -> None:
    too_long = _oversized((ast.FunctionDef, ast.AsyncFunctionDef), FUNCTION_MAX)

    assert too_long == [], "\n".join(too_long)


def test_no_class_over_150_lines() -> None:
    too_long = _oversized((ast.ClassDef,), CLASS_MAX)

    assert too_long == [], "\n".join(too_long)
