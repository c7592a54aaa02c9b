"""The buyer pages in a real browser (Debian's chromium via playwright, headless).

Real processes on 127.0.0.1: the gateway (`serve`, file mail backend), the fake Stripe and
fake BTCPay servers, a second gateway with BTCPay switched off, and two "seller" sites
(static pages on their own ports, one listed in GATEWAY_ALLOWED_ORIGINS, one not).
Every page state is screenshotted into test-artifacts/; the gateway's pages must produce
no console errors or CSP violations, and axe-core (bundled by the axe-playwright-python
package, never a CDN) must find no serious or critical accessibility problem.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.support.procs import PYTHON, ROOT, Process, clean_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.db]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
KEY = re.compile(r"[2-9A-HJ-NP-Z]{4}(?:-[2-9A-HJ-NP-Z]{4}){3}")
STORE = "FakeStore1111111111111111111111111111111111"
BTCPAY_KEY = "fake-btcpay-api-key"
BUYER = "buyer@example.com"


@dataclass
class Stack:
    gateway: str
    card_only: str
    stripe: str
    btcpay: str
    seller_allowed: str
    seller_other: str
    mail_dir: Path
    database: Path
    logs: list[Process] = field(default_factory=list)


def _gateway_env(
    tmp: Path, name: str, url: str, stripe: str, btcpay: str, **extra: str
) -> dict[str, str]:
    return clean_env(
        GATEWAY_PUBLIC_URL=url,
        GATEWAY_DATA_DIR=str(tmp / name),
        GATEWAY_MAIL_BACKEND="file",
        GATEWAY_MAIL__POLL_SECONDS="0.3",
        GATEWAY_STRIPE__API_BASE=stripe,
        GATEWAY_STRIPE__SECRET_KEY="sk_test_fake_gateway",
        GATEWAY_STRIPE__WEBHOOK_SECRET="whsec_fake_gateway_secret",
        GATEWAY_BTCPAY__URL=btcpay,
        GATEWAY_BTCPAY__STORE_ID=STORE,
        GATEWAY_BTCPAY__API_KEY=BTCPAY_KEY,
        GATEWAY_BTCPAY__WEBHOOK_SECRET="fake-btcpay-webhook-secret",
        GATEWAY_SHOP__NAME="Local AI Labs",
        GATEWAY_SHOP__URL="https://shop.example",
        GATEWAY_SHOP__CONTACT_EMAIL="help@shop.example",
        **extra,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("browser-pages")
    ports = {n: free_port() for n in ("gw", "gw2", "stripe", "btcpay", "seller", "other")}
    url = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    site = tmp / "seller"
    site.mkdir()
    (site / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Seller</title>'
        '<link rel="icon" href="data:,">'
        '</head><body><h1>Seller site</h1><div id="buy">'
        f'<script src="{url["gw"]}/static/checkout.js" data-product="pro"></script>'
        "</div></body></html>"
    )
    env = _gateway_env(
        tmp,
        "gw",
        url["gw"],
        url["stripe"],
        url["btcpay"],
        GATEWAY_ALLOWED_ORIGINS=f'["{url["seller"]}"]',
        # a payment after expiry parks the order for the seller (the needs_review page)
        GATEWAY_BTCPAY__LATE_PAYMENT="review",
    )
    card_env = _gateway_env(
        tmp, "gw2", url["gw2"], url["stripe"], url["btcpay"], GATEWAY_BTCPAY__ENABLED="false"
    )
    serve = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port"]
    procs = [
        Process(
            [PYTHON, "-m", "sandbox.stripe.api", "--port", str(ports["stripe"]),
             "--webhook-url", f"{url['gw']}/webhooks/stripe"],
            log=tmp / "stripe.log", env=env,
        ),
        Process(
            [PYTHON, "-m", "sandbox.btcpay.server", "--port", str(ports["btcpay"]),
             "--webhook-url", f"{url['gw']}/webhooks/btcpay"],
            log=tmp / "btcpay.log", env=env,
        ),
        Process([*serve, str(ports["gw"])], log=tmp / "gw.log", cwd=tmp, env=env),
        Process([*serve, str(ports["gw2"])], log=tmp / "gw2.log", cwd=tmp, env=card_env),
        *(
            Process(
                [PYTHON, "-m", "http.server", str(ports[n]), "--bind", "127.0.0.1",
                 "--directory", str(site)],
                log=tmp / f"{n}.log", env=env,
            )
            for n in ("seller", "other")
        ),
    ]  # fmt: skip
    started: list[Process] = []
    try:
        for proc in procs:
            started.append(proc.__enter__())
        procs[0].wait_http(url["stripe"] + "/", any_status=True)
        procs[1].wait_http(url["btcpay"] + "/", any_status=True)
        procs[2].wait_http(url["gw"] + "/readyz")
        procs[3].wait_http(url["gw2"] + "/readyz")
        procs[4].wait_http(url["seller"] + "/")
        procs[5].wait_http(url["other"] + "/")
        yield Stack(
            gateway=url["gw"],
            card_only=url["gw2"],
            stripe=url["stripe"],
            btcpay=url["btcpay"],
            seller_allowed=url["seller"],
            seller_other=url["other"],
            mail_dir=tmp / "gw" / "outbox",
            database=tmp / "gw" / "gateway.sqlite3",
            logs=procs,
        )
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    page: Page
    problems: list[str]


@pytest.fixture
def watched(browser: Browser, stack: Stack) -> Iterator[Watched]:
    """A fresh page whose console errors and CSP violations on our pages are collected."""
    context = browser.new_context(viewport={"width": 420, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.gateway)
    page = context.new_page()
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        # The gateway's pages and the allowed seller's page must be clean; on the other
        # seller's page the browser refusing the CORS request is the expected outcome.
        where = str(msg.location.get("url", "")) or page.url
        ours = page.url.startswith((stack.gateway, stack.card_only, stack.seller_allowed))
        if ours and (msg.type == "error" or "Content Security Policy" in msg.text):
            problems.append(f"{msg.type}: {msg.text} ({where})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    try:
        yield Watched(page, problems)
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the current page."""
    source = files("axe_playwright_python").joinpath("axe.min.js").read_text()
    page.evaluate(source)  # through DevTools, so our CSP does not have to allow it
    result: dict[str, Any] = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def redirect_url_of_invoice(stack: Stack, invoice_id: str) -> str:
    resp = httpx.get(
        f"{stack.btcpay}/api/v1/stores/{STORE}/invoices/{invoice_id}",
        headers={"Authorization": f"token {BTCPAY_KEY}"},
    )
    resp.raise_for_status()
    url: str = resp.json()["checkout"]["redirectURL"]
    return url


def wait_for_file(directory: Path, needle: bytes, timeout: float = 15.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in directory.glob("*.eml") if directory.exists() else []:
            if needle in path.read_bytes():
                return path
        time.sleep(0.2)
    raise AssertionError(f"no mail containing {needle!r} in {directory}")


def test_chooser_shows_both_buttons_explains_a_bad_email_and_is_accessible(
    watched: Watched, stack: Stack
) -> None:
    page = watched.page
    page.goto(f"{stack.gateway}/buy/pro")
    shot(page, "chooser")
    assert page.get_by_role("button", name="Pay with Bitcoin").is_visible()
    assert page.get_by_role("button", name="Pay with Card").is_visible()
    assert "No processor fees" in page.inner_text("main")
    assert "Speed: instant" in page.inner_text("main")
    assert "Local AI Labs" in page.inner_text("header")
    assert axe_violations(page) == []

    # keyboard only: the email field, then the payment buttons in order
    page.get_by_label("Your email address").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Pay with Bitcoin"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Pay with Card"

    page.set_viewport_size({"width": 1280, "height": 900})
    shot(page, "chooser-desktop")
    page.set_viewport_size({"width": 420, "height": 900})

    page.get_by_label("Your email address").fill("not an email")
    page.get_by_role("button", name="Pay with Card").click()
    page.wait_for_selector("[role=alert]")
    shot(page, "chooser-invalid-email")
    assert "does not look right" in page.inner_text("[role=alert]")
    assert page.get_by_label("Your email address").get_attribute("aria-invalid") == "true"
    assert axe_violations(page) == []
    # Chrome logs every 4xx document as a console error; the form re-rendered with its error
    # answers 422 on purpose. That one line is expected, nothing else.
    assert watched.problems == [
        "error: Failed to load resource: the server responded with a status of 422 "
        f"(Unprocessable Entity) ({stack.gateway}/buy/pro)"
    ]


def test_card_purchase_lands_on_thank_you_with_key_copy_and_email_state(
    watched: Watched, stack: Stack
) -> None:
    page = watched.page
    page.goto(f"{stack.gateway}/buy/pro")
    page.get_by_label("Your email address").fill(BUYER)
    page.get_by_role("button", name="Pay with Card").click()
    page.wait_for_url(re.compile(rf"{re.escape(stack.stripe)}/pay/cs_"))
    page.click("text=Pay with card")
    page.wait_for_url(re.compile(rf"{re.escape(stack.gateway)}/orders/ord_\w+\?token="))
    started = time.monotonic()
    page.wait_for_selector("#license-key", timeout=10_000)
    seconds = time.monotonic() - started
    shot(page, "thank-you-card")
    text = page.inner_text("main")
    assert "Paid by card: thank you!" in text
    assert KEY.search(text)
    assert "How to activate" in text
    assert seconds < 10
    assert axe_violations(page) == []

    page.get_by_role("button", name="Copy key").click()
    page.wait_for_selector("#copy-status:has-text('Copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.inner_text("#license-key")

    # once the outbox sender has really sent the mail, the page says so (without a reload)
    page.evaluate("window.__notReloaded = true")
    wait_for_file(stack.mail_dir, copied.encode())
    page.wait_for_selector("text=We also emailed this key", timeout=15_000)
    assert page.evaluate("window.__notReloaded") is True
    assert page.get_attribute("main", "data-poll") == "0"
    shot(page, "thank-you-card-emailed")
    assert "Save this key now" not in page.inner_text("main")
    assert watched.problems == []


def test_cancelled_card_checkout_offers_to_try_again(watched: Watched, stack: Stack) -> None:
    page = watched.page
    page.goto(f"{stack.gateway}/buy/pro")
    page.get_by_label("Your email address").fill("canceller@example.com")
    page.get_by_role("button", name="Pay with Card").click()
    page.wait_for_url(re.compile(rf"{re.escape(stack.stripe)}/pay/cs_"))
    page.click("text=Cancel")
    page.wait_for_selector("h1:has-text('Payment cancelled')")
    shot(page, "cancelled")
    assert page.get_by_role("link", name="Return to the payment page").is_visible()
    page.get_by_role("link", name="Choose another way to pay").click()
    page.wait_for_url(f"{stack.gateway}/buy/pro")
    assert watched.problems == []


def _start_bitcoin(page: Page, stack: Stack, email: str) -> str:
    page.goto(f"{stack.gateway}/buy/pro")
    page.get_by_label("Your email address").fill(email)
    page.get_by_role("button", name="Pay with Bitcoin").click()
    page.wait_for_url(re.compile(rf"{re.escape(stack.btcpay)}/i/\w+"))
    return page.url.rsplit("/", 1)[1]


def test_bitcoin_purchase_shows_confirming_then_the_key_without_a_reload(
    watched: Watched, stack: Stack
) -> None:
    page = watched.page
    invoice = _start_bitcoin(page, stack, "satoshi@example.com")
    status_url = redirect_url_of_invoice(stack, invoice)
    shot(page, "btcpay-invoice")

    # the payment is seen on-chain but not yet confirmed
    page.get_by_role("button", name="pay-unconfirmed").click()
    page.goto(status_url)
    page.wait_for_selector("h1:has-text('confirming on the blockchain')")
    shot(page, "thank-you-bitcoin-confirming")
    assert "about 10 minutes" in page.inner_text("main")
    assert axe_violations(page) == []
    page.evaluate("window.__notReloaded = true")

    # when BTCPay settles, the page turns into the paid page by itself
    httpx.post(f"{stack.btcpay}/_fake/invoices/{invoice}/confirm").raise_for_status()
    page.wait_for_selector("#license-key", timeout=15_000)
    shot(page, "thank-you-bitcoin-paid")
    assert "Paid in bitcoin: thank you!" in page.inner_text("main")
    assert page.evaluate("window.__notReloaded") is True
    assert page.get_attribute("main", "data-poll") != "1"  # no more state polling
    assert watched.problems == []


def _paid_minor_once_pending(stack: Stack, order_id: str) -> tuple[int, int]:
    """Wait for the partial payment's webhook to be applied; return (paid, price) in cents.

    Both come from the real path: the BTCPay provider re-fetches the invoice, reports what
    was paid as `PaymentPending.amount_paid_minor`, and apply stores it with the pending
    status in one transaction, so a pending order without `paid_minor` is a bug.
    """
    deadline = time.monotonic() + 15
    with sqlite3.connect(stack.database) as db:
        while time.monotonic() < deadline:
            row = db.execute(
                "SELECT status, paid_minor, amount_minor FROM orders WHERE id = ?", (order_id,)
            ).fetchone()
            if row is not None and row[0] == "pending":
                assert row[1] is not None, "the provider did not report the amount paid"
                return int(row[1]), int(row[2])
            time.sleep(0.2)
    raise AssertionError(f"order {order_id} never saw the partial payment")


def test_partial_bitcoin_payment_says_how_much_is_due(watched: Watched, stack: Stack) -> None:
    page = watched.page
    invoice = _start_bitcoin(page, stack, "partial@example.com")
    status_url = redirect_url_of_invoice(stack, invoice)
    page.get_by_role("button", name="pay-partial").click()
    order_id = status_url.split("/orders/")[1].split("?")[0]
    paid, price = _paid_minor_once_pending(stack, order_id)
    assert 0 < paid < price
    page.goto(status_url)
    page.wait_for_selector("h1:has-text('Part of your payment has arrived')")
    shot(page, "thank-you-bitcoin-partial")
    text = page.inner_text("main")
    assert f"We received {paid / 100:.2f} USD of {price / 100:.2f} USD." in text
    assert f"{(price - paid) / 100:.2f} USD is still due" in text
    assert watched.problems == []


def test_late_bitcoin_payment_shows_the_manual_check_page_and_stops_polling(
    watched: Watched, stack: Stack
) -> None:
    # given an invoice that expired and was then paid in full: the real BTCPay provider
    # reports it, and with late_payment=review the gateway parks the order
    page = watched.page
    invoice = _start_bitcoin(page, stack, "late@example.com")
    status_url = redirect_url_of_invoice(stack, invoice)
    for action in ("expire", "pay-late"):
        httpx.post(f"{stack.btcpay}/_fake/invoices/{invoice}/{action}").raise_for_status()

    # when the buyer opens the status page
    page.goto(status_url)

    # then it says a person will check it, in buyer words, and polls no more
    page.wait_for_selector("h1:has-text('Your payment needs a manual check')")
    shot(page, "thank-you-bitcoin-needs-review")
    text = page.inner_text("main")
    assert "You do not need to pay again." in text
    assert "write to help@shop.example" in text  # the seller's contact, not only the footer
    assert "needs_review" not in text
    assert page.get_attribute("main", "data-poll") != "1"
    assert axe_violations(page) == []
    assert watched.problems == []


def test_with_btcpay_disabled_only_the_card_button_shows(watched: Watched, stack: Stack) -> None:
    page = watched.page
    page.goto(f"{stack.card_only}/buy/pro")
    shot(page, "chooser-card-only")
    buttons = page.locator("button[name=provider]").all_inner_texts()
    assert buttons == ["Pay with Card"]
    assert watched.problems == []


def test_embed_renders_buttons_only_on_an_allowed_origin(watched: Watched, stack: Stack) -> None:
    page = watched.page
    page.goto(f"{stack.seller_other}/")
    page.wait_for_load_state("networkidle")
    shot(page, "embed-not-allowed")
    assert page.locator(".checkout-gateway-button").count() == 0

    page.goto(f"{stack.seller_allowed}/")
    page.wait_for_selector(".checkout-gateway-button")
    shot(page, "embed-allowed")
    labels = page.locator(".checkout-gateway-button").all_inner_texts()
    assert labels == ["Pay with Bitcoin", "Pay with Card"]
    page.locator(".checkout-gateway-button", has_text="Pay with Card").click()
    page.wait_for_url(re.compile(rf"{re.escape(stack.gateway)}/buy/pro\?provider=stripe"))
    shot(page, "chooser-from-embed")
    buttons = page.locator("button[name=provider]").all_inner_texts()
    assert buttons == ["Pay with Card", "Pay with Bitcoin"]  # the one clicked comes first
    assert watched.problems == []


def test_lost_key_form_emails_a_known_buyer_and_answers_the_same_for_strangers(
    watched: Watched, stack: Stack
) -> None:
    page = watched.page
    # given a buyer who paid (an earlier test may have; make sure here)
    page.goto(f"{stack.gateway}/buy/pro")
    page.get_by_label("Your email address").fill("forgetful@example.com")
    page.get_by_role("button", name="Pay with Card").click()
    page.wait_for_url(re.compile(rf"{re.escape(stack.stripe)}/pay/cs_"))
    page.click("text=Pay with card")
    page.wait_for_selector("#license-key", timeout=10_000)
    key = page.inner_text("#license-key")

    page.goto(f"{stack.gateway}/licenses/recover")
    shot(page, "recover-form")
    assert axe_violations(page) == []
    page.get_by_label("Your email address").fill("forgetful@example.com")
    page.get_by_role("button", name="Email me my licenses").click()
    page.wait_for_selector("[role=status]")
    shot(page, "recover-sent")
    known = page.inner_text("[role=status]")
    mail = wait_for_file(stack.mail_dir, b"Your licenses from")
    assert b"forgetful@example.com" in mail.read_bytes()
    assert key.encode() not in mail.read_bytes()  # links to the status pages, not keys

    page.goto(f"{stack.gateway}/licenses/recover")
    page.get_by_label("Your email address").fill("stranger@example.com")
    page.get_by_role("button", name="Email me my licenses").click()
    page.wait_for_selector("[role=status]")
    stranger = page.inner_text("[role=status]")
    assert known.replace("forgetful", "X") == stranger.replace("stranger", "X")
    assert watched.problems == []


def test_the_console_watch_catches_a_csp_violation(watched: Watched, stack: Stack) -> None:
    # The "no CSP violations" checks above could pass by not listening: prove they listen.
    page = watched.page
    page.goto(f"{stack.gateway}/buy/pro")
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = 1'; document.head.appendChild(s); }"
    )
    page.wait_for_timeout(300)
    assert page.evaluate("window.__ran") is None  # the CSP blocked the inline script
    assert any("Content Security Policy" in p for p in watched.problems), watched.problems
