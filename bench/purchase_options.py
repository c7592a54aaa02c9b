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
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _wait_ready(client: httpx.AsyncClient, url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up")


async def _one_connection(host: str, port: int, path: str, count: int) -> None:
    """`count` keep-alive GETs on one connection, parsed just enough to check each."""
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{path}: {head.splitlines()[0]!r}")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


async def load(url: str, requests: int, concurrency: int) -> float:
    """Requests per second for `requests` GETs over `concurrency` keep-alive connections.

    A minimal HTTP/1.1 client on asyncio streams: httpx itself tops out near the server's
    speed, which would make both apps look equally fast.
    """
    parsed = httpx.URL(url)
    assert parsed.port is not None
    per_conn, extra = divmod(requests, concurrency)
    counts = [per_conn + (1 if i < extra else 0) for i in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(
        *(_one_connection(parsed.host, parsed.port, parsed.raw_path.decode(), n) for n in counts)
    )
    return requests / (time.perf_counter() - started)


async def bench(kind: str, args: argparse.Namespace, database_url: str) -> float:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), "--db-url", database_url],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )
    try:
        url = f"http://127.0.0.1:{port}/purchase-options/pro"
        async with httpx.AsyncClient(timeout=2) as client:
            await _wait_ready(client, url, proc)
        await load(url, min(500, args.requests), args.concurrency)  # warm-up
        best = 0.0
        for _ in range(args.rounds):
            best = max(best, await load(url, args.requests, args.concurrency))
        return best
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def main_async(args: argparse.Namespace) -> int:
    from tests import dbutil

    pg_name = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "postgres":
            pg_name = await dbutil.create_pg_database()
            database_url = dbutil.pg_url(pg_name)
        else:
            database_url = f"sqlite://{tmp}/bench.sqlite3"
        try:
            bare = await bench("bare", args, database_url)
            ours = await bench("ours", args, database_url)
        finally:
            if pg_name is not None:
                await dbutil.drop_pg_database(pg_name)
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
