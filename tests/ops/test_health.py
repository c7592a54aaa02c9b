"""/healthz and /readyz, with a database that is really up or really gone."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from tests.support import dbutil
from tests.support.app import running


def _app(settings: Settings, catalog: Catalog) -> Starlette:
    return create_app(
        settings, catalog=catalog, providers={}, run_migrations=False, run_mailer=False
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


async def test_healthz_is_200(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    async with running(_app(settings_factory(database_url=db_url), catalog)) as client:
        resp = await client.get("/healthz")

    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_readyz_is_200_with_the_database_up(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    async with running(_app(settings_factory(database_url=db_url), catalog)) as client:
        resp = await client.get("/readyz")

    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "database": "ok"}


@pytest.mark.db
@pytest.mark.postgres
async def test_readyz_is_503_json_when_the_database_was_dropped_after_startup(
    settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    # given a gateway that started against a real, reachable PostgreSQL database
    name = await dbutil.create_pg_database()
    try:
        app = _app(settings_factory(database_url=dbutil.pg_url(name)), catalog)
        async with running(app) as client:
            assert (await client.get("/readyz")).status_code == 200
            # when the database disappears under it
            await dbutil.drop_pg_database(name)
            resp = await client.get("/readyz")
            # then readiness fails with JSON, liveness stays up
            assert resp.status_code == 503
            assert resp.json() == {
                "error": "database_unavailable",
                "detail": "database unreachable",
            }
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await dbutil.drop_pg_database(name)


@pytest.mark.db
async def test_readyz_is_503_json_when_postgres_port_is_closed_and_app_still_starts(
    settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    url = f"postgres://postgres@127.0.0.1:{_closed_port()}/gateway"
    app = _app(settings_factory(database_url=url), catalog)

    # the lifespan must come up (no migrations) and shut down without crashing
    async with running(app) as client:
        resp = await asyncio.wait_for(client.get("/readyz"), timeout=30)
        live = await client.get("/healthz")

    assert resp.status_code == 503
    assert resp.json()["error"] == "database_unavailable"
    assert live.status_code == 200
