"""The command line, run as real processes: help, config errors, migrate, and serve."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sandbox.btcpay.server import FakeBTCPay, FakeServerThread
from tests.support.procs import PYTHON, Process, clean_env, free_port

# Every test here runs `python -m gateway ...` processes.
pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).parent / "checkout-gateway"


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = _run([PYTHON, "-m", "gateway", "--help"], tmp_path)

    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "send-mail", "review", "reconcile", "btcpay"):
        assert command in result.stdout


def test_serve_with_missing_config_file_exits_2_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"

    result = _run(
        [PYTHON, "-m", "gateway", "serve", "--port", "1"],
        tmp_path,
        GATEWAY_CONFIG_FILE=str(missing),
    )

    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert f"{missing}: config file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_enabled_provider_missing_secrets_exits_2_naming_them(tmp_path: Path) -> None:
    result = _run(
        [PYTHON, "-m", "gateway", "serve", "--port", "1"],
        tmp_path,
        GATEWAY_STRIPE__ENABLED="true",
        GATEWAY_STRIPE__SECRET_KEY="sk_test_x",
    )

    assert result.returncode == 2
    assert "GATEWAY_STRIPE__WEBHOOK_SECRET" in result.stderr
    assert "sk_test_x" not in result.stderr  # a secret never reaches the log
    assert "Traceback" not in result.stderr


def test_serve_with_invalid_catalog_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    products = tmp_path / "products.toml"
    products.write_text(
        '[tiers.pro]\nseats = 1\n[[products]]\nid = "p"\nname = "P"\nprice = 9.999\n'
        'currency = "USD"\ntier = "pro"\n',
        encoding="utf-8",
    )

    result = _run(
        [PYTHON, "-m", "gateway", "serve", "--port", "1"],
        tmp_path,
        GATEWAY_PRODUCTS_FILE=str(products),
    )

    assert result.returncode == 2
    assert f"{products}: products.p.price" in result.stderr


@pytest.mark.db
def test_migrate_command_creates_the_database(tmp_path: Path) -> None:
    db_file = tmp_path / "sub" / "gateway.sqlite3"

    result = _run([str(SCRIPT), "migrate"], tmp_path, GATEWAY_DATABASE_URL=f"sqlite://{db_file}")

    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db_file) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"orders", "inbox_events", "licenses", "outbox_emails"} <= tables
    assert "database is up to date" in result.stderr
    assert "shutdown" not in result.stderr  # no ORM "shutdown" line while starting up


@pytest.mark.db
def test_served_sample_config_without_secrets_sells_nothing_and_says_why(tmp_path: Path) -> None:
    # given a fresh working directory, the sample config and no secrets at all
    port = free_port()
    log_path = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    serve = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with Process(serve, log=log_path, cwd=tmp_path, env=clean_env()) as server:
        server.wait_http(f"{base}/healthz")

        # when a buyer's page asks what it can offer
        resp = httpx.get(f"{base}/purchase-options/pro", timeout=5)
        ready = httpx.get(f"{base}/readyz", timeout=5)

    # then the product is there with no options, and the log says why, once per provider
    assert resp.status_code == 200
    body = resp.json()
    assert body["product"]["price"] == "9.99"
    assert body["product"]["amount_minor"] == 999
    assert body["options"] == []
    assert ready.status_code == 200
    assert (tmp_path / "data" / "gateway.sqlite3").exists()
    lines = log_path.read_text().splitlines()
    stripe = [line for line in lines if "provider stripe: disabled" in line]
    btcpay = [line for line in lines if "provider btcpay: disabled" in line]
    assert len(stripe) == 1, lines
    assert len(btcpay) == 1, lines
    assert "GATEWAY_STRIPE__SECRET_KEY" in stripe[0]
    assert "GATEWAY_STRIPE__WEBHOOK_SECRET" in stripe[0]
    for name in ("URL", "STORE_ID", "API_KEY", "WEBHOOK_SECRET"):
        assert f"GATEWAY_BTCPAY__{name}" in btcpay[0]


def test_btcpay_pair_stores_a_private_key_and_token_readable_only_by_the_owner(
    tmp_path: Path,
) -> None:
    # given a BTCPay (fake, real HTTP on 127.0.0.1) that issued a pairing code
    fake = FakeBTCPay()
    server = FakeServerThread(fake.app)
    url = server.start()
    try:
        code = fake.issue_pairing_code()

        # when the operator pairs from the command line
        paired = _run(
            [PYTHON, "-m", "gateway", "btcpay", "pair", "--host", url, "--code", code], tmp_path
        )
        again = _run(
            [PYTHON, "-m", "gateway", "btcpay", "pair", "--host", url, "--code", code], tmp_path
        )
    finally:
        server.stop()

    # then key and token are in the data dir, mode 0600, and a second run refuses to overwrite
    assert paired.returncode == 0, paired.stderr
    key, token = (
        tmp_path / "data" / "btcpay_legacy_key.pem",
        tmp_path / "data" / "btcpay_legacy_token.json",
    )
    assert "BEGIN EC PRIVATE KEY" in key.read_text()
    assert set(json.loads(token.read_text())) == {"merchant"}
    assert stat.S_IMODE(key.stat().st_mode) == stat.S_IMODE(token.stat().st_mode) == 0o600
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr


def test_btcpay_pair_rejects_a_malformed_code_and_writes_nothing(tmp_path: Path) -> None:
    result = _run(
        [
            PYTHON,
            "-m",
            "gateway",
            "btcpay",
            "pair",
            "--host",
            "http://127.0.0.1:9",
            "--code",
            "ABC",
        ],
        tmp_path,
    )

    assert result.returncode == 1
    assert "exactly 7" in result.stderr
    assert not (tmp_path / "data").exists()
