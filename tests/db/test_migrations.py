"""`migrate` builds the same schema on SQLite and PostgreSQL, a second run changes nothing,
and the models have no change that a migration in gateway/db/migrations does not make."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from tortoise.context import TortoiseContext
from tortoise.migrations.autodetector import MigrationAutodetector

from gateway.db.database import migrate, tortoise_config
from tests.support import dbutil

Schema = dict[str, set[str]]
EXPECTED_TABLES = set(dbutil.TABLES)


def _sqlite_schema(path: Path) -> Schema:
    with sqlite3.connect(path) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: {row[1] for row in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables}


async def _pg_schema(url: str) -> Schema:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    schema: Schema = {}
    for row in rows:
        schema.setdefault(row["table_name"], set()).add(row["column_name"])
    return schema


def _sqlite_count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        # Table names come from the schema catalog itself, never from input.
        count: int = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # noqa: S608
    return count


async def test_migrate_creates_the_same_tables_and_columns_on_sqlite_and_postgres(
    tmp_path: Path, empty_pg: str
) -> None:
    # given an empty SQLite file (in a directory that does not exist yet) and an empty PG db
    sqlite_path = tmp_path / "new-dir" / "gateway.sqlite3"
    assert await _pg_schema(empty_pg) == {}

    await migrate(f"sqlite://{sqlite_path}")
    await migrate(empty_pg)

    sqlite_schema = _sqlite_schema(sqlite_path)
    pg_schema = await _pg_schema(empty_pg)
    assert set(sqlite_schema) >= EXPECTED_TABLES
    assert sqlite_schema == pg_schema
    assert {"id", "order_id", "key", "tier", "addons", "seat_limit"} <= sqlite_schema["licenses"]


@pytest.mark.db  # a SQLite file of its own, not the db_url fixture
async def test_migrate_twice_on_sqlite_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    await migrate(f"sqlite://{path}")
    schema = _sqlite_schema(path)
    recorded = {t: _sqlite_count(path, t) for t in schema if t not in EXPECTED_TABLES}

    await migrate(f"sqlite://{path}")

    assert _sqlite_schema(path) == schema
    assert {t: _sqlite_count(path, t) for t in recorded} == recorded
    assert recorded  # the migration bookkeeping table exists and was not re-filled


async def test_migrate_twice_on_postgres_is_a_no_op(empty_pg: str) -> None:
    await migrate(empty_pg)
    schema = await _pg_schema(empty_pg)
    bookkeeping = sorted(set(schema) - EXPECTED_TABLES)
    counts = [f'SELECT count(*) FROM "{t}"' for t in bookkeeping]  # noqa: S608 - catalog names
    conn = await asyncpg.connect(empty_pg)
    try:
        before = [await conn.fetchval(sql) for sql in counts]
        await migrate(empty_pg)
        after = [await conn.fetchval(sql) for sql in counts]
    finally:
        await conn.close()

    assert await _pg_schema(empty_pg) == schema
    assert before == after
    assert bookkeeping


async def test_models_have_no_change_without_a_migration(tmp_path: Path) -> None:
    # given the models and the migrations on disk, as `tortoise makemigrations` sees them
    # (an isolated Tortoise context: the gateway's own connections are not touched, and the
    # database file is never opened: the autodetector compares code with code)
    config = tortoise_config(f"sqlite://{tmp_path / 'never-opened.sqlite3'}")
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        assert ctx.apps is not None
        # when the autodetector diffs the models against the state the migrations build
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()

    # then there is nothing to write; otherwise: `.venv/bin/tortoise makemigrations -n NAME`
    pending = {w.app_label: [op.describe() for op in w.operations] for w in writers}
    assert pending == {}
    assert not (tmp_path / "never-opened.sqlite3").exists()
