"""Two real gateway processes on one PostgreSQL: exactly one license and one email per order.

Each process is `python -m gateway serve` with Stripe enabled; the test fires real
Stripe-signed `checkout.session.*` webhooks at both at once. Nothing is shared between the
processes but the database, so only its unique constraints and row locks keep this right.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from config.catalog import Catalog
from gateway.db.models import EmailStatus, InboxEvent, License, Order, OutboxEmail
from tests.support.issuer import new_order
from tests.support.procs import free_port
from tests.support.stripe import WEBHOOK_SECRET, session_event, sign_event

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 20
DELIVERIES = 10  # per order: 5 of each of two distinct settle events
STARTUP_SECONDS = 30.0


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
public_url = "http://gateway.test"
data_dir = "{tmp_path / "data"}"
mail_backend = "file"
mail_dir = "{tmp_path / "mail"}"
log_level = "INFO"

[mail]
poll_seconds = 0.2

[btcpay]
enabled = false

[stripe]
enabled = true
# never contacted: session webhooks are verified by signature alone
api_base = "http://127.0.0.1:9"
"""
    )
    return config


def _env(database_url: str, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_CONFIG_FILE": str(config),
        "GATEWAY_STRIPE__SECRET_KEY": "sk_test_two_processes",
        "GATEWAY_STRIPE__WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PYTHONPATH": str(ROOT),
    }
    return env


class Gateways:
    """Two `python -m gateway serve` processes; always stopped, logs kept for failures."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    def start(self) -> None:
        for n in range(2):
            port = free_port()
            log = (self.tmp_path / f"gateway{n}.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gateway",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                    ],
                    env=self.env,
                    cwd=self.tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            self.ports.append(port)

    def logs(self) -> str:
        return "\n".join(
            f"--- gateway{n} ---\n"
            + (self.tmp_path / f"gateway{n}.log").read_text(errors="replace")
            for n in range(len(self.procs))
        )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        for proc, port in zip(self.procs, self.ports, strict=True):
            while True:
                assert proc.poll() is None, f"gateway exited early:\n{self.logs()}"
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"gateway not ready:\n{self.logs()}"
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


async def test_two_processes_sharing_postgres_issue_one_license_and_one_email_per_order(
    shared_pg: str, catalog: Catalog, tmp_path: Path
) -> None:
    # given 20 Stripe orders, created as checkout leaves them
    orders = [await new_order(catalog) for _ in range(ORDERS)]
    for n, order in enumerate(orders):
        order.provider_ref = f"cs_test_two_processes_{n:02d}"
        await order.save(update_fields=["provider_ref"])
    # and per order two distinct settle events (completed+paid, async_payment_succeeded),
    # each delivered five times, alternating between the two processes
    deliveries: list[tuple[bytes, dict[str, str]]] = []
    for order in orders:
        completed = sign_event(
            session_event(order, f"evt_c_{order.id}", "checkout.session.completed")
        )
        succeeded = sign_event(
            session_event(order, f"evt_s_{order.id}", "checkout.session.async_payment_succeeded")
        )
        deliveries += [completed, succeeded] * (DELIVERIES // 2)

    gateways = Gateways(tmp_path, _env(shared_pg, _config(tmp_path)))
    try:
        gateways.start()
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            await gateways.wait_ready(client)
            urls = [f"http://127.0.0.1:{port}/webhooks/stripe" for port in gateways.ports]

            # when all 200 deliveries hit both processes at once
            responses = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.post(urls[i % 2], content=body, headers=headers)
                        for i, (body, headers) in enumerate(deliveries)
                    )
                ),
                timeout=60,
            )

        # then every delivery was accepted, and each order has exactly one license and email
        assert [r.status_code for r in responses] == [200] * len(deliveries), gateways.logs()
        outcomes = Counter(r.json()["events"][0]["result"] for r in responses)
        assert outcomes["applied"] == ORDERS, outcomes
        assert outcomes["applied"] + outcomes["noop"] + outcomes["duplicate"] == len(deliveries)
        ids = [o.id for o in orders]
        assert await Order.filter(id__in=ids, status="settled").count() == ORDERS
        assert Counter(
            await License.filter(order_id__in=ids).values_list("order_id", flat=True)
        ) == (Counter(ids))
        assert Counter(
            await OutboxEmail.filter(order_id__in=ids).values_list("order_id", flat=True)
        ) == Counter(ids)
        assert await InboxEvent.filter(order_id__in=ids).count() == 2 * ORDERS

        # and the two processes' mail senders together deliver each email exactly once
        deadline = time.monotonic() + 30
        while await OutboxEmail.filter(status=EmailStatus.SENT).count() < ORDERS:
            assert time.monotonic() < deadline, gateways.logs()
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # a double send would show up as a 21st file by now
        written = list((tmp_path / "mail").glob("*.eml"))
        assert len(written) == ORDERS
        assert await OutboxEmail.filter(attempts=1, status=EmailStatus.SENT).count() == ORDERS
    finally:
        gateways.stop()
    assert all(proc.returncode is not None for proc in gateways.procs)
