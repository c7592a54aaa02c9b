"""What the HTTP benchmarks share: a server subprocess per app, and a minimal load client.

The client is a bare HTTP/1.1 keep-alive loop on asyncio streams: httpx itself tops out near
the server's speed, which would make both apps look equally fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_server(script: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """`python script --serve ...` with no GATEWAY_* from the caller's environment."""
    return subprocess.Popen(
        [sys.executable, script, *args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


async def wait_ready(url: str, proc: subprocess.Popen[bytes], body: bytes | None = None) -> None:
    """Until `url` answers 200 (GET, or POST `body`); fails if the server exits."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                resp = await (client.get(url) if body is None else client.post(url, content=body))
                if resp.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up")


def _request(host: str, port: int, path: str, body: bytes | None) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _one_connection(
    host: str, port: int, path: str, count: int, body: bytes | None, expect: bytes | None
) -> None:
    """`count` keep-alive requests on one connection, parsed just enough to check each."""
    reader, writer = await asyncio.open_connection(host, port)
    request = _request(host, port, path, body)
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
            answer = await reader.readexactly(length)
            if expect is not None and expect not in answer:
                raise RuntimeError(f"{path}: {answer[:200]!r}")
    finally:
        writer.close()
        await writer.wait_closed()


async def load(
    url: str,
    requests: int,
    concurrency: int,
    *,
    body: bytes | None = None,
    expect: bytes | None = None,
) -> float:
    """Requests per second for `requests` requests over `concurrency` keep-alive connections
    (GET, or POST `body` as JSON); every answer must be 200 and contain `expect`."""
    parsed = httpx.URL(url)
    assert parsed.port is not None
    per_conn, extra = divmod(requests, concurrency)
    counts = [per_conn + (1 if i < extra else 0) for i in range(concurrency)]
    path = parsed.raw_path.decode()
    started = time.perf_counter()
    await asyncio.gather(
        *(_one_connection(parsed.host, parsed.port, path, n, body, expect) for n in counts)
    )
    return requests / (time.perf_counter() - started)


async def best_of(
    url: str,
    requests: int,
    concurrency: int,
    rounds: int,
    *,
    body: bytes | None = None,
    expect: bytes | None = None,
) -> float:
    """A short warm-up, then the best of `rounds` runs."""
    await load(url, min(500, requests), concurrency, body=body, expect=expect)
    best = 0.0
    for _ in range(rounds):
        best = max(best, await load(url, requests, concurrency, body=body, expect=expect))
    return best


@contextlib.asynccontextmanager
async def bench_database(kind: str) -> AsyncIterator[tuple[str, str]]:
    """(database URL, temp dir): a SQLite file in the dir, or a throwaway PostgreSQL database
    on the test server (`GATEWAY_TEST_PG_DSN`), dropped afterwards."""
    from tests.support import dbutil

    with tempfile.TemporaryDirectory() as tmp:
        if kind != "postgres":
            yield f"sqlite://{tmp}/bench.sqlite3", tmp
            return
        name = await dbutil.create_pg_database()
        try:
            yield dbutil.pg_url(name), tmp
        finally:
            await dbutil.drop_pg_database(name)
