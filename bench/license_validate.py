"""Throughput of POST /licenses/validate (the call every buyer's app makes on start) against
a bare Starlette handler that parses the same JSON body and answers a small JSON.

Both apps are served by uvicorn on 127.0.0.1 in their own subprocess (same flags, access
log off) and loaded in turn by a minimal keep-alive HTTP/1.1 client: N requests, C
connections. Ours runs the whole path: body cap, JSON parsing, two rate-limit hits (limits
raised so they never refuse), one indexed query (license by key + seat counts) on an
activated 3-seat license among `--licenses` others, and the verdict. The bare app is the
baseline measured in the same run.

    python bench/license_validate.py [--requests 5000] [--concurrency 32] [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402

from bench.loadgen import bench_database, best_of, free_port, start_server, stop_server, wait_ready  # noqa: E402

FINGERPRINT = "bench-machine-1"
# A budget nothing in the bench reaches: the limiter still counts every hit (two per request),
# as in production.
UNLIMITED = "1000000/second"


def _settings(database_url: str, data_dir: str) -> object:
    from config.settings import load_settings

    return load_settings(
        config_file=None,
        _env_file=None,
        database_url=database_url,
        data_dir=data_dir,
        limits={"license_per_ip": UNLIMITED, "license_per_key": UNLIMITED},
    )


def serve(kind: str, port: int, database_url: str, data_dir: str) -> None:
    """Child process: run one of the two apps under uvicorn."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if kind == "bare":

        async def handler(request: Request) -> Response:
            body = json.loads(await request.body())
            return JSONResponse({"valid": True, "code": "VALID", "key": len(body["key"])})

        app = Starlette(routes=[Route("/licenses/validate", handler, methods=["POST"])])
    elif kind == "bare-db":
        app = _bare_db_app(database_url)
    else:
        from config.settings import Settings
        from gateway.app import create_app

        settings = _settings(database_url, data_dir)
        assert isinstance(settings, Settings)
        app = create_app(settings, providers={}, run_mailer=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _bare_db_app(database_url: str) -> Starlette:
    """A bare handler that also runs validate's one query on the bare driver (aiosqlite with
    one connection, or an asyncpg pool): the raw cost of the same database work."""
    from contextlib import asynccontextmanager
    from typing import Any

    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from gateway.licenses.keys import normalize_key
    from gateway.licenses.seats import _SQL

    pool: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        if database_url.startswith("sqlite://"):
            import aiosqlite

            pool["sqlite"] = await aiosqlite.connect(database_url.removeprefix("sqlite://"))
        else:
            import asyncpg

            pool["postgres"] = await asyncpg.create_pool(database_url, min_size=5, max_size=5)
        yield
        for conn in pool.values():
            await conn.close()

    async def handler(request: Request) -> Response:
        body = json.loads(await request.body())
        key, fingerprint = normalize_key(body["key"]), body["fingerprint"]
        if "sqlite" in pool:
            async with pool["sqlite"].execute(_SQL["sqlite"], (fingerprint, key)) as cursor:
                row = await cursor.fetchone()
        else:
            row = await pool["postgres"].fetchrow(_SQL["postgres"], fingerprint, key)
        return JSONResponse({"valid": row is not None, "code": "VALID", "seats": row[9]})

    return Starlette(
        routes=[Route("/licenses/validate", handler, methods=["POST"])], lifespan=lifespan
    )


async def prepare(database_url: str, data_dir: str, licenses: int) -> str:
    """Migrate, fill `licenses` licenses, activate one; returns its key."""
    from config.settings import Settings
    from gateway.db import database as db
    from gateway.db.models import Activation, License, Order, OrderStatus
    from gateway.licenses.keys import generate_key

    settings = _settings(database_url, data_dir)
    assert isinstance(settings, Settings)
    await db.open_db(settings, run_migrations=True)
    try:
        orders = [
            Order(
                id=f"ord_{n:020x}",
                product_id="pro",
                amount_minor=4900,
                currency="USD",
                provider="stripe",
                provider_ref=f"cs_{n}",
                buyer_email="bench@example.com",
                status=OrderStatus.SETTLED,
                status_token="t",
            )
            for n in range(licenses)
        ]
        await Order.bulk_create(orders, batch_size=1000)
        keys = [generate_key() for _ in range(licenses)]
        await License.bulk_create(
            [
                License(
                    key=key,
                    order_id=order.id,
                    product_id="pro",
                    tier="pro",
                    addons=["advanced-models"],
                    seat_limit=3,
                    buyer_email="bench@example.com",
                )
                for key, order in zip(keys, orders, strict=True)
            ],
            batch_size=1000,
        )
        target = await License.get(key=keys[licenses // 2])
        await Activation.create(license_id=target.id, fingerprint=FINGERPRINT)
        return keys[licenses // 2]
    finally:
        await db.close_db()


async def bench(
    kind: str, args: argparse.Namespace, database_url: str, data_dir: str, body: bytes
) -> float:
    port = free_port()
    proc = start_server(
        __file__,
        ["--serve", kind, "--port", str(port), "--db-url", database_url, "--data-dir", data_dir],
    )
    try:
        url = f"http://127.0.0.1:{port}/licenses/validate"
        await wait_ready(url, proc, body)
        return await best_of(
            url, args.requests, args.concurrency, args.rounds, body=body, expect=b'"VALID"'
        )
    finally:
        stop_server(proc)


async def main_async(args: argparse.Namespace) -> int:
    async with bench_database(args.db) as (database_url, tmp):
        key = await prepare(database_url, tmp, args.licenses)
        # as a buyer pastes it: lower case, spaces for dashes
        body = json.dumps(
            {"key": key.lower().replace("-", " "), "fingerprint": FINGERPRINT}
        ).encode()
        bare = await bench("bare", args, database_url, tmp, body)
        bare_db = await bench("bare-db", args, database_url, tmp, body)
        ours = await bench("ours", args, database_url, tmp, body)
    print(
        f"db={args.db} licenses={args.licenses} requests={args.requests} "
        f"concurrency={args.concurrency} best of {args.rounds}"
    )
    print(f"bare starlette              {bare:9.0f} req/s")
    print(f"bare starlette + raw query  {bare_db:9.0f} req/s")
    print(f"licenses/validate           {ours:9.0f} req/s")
    print(f"ratio ours/bare             {ours / bare:9.2f}")
    print(f"ratio ours/(bare + query)   {ours / bare_db:9.2f}   (target >= 0.60)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--licenses", type=int, default=10000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--serve", choices=["bare", "bare-db", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.db_url, args.data_dir)
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
