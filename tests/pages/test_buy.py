"""The buyer pages through the real app (in-process): chooser, its form post, the status
page's states, security headers and CORS. The browser tests (tests/browser/test_pages.py) drive
the same pages in chromium."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import EmailStatus, Order, OrderStatus, OutboxEmail
from gateway.licenses.issuing import LICENSE_EMAIL
from providers.events import ProviderName
from sandbox.provider import FakeProvider
from tests.support.app import running
from tests.support.issuer import deliver, event, fake_gateway, new_order

SettingsFactory = Callable[..., Settings]
BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
SELF = "http://gateway.test"


def two_provider_app(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, **settings: Any
) -> tuple[Any, dict[ProviderName, FakeProvider]]:
    fakes = {name: FakeProvider(name) for name in (ProviderName.STRIPE, ProviderName.BTCPAY)}
    app = create_app(
        settings_factory(database_url=db_url, **settings),
        catalog=catalog,
        providers=dict(fakes),
        run_migrations=False,
        run_mailer=False,
    )
    return app, fakes


async def test_chooser_shows_product_price_tier_and_one_button_per_provider(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = two_provider_app(db_url, settings_factory, catalog, shop={"name": "Acme <Soft>"})
    async with running(app) as client:
        page = await client.get("/buy/pro")

    assert page.status_code == 200
    assert "Local AI Studio Pro" in page.text
    assert "9.99 USD" in page.text
    assert "Add-on: advanced-models" in page.text
    assert "up to 3 machines" in page.text
    # bitcoin first (operator order), each with its fee and speed hint
    buttons = re.findall(r'name="provider" value="(\w+)"', page.text)
    assert buttons == ["btcpay", "stripe"]
    assert "Pay with Bitcoin" in page.text
    assert "Pay with Card" in page.text
    assert "No processor fees" in page.text
    assert "Speed: instant" in page.text
    assert '<label for="email">' in page.text
    assert "Acme &lt;Soft&gt;" in page.text  # escaped
    assert page.headers["referrer-policy"] == "same-origin"


async def test_chooser_puts_the_provider_picked_in_the_embed_first(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = two_provider_app(db_url, settings_factory, catalog)
    async with running(app) as client:
        page = await client.get("/buy/pro?provider=stripe")
    assert re.findall(r'name="provider" value="(\w+)"', page.text) == ["stripe", "btcpay"]


async def test_chooser_without_providers_says_so(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app = create_app(
        settings_factory(database_url=db_url),
        catalog=catalog,
        providers={},
        run_migrations=False,
        run_mailer=False,
    )
    async with running(app) as client:
        page = await client.get("/buy/pro")
    assert page.status_code == 200
    assert "no payment method is available" in page.text
    assert 'name="provider"' not in page.text


async def test_unknown_product_is_a_page_in_words(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = two_provider_app(db_url, settings_factory, catalog)
    async with running(app) as client:
        page = await client.get("/buy/nope")
        posted = await client.post("/buy/nope", data={"email": "a@example.com"})
    for resp in (page, posted):
        assert resp.status_code == 404
        assert resp.headers["content-type"].startswith("text/html")
        assert "Product not found" in resp.text


@pytest.mark.parametrize(
    ("email", "words"),
    [("", "Please enter your email address"), ("not-an-email", "does not look right")],
)
async def test_invalid_email_is_shown_on_the_chooser(
    email: str, words: str, db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fakes = two_provider_app(db_url, settings_factory, catalog)
    async with running(app) as client:
        resp = await client.post("/buy/pro", data={"email": email, "provider": "stripe"})
        assert await Order.all().count() == 0
    assert resp.status_code == 422
    assert words in resp.text
    assert 'role="alert"' in resp.text
    assert 'aria-invalid="true"' in resp.text
    assert fakes[ProviderName.STRIPE].created == []


async def test_submit_creates_the_order_and_redirects_to_the_provider(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fakes = two_provider_app(db_url, settings_factory, catalog)
    async with running(app) as client:
        resp = await client.post(
            "/buy/pro",
            data={"email": "Buyer@Example.com", "provider": "btcpay"},
            headers={"origin": SELF},
        )
        order = await Order.get()
    assert resp.status_code == 303
    assert resp.headers["location"] == order.checkout_url
    assert (order.provider, order.product_id) == ("btcpay", "pro")
    req = fakes[ProviderName.BTCPAY].created[0]
    assert req.cancel_url.endswith("&cancelled=1")


async def test_provider_down_is_said_in_words(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fakes = two_provider_app(db_url, settings_factory, catalog)
    fakes[ProviderName.STRIPE].fail_create = True
    async with running(app) as client:
        resp = await client.post("/buy/pro", data={"email": "a@example.com", "provider": "stripe"})
    assert resp.status_code == 503
    assert "“Pay with Card” is not reachable right now" in resp.text
    assert "Nothing was charged" in resp.text


async def test_form_post_from_a_foreign_site_is_refused(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fakes = two_provider_app(
        db_url, settings_factory, catalog, allowed_origins=["https://seller.example"]
    )
    data = {"email": "a@example.com", "provider": "stripe"}
    async with running(app) as client:
        evil = await client.post("/buy/pro", data=data, headers={"origin": "https://evil.example"})
        null = await client.post("/buy/pro", data=data, headers={"origin": "null"})
        seller = await client.post(
            "/buy/pro", data=data, headers={"origin": "https://seller.example"}
        )
    assert (evil.status_code, null.status_code) == (403, 403)
    assert "from another website" in evil.text
    assert seller.status_code == 303
    assert len(fakes[ProviderName.STRIPE].created) == 1


async def test_chooser_checkout_is_rate_limited_per_email(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = two_provider_app(
        db_url, settings_factory, catalog, limits={"checkout_per_email": "2/minute"}
    )
    data = {"email": "a@example.com", "provider": "stripe"}
    async with running(app) as client:
        answers = [await client.post("/buy/pro", data=data) for _ in range(3)]
    assert [a.status_code for a in answers] == [303, 303, 429]
    assert "Please wait" in answers[2].text
    assert int(answers[2].headers["retry-after"]) > 0


async def test_every_html_answer_has_the_security_headers(app: Starlette, catalog: Catalog) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        pages = [
            await client.get("/buy/pro"),
            await client.get("/buy/nope"),
            await client.get("/licenses/recover"),
            await client.get(f"/orders/{order.id}?token={order.status_token}", headers=BROWSER),
            await client.get(f"/orders/{order.id}?token=wrong", headers=BROWSER),
        ]
        json_answer = await client.get(f"/orders/{order.id}?token={order.status_token}")
    for page in pages:
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "base-uri 'none'" in csp
        # Stripe's hosted page is a form-action target: Chrome checks the redirect too
        assert "form-action 'self' https://checkout.stripe.com" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<style" not in page.text
        assert "style=" not in page.text
        assert re.search(r"<script>|<script [^>]*>[^<]", page.text) is None  # no inline JS
    # the status page URL carries the token: it never leaks through Referer
    assert pages[3].headers["referrer-policy"] == "no-referrer"
    assert json_answer.headers["referrer-policy"] == "no-referrer"
    assert "content-security-policy" not in json_answer.headers


async def test_cors_only_for_allowed_origins_with_preflight(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = fake_gateway(
        db_url, settings_factory, catalog, allowed_origins=["https://seller.example"]
    )
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,idempotency-key",
    }
    async with running(app) as client:
        ok = await client.get("/purchase-options/pro", headers={"origin": "https://seller.example"})
        other = await client.get(
            "/purchase-options/pro", headers={"origin": "https://evil.example"}
        )
        pre = await client.options(
            "/checkout/stripe/pro", headers={"origin": "https://seller.example", **preflight}
        )
        bad_pre = await client.options(
            "/checkout/stripe/pro", headers={"origin": "https://evil.example", **preflight}
        )
        script = await client.get(
            "/static/checkout.js", headers={"origin": "https://seller.example"}
        )
        status = await client.get("/orders/x", headers={"origin": "https://seller.example"})
    assert ok.headers["access-control-allow-origin"] == "https://seller.example"
    assert "access-control-allow-origin" not in other.headers
    assert pre.status_code == 200
    assert "idempotency-key" in pre.headers["access-control-allow-headers"].lower()
    assert bad_pre.status_code == 400
    assert script.status_code == 200
    assert script.headers["access-control-allow-origin"] == "https://seller.example"
    assert "data-product" in script.text
    assert "access-control-allow-origin" not in status.headers


async def _settled_page(client: Any, order: Order) -> str:
    resp = await client.get(f"/orders/{order.id}?token={order.status_token}", headers=BROWSER)
    assert resp.status_code == 200
    return str(resp.text)


async def test_status_page_says_emailed_only_once_the_email_was_sent(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(
        db_url,
        settings_factory,
        catalog,
        shop={"activation_instructions": "Step one.\n\nStep <two>."},
    )
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))
        before = await _settled_page(client, order)
        await OutboxEmail.filter(order_id=order.id, kind=LICENSE_EMAIL).update(
            status=EmailStatus.SENT
        )
        after = await _settled_page(client, order)
    assert "Paid by card: thank you!" in before
    assert "Save this key now" in before
    assert "We also emailed" not in before
    assert 'data-poll="email"' in before  # re-fetched until the mail is sent
    assert 'data-poll="0"' in after
    assert "We also emailed this key to buyer@example.com" in after
    assert "Save this key now" not in after
    assert "<p>Step one.</p>" in after
    assert "<p>Step &lt;two&gt;.</p>" in after
    assert 'class="copy"' in after


@pytest.mark.parametrize(
    ("provider", "status", "paid", "words"),
    [
        ("btcpay", OrderStatus.PENDING, None, "confirming on the blockchain"),
        ("btcpay", OrderStatus.PENDING, 500, "4.99 USD is still due"),
        ("btcpay", OrderStatus.CREATED, 900, "0.99 USD is still due"),
        ("stripe", OrderStatus.PENDING, None, "Payment is processing"),
        ("stripe", OrderStatus.FAILED, None, "Payment failed or expired"),
        ("btcpay", OrderStatus.NEEDS_REVIEW, None, "needs a manual check"),
        ("stripe", OrderStatus.CREATED, None, "Waiting for your payment"),
    ],
)
async def test_status_page_states_in_buyer_words(
    provider: str,
    status: OrderStatus,
    paid: int | None,
    words: str,
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
) -> None:
    app, _ = fake_gateway(
        db_url,
        settings_factory,
        catalog,
        btcpay={"speed_policy": "LowMediumSpeed"},
        shop={"contact_email": "help@seller.example"},
    )
    async with running(app) as client:
        order = await new_order(catalog, provider=ProviderName(provider), status=status)
        await Order.filter(id=order.id).update(paid_minor=paid)
        page = await _settled_page(client, order)
    assert words in page
    shown = re.sub(r'data-status="\w+"', "", page)
    for internal in ("needs_review", "settled", "pending", "created", "btcpay", "stripe"):
        assert internal not in shown  # buyer words, not status or provider names
    if status == OrderStatus.PENDING and provider == "btcpay" and paid is None:
        assert "about 20 minutes" in page
    if status in (OrderStatus.FAILED, OrderStatus.NEEDS_REVIEW):
        assert "help@seller.example" in page
    if status == OrderStatus.FAILED:
        assert 'href="/buy/pro"' in page
    final = status in (OrderStatus.FAILED, OrderStatus.NEEDS_REVIEW)
    assert f'data-poll="{0 if final else 1}"' in page


async def test_cancelled_checkout_offers_to_try_again(app: Starlette, catalog: Catalog) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        resp = await client.get(
            f"/orders/{order.id}?token={order.status_token}&cancelled=1", headers=BROWSER
        )
    assert "Payment cancelled" in resp.text
    assert "nothing was charged" in resp.text
    assert f'href="{order.checkout_url}"' in resp.text
    assert 'href="/buy/pro"' in resp.text
