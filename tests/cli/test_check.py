"""`check-config` against a real database and the provider fakes served over real HTTP:
good config, a missing secret, an unreachable provider, and a key the provider refuses."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway.cli import cli
from sandbox.btcpay.server import FakeBTCPay, FakeServerThread
from sandbox.stripe.api import FakeStripe
from tests.support.procs import free_port

pytestmark = pytest.mark.db

STORE = "FakeStore1111111111111111111111111111111111"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[str, str]]:
    """Fake Stripe and fake BTCPay on 127.0.0.1, with their default keys."""
    stripe = FakeServerThread(FakeStripe().app)
    btcpay = FakeServerThread(
        FakeBTCPay(store_id=STORE, api_key="fake-btcpay-api-key", webhook_secret="whsec-b").app
    )
    urls = (stripe.start(), btcpay.start())
    try:
        yield urls
    finally:
        stripe.stop()
        btcpay.stop()


@pytest.fixture
def env(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: tuple[str, str]
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    stripe_url, btcpay_url = fakes
    return {
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_CONFIG_FILE": "",
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_PUBLIC_URL": "https://shop.example.com",
        "GATEWAY_MAIL_BACKEND": "smtp",
        "GATEWAY_SMTP__FROM": "licenses@shop.example.com",
        "GATEWAY_STRIPE__ENABLED": "true",
        "GATEWAY_STRIPE__API_BASE": stripe_url,
        "GATEWAY_STRIPE__SECRET_KEY": "sk_test_fake_gateway",
        "GATEWAY_STRIPE__WEBHOOK_SECRET": "whsec_test",
        "GATEWAY_BTCPAY__ENABLED": "true",
        "GATEWAY_BTCPAY__URL": btcpay_url,
        "GATEWAY_BTCPAY__STORE_ID": STORE,
        "GATEWAY_BTCPAY__API_KEY": "fake-btcpay-api-key",
        "GATEWAY_BTCPAY__WEBHOOK_SECRET": "whsec-b",
    }


def check(env: dict[str, str], *args: str) -> tuple[Result, Any]:
    text = CliRunner().invoke(cli, ["check-config", "--timeout", "3", *args], env=env)
    as_json = CliRunner().invoke(cli, ["check-config", "--timeout", "3", "--json", *args], env=env)
    assert text.exit_code == as_json.exit_code, (text.output, as_json.output)
    return text, json.loads(as_json.stdout)


def by_name(doc: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


def test_good_config_passes_every_check(env: dict[str, str]) -> None:
    text, doc = check(env)

    assert text.exit_code == 0, text.output
    assert doc["ok"] is True
    assert set(by_name(doc)) == {
        "settings",
        "catalog",
        "database",
        "license keys",
        "provider stripe",
        "provider btcpay",
    }
    assert all(c["ok"] for c in doc["checks"])
    assert "accepts the API key" in by_name(doc)["provider stripe"]["detail"]
    assert doc["warnings"] == []
    assert "configuration OK" in text.stdout
    assert "FAIL" not in text.stdout


def test_missing_secret_names_the_variable(env: dict[str, str]) -> None:
    del env["GATEWAY_STRIPE__WEBHOOK_SECRET"]

    text, doc = check(env)

    assert text.exit_code == 1
    assert doc["ok"] is False
    assert by_name(doc)["settings"]["ok"] is False
    assert "GATEWAY_STRIPE__WEBHOOK_SECRET" in by_name(doc)["settings"]["detail"]
    assert "FAIL  settings" in text.stdout
    assert "GATEWAY_STRIPE__WEBHOOK_SECRET" in text.stdout
    assert "sk_test_fake_gateway" not in text.output  # never echo a secret


def test_a_key_file_serve_would_refuse_fails_naming_the_chmod(env: dict[str, str]) -> None:
    # given a signing key readable by the group, which makes `serve` refuse to start
    keys = Path(env["GATEWAY_DATA_DIR"]) / "license-keys"
    assert CliRunner().invoke(cli, ["keys", "generate"], env=env).exit_code == 0
    [pem] = keys.glob("*.pem")
    pem.chmod(0o640)

    text, doc = check(env)

    assert text.exit_code == 1
    assert by_name(doc)["license keys"]["ok"] is False
    assert f"chmod 600 {pem}" in by_name(doc)["license keys"]["detail"]
    assert "FAIL  license keys" in text.stdout


def test_unreachable_provider_fails_naming_it(env: dict[str, str]) -> None:
    env["GATEWAY_BTCPAY__URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    text, doc = check(env)

    assert text.exit_code == 1
    btcpay = by_name(doc)["provider btcpay"]
    assert btcpay["ok"] is False
    assert btcpay["detail"].startswith(f"cannot reach {env['GATEWAY_BTCPAY__URL']}")
    assert by_name(doc)["provider stripe"]["ok"] is True
    assert "FAIL  provider btcpay: cannot reach" in text.stdout


@pytest.mark.parametrize(
    ("variable", "value", "names"),
    [
        ("GATEWAY_STRIPE__SECRET_KEY", "sk_test_wrong", "GATEWAY_STRIPE__SECRET_KEY"),
        ("GATEWAY_BTCPAY__API_KEY", "wrong-key", "GATEWAY_BTCPAY__API_KEY"),
    ],
)
def test_refused_api_key_fails_naming_the_variable(
    env: dict[str, str], variable: str, value: str, names: str
) -> None:
    env[variable] = value
    provider = "provider stripe" if "STRIPE" in variable else "provider btcpay"

    text, doc = check(env)

    assert text.exit_code == 1
    assert by_name(doc)[provider]["ok"] is False
    assert "refused the API key (401)" in by_name(doc)[provider]["detail"]
    assert names in by_name(doc)[provider]["detail"]
    assert value not in text.output


def test_wrong_store_id_is_reported(env: dict[str, str]) -> None:
    env["GATEWAY_BTCPAY__STORE_ID"] = "SomeOtherStore"

    text, doc = check(env)

    assert text.exit_code == 1
    assert "GATEWAY_BTCPAY__STORE_ID" in by_name(doc)["provider btcpay"]["detail"]


def test_production_defaults_are_warnings_not_failures(env: dict[str, str]) -> None:
    env["GATEWAY_PUBLIC_URL"] = "http://127.0.0.1:8000"
    env["GATEWAY_SMTP__FROM"] = "licenses@localhost"

    text, doc = check(env)

    assert text.exit_code == 0
    assert any("GATEWAY_PUBLIC_URL" in w for w in doc["warnings"])
    assert any("@localhost" in w for w in doc["warnings"])
    assert "warn  GATEWAY_PUBLIC_URL is http://127.0.0.1:8000" in text.stdout


def test_unreachable_database_fails(env: dict[str, str]) -> None:
    env["GATEWAY_DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{free_port()}/nope"

    text, doc = check(env)

    assert text.exit_code == 1
    assert by_name(doc)["database"]["ok"] is False
    assert "FAIL  database" in text.stdout


def test_half_configured_auto_provider_fails_naming_what_is_missing(env: dict[str, str]) -> None:
    env["GATEWAY_STRIPE__ENABLED"] = "auto"
    del env["GATEWAY_STRIPE__WEBHOOK_SECRET"]

    text, doc = check(env)

    assert text.exit_code == 1
    stripe = by_name(doc)["provider stripe"]
    assert stripe["ok"] is False
    assert "GATEWAY_STRIPE__WEBHOOK_SECRET not set" in stripe["detail"]


def test_provider_off_with_nothing_configured_is_fine(env: dict[str, str]) -> None:
    env["GATEWAY_BTCPAY__ENABLED"] = "auto"
    for name in ("URL", "STORE_ID", "API_KEY", "WEBHOOK_SECRET"):
        del env[f"GATEWAY_BTCPAY__{name}"]

    text, doc = check(env)

    assert text.exit_code == 0, text.output
    assert by_name(doc)["provider btcpay"]["ok"] is True
    assert "disabled" in by_name(doc)["provider btcpay"]["detail"]
