from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from config.catalog import Catalog, load_catalog
from config.settings import DEFAULT_PRODUCTS_FILE, Settings
from providers.events import ProviderName
from sandbox.provider import FakeProvider
from tests.support import dbutil
from tests.support.issuer import fake_gateway

# A developer's own GATEWAY_* variables or .env must never change what the tests see.
for _name in [
    n for n in os.environ if n.startswith("GATEWAY_") and not n.startswith("GATEWAY_TEST_")
]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dbutil.sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = asyncio.run(dbutil.create_pg_database())
    url = dbutil.pg_url(name)
    try:
        dbutil.migrate_sync(url)
        yield url
    finally:
        asyncio.run(dbutil.drop_pg_database(name))


@pytest.fixture
async def shared_pg(settings_factory: Callable[..., Settings]) -> AsyncIterator[str]:
    """A migrated throwaway PostgreSQL database of its own (for tests that start gateway
    processes on it), opened in this process too; dropped afterwards."""
    from gateway.db import database as db

    name = await dbutil.create_pg_database()
    url = dbutil.pg_url(name)
    try:
        await db.migrate(url)
        await db.open_db(settings_factory(database_url=url), run_migrations=False)
        try:
            yield url
        finally:
            await db.close_db()
    finally:
        await dbutil.drop_pg_database(name)


@pytest.fixture
async def empty_pg() -> AsyncIterator[str]:
    """A PostgreSQL database of its own, not migrated; dropped afterwards."""
    name = await dbutil.create_pg_database()
    try:
        yield dbutil.pg_url(name)
    finally:
        await dbutil.drop_pg_database(name)


# A test that uses one of these (itself or through another fixture) opens a database: it is
# marked `db`, and `postgres` too when the database is PostgreSQL, so `-m "not db"` and
# `-m "not postgres"` select what they say without anyone remembering to mark a test.
DB_FIXTURES = frozenset({"db_url", "sqlite_template", "pg_database", "shared_pg", "empty_pg"})
POSTGRES_FIXTURES = frozenset({"pg_database", "shared_pg", "empty_pg"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & DB_FIXTURES:
            item.add_marker(pytest.mark.db)
        if used & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(
    params=[
        pytest.param(backend, marks=[pytest.mark.postgres] if backend == "postgres" else [])
        for backend in dbutil.backends()
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: parametrised over SQLite and PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        return dbutil.sqlite_copy(template, tmp_path / "gateway.sqlite3")
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database")
        asyncio.run(dbutil.truncate_pg(url))
        return url
    raise ValueError(f"unknown test database backend {request.param!r}")


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(DEFAULT_PRODUCTS_FILE)


_RATE_RULES = (
    "checkout_per_ip",
    "checkout_per_email",
    "license_per_ip",
    "license_per_key",
    "recover_per_ip",
    "recover_per_email",
)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "config_file": None,
            "_env_file": None,
            "data_dir": tmp_path / "data",
            "public_url": "http://gateway.test",
            "mail_backend": "file",
            # Tests drive many checkouts for one buyer from one address; the rate-limit tests
            # pass their own `limits` (which replaces these with the product's defaults).
            "limits": {rule: "100000/minute" for rule in _RATE_RULES},
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def fake() -> FakeProvider:
    """The Stripe-named fake provider the `app` fixture takes payments with."""
    return FakeProvider(ProviderName.STRIPE)


@pytest.fixture
def app(
    db_url: str,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
    fake: FakeProvider,
) -> Starlette:
    """The gateway on `db_url` with `fake` as its one provider, migrations and mailer off.
    Not started: a test runs it with `async with running(app) as client:`, so it decides
    what happens after the shutdown (the mailer drained, the database closed)."""
    app, _ = fake_gateway(db_url, settings_factory, catalog, fake=fake)
    return app


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"database backends: {', '.join(dbutil.backends())} (PostgreSQL via {dbutil.PG_ADMIN_DSN})"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # Make it visible that every DB test ran on each backend, not just that the suite passed.
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            params = report.nodeid.rpartition("[")[2].rstrip("]").split("-")
            for backend in dbutil.backends():
                if backend in params and getattr(report, "when", "call") == "call":
                    row = counts.setdefault(backend, {})
                    row[outcome] = row.get(outcome, 0) + 1
    for backend, row in counts.items():
        summary = ", ".join(f"{n} {outcome}" for outcome, n in row.items())
        terminalreporter.write_line(f"database tests on {backend}: {summary}")
