"""The Tortoise config for the `tortoise` command line (`tortoise makemigrations`, `tortoise
migrate`), named by `[tool.tortoise]` in pyproject.toml.

Built from the gateway's own settings, so both reach the same database; the gateway never
imports this module (its settings are loaded once, by the caller of `create_app`).
"""

from __future__ import annotations

from config.settings import load_settings
from gateway.db.database import tortoise_config

TORTOISE_ORM = tortoise_config(load_settings().resolved_database_url)
