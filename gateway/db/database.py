"""Database wiring: the Tortoise config, open/close, and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.migrations.api.migrate import migrate as _tortoise_migrate

from config.settings import Settings

APP_LABEL = "models"

# Driver errors meaning "the database went away" (a killed backend, a restart, a dropped
# database). Tortoise passes them through untranslated; the error table answers them 503,
# so a provider redelivers, and the rolled-back transaction left no trace.
CONNECTION_LOST: tuple[type[Exception], ...] = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InvalidCatalogNameError,
    # "cannot switch to state ...; another operation is in progress": the connection was
    # cut in the middle of an operation (often the rollback after an IntegrityError).
    asyncpg.exceptions.InternalClientError,
)


async def _release_reset(conn: Any) -> None:
    """asyncpg's default reset on every pool release costs a round trip per transaction
    (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) for session state this
    project never creates. Keep only the part that protects correctness."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _connection(database_url: str) -> str | dict[str, Any]:
    if database_url.startswith("sqlite://"):
        config = expand_db_url(database_url)
        # BEGIN IMMEDIATE + a busy timeout: a second process on the file waits, never
        # fails with "database is locked" (gateway/db/sqlite_immediate.py).
        config["engine"] = "gateway.db.sqlite_immediate"
        return config
    if not database_url.startswith(("postgres://", "postgresql://", "asyncpg://")):
        return database_url
    config = expand_db_url(database_url)
    config["credentials"]["reset"] = _release_reset
    # Releases the pool connection when BEGIN fails (gateway/db/asyncpg_engine.py).
    config["engine"] = "gateway.db.asyncpg_engine"
    return config


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {
            APP_LABEL: {
                "models": ["gateway.db.models"],
                "default_connection": "default",
                "migrations": "gateway.db.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _ensure_sqlite_dir(database_url: str) -> None:
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        path = Path(database_url.removeprefix("sqlite://").split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)


async def migrate(database_url: str) -> None:
    """Apply every pending migration (idempotent)."""
    _ensure_sqlite_dir(database_url)
    await _tortoise_migrate(config=tortoise_config(database_url))
    await _close()


async def open_db(settings: Settings, *, run_migrations: bool = True) -> None:
    url = settings.resolved_database_url
    if run_migrations:
        await migrate(url)
    else:
        _ensure_sqlite_dir(url)
    # Requests run in other tasks than the lifespan; Tortoise 1.x needs the global fallback
    # context for them to see the connections opened here.
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)


async def close_db() -> None:
    await _close()


async def _close() -> None:
    # Models cache their connection and SQL dialect; a later init (tests switch between
    # SQLite and PostgreSQL in one process) must start from a clean registry.
    # Tortoise's insert-statement cache is keyed by connection *name*, not dialect, so it
    # would replay SQLite's `?` placeholders against PostgreSQL.
    await Tortoise._reset_apps()
    await Tortoise.close_connections()
    EXECUTOR_CACHE.clear()
