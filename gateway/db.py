"""Database wiring: the Tortoise config, open/close, and migrations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.migrations.api.migrate import migrate as _tortoise_migrate

from config.settings import Settings

APP_LABEL = "models"


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": database_url},
        "apps": {
            APP_LABEL: {
                "models": ["gateway.models"],
                "default_connection": "default",
                "migrations": "gateway.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For the `tortoise` CLI (`tortoise makemigrations` / `migrate`), via [tool.tortoise].
TORTOISE_ORM = tortoise_config(
    os.environ.get("GATEWAY_DATABASE_URL", "sqlite://data/gateway.sqlite3")
)


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
