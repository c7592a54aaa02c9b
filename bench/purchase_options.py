"""Throughput of GET /purchase-options/pro against a bare Starlette JSON handler.

Both apps are served by uvicorn on 127.0.0.1 in their own subprocess (same flags, access
log off) and loaded in turn by one httpx async client: N requests, C in flight. The bare
app is the baseline measured in the same run; ours/bare is the number that matters
(target >= 0.80).

    python bench/purchase_options.py [--requests 5000] [--concurrency 32] [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import bench_database, best_of, free_port, start_server, stop_server, wait_ready  # noqa: E402


def serve(kind: str, port: int, database_url: str) -> None:
    """Child process: run one of the two apps under uvicorn."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if kind == "bare":

        async def handler(_: Request) -> Response:
            return JSONResponse({"product": "pro", "price": "9.99", "options": []})

        app = Starlette(routes=[Route("/purchase-options/{product}", handler)])
    else:
        from config.settings import load_settings
        from gateway.app import create_app
        from providers.events import ProviderName
        from sandbox.provider import FakeProvider

        settings = load_settings(config_file=None, _env_file=None, database_url=database_url)
        app = create_app(
            settings,
            providers={name: FakeProvider(name) for name in ProviderName},
            run_mailer=False,
        )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def bench(kind: str, args: argparse.Namespace, database_url: str) -> float:
    port = free_port()
    proc = start_server(__file__, ["--serve", kind, "--port", str(port), "--db-url", database_url])
    try:
        url = f"http://127.0.0.1:{port}/purchase-options/pro"
        await wait_ready(url, proc)
        return await best_of(url, args.requests, args.concurrency, args.rounds)
    finally:
        stop_server(proc)


async def main_async(args: argparse.Namespace) -> int:
    async with bench_database(args.db) as (database_url, _):
        bare = await bench("bare", args, database_url)
        ours = await bench("ours", args, database_url)
    print(f"requests={args.requests} concurrency={args.concurrency} best of {args.rounds}")
    print(f"bare starlette     {bare:9.0f} req/s")
    print(f"purchase-options   {ours:9.0f} req/s")
    print(f"ratio ours/bare    {ours / bare:9.2f}   (target >= 0.80)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--serve", choices=["bare", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.db_url)
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
