"""Real processes: `serve --workers 2` on PostgreSQL sells through the fake Stripe, counts in
`/metrics` across workers, and logs JSON without a clear key; `simulate` drives settles,
a refund and an expiry through the running gateway; BTCPay's `simulate --sandbox`."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.btcpay.server import FakeBTCPay, FakeServerThread
from sandbox.stripe.api import FakeStripe
from tests.support import dbutil
from tests.support.procs import PYTHON, Process, clean_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.db]

STORE = "FakeStore1111111111111111111111111111111111"
# /metrics is closed by default: these gateways are scraped the configured way.
METRICS_TOKEN = "scrape-token-operations"
SCRAPER = {"authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = asyncio.run(dbutil.create_pg_database())
    try:
        yield dbutil.pg_url(name)
    finally:
        asyncio.run(dbutil.drop_pg_database(name))


def _cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "gateway", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _checkout(base: str, provider: str) -> dict[str, Any]:
    resp = httpx.post(
        f"{base}/checkout/{provider}/pro", json={"email": "buyer@example.com"}, timeout=10
    )
    assert resp.status_code == 201, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


def _order(status_url: str) -> dict[str, Any]:
    resp = httpx.get(status_url, timeout=10)
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


def _metric(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.postgres
def test_two_workers_on_postgres_sell_count_and_log_json(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    fake = FakeStripe(webhook_url=f"{base}/webhooks/stripe")
    stripe_server = FakeServerThread(fake.app)
    stripe_url = stripe_server.start()
    env = clean_env(
        GATEWAY_DATABASE_URL=pg_url,
        GATEWAY_CONFIG_FILE="",
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_PUBLIC_URL=base,
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_METRICS_TOKEN=METRICS_TOKEN,
        GATEWAY_MAIL_BACKEND="file",
        GATEWAY_MAIL_DIR=str(tmp_path / "mail"),
        GATEWAY_MAIL__POLL_SECONDS="0.2",
        GATEWAY_BTCPAY__ENABLED="false",
        GATEWAY_STRIPE__ENABLED="true",
        GATEWAY_STRIPE__API_BASE=stripe_url,
        GATEWAY_STRIPE__SECRET_KEY="sk_test_fake_gateway",
        GATEWAY_STRIPE__WEBHOOK_SECRET="whsec_fake_gateway_secret",
    )
    serve = ["serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    log_path = tmp_path / "gateway.log"
    try:
        with Process([PYTHON, "-m", "gateway", *serve], log=log_path, cwd=tmp_path, env=env) as gw:
            gw.wait_http(f"{base}/readyz", timeout=60)

            # a buyer pays on the (fake) Stripe page: its signed webhook reaches a worker
            paid = _checkout(base, "stripe")
            session = next(iter(fake.sessions))
            done = httpx.post(f"{stripe_url}/_fake/sessions/{session}/complete", timeout=30)
            assert done.json()["delivered_status"] == 200, gw.log()
            key = _order(paid["status_url"])["license"]["key"]

            # simulate: a settle, then a refund of the paid one, and an expiry
            simulated = _checkout(base, "stripe")
            expired = _checkout(base, "stripe")
            settle = _cli(env, "simulate", "settle", simulated["order_id"], cwd=tmp_path)
            refund = _cli(env, "simulate", "refund", paid["order_id"], cwd=tmp_path)
            expire = _cli(env, "simulate", "expire", expired["order_id"], cwd=tmp_path)
            forged = [
                httpx.post(
                    f"{base}/webhooks/stripe", content=b"{}", headers={"stripe-signature": "x"}
                ).status_code
                for _ in range(6)
            ]
            scrapes = [
                httpx.get(f"{base}/metrics", headers=SCRAPER, timeout=10).text for _ in range(6)
            ]
            orders = [_order(o["status_url"]) for o in (paid, simulated, expired)]
            page = httpx.get(
                simulated["status_url"], headers={"accept": "text/html"}, timeout=10
            ).text
    finally:
        stripe_server.stop()

    # then the checkout-and-pay flow issued a key, and simulate moved the other orders
    assert settle.returncode == 0, settle.stdout + settle.stderr
    assert refund.returncode == 0, refund.stdout + refund.stderr
    assert expire.returncode == 0, expire.stdout + expire.stderr
    assert "order status: " in settle.stdout
    assert [o["status"] for o in orders] == ["reversed", "settled", "failed"]
    assert orders[0]["license"]["status"] == "revoked"
    simulated_key = orders[1]["license"]["key"]
    assert re.fullmatch(r"[2-9A-Z]{4}(-[2-9A-Z]{4}){3}", simulated_key)
    assert simulated_key in page  # the buyer's order page shows the key
    assert forged == [400] * 6

    # every scrape, whichever worker answers, shows the sum over both workers
    for text in scrapes:
        assert _metric(text, 'gateway_webhooks_received_total{provider="stripe"}') == 10
        assert _metric(text, 'gateway_licenses_issued_total{source="webhook"}') == 2
        assert _metric(text, 'gateway_licenses_revoked_total{source="reversal"}') == 1
        assert (
            _metric(
                text, 'gateway_webhooks_rejected_total{provider="stripe",reason="bad_signature"}'
            )
            == 6
        )
        assert _metric(text, "gateway_settle_to_license_seconds_count") == 2

    # and the log is one JSON object per line, from two workers, without a clear key
    lines = log_path.read_text().splitlines()
    docs = [json.loads(line) for line in lines]  # every line parses
    assert all({"timestamp", "level", "logger", "message"} <= d.keys() for d in docs)
    started = [d for d in docs if d["message"].startswith("Started server process")]
    assert len(started) == 2
    settles = [d for d in docs if d.get("event") == "PaymentSettled"]
    assert {d["order_id"] for d in settles} == {paid["order_id"], simulated["order_id"]}
    assert all(d["provider"] == "stripe" and d["dedupe_key"].startswith("evt_") for d in settles)
    text = log_path.read_text()
    assert key not in text
    assert simulated_key not in text
    assert "whsec_fake_gateway_secret" not in text
    assert "sk_test_fake_gateway" not in text


def test_simulate_btcpay_settles_through_the_sandbox_and_explains_a_real_refusal(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    fake = FakeBTCPay(
        store_id=STORE, api_key="fake-btcpay-api-key", webhook_secret="fake-btcpay-whsec"
    )
    btcpay_server = FakeServerThread(fake.app)
    btcpay_url = btcpay_server.start()
    env = clean_env(
        GATEWAY_CONFIG_FILE="",
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_PUBLIC_URL=base,
        GATEWAY_STRIPE__ENABLED="false",
        GATEWAY_BTCPAY__ENABLED="true",
        GATEWAY_BTCPAY__URL=btcpay_url,
        GATEWAY_BTCPAY__STORE_ID=STORE,
        GATEWAY_BTCPAY__API_KEY="fake-btcpay-api-key",
        GATEWAY_BTCPAY__WEBHOOK_SECRET="fake-btcpay-whsec",
    )
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-mailer", "--proxy-headers"]
    try:
        with Process(
            [PYTHON, "-m", "gateway", *serve], log=tmp_path / "gw.log", cwd=tmp_path, env=env
        ) as gw:
            gw.wait_http(f"{base}/readyz")
            # behind a proxy on 127.0.0.1 (trusted by default), the client is the forwarded one
            httpx.get(f"{base}/healthz", headers={"x-forwarded-for": "203.0.113.7"}, timeout=5)
            sandboxed = _checkout(base, "btcpay")
            unpaid = _checkout(base, "btcpay")
            settle = _cli(
                env, "simulate", "settle", sandboxed["order_id"], "--sandbox", cwd=tmp_path
            )
            refused = _cli(env, "simulate", "settle", unpaid["order_id"], cwd=tmp_path)
            refund = _cli(env, "simulate", "refund", unpaid["order_id"], cwd=tmp_path)
            orders = [_order(o["status_url"]) for o in (sandboxed, unpaid)]
    finally:
        btcpay_server.stop()

    assert settle.returncode == 0, settle.stdout + settle.stderr
    assert '203.0.113.7:0 - "GET /healthz' in gw.log()
    assert orders[0]["status"] == "settled"
    assert orders[0]["license"]["key"]
    # a real BTCPay (here: the fake, untouched) says the invoice is not paid: nothing issued
    assert refused.returncode == 1
    assert '"result":"ignored"' in refused.stdout.replace(" ", "")
    assert "pay the invoice in BTCPay" in refused.stderr
    assert orders[1]["status"] == "created"
    assert refund.returncode == 1
    assert "BTCPay sends no refund webhook" in refund.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_metrics_dir_set_by_the_operator_is_created_and_shared_with_cli_commands(
    pg_url: str, tmp_path: Path, workers: str
) -> None:
    # given PROMETHEUS_MULTIPROC_DIR exported (not yet existing) for serve and the CLI alike
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "metrics"
    env = clean_env(
        GATEWAY_DATABASE_URL=pg_url,
        GATEWAY_CONFIG_FILE="",
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_PUBLIC_URL=base,
        GATEWAY_MAIL_BACKEND="file",
        GATEWAY_BTCPAY__ENABLED="false",
        GATEWAY_STRIPE__ENABLED="false",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        GATEWAY_METRICS_TOKEN=METRICS_TOKEN,
    )
    serve = ["serve", "--workers", workers, "--host", "127.0.0.1", "--port", str(port)]
    with Process(
        [PYTHON, "-m", "gateway", *serve], log=tmp_path / "gw.log", cwd=tmp_path, env=env
    ) as gw:
        gw.wait_http(f"{base}/readyz", timeout=60)

        # when an operator gives a license away from the command line
        comp = _cli(
            env, "licenses", "comp", "--product", "pro", "--email", "f@example.com",
            "--by", "ops", "--reason", "metrics", cwd=tmp_path,
        )  # fmt: skip
        scrape = httpx.get(f"{base}/metrics", headers=SCRAPER, timeout=10).text

    # then serve started (no traceback) and its scrape counts the CLI's license too
    assert comp.returncode == 0, comp.stderr
    assert "Traceback" not in gw.log()
    assert _metric(scrape, 'gateway_licenses_issued_total{source="comp"}') == 1.0
