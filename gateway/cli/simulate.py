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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import click

from gateway.cli import cli
from gateway.cli.common import log, settings_and_logging, with_db
from gateway.cli.sandbox import DEFAULT_BTCPAY_PORT, SANDBOX_ENV

if TYPE_CHECKING:
    from config.settings import Settings

ACTIONS = ("settle", "expire", "refund")


@cli.command()
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
    import httpx

    from gateway.db.models import Order

    settings = settings_and_logging()
    if sandbox:
        settings = _with_sandbox_defaults(settings)

    async def load() -> Order | None:
        return await Order.get_or_none(id=order_id)

    order = with_db(settings, load)
    if order is None:
        raise click.ClickException(f"no order {order_id}")
    if order.provider == "stripe":
        secret = settings.stripe.webhook_secret
        if secret is None:
            raise click.ClickException("GATEWAY_STRIPE__WEBHOOK_SECRET is not set")
        body, headers = stripe_webhook(order, action, secret.get_secret_value())
    elif order.provider == "btcpay":
        secret = settings.btcpay.webhook_secret
        if secret is None:
            raise click.ClickException("GATEWAY_BTCPAY__WEBHOOK_SECRET is not set")
        if action == "refund":
            raise click.ClickException(
                "BTCPay sends no refund webhook: refund in BTCPay, then "
                f"`checkout-gateway licenses revoke {order.id} --reason refunded`"
            )
        if sandbox:
            _sandbox_invoice(settings.btcpay.url, order.provider_ref, action)
        body, headers = btcpay_webhook(
            order, action, secret.get_secret_value(), settings.btcpay.store_id
        )
    else:
        raise click.ClickException(f"order {order.id} is a {order.provider} order: nothing to pay")
    target = f"{(url or settings.public_url).rstrip('/')}/webhooks/{order.provider}"
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the gateway at {target}: {exc}") from exc
    log.info("simulated %s webhook for order %s -> %s", action, order.id, response.status_code)
    click.echo(f"POST {target} -> {response.status_code}")
    click.echo(response.text)
    results = _results(response)
    if response.status_code != 200 or not results or "ignored" in results:
        if order.provider == "btcpay" and "ignored" in results:
            click.echo(
                "BTCPay re-checks every event with the invoice itself: pay the invoice in "
                "BTCPay (or use --sandbox with `checkout-gateway sandbox`)",
                err=True,
            )
        raise click.exceptions.Exit(1)
    # The sandbox's public URL is its own address (--url), which this shell's settings do not
    # know; elsewhere --url may be an internal address, and buyers use GATEWAY_PUBLIC_URL.
    public = (url if sandbox and url else settings.public_url).rstrip("/")
    click.echo(f"order status: {order.status_url(public)}")


def _with_sandbox_defaults(settings: Settings) -> Settings:
    """`settings`, with what `checkout-gateway sandbox` uses wherever nothing is configured."""
    from pydantic import SecretStr

    stripe, btcpay = settings.stripe, settings.btcpay
    if stripe.webhook_secret is None:
        secret = SecretStr(SANDBOX_ENV["GATEWAY_STRIPE__WEBHOOK_SECRET"])
        stripe = stripe.model_copy(update={"webhook_secret": secret})
    updates: dict[str, Any] = {}
    if btcpay.webhook_secret is None:
        updates["webhook_secret"] = SecretStr(SANDBOX_ENV["GATEWAY_BTCPAY__WEBHOOK_SECRET"])
    if btcpay.url is None:
        updates["url"] = f"http://127.0.0.1:{DEFAULT_BTCPAY_PORT}"
    if btcpay.store_id is None:
        updates["store_id"] = SANDBOX_ENV["GATEWAY_BTCPAY__STORE_ID"]
    btcpay = btcpay.model_copy(update=updates)
    return settings.model_copy(update={"stripe": stripe, "btcpay": btcpay})


def _results(response: Any) -> list[str]:
    try:
        return [str(e.get("result")) for e in response.json().get("events", [])]
    except (ValueError, AttributeError):
        return []


def stripe_webhook(order: Any, action: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """A Stripe event as Stripe would send it for this order, signed with `secret`."""
    import stripe

    from providers.stripe.provider import SDK_API_VERSION

    intent = order.payment_ref or f"pi_simulated_{order.id.removeprefix('ord_')}"
    session = {
        "id": order.provider_ref,
        "object": "checkout.session",
        "amount_subtotal": order.amount_minor,
        "amount_total": order.amount_minor,
        "client_reference_id": order.id,
        "currency": order.currency.lower(),
        "customer_email": order.buyer_email,
        "livemode": False,
        "metadata": {"order_id": order.id, "product": order.product_id},
        "mode": "payment",
        "payment_intent": intent,
        "payment_status": "paid",
        "status": "complete",
        "url": None,
    }
    if action == "settle":
        event_type, data = "checkout.session.completed", session
    elif action == "expire":
        event_type = "checkout.session.expired"
        data = session | {"status": "expired", "payment_status": "unpaid", "payment_intent": None}
    else:
        event_type = "charge.refunded"
        data = {
            "id": f"ch_simulated_{secrets.token_hex(8)}",
            "object": "charge",
            "amount": order.amount_minor,
            "amount_refunded": order.amount_minor,
            "currency": order.currency.lower(),
            "payment_intent": intent,
            "refunded": True,
            "livemode": False,
        }
    event = {
        "id": f"evt_simulated_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": SDK_API_VERSION,
        "created": int(time.time()),
        "data": {"object": data},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return payload.encode(), {"stripe-signature": header, "content-type": "application/json"}


def btcpay_webhook(
    order: Any, action: str, secret: str, store_id: str | None
) -> tuple[bytes, dict[str, str]]:
    """A Greenfield webhook delivery for this order's invoice, signed like BTCPay signs."""
    event_type = "InvoiceSettled" if action == "settle" else "InvoiceExpired"
    delivery = secrets.token_urlsafe(16)
    payload = {
        "deliveryId": delivery,
        "webhookId": "simulated",
        "originalDeliveryId": delivery,
        "isRedelivery": False,
        "type": event_type,
        "timestamp": int(time.time()),
        "storeId": store_id,
        "invoiceId": order.provider_ref,
        "metadata": {"orderId": order.id},
        "manuallyMarked": False,
        "overPaid": False,
        "partiallyPaid": False,
    }
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"btcpay-sig": f"sha256={digest}", "content-type": "application/json"}


def _sandbox_invoice(btcpay_url: str | None, invoice_id: str | None, action: str) -> None:
    import httpx

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
