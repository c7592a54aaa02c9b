"""The license API served by real `python -m gateway serve` processes.

- Seats hold across two processes sharing one PostgreSQL (only its row lock is shared).
- A 5 MB body to every license POST is refused 413 without the server's memory growing.
- The examples of docs/check-a-license.md ("Checking a license from your app") run as written
  (curl, Python online and offline, JavaScript with the `jose` npm package under node).
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.db import database as db
from gateway.db.models import Activation
from tests.support.docs import DOCS, examples
from tests.support.license import new_license
from tests.support.procs import PYTHON, ROOT, Process, clean_env, free_port

pytestmark = pytest.mark.slow

EXAMPLES_PAGE = DOCS / "check-a-license.md"
SAMPLE_URL = "http://127.0.0.1:8000"
SAMPLE_KEY = "7KQM-3HXD-9PWT-R2ZC"
NPM_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "checkout-gateway"


class Served:
    """`count` gateway processes on one database and one data dir; always stopped."""

    def __init__(self, tmp_path: Path, database_url: str, count: int) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.stack = ExitStack()
        self.procs: list[Process] = []
        for n, port in enumerate(self.ports):
            env = clean_env(
                GATEWAY_CONFIG_FILE="",
                GATEWAY_DATA_DIR=str(tmp_path / "data"),
                GATEWAY_DATABASE_URL=database_url,
                GATEWAY_PUBLIC_URL=self.urls[0],
                GATEWAY_MAIL_BACKEND="file",
                GATEWAY_STRIPE__ENABLED="false",
                GATEWAY_BTCPAY__ENABLED="false",
                GATEWAY_LIMITS__LICENSE_PER_IP="100000/minute",
            )
            args = [PYTHON, "-m", "gateway", "serve", "--port", str(port)]
            proc = Process(args, log=tmp_path / f"gateway{n}.log", cwd=tmp_path, env=env)
            self.procs.append(self.stack.enter_context(proc))

    def __enter__(self) -> Served:
        for proc, url in zip(self.procs, self.urls, strict=True):
            proc.wait_http(f"{url}/healthz")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def logs(self) -> str:
        return "\n".join(p.log() for p in self.procs)


@pytest.fixture
async def shared_sqlite(
    settings_factory: Any, tmp_path: Path
) -> AsyncIterator[tuple[str, Settings]]:
    url = f"sqlite://{tmp_path / 'gateway.sqlite3'}"
    settings = settings_factory(database_url=url)
    await db.open_db(settings, run_migrations=True)
    try:
        yield url, settings
    finally:
        await db.close_db()


async def test_fifty_activations_across_two_processes_on_postgres_take_exactly_three_seats(
    shared_pg: str, catalog: Catalog, tmp_path: Path
) -> None:
    lic = await new_license(catalog)  # pro: 3 seats

    with Served(tmp_path, shared_pg, count=2) as served:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.post(
                            f"{served.urls[n % 2]}/licenses/activate",
                            json={"key": lic.key, "fingerprint": f"machine-{n:02d}"},
                        )
                        for n in range(50)
                    )
                ),
                timeout=60,
            )
            jwks = [(await client.get(f"{u}/.well-known/jwks.json")).json() for u in served.urls]

        statuses = Counter(r.status_code for r in answers)
        assert statuses == {201: 3, 403: 47}, served.logs()
        assert {r.json()["code"] for r in answers if r.status_code == 403} == {"SEAT_LIMIT"}
        # both processes served winners or losers: the lock, not one process, decided
        by_process = Counter((n % 2, r.status_code) for n, r in enumerate(answers))
        assert by_process[(0, 403)] + by_process[(1, 403)] == 47
        assert await Activation.filter(license_id=lic.id).count() == 3
        # two processes starting at once on one data dir made one signing key, not two
        assert jwks[0] == jwks[1]
        assert len(jwks[0]["keys"]) == 1
        assert len(list((tmp_path / "data" / "license-keys").glob("*.pem"))) == 1
        assert lic.key not in served.logs()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _declared(port: int, path: str, size: int) -> bytes:
    """A POST that declares `size` bytes; sends only the first 64 KiB, reads the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n"
        ).encode()
        sock.sendall(head + b"{" + b" " * 65535)
        return sock.recv(65536)


def _chunked(port: int, path: str, size: int) -> bytes:
    """A chunked POST of up to `size` bytes, sent until the server answers."""
    chunk = b" " * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        for _ in range(size // len(chunk)):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
        return sock.recv(65536)


async def test_five_megabyte_bodies_get_413_without_the_server_growing(
    shared_sqlite: tuple[str, Settings], tmp_path: Path
) -> None:
    url, _ = shared_sqlite
    size = 5 * 1024 * 1024
    with Served(tmp_path, url, count=1) as served:
        port, proc = served.ports[0], served.procs[0].proc
        assert proc is not None
        paths = [f"/licenses/{w}" for w in ("validate", "activate", "deactivate", "token")]
        for path in paths:  # warm every route up before measuring
            httpx.post(f"{served.urls[0]}{path}", json={"key": SAMPLE_KEY, "fingerprint": "m"})
        before = _rss_kib(proc.pid)

        answers = [
            send(port, path, size)
            for _ in range(3)
            for path in paths
            for send in (_declared, _chunked)
        ]

        after = _rss_kib(proc.pid)
    assert all(a.startswith(b"HTTP/1.1 413") for a in answers), answers
    # 24 bodies of 5 MB were refused; buffering even one would show as 5000+ KiB
    assert after - before < 3 * 1024, (before, after)


def _as_here(code: str, url: str, key: str) -> str:
    return code.replace(SAMPLE_URL, url).replace(SAMPLE_KEY, key)


@pytest.fixture(scope="session")
def jose_dir() -> Path:
    """The `jose` npm package, installed from the npm registry into a cache dir (never a
    skip: an unreachable registry fails the test)."""
    target = NPM_CACHE / "jose-6"
    if not (target / "node_modules" / "jose" / "package.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(target), "jose@6"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"npm install jose failed:\n{result.stderr}"
    return target


async def test_license_check_examples_run_as_written(
    shared_sqlite: tuple[str, Settings], catalog: Catalog, tmp_path: Path, jose_dir: Path
) -> None:
    url, _ = shared_sqlite
    lic = await new_license(catalog)
    found = examples(EXAMPLES_PAGE)
    assert {"curl", "python-online", "python-offline", "javascript"} <= set(found)
    work = tmp_path / "app"
    work.mkdir()
    env = clean_env(PYTHONPATH=str(ROOT / "clients" / "python"))

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=work, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    with Served(tmp_path, url, count=1) as served:
        here = served.urls[0]
        curl = run(["bash", "-c", "set -euo pipefail\n" + _as_here(found["curl"], here, lic.key)])
        online = run([PYTHON, "-c", _as_here(found["python-online"], here, lic.key)])
        offline = run([PYTHON, "-c", _as_here(found["python-offline"], here, lic.key)])
        logs = served.logs()

    assert curl.returncode == 0, curl.stderr + logs
    assert '"code":"VALID"' in curl.stdout.replace(" ", "")
    assert online.returncode == 0, online.stderr + logs
    assert online.stdout.strip() == "VALID pro ['advanced-models']"
    assert (work / "license.jwt").read_text().count(".") == 2
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.startswith("licensed: pro ['advanced-models'] until ")
    assert await Activation.filter(license_id=lic.id).count() == 2  # curl's + python's seat

    # the JavaScript example, offline, from the files the Python example left behind
    script = jose_dir / "verify-example.mjs"
    script.write_text(_as_here(found["javascript"], here, lic.key))
    node = run(["node", str(script)])
    assert node.returncode == 0, node.stderr
    assert node.stdout.strip() == "licensed: pro [ 'advanced-models' ]"

    # and the same JS refuses a token with a changed signature
    tampered = (work / "license.jwt").read_text().strip()
    (work / "license.jwt").write_text(tampered[:-2] + ("AA" if tampered[-2:] != "AA" else "BB"))
    refused = run(["node", str(script)])
    assert refused.returncode != 0
    assert "signature verification failed" in refused.stderr


def test_demo_script_prints_activate_validate_token_and_offline_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "demo-license-api")],
        env=clean_env(PYTHON=PYTHON),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"seats_used":1' in out
    assert '"valid":true,"code":"VALID"' in out
    assert '"kty":"OKP","crv":"Ed25519"' in out
    assert '"fpr": "laptop-1"' in out
    assert "another machine: refused" in out
    assert "one changed byte: refused" in out
