"""`simulate`: like `stripe trigger`, a correctly signed webhook for one of our orders.

The body is signed with the configured webhook secret exactly as the provider signs it
(Stripe: `Stripe-Signature` by the `stripe` library's scheme; BTCPay: `BTCPay-Sig`
HMAC-SHA256), and POSTed to a running gateway, so the whole path runs: verification,
normalisation, the apply transaction, the license and its email.

What the gateway then trusts differs by provider, as it should:
- Stripe session events (settle, expire) are trusted on their signature; a refund names
  only the payment intent, which the gateway looks up at Stripe to find the order.
- BTCPay events are hints: the gateway re-fetches the invoice from BTCPay and acts on what
  BTCPay says. A real BTCPay will not say "settled" for an unpaid invoice, so there the
  gateway answers "ignored"; against the sandbox's fake BTCPay, `--sandbox` first marks the
  invoice paid (or expired) in the fake.

`--sandbox` also falls back to the sandbox's own webhook secrets and fake BTCPay URL where
none is configured: `checkout-gateway sandbox` sets them inside its own process only, so the
shell a seller runs `simulate` from usually has none.

The Stripe objects come from the sandbox's builders, the BTCPay signature from the provider's
own `sign_body`: the simulated webhook is the one the fakes and the provider agree on.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import click
import httpx
import stripe
from pydantic import SecretStr

from config.settings import Settings, env_name
from gateway.cli.common import log, settings_and_logging, with_db
from gateway.cli.sandbox_env import DEFAULT_BTCPAY_PORT, SANDBOX_ENV
from gateway.db.models import Order
from providers.btcpay.signature import SIGNATURE_HEADER, sign_body
from sandbox.stripe.objects import (
    charge_object,
    event_object,
    payment_intent_object,
    session_object,
)

ACTIONS = ("settle", "expire", "refund")
JSON = "application/json"


@click.command()
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("order_id")
@click.option("--url", help="the gateway's base URL (default: GATEWAY_PUBLIC_URL)")
@click.option(
    "--sandbox",
    is_flag=True,
    help=(
        "the gateway runs under `checkout-gateway sandbox`: sign with its webhook secrets "
        "where none is configured, and for BTCPay first mark the invoice paid/expired in "
        "its fake BTCPay "
        f"(GATEWAY_BTCPAY__URL, default http://127.0.0.1:{DEFAULT_BTCPAY_PORT})"
    ),
)
def simulate(action: str, order_id: str, url: str | None, sandbox: bool) -> None:
    """Send a signed settle/expire/refund webhook for ORDER_ID to a running gateway."""
    settings = settings_and_logging()
    if sandbox:
        settings = _with_sandbox_defaults(settings)

    async def load() -> Order | None:
        return await Order.get_or_none(id=order_id)

    order = with_db(settings, load)
    if order is None:
        raise click.ClickException(f"no order {order_id}")
    body, headers = _signed_webhook(settings, order, action, sandbox=sandbox)
    target = f"{(url or settings.public_url).rstrip('/')}/webhooks/{order.provider}"
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the gateway at {target}: {exc}") from exc
    log.info("simulated %s webhook for order %s -> %s", action, order.id, response.status_code)
    click.echo(f"POST {target} -> {response.status_code}")
    click.echo(response.text)
    _exit_unless_applied(order, response)
    # The sandbox's public URL is its own address (--url), which this shell's settings do not
    # know; elsewhere --url may be an internal address, and buyers use GATEWAY_PUBLIC_URL.
    public = (url if sandbox and url else settings.public_url).rstrip("/")
    click.echo(f"order status: {order.status_url(public)}")


def _signed_webhook(
    settings: Settings, order: Order, action: str, *, sandbox: bool
) -> tuple[bytes, dict[str, str]]:
    if order.provider == "stripe":
        secret = _secret(settings.stripe.webhook_secret, "stripe")
        return stripe_webhook(order, action, secret)
    if order.provider == "btcpay":
        secret = _secret(settings.btcpay.webhook_secret, "btcpay")
        if action == "refund":
            raise click.ClickException(
                "BTCPay sends no refund webhook: refund in BTCPay, then "
                f"`checkout-gateway licenses revoke {order.id} --reason refunded`"
            )
        if sandbox:
            _sandbox_invoice(settings.btcpay.url, order.provider_ref, action)
        return btcpay_webhook(order, action, secret, settings.btcpay.store_id)
    raise click.ClickException(f"order {order.id} is a {order.provider} order: nothing to pay")


def _secret(value: SecretStr | None, provider: str) -> str:
    if value is None:
        raise click.ClickException(f"{env_name(provider, 'webhook_secret')} is not set")
    return value.get_secret_value()


def _exit_unless_applied(order: Order, response: httpx.Response) -> None:
    results = _results(response)
    if response.status_code == 200 and results and "ignored" not in results:
        return
    if order.provider == "btcpay" and "ignored" in results:
        click.echo(
            "BTCPay re-checks every event with the invoice itself: pay the invoice in "
            "BTCPay (or use --sandbox with `checkout-gateway sandbox`)",
            err=True,
        )
    raise click.exceptions.Exit(1)


def _with_sandbox_defaults(settings: Settings) -> Settings:
    """`settings`, with what `checkout-gateway sandbox` uses wherever nothing is configured."""
    stripe_settings, btcpay = settings.stripe, settings.btcpay
    if stripe_settings.webhook_secret is None:
        secret = SecretStr(SANDBOX_ENV["GATEWAY_STRIPE__WEBHOOK_SECRET"])
        stripe_settings = stripe_settings.model_copy(update={"webhook_secret": secret})
    updates: dict[str, Any] = {}
    if btcpay.webhook_secret is None:
        updates["webhook_secret"] = SecretStr(SANDBOX_ENV["GATEWAY_BTCPAY__WEBHOOK_SECRET"])
    if btcpay.url is None:
        updates["url"] = f"http://127.0.0.1:{DEFAULT_BTCPAY_PORT}"
    if btcpay.store_id is None:
        updates["store_id"] = SANDBOX_ENV["GATEWAY_BTCPAY__STORE_ID"]
    btcpay = btcpay.model_copy(update=updates)
    return settings.model_copy(update={"stripe": stripe_settings, "btcpay": btcpay})


def _results(response: httpx.Response) -> list[str]:
    try:
        return [str(e.get("result")) for e in response.json().get("events", [])]
    except (ValueError, AttributeError):
        return []


def stripe_webhook(order: Order, action: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """A Stripe event as Stripe would send it for this order, signed with `secret`."""
    now = int(time.time())
    intent = order.payment_ref or f"pi_simulated_{order.id.removeprefix('ord_')}"
    if action == "refund":
        event_type, data = "charge.refunded", _refunded_charge(order, intent, now)
    elif action == "settle":
        event_type = "checkout.session.completed"
        data = _session(order, now) | {
            "status": "complete",
            "payment_status": "paid",
            "payment_intent": intent,
        }
    else:
        event_type, data = "checkout.session.expired", _session(order, now) | {"status": "expired"}
    event = event_object(event_type, data, created=now, livemode=False, request_id=None)
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return payload.encode(), {"stripe-signature": header, "content-type": JSON}


def _session(order: Order, now: int) -> dict[str, Any]:
    """The order's Checkout Session as Stripe holds it once it is over (no URL any more)."""
    params = {
        "client_reference_id": order.id,
        "customer_email": order.buyer_email,
        "metadata": {"order_id": order.id, "product": order.product_id},
        "mode": "payment",
    }
    session = session_object(
        sid=order.provider_ref or "",
        params=params,
        amount=order.amount_minor,
        currency=order.currency.lower(),
        created=now,
        expires_at=now + 24 * 3600,
        livemode=False,
        url="",
    )
    return session | {"id": order.provider_ref, "url": None}


def _refunded_charge(order: Order, intent_id: str, now: int) -> dict[str, Any]:
    intent = payment_intent_object(
        amount=order.amount_minor,
        currency=order.currency.lower(),
        metadata={"order_id": order.id},
        status="succeeded",
        created=now,
        livemode=False,
    ) | {"id": intent_id}
    charge = charge_object(intent, created=now, livemode=False)
    return charge | {"amount_refunded": order.amount_minor, "refunded": True}


def btcpay_webhook(
    order: Order, action: str, secret: str, store_id: str | None
) -> tuple[bytes, dict[str, str]]:
    """A Greenfield webhook delivery for this order's invoice, signed like BTCPay signs."""
    delivery = secrets.token_urlsafe(16)
    payload = {
        "deliveryId": delivery,
        "webhookId": "simulated",
        "originalDeliveryId": delivery,
        "isRedelivery": False,
        "type": "InvoiceSettled" if action == "settle" else "InvoiceExpired",
        "timestamp": int(time.time()),
        "storeId": store_id,
        "invoiceId": order.provider_ref,
        "metadata": {"orderId": order.id},
        "manuallyMarked": False,
        "overPaid": False,
        "partiallyPaid": False,
    }
    body = json.dumps(payload).encode()
    return body, {SIGNATURE_HEADER: sign_body(secret, body), "content-type": JSON}


def _sandbox_invoice(btcpay_url: str | None, invoice_id: str | None, action: str) -> None:
    if not btcpay_url or not invoice_id:
        raise click.ClickException(
            "the order has no BTCPay invoice, or GATEWAY_BTCPAY__URL is unset"
        )
    fake_action = "pay" if action == "settle" else "expire"
    control = f"{btcpay_url.rstrip('/')}/_fake/invoices/{invoice_id}/{fake_action}"
    try:
        answer = httpx.post(control, params={"deliver": "0"}, timeout=10)
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"cannot reach the sandbox BTCPay at {btcpay_url}: {exc}"
        ) from exc
    if answer.status_code != 200:
        raise click.ClickException(
            f"{btcpay_url} is not the sandbox's fake BTCPay (or has no invoice {invoice_id}): "
            f"{answer.status_code}"
        )
