"""A buyer in a real browser (Debian's chromium, driven by playwright).

Real processes on 127.0.0.1: the gateway and the fake Stripe API. The buyer submits an
HTML form to the gateway, lands on the (fake) Stripe payment page, pays, is redirected back
to the order status page, and sees the license key that the signed webhook produced.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.support.procs import PYTHON, Process, clean_env, free_port

CHROMIUM = "/usr/bin/chromium"
KEY = re.compile(r"[2-9A-HJ-NP-Z]{4}(?:-[2-9A-HJ-NP-Z]{4}){3}")


@pytest.mark.db
@pytest.mark.slow
def test_buyer_pays_by_card_and_sees_the_license_key(tmp_path: Path) -> None:
    gateway_port, stripe_port = free_port(), free_port()
    gateway = f"http://127.0.0.1:{gateway_port}"
    fake_stripe = [
        PYTHON, "-m", "sandbox.stripe.api", "--port", str(stripe_port),
        "--webhook-url", f"{gateway}/webhooks/stripe",
    ]  # fmt: skip
    env = clean_env(
        GATEWAY_PUBLIC_URL=gateway,
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_MAIL_BACKEND="file",
        GATEWAY_STRIPE__API_BASE=f"http://127.0.0.1:{stripe_port}",
        GATEWAY_STRIPE__SECRET_KEY="sk_test_fake_gateway",
        GATEWAY_STRIPE__WEBHOOK_SECRET="whsec_fake_gateway_secret",
        # the seller's site, allowed to post the checkout form
        GATEWAY_ALLOWED_ORIGINS='["http://shop.test"]',
    )
    serve = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(gateway_port)]
    with (
        Process(fake_stripe, log=tmp_path / "stripe.log", env=env) as stripe_proc,
        Process(serve, log=tmp_path / "gateway.log", cwd=tmp_path, env=env) as gateway_proc,
        sync_playwright() as pw,
    ):
        gateway_proc.wait_http(f"{gateway}/readyz")
        stripe_proc.wait_http(f"http://127.0.0.1:{stripe_port}/", any_status=True)
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            # given a seller's page (served at http://shop.test) with the checkout form
            form = (
                f'<form method="post" action="{gateway}/checkout/stripe/pro">'
                '<input name="email" value="buyer@example.com">'
                '<button id="buy">Pay with Card</button></form>'
            )
            page.route(
                "http://shop.test/",
                lambda route: route.fulfill(content_type="text/html", body=form),
            )
            page.goto("http://shop.test/")
            # when the buyer buys and pays by card on the provider's page
            page.click("#buy")
            page.wait_for_url(re.compile(rf"http://127\.0\.0\.1:{stripe_port}/pay/cs_"))
            page.click("text=Pay with card")
            page.wait_for_url(re.compile(rf"{re.escape(gateway)}/orders/ord_\w+\?token="))
            # then the status page shows the paid order and its key (it refreshes itself
            # while the webhook is on its way)
            page.wait_for_selector(".key", timeout=20_000)
            text = page.inner_text("main")
            page.screenshot(path=str(tmp_path / "status.png"))
        finally:
            browser.close()

    assert "Paid by card: thank you!" in text
    assert "Local AI Studio Pro" in text
    assert KEY.search(text), text
    assert "Active" in text
