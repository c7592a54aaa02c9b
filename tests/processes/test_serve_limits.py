"""Against a real `serve` process: 1 GB bodies are refused with 413 on every POST route
while memory stays flat and other requests keep being served (issue 9 item 1), and the
access log never writes a status token (item 9)."""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from tests.support.procs import PYTHON, Process, clean_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.db]

GIB = 1024**3
MIB = 1024**2
SEND_LIMIT = 8 * MIB  # the first few MB of each 1 GB body, then we look at the answer
RSS_GROWTH_LIMIT_KB = 20 * 1024
PARAMS = {"product": "pro"}


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
public_url = "http://127.0.0.1"
data_dir = "{tmp_path / "data"}"
mail_backend = "file"
log_level = "INFO"

[btcpay]
enabled = true
url = "http://127.0.0.1:9"
store_id = "store"

[stripe]
enabled = true
api_base = "http://127.0.0.1:9"
"""
    )
    return config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Process]]:
    tmp_path = tmp_path_factory.mktemp("serve-limits")
    port = free_port()
    env = clean_env(
        GATEWAY_CONFIG_FILE=str(_config(tmp_path)),
        GATEWAY_STRIPE__SECRET_KEY="sk_test_limits",
        GATEWAY_STRIPE__WEBHOOK_SECRET="whsec_limits",
        GATEWAY_BTCPAY__API_KEY="btcpay-limits",
        GATEWAY_BTCPAY__WEBHOOK_SECRET="btcpay-hook-limits",
    )
    args = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with Process(args, log=tmp_path / "serve.log", cwd=tmp_path, env=env) as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/readyz")
        yield port, proc


def _filler(params: dict[str, str]) -> Callable[[re.Match[str]], str]:
    return lambda match: params.get(match[1], "x")


def _post_paths(settings: Settings, catalog: Catalog) -> list[str]:
    """Every POST route of the app, with each provider filled in where the path has one."""
    app = create_app(settings, catalog=catalog, providers={}, run_migrations=False)
    paths: list[str] = []
    for route in app.routes:
        if not isinstance(route, Route) or "POST" not in (route.methods or set()):
            continue
        for provider in ("stripe", "btcpay") if "{provider}" in route.path else ("-",):
            params = PARAMS | {"provider": provider}
            paths.append(re.sub(r"\{(\w+)[^}]*\}", _filler(params), route.path))
    return paths


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def big_post(port: int, path: str, *, chunked: bool) -> tuple[int | None, int]:
    """Start a 1 GB POST (declared by Content-Length, or chunked); send at most SEND_LIMIT
    bytes, stopping as soon as the server answers. Returns (status, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {GIB}\r\n"
    chunk = b"x" * (64 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
    sent = 0
    answer = b""
    try:
        sock.sendall(head.encode() + b"\r\n")
        while sent < SEND_LIMIT:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(frame)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    try:
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    match = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    return (int(match[1]) if match else None), sent


class Prober:
    """Requests /healthz in a loop from a thread; records every status and latency."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.results: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                status = client.get(self.url).status_code
                self.results.append((status, time.monotonic() - started))
                time.sleep(0.05)

    def __enter__(self) -> Prober:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.results and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


def test_one_gigabyte_post_to_every_post_route_is_413_with_flat_memory(
    gateway: tuple[int, Process],
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
) -> None:
    port, proc = gateway
    assert proc.proc is not None
    paths = _post_paths(settings_factory(), catalog)
    assert {"/checkout/stripe/pro", "/webhooks/stripe", "/webhooks/btcpay"} <= set(paths)
    # given a warmed-up process (every route answered once with a small body)
    with httpx.Client(timeout=10) as client:
        for path in paths:
            assert client.post(f"http://127.0.0.1:{port}{path}", content=b"{}").status_code < 500
    before = _vm_hwm_kb(proc.proc.pid)

    # when a 1 GB body, declared and chunked, is started against each route
    outcomes: dict[tuple[str, bool], tuple[int | None, int]] = {}
    with Prober(port) as prober:
        for path in paths:
            for chunked in (False, True):
                outcomes[(path, chunked)] = big_post(port, path, chunked=chunked)

    # then each is refused with 413 long before its end, memory stays flat, and the
    # health checks running meanwhile were all served promptly
    assert {key: status for key, (status, _) in outcomes.items()} == dict.fromkeys(outcomes, 413), (
        proc.log()
    )
    growth = _vm_hwm_kb(proc.proc.pid) - before
    assert growth < RSS_GROWTH_LIMIT_KB, f"peak RSS grew by {growth} kB"
    assert prober.results
    assert {status for status, _ in prober.results} == {200}
    assert max(latency for _, latency in prober.results) < 2.0
    with httpx.Client(timeout=10) as client:
        assert client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    sent = {key: n for key, (_, n) in outcomes.items()}
    print(f"peak RSS growth {growth} kB over {len(outcomes)} 1 GB posts; ", end="")
    print(f"max health latency {max(lat for _, lat in prober.results):.3f} s; ", end="")
    print(f"{len(prober.results)} probes; bytes sent before the answer: {sent}")


def test_access_log_never_writes_the_status_token(gateway: tuple[int, Process]) -> None:
    port, proc = gateway
    token = "tok_" + "Q" * 30
    with httpx.Client(timeout=10) as client:
        order = client.get(f"http://127.0.0.1:{port}/orders/ord_{'a' * 20}?token={token}")
        other = client.get(f"http://127.0.0.1:{port}/healthz?token={token}&x=1")
    assert (order.status_code, other.status_code) == (404, 200)

    deadline = time.monotonic() + 5
    while "/healthz?" not in proc.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = proc.log()
    assert f"/orders/ord_{'a' * 20}?[redacted]" in log
    assert "/healthz?token=[redacted]&x=1" in log
    assert token not in log
