"""A Tortoise asyncpg engine that gives a connection back to the pool when BEGIN fails.

Tortoise's pooled transaction context acquires a pool connection and then sends `BEGIN`;
when the connection was cut in between (a killed backend, a restart, a failover), the
error leaves `__aenter__`, so `__aexit__` never runs and the connection is never released.
Each such failure shrinks the pool by one, and after `maxsize` of them every request waits
forever for a connection: one database blip became a hung gateway. Here the connection
goes back to the pool (asyncpg terminates a closed one and opens a fresh one later).

Configured as the `engine` of PostgreSQL connections by `gateway.db.database`.
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import TransactionContext, TransactionContextPooled
from tortoise.connection import get_connections


class ReleasingTransactionContext(TransactionContextPooled):
    async def __aenter__(self) -> Any:
        await self.ensure_connection()
        pool = self.client._parent._pool
        self.client._connection = await pool.acquire()
        self.token = get_connections().set(self.connection_name, self.client)
        try:
            await self.client.begin()
        except BaseException:
            get_connections().reset(self.token)
            await pool.release(self.client._connection)
            raise
        return self.client


class ReleasingAsyncpgClient(AsyncpgDBClient):
    def _in_transaction(self) -> TransactionContext:
        return ReleasingTransactionContext(TransactionWrapper(self), self._pool_init_lock)


client_class = ReleasingAsyncpgClient
