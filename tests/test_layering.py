"""Imports point one way only: config <- providers <- gateway; the sandbox (provider fakes)
sits beside gateway and is never imported by config or providers.

Inside gateway/, the domains (checkout, payments, webhooks, licenses, mail, pages) use the
plumbing (http, ops, db, state) and each other's services, never another domain's routes;
the plumbing imports no domain. Outside tests/, only the `sandbox` and `simulate` commands
import the sandbox, and nothing imports those two modules: the CLI loads them by name only
when their command runs, so the installed gateway never loads the sandbox otherwise.
Every import counts: function-level ones, `from x import y`, relative ones.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> top-level packages it must never import
FORBIDDEN = {
    "config": {"providers", "gateway", "sandbox"},
    "providers": {"gateway", "sandbox"},
    "sandbox": {"gateway"},
}
DOMAINS = ("checkout", "payments", "webhooks", "licenses", "mail", "pages")
PLUMBING = ("http", "ops", "db")
# What a domain may import from gateway/ besides the domains themselves.
DOMAIN_MAY_USE = {*PLUMBING, "state"}
SANDBOX_USERS = {"gateway/cli/sandbox.py", "gateway/cli/simulate.py"}
# Never installed, and they drive the fakes on purpose: the tests, and the benchmarks that
# use FakeProvider as their in-run baseline.
SANDBOX_FREE_PASS = ("tests", "bench", "sandbox")


@dataclass(frozen=True)
class Import:
    """One imported name, absolute: `from a.b import c` is `a.b.c` (a module or a name in
    one; the rules below only look at prefixes, so either reads the same)."""

    name: str
    line: int
    in_function: bool

    @property
    def parts(self) -> list[str]:
        return self.name.split(".")


def _package_parts(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts if parts[-1] == "__init__" else parts[:-1]


def _imports(path: Path, root: Path = ROOT) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, in_function) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_parts(path, root)
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.extend(Import(f"{base}.{a.name}", node.lineno, in_function) for a in node.names)
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, in_function=False)
    return found


def _imported_packages(path: Path) -> set[str]:
    # A relative import never leaves its top-level package, so only absolute ones count.
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


def _where(path: Path, imp: Import) -> str:
    return f"{path.relative_to(ROOT)}:{imp.line} imports {imp.name}"


def _gateway_part(imp: Import) -> str | None:
    """`checkout` for `gateway.checkout.service.x`; None for anything outside gateway/."""
    parts = imp.parts
    return parts[1] if parts[0] == "gateway" and len(parts) > 1 else None


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


@pytest.mark.parametrize("domain", DOMAINS)
def test_a_domain_uses_plumbing_and_other_domains_services_never_their_routes(
    domain: str,
) -> None:
    modules = _modules(f"gateway/{domain}")
    assert modules, f"no modules found under gateway/{domain}/"

    violations = []
    for path in modules:
        for imp in _imports(path):
            part = _gateway_part(imp)
            if part is None or part == domain:
                continue
            if part not in DOMAINS and part not in DOMAIN_MAY_USE:
                violations.append(_where(path, imp) + f" (a domain may not use gateway.{part})")
            elif part in DOMAINS and imp.parts[2:3] == ["routes"]:
                violations.append(_where(path, imp) + " (another domain's routes)")

    assert violations == []


@pytest.mark.parametrize("plumbing", PLUMBING)
def test_plumbing_imports_no_domain(plumbing: str) -> None:
    modules = _modules(f"gateway/{plumbing}")
    assert modules, f"no modules found under gateway/{plumbing}/"

    violations = [
        _where(path, imp)
        for path in modules
        for imp in _imports(path)
        if _gateway_part(imp) in DOMAINS
    ]

    assert violations == []


def test_only_the_sandbox_commands_import_the_sandbox_and_nothing_imports_them() -> None:
    modules = [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if path.relative_to(ROOT).parts[0] not in {*SANDBOX_FREE_PASS, ".venv", "build"}
    ]
    assert {str(p.relative_to(ROOT)) for p in modules} >= SANDBOX_USERS
    # The two command modules are loaded by the CLI's LazyGroup from a "module:function"
    # string when their command runs, so an import of them anywhere would load the sandbox
    # with it (tests/cli/test_lazy.py checks `--help` loads neither).
    command_modules = {p.removesuffix(".py").replace("/", ".") for p in SANDBOX_USERS}

    violations = []
    for path in modules:
        user = str(path.relative_to(ROOT)) in SANDBOX_USERS
        for imp in _imports(path):
            if imp.parts[0] == "sandbox" and not user:
                violations.append(_where(path, imp) + " (outside the sandbox/simulate commands)")
            if any(imp.name == m or imp.name.startswith(m + ".") for m in command_modules):
                violations.append(_where(path, imp) + " (loads a sandbox command eagerly)")

    assert violations == []


def test_import_scanner_sees_function_level_and_from_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "import os.path\nfrom . import sibling\n"
        "def f():\n    from gateway.app import create_app\n    import providers.base\n",
        encoding="utf-8",
    )

    assert _imported_packages(source) == {"os", "gateway", "providers"}


def test_import_scanner_resolves_relative_imports_and_sees_function_scope(
    tmp_path: Path,
) -> None:
    package = tmp_path / "gateway" / "checkout"
    package.mkdir(parents=True)
    source = package / "service.py"
    source.write_text(
        "from ..licenses import routes\nfrom .orders import order_status\n"
        "import gateway.db.models\n"
        "class C:\n    def m(self):\n        from sandbox.provider import FakeProvider\n",
        encoding="utf-8",
    )

    found = {(i.name, i.in_function) for i in _imports(source, root=tmp_path)}

    assert found == {
        ("gateway.licenses.routes", False),
        ("gateway.checkout.orders.order_status", False),
        ("gateway.db.models", False),
        ("sandbox.provider.FakeProvider", True),
    }
