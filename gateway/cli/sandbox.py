"""`sandbox`: the fake Stripe and fake BTCPay wired to a local gateway, in one command.

For trying the whole purchase without any account: both fakes speak the providers' real
HTTP APIs and post signed webhooks to this gateway. Development only; its secrets
(gateway/cli/sandbox_env.py) are the fakes' own and protect nothing.
"""

from __future__ import annotations

import os

import click
import uvicorn

from gateway.app import create_app
from gateway.cli.common import log, settings_and_logging
from gateway.cli.sandbox_env import DEFAULT_BTCPAY_PORT, SANDBOX_ENV
from gateway.ops.logs import uvicorn_log_config
from sandbox.btcpay.server import FakeBTCPay, FakeServerThread
from sandbox.stripe.api import FakeStripe


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--stripe-port", type=click.IntRange(1, 65535), default=12111, show_default=True)
@click.option(
    "--btcpay-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_BTCPAY_PORT,
    show_default=True,
)
def sandbox(port: int, stripe_port: int, btcpay_port: int) -> None:
    """Run fake Stripe + fake BTCPay and a gateway using them, all on 127.0.0.1."""
    gateway_url = f"http://127.0.0.1:{port}"
    stripe_url = f"http://127.0.0.1:{stripe_port}"
    btcpay_url = f"http://127.0.0.1:{btcpay_port}"
    # Through the environment, so every setting source agrees (and .env cannot override it).
    os.environ.update(SANDBOX_ENV)
    os.environ["GATEWAY_STRIPE__API_BASE"] = stripe_url
    os.environ["GATEWAY_BTCPAY__URL"] = btcpay_url
    os.environ["GATEWAY_PUBLIC_URL"] = gateway_url
    settings = settings_and_logging()
    assert settings.stripe.webhook_secret is not None
    assert settings.btcpay.webhook_secret is not None
    assert settings.btcpay.api_key is not None
    fake_stripe = FakeStripe(
        api_key=SANDBOX_ENV["GATEWAY_STRIPE__SECRET_KEY"],
        webhook_secret=settings.stripe.webhook_secret.get_secret_value(),
        webhook_url=f"{gateway_url}/webhooks/stripe",
        public_url=stripe_url,
    )
    fake_btcpay = FakeBTCPay(
        store_id=SANDBOX_ENV["GATEWAY_BTCPAY__STORE_ID"],
        api_key=settings.btcpay.api_key.get_secret_value(),
        webhook_secret=settings.btcpay.webhook_secret.get_secret_value(),
        webhook_url=f"{gateway_url}/webhooks/btcpay",
        base_url=btcpay_url,
    )
    fakes = [
        FakeServerThread(fake_stripe.app, port=stripe_port),
        FakeServerThread(fake_btcpay.app, port=btcpay_port),
    ]
    for fake in fakes:
        fake.start()
    log.info("sandbox: fake Stripe on %s, fake BTCPay on %s", stripe_url, btcpay_url)
    log.info(
        "sandbox: buy with  curl -s -X POST %s/checkout/stripe/<product> "
        "-H 'content-type: application/json' -d '{\"email\": \"buyer@example.com\"}'",
        gateway_url,
    )
    try:
        uvicorn.run(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_config=uvicorn_log_config(settings.log_level, settings.log_format),
            log_level=settings.log_level.lower(),
        )
    finally:
        for fake in fakes:
            fake.stop()
