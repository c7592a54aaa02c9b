"""Settle-path benchmark: `Applier.apply()` against the raw cost of the same transaction.

ceiling: one transaction per settlement, written by hand with the driver (aiosqlite or
         asyncpg): inbox insert, order SELECT (FOR UPDATE on PostgreSQL) + UPDATE, license
         insert, outbox insert.
ours:    a signed FakeProvider webhook body is verified and parsed (`parse_webhook`), then
         `Applier.apply()` runs the real path (inbox -> order -> license -> outbox email).

Both run at license-table sizes 0, 10k and 100k (pre-filled with bulk SQL) to show that
the cost per settlement stays flat. Prints ops/s and ours/ceiling (target >= 0.60).

    python bench/settle.py                  # SQLite in a temp dir
    python bench/settle.py --db postgres    # throwaway PostgreSQL database, dropped after
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosqlite  # noqa: E402
import asyncpg  # noqa: E402
from tortoise import Tortoise  # noqa: E402

from config.catalog import load_catalog  # noqa: E402
from config.settings import DEFAULT_PRODUCTS_FILE  # noqa: E402
from gateway.db.database import close_db, migrate, tortoise_config  # noqa: E402
from gateway.payments.apply import Applier, Result  # noqa: E402
from providers.events import PaymentSettled, ProviderName  # noqa: E402
from sandbox.provider import FakeProvider  # noqa: E402
from tests.support import dbutil  # noqa: E402

ORDER_COLS = (
    "id, product_id, amount_minor, currency, provider, buyer_email, status, status_token, "
    "notes, recheck_failures, created_at, updated_at"
)
LICENSE_COLS = (
    "key, order_id, product_id, tier, addons, seat_limit, buyer_email, status, created_at"
)
INBOX_COLS = (
    "provider, dedupe_key, kind, order_id, provider_ref, payload, outcome, detail, received_at"
)
OUTBOX_COLS = (
    "order_id, kind, to_address, subject, body_text, body_html, status, attempts, "
    "next_attempt_at, created_at"
)
BODY_TEXT = "Your license key: XXXX-XXXX-XXXX-XXXX\n" * 10


class Db:
    """The few raw operations the bench needs, per driver."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith("postgres")

    def now(self) -> Any:
        now = datetime.now(UTC)
        return now if self.pg else now.isoformat(sep=" ")

    def q(self, sql: str) -> str:
        """`?` placeholders -> `$n` on PostgreSQL."""
        if not self.pg:
            return sql
        parts = sql.split("?")
        return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))

    async def connect(self) -> Any:
        if self.pg:
            return await asyncpg.connect(self.url)
        conn = await aiosqlite.connect(self.url.removeprefix("sqlite://"), isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        return conn

    async def execute(self, conn: Any, sql: str, *args: Any) -> None:
        if self.pg:
            await conn.execute(self.q(sql), *args)
        else:
            await conn.execute(sql, args)

    async def fetchrow(self, conn: Any, sql: str, *args: Any) -> Any:
        if self.pg:
            return await conn.fetchrow(self.q(sql), *args)
        async with conn.execute(sql, args) as cur:
            return await cur.fetchone()

    async def fill(self, conn: Any, prefix: str, count: int, status: str, license: bool) -> None:
        """`count` orders `<prefix><i, 12 digits>` (and a license each if `license`), in bulk
        SQL; `prefix` is `order_prefix(...)`, so every id has our shape."""
        now = self.now()
        if self.pg:
            series = "generate_series(1, $2::int) AS s(i)"
            args: tuple[Any, ...] = (prefix, count, status, now)
            p, st, ts = "$1::text", "$3::text", "$4::timestamptz"
            num = "right('000000000000' || s.i, 12)"
        else:
            series = (
                "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
                "SELECT i FROM s) AS s"
            )
            args = (prefix, count, status, now)
            p, st, ts = "?1", "?3", "?4"
            num = "substr('000000000000' || s.i, -12)"
            series = series.replace("?", "?2")
        await self.execute(
            conn,
            f"INSERT INTO orders ({ORDER_COLS}) SELECT {p} || {num}, 'pro', 999, 'USD', 'stripe', "
            f"'buyer@example.com', {st}, 'token', '', 0, {ts}, {ts} FROM {series}",
            *args,
        )
        if license:
            await self.execute(
                conn,
                f"INSERT INTO licenses ({LICENSE_COLS}) SELECT 'K' || {p} || {num}, {p} || {num}, "
                f"'pro', 'pro', '[\"advanced-models\"]', 3, 'buyer@example.com', 'active', "
                # `{st} IS NOT NULL` only keeps the parameter list identical to the orders insert.
                f"{ts} FROM {series} WHERE {st} IS NOT NULL",
                *args,
            )


def order_prefix(code: str, size: int) -> str:
    """`ord_` + 8 hex digits naming the run: with a 12-digit index, our order id shape."""
    return f"ord_{code}{size:07x}"


async def raw_settle(db: Db, conn: Any, order_id: str, body: bytes) -> None:
    """The ceiling: the same rows, written by hand in one transaction."""
    now = db.now()
    lock = " FOR UPDATE" if db.pg else ""
    await db.execute(conn, "BEGIN")
    await db.execute(
        conn,
        f"INSERT INTO inbox_events ({INBOX_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "stripe", f"evt_{order_id}", "settled", order_id, f"pi_{order_id}",
        body.decode(), "applied", "", now,
    )  # fmt: skip
    row = await db.fetchrow(
        conn, f"SELECT id, status, amount_minor FROM orders WHERE id = ?{lock}", order_id
    )
    assert row is not None
    await db.execute(
        conn,
        "UPDATE orders SET status = ?, provider_ref = ?, settled_at = ?, updated_at = ? "
        "WHERE id = ?",
        "settled", f"pi_{order_id}", now, now, order_id,
    )  # fmt: skip
    await db.execute(
        conn,
        f"INSERT INTO licenses ({LICENSE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "R" + order_id, order_id, "pro", "pro", '["advanced-models"]', 3,
        "buyer@example.com", "active", now,
    )  # fmt: skip
    await db.execute(
        conn,
        f"INSERT INTO outbox_emails ({OUTBOX_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        order_id, "license", "buyer@example.com", "Your license", BODY_TEXT, BODY_TEXT,
        "pending", 0, now, now,
    )  # fmt: skip
    await db.execute(conn, "COMMIT")


def webhook_body(order_id: str) -> bytes:
    event = {
        "kind": "settled",
        "provider_ref": f"pi_{order_id}",
        "order_id": order_id,
        "dedupe_key": f"evt_{order_id}",
        "amount_minor": 999,
        "currency": "USD",
    }
    return json.dumps({"events": [event]}).encode()


async def timed(count: int, op: Callable[[int], Awaitable[None]]) -> float:
    started = time.perf_counter()
    for i in range(count):
        await op(i)
    return count / (time.perf_counter() - started)


async def run(url: str, ops: int, sizes: list[int], warmup: int) -> list[tuple[int, float, float]]:
    db = Db(url)
    await migrate(url)
    fake = FakeProvider(ProviderName.STRIPE)
    applier = Applier(load_catalog(DEFAULT_PRODUCTS_FILE), public_url="http://bench.invalid")
    results: list[tuple[int, float, float]] = []
    filled = 0
    for size in sizes:
        conn = await db.connect()
        try:
            if size > filled:
                await db.fill(conn, order_prefix("f", size), size - filled, "settled", license=True)
                filled = size
            for mode in ("raw", "ours"):
                code = "a" if mode == "raw" else "b"
                await db.fill(
                    conn, order_prefix(code, size), ops + warmup, "created", license=False
                )
        finally:
            await conn.close()

        conn = await db.connect()
        try:

            async def raw_op(i: int, conn: Any = conn, size: int = size) -> None:
                order_id = f"{order_prefix('a', size)}{i + 1:012d}"
                await raw_settle(db, conn, order_id, webhook_body(order_id))

            for i in range(warmup):
                await raw_op(ops + i)
            ceiling = await timed(ops, raw_op)
        finally:
            await conn.close()

        await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
        try:

            async def our_op(i: int, size: int = size) -> None:
                body = webhook_body(f"{order_prefix('b', size)}{i + 1:012d}")
                (event,) = await fake.parse_webhook(body, fake.sign(body))
                assert isinstance(event, PaymentSettled)
                result = await applier.apply(event, body)
                assert result.result == Result.APPLIED, result
                assert result.license_issued, result

            for i in range(warmup):
                await our_op(ops + i)
            ours = await timed(ops, our_op)
        finally:
            await close_db()
        results.append((size, ceiling, ours))
        print(
            f"licenses={size:>7,}  ceiling {ceiling:8.1f} ops/s   ours {ours:8.1f} ops/s   "
            f"ratio {ours / ceiling:.2f}",
            flush=True,
        )
    return results


async def main_async(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.db == "postgres":
        name = await dbutil.create_pg_database()
        try:
            results = await run(dbutil.pg_url(name), args.requests, sizes, args.warmup)
        finally:
            await dbutil.drop_pg_database(name)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            results = await run(f"sqlite://{tmp}/bench.sqlite3", args.requests, sizes, args.warmup)
    worst = min(ours / ceiling for _, ceiling, ours in results)
    flat = results[-1][2] / results[0][2]
    print(f"worst ratio ours/ceiling: {worst:.2f} (target >= 0.60)")
    print(f"ours at {sizes[-1]:,} licenses vs {sizes[0]:,}: {flat:.2f}x throughput")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=300, help="settlements per mode and size")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--sizes", default="0,10000,100000", help="license-table sizes")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
