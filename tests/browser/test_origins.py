"""The one Origin rule in a real browser (Debian's chromium via playwright, headless).

Real processes on 127.0.0.1: the gateway (`serve`, public URL on 127.0.0.1), the fake Stripe
API, and another site on its own port (a static server: another origin). From that site a
`no-cors` fetch of a Blob (no Content-Type) reaches the checkout and creates no order; its
form post to the chooser gets the page that sends the buyer to the public URL, and the
operator one warning line. The gateway's own chooser buys from `localhost` and `127.0.0.1`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.procs import PYTHON, Process, clean_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.db]

CHROMIUM = "/usr/bin/chromium"
BUYER = "buyer@example.com"


@dataclass
class Stack:
    port: int
    gateway: str
    stripe: str
    other: str
    database: Path
    log: Process

    def warnings(self) -> list[str]:
        return [line for line in self.log.log().splitlines() if " WARNING " in line]

    def orders(self) -> int:
        with sqlite3.connect(self.database) as db:
            count: int = db.execute("SELECT count(*) FROM orders").fetchone()[0]
        return count


def _other_site(directory: Path, gateway: str) -> None:
    directory.mkdir()
    head = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title></head>'
    (directory / "blob.html").write_text(
        head.format("Other site")
        + "<body><script>"
        + 'const body = new Blob([JSON.stringify({email: "victim@example.com"})]);'
        + f'fetch("{gateway}/checkout/stripe/pro", {{method: "POST", mode: "no-cors", body}})'
        + '.then(() => { document.title = "sent"; }, (e) => { document.title = "error " + e; });'
        + "</script></body></html>"
    )
    (directory / "form.html").write_text(
        head.format("Other shop")
        + f'<body><form method="post" action="{gateway}/buy/pro">'
        + f'<input name="email" value="{BUYER}">'
        + '<button id="buy" name="provider" value="stripe">Buy</button></form></body></html>'
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("browser-origins")
    ports = {name: free_port() for name in ("gw", "stripe", "other")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    _other_site(tmp / "other", url["gw"])
    env = clean_env(
        GATEWAY_PUBLIC_URL=url["gw"],
        GATEWAY_DATA_DIR=str(tmp / "gw"),
        GATEWAY_MAIL_BACKEND="file",
        GATEWAY_STRIPE__API_BASE=url["stripe"],
        GATEWAY_STRIPE__SECRET_KEY="sk_test_fake_gateway",
        GATEWAY_STRIPE__WEBHOOK_SECRET="whsec_fake_gateway_secret",
        GATEWAY_BTCPAY__ENABLED="false",
    )
    stripe = Process(
        [PYTHON, "-m", "sandbox.stripe.api", "--port", str(ports["stripe"]),
         "--webhook-url", f"{url['gw']}/webhooks/stripe"],
        log=tmp / "stripe.log", env=env,
    )  # fmt: skip
    gateway = Process(
        [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(ports["gw"])],
        log=tmp / "gw.log",
        cwd=tmp,
        env=env,
    )
    other = Process(
        [PYTHON, "-m", "http.server", str(ports["other"]), "--bind", "127.0.0.1",
         "--directory", str(tmp / "other")],
        log=tmp / "other.log", env=env,
    )  # fmt: skip
    with stripe, gateway, other:
        stripe.wait_http(url["stripe"] + "/", any_status=True)
        gateway.wait_http(url["gw"] + "/readyz")
        other.wait_http(url["other"] + "/blob.html")
        yield Stack(
            port=ports["gw"],
            gateway=url["gw"],
            stripe=url["stripe"],
            other=url["other"],
            database=tmp / "gw" / "gateway.sqlite3",
            log=gateway,
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def _new_warnings(stack: Stack, before: list[str], needle: str) -> list[str]:
    """The warning lines logged since `before`, once one containing `needle` is there."""
    deadline = time.monotonic() + 10
    while True:
        new = stack.warnings()[len(before) :]
        if any(needle in line for line in new) or time.monotonic() > deadline:
            return new
        time.sleep(0.1)


def test_a_no_cors_blob_post_from_another_origin_creates_no_order(page: Page, stack: Stack) -> None:
    before, orders = stack.warnings(), stack.orders()

    page.goto(f"{stack.other}/blob.html")
    page.wait_for_function("document.title === 'sent'")

    # the request did reach the checkout (and was refused there), and nothing was created
    new = _new_warnings(stack, before, "/checkout/stripe/pro")
    assert any(f"'{stack.other}'" in line for line in new), new
    assert stack.orders() == orders


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_the_chooser_buys_from_localhost_and_127_0_0_1(page: Page, stack: Stack, host: str) -> None:
    orders = stack.orders()

    page.goto(f"http://{host}:{stack.port}/buy/pro")
    page.get_by_label("Your email address").fill(BUYER)
    page.get_by_role("button", name="Pay with Card").click()

    page.wait_for_url(re.compile(rf"{re.escape(stack.stripe)}/pay/cs_"))
    assert stack.orders() == orders + 1


def test_a_foreign_form_post_gets_the_way_to_the_shop_and_one_warning(
    page: Page, stack: Stack
) -> None:
    before, orders = stack.warnings(), stack.orders()

    page.goto(f"{stack.other}/form.html")
    page.click("#buy")
    page.wait_for_selector("h1:has-text('Please order from the shop')")

    text = page.inner_text("main")
    assert f"from another website ({stack.other})" in text
    assert f"Please open this shop at {stack.gateway}" in text
    new = _new_warnings(stack, before, "/buy/pro")
    assert len(new) == 1, new
    assert f"'{stack.other}'" in new[0]
    assert "GATEWAY_ORIGIN_ALIASES" in new[0]
    assert stack.orders() == orders

    # the page's button leads to the chooser at the public URL, not to the refusal again
    page.get_by_role("link", name="Buy Local AI Studio Pro").click()
    page.wait_for_url(f"{stack.gateway}/buy/pro")
    assert page.get_by_role("button", name="Pay with Card").is_visible()
