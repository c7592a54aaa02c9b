"""What every command shares: settings + logging, a database session, and output.

Listings print a rich table for people and, with `--json`, one JSON document for scripts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from config.settings import Settings, load_settings
from gateway.db import database as db
from gateway.ops.logs import setup_logging

T = TypeVar("T")

log = logging.getLogger("gateway.cli")


def settings_and_logging(**overrides: Any) -> Settings:
    settings = load_settings(**overrides)
    setup_logging(settings.log_level, settings.log_format)
    return settings


def with_db(settings: Settings, work: Callable[[], Awaitable[T]], *, migrate: bool = True) -> T:
    """Open the database (migrating it), run `work`, close it."""

    async def run() -> T:
        await db.open_db(settings, run_migrations=migrate)
        try:
            return await work()
        finally:
            await db.close_db()

    return asyncio.run(run())


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")


def emit_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """Print `rows` as a table (only `columns`) or, with --json, as a JSON list of full rows."""
    if as_json:
        click.echo(json.dumps(list(rows), indent=2, default=str, ensure_ascii=False))
        return
    if not rows:
        click.echo(empty)
        return
    table = Table(title=title, show_lines=False)
    for column in columns:
        # Fold, never elide: operators copy ids and addresses out of these tables.
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_shown(row.get(c)) for c in columns))
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        # Piped or captured (grep, less, a test): no terminal width to fit, keep rows whole.
        console = Console(soft_wrap=True, width=400)
    console.print(table)


def emit_object(doc: dict[str, Any], *, as_json: bool) -> None:
    """One record: JSON, or `key: value` lines."""
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str, ensure_ascii=False))
        return
    width = max((len(k) for k in doc), default=0)
    for key, value in doc.items():
        click.echo(f"{key.ljust(width)}  {_shown(value)}")


def _shown(value: Any) -> str:
    # Lists stay lists in --json (scripts index them); a person reads them comma-separated.
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def parse_since(value: str) -> datetime:
    """`--since`: an ISO date/time (UTC unless it says otherwise) or an age: 30m, 24h, 7d."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    text = value.strip()
    if text[:-1].isdigit() and text[-1:] in units:
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is neither a date (2026-11-01, 2026-11-01T12:00) nor an age (30m, 24h, 7d)"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None
