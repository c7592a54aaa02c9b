"""`serve` plus a `send-mail` process on one SQLite file: settle webhooks never see 503.

Both processes write (the apply path; the sender's claims and marks). With Tortoise's
deferred `BEGIN`, a transaction that read first could not upgrade to a write while the
other process wrote, and SQLite failed it at once with "database is locked" (a 503 to the
provider). Transactions now take the write lock up front (`BEGIN IMMEDIATE`) and wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.db import database as db
from gateway.db.models import EmailStatus, License, OutboxEmail
from tests.support.issuer import new_order
from tests.support.procs import PYTHON, Process, clean_env, free_port
from tests.support.stripe import WEBHOOK_SECRET, session_event, sign_event

pytestmark = [pytest.mark.slow, pytest.mark.db]

ORDERS = 150  # two distinct settle events each: 300 webhooks
CONCURRENCY = 16


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
public_url = "http://gateway.test"
data_dir = "{tmp_path / "data"}"
mail_backend = "file"
mail_dir = "{tmp_path / "mail"}"
log_level = "WARNING"

[mail]
poll_seconds = 0.05
batch_size = 5

[btcpay]
enabled = false

[stripe]
enabled = true
api_base = "http://127.0.0.1:9"
"""
    )
    return config


async def test_settle_storm_with_serve_and_send_mail_on_one_sqlite_file_has_no_503(
    tmp_path: Path, catalog: Catalog, settings_factory: Callable[..., Settings]
) -> None:
    url = f"sqlite://{tmp_path / 'data' / 'gateway.sqlite3'}"
    settings = settings_factory(database_url=url)
    await db.open_db(settings)
    try:
        orders = [await new_order(catalog) for _ in range(ORDERS)]
    finally:
        await db.close_db()
    deliveries = []
    for order in orders:
        deliveries.append(
            sign_event(session_event(order, f"evt_c_{order.id}", "checkout.session.completed"))
        )
        deliveries.append(
            sign_event(
                session_event(
                    order, f"evt_s_{order.id}", "checkout.session.async_payment_succeeded"
                )
            )
        )

    env = clean_env(
        GATEWAY_DATABASE_URL=url,
        GATEWAY_CONFIG_FILE=str(_config(tmp_path)),
        GATEWAY_STRIPE__SECRET_KEY="sk_test_sqlite_processes",
        GATEWAY_STRIPE__WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    port = free_port()
    serve = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    sender = [PYTHON, "-m", "gateway", "send-mail"]
    with (
        Process(serve, log=tmp_path / "serve.log", cwd=tmp_path, env=env) as server,
        Process(sender, log=tmp_path / "send-mail.log", cwd=tmp_path, env=env) as mailer,
    ):
        server.wait_http(f"http://127.0.0.1:{port}/readyz")
        gate = asyncio.Semaphore(CONCURRENCY)

        async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> int:
            async with gate:
                resp = await client.post(
                    f"http://127.0.0.1:{port}/webhooks/stripe", content=body, headers=headers
                )
                return resp.status_code

        # when 300 settle webhooks arrive while both processes' senders are delivering
        async with httpx.AsyncClient(timeout=60) as client:
            statuses = await asyncio.wait_for(
                asyncio.gather(*(post(client, body, headers) for body, headers in deliveries)),
                timeout=120,
            )

        # then every one was accepted (none refused with 503 "database is locked")
        logs = server.log() + mailer.log()
        assert Counter(statuses) == Counter({200: len(deliveries)}), logs[-3000:]
        deadline = time.monotonic() + 60
        while len(list((tmp_path / "mail").glob("*.eml"))) < ORDERS:
            assert time.monotonic() < deadline, logs[-3000:]
            await asyncio.sleep(0.2)
    assert "database is locked" not in server.log() + mailer.log()

    # and each order has one license and one email, sent once
    await db.open_db(settings, run_migrations=False)
    try:
        ids = [o.id for o in orders]
        assert await License.filter(order_id__in=ids).count() == ORDERS
        sent = await OutboxEmail.filter(order_id__in=ids).values_list("status", "attempts")
        assert Counter(sent) == Counter({(EmailStatus.SENT, 1): ORDERS})
    finally:
        await db.close_db()
    assert len(list((tmp_path / "mail").glob("*.eml"))) == ORDERS
