"""Two real `serve` processes and a `reconcile` CLI run on one PostgreSQL, all reconciling
the same lost-webhook orders against one fake Stripe served over HTTP: every order gets
exactly one license, and no session is polled twice (issue 8 item 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette

from config.catalog import Catalog
from gateway.db.models import License, Order, OrderStatus
from sandbox.stripe.api import FakeStripe
from tests.support.issuer import new_order
from tests.support.procs import ROOT, Process, clean_env, free_port

pytestmark = pytest.mark.slow

ORDERS = 12
POLLED = re.compile(r"reconciler: polled (\d+)")


@contextlib.asynccontextmanager
async def serve(app: Starlette, port: int) -> AsyncIterator[None]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await task


def _config(tmp_path: Path, api_base: str) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
public_url = "http://gateway.test"
data_dir = "{tmp_path / "data"}"
mail_backend = "file"
mail_dir = "{tmp_path / "mail"}"
reconcile_after_minutes = 1

[reconcile]
interval_seconds = 0.3

[btcpay]
enabled = false

[stripe]
enabled = true
api_base = "{api_base}"
max_network_retries = 0
"""
    )
    return config


async def test_two_processes_and_the_cli_reconcile_each_order_once(
    shared_pg: str,
    catalog: Catalog,
    tmp_path: Path,
) -> None:
    fake = FakeStripe()
    port = free_port()
    # given paid Stripe sessions whose webhooks were all lost, for orders 5 minutes old
    ids: list[str] = []
    for _ in range(ORDERS):
        order = await new_order(catalog)
        session = fake.create_session(
            {
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": str(order.amount_minor),
                            "product_data": {"name": "Pro"},
                        },
                        "quantity": "1",
                    }
                ],
                "metadata": {"order_id": order.id},
                "payment_intent_data": {"metadata": {"order_id": order.id}},
                "success_url": "https://shop.example/ok",
            }
        )
        fake.complete_session(session["id"])
        await Order.filter(id=order.id).update(
            provider_ref=session["id"], created_at=datetime.now(UTC) - timedelta(minutes=5)
        )
        ids.append(order.id)

    env = clean_env(
        GATEWAY_DATABASE_URL=shared_pg,
        GATEWAY_CONFIG_FILE=str(_config(tmp_path, f"http://127.0.0.1:{port}")),
        GATEWAY_STRIPE__SECRET_KEY=fake.api_key,
        GATEWAY_STRIPE__WEBHOOK_SECRET=fake.webhook_secret,
    )
    gateway = [sys.executable, "-m", "gateway"]
    async with serve(fake.app, port):
        ports = [free_port(), free_port()]
        with (
            Process(
                [*gateway, "serve", "--port", str(ports[0])], log=tmp_path / "a.log", env=env
            ) as first,
            Process(
                [*gateway, "serve", "--port", str(ports[1])], log=tmp_path / "b.log", env=env
            ) as second,
        ):
            # when both serve processes reconcile, and an operator runs one pass by hand
            cli = await asyncio.to_thread(
                subprocess.run,
                [*gateway, "reconcile", "--json"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                timeout=60,
            )
            assert cli.returncode == 0, cli.stderr.decode()
            deadline = time.monotonic() + 60
            while await Order.filter(id__in=ids, status=OrderStatus.SETTLED).count() < ORDERS:
                assert time.monotonic() < deadline, first.log() + second.log()
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)  # a double poll would show up by now
            # and the three processes' own reports add up to one poll per order
            for proc in (first, second):
                assert proc.proc is not None
                assert proc.proc.poll() is None, proc.log()
            by_serve = sum(int(n) for n in POLLED.findall(first.log() + second.log()))
            by_cli = int(json.loads(cli.stdout)["polled"])
            assert by_serve + by_cli == ORDERS, (by_serve, by_cli)

    # then each order has one license, and each session was asked about exactly once
    licensed = await License.filter(order_id__in=ids).values_list("order_id", flat=True)
    assert Counter(licensed) == Counter(ids)
    polls = Counter(
        r.path.rsplit("/", 1)[1]
        for r in fake.requests
        if r.method == "GET" and r.path.startswith("/v1/checkout/sessions/")
    )
    assert sorted(polls.values()) == [1] * ORDERS, polls
