"""A Tortoise SQLite engine whose transactions start with `BEGIN IMMEDIATE`.

Tortoise opens SQLite transactions with a plain (deferred) `BEGIN`: the transaction reads
first and asks for the write lock at its first write. When another process (a `send-mail`
sender, a second `serve`) wrote in between, SQLite cannot wait for that upgrade and fails
at once with "database is locked", which the gateway answers 503. `BEGIN IMMEDIATE` takes
the write lock up front, so a second writer waits in SQLite's busy handler instead.

When BEGIN still fails after the busy timeout, the context gives back what it took (the
process's transaction lock, the connection context) before the error travels on; Tortoise's
own context would keep the lock, and every later transaction of the process would hang.

Configured as the `engine` of SQLite connections by `gateway.db.database`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections
from tortoise.exceptions import OperationalError

# How long a writer waits for another process's write transaction before giving up (a 503).
BUSY_TIMEOUT_MS = 15_000


class ImmediateTransactionWrapper(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            # Still locked after the busy timeout: "database unavailable", retry later.
            raise OperationalError(exc) from exc


class ImmediateTransactionContext(SqliteTransactionContext):
    async def __aenter__(self) -> Any:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            self._trxlock.release()
            raise
        return self.connection


class ImmediateSqliteClient(SqliteClient):
    def __init__(self, file_path: str, **kwargs: Any) -> None:
        kwargs.setdefault("busy_timeout", BUSY_TIMEOUT_MS)
        super().__init__(file_path, **kwargs)

    def _in_transaction(self) -> TransactionContext:
        return ImmediateTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = ImmediateSqliteClient
