"""Test databases: every DB test runs on SQLite and on PostgreSQL.

PostgreSQL: one throwaway database per test session (created from the `test` database on
127.0.0.1:5432, dropped at the end), migrated once and truncated before each test.
SQLite: migrated once into a template file, copied per test.

`GATEWAY_TEST_DATABASES` (default "sqlite,postgres") picks the backends; an unreachable
PostgreSQL is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path

import asyncpg

PG_ADMIN_DSN = os.environ.get("GATEWAY_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/test")
TABLES = ("license_activations", "outbox_emails", "licenses", "inbox_events", "orders")


def backends() -> list[str]:
    raw = os.environ.get("GATEWAY_TEST_DATABASES", "sqlite,postgres")
    return [b.strip() for b in raw.split(",") if b.strip()]


def pg_url(name: str) -> str:
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    return f"{base}/{name}"


async def create_pg_database() -> str:
    name = f"cg_test_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def truncate_pg(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


def migrate_sync(url: str) -> None:
    from gateway.db.database import migrate

    asyncio.run(migrate(url))


def sqlite_template(directory: Path) -> Path:
    template = directory / "template.sqlite3"
    migrate_sync(f"sqlite://{template}")
    return template


def sqlite_copy(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite://{target}"
