"""Starting a purchase: the order first, then its provider checkout, once per order.

`start_checkout` is what both the JSON checkout (`POST /checkout/{provider}/{product}`) and
the buy page's form post call; who may create the provider checkout is `claim.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from config.catalog import Product
from gateway.checkout.claim import (
    claim,
    lease_until,
    release,
    scope_idempotency_key,
    wait_for_checkout,
)
from gateway.db.models import Order, OrderStatus, new_order_id, new_status_token
from gateway.http.errors import ServiceUnavailable
from providers.base import CheckoutRequest, PaymentProvider
from providers.errors import ProviderUnavailable
from providers.events import ProviderName

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StartedCheckout:
    order: Order
    # False for a replay: an earlier request with the same Idempotency-Key made the order.
    created: bool
    checkout_url: str


async def start_checkout(
    provider: PaymentProvider,
    product: Product,
    email: str,
    *,
    public_url: str,
    idempotency_key: str | None = None,
) -> StartedCheckout:
    """The order for this purchase with its provider checkout, made now or found again.

    Raises `ServiceUnavailable` when the provider cannot be reached (the order is kept, so
    a retry reuses it) and `CheckoutInProgress` when another request is still creating it.
    """
    scoped = (
        scope_idempotency_key(idempotency_key, provider.name, product.id, email)
        if idempotency_key
        else None
    )
    order, created = await _order_for(provider.name, product, email, scoped)
    if order.checkout_url is None:
        order = await _checkout_once(provider, product, order, public_url, claimed=created)
    assert order.checkout_url is not None
    return StartedCheckout(order=order, created=created, checkout_url=order.checkout_url)


async def _order_for(
    provider: ProviderName, product: Product, email: str, scoped: str | None
) -> tuple[Order, bool]:
    if scoped is not None:
        existing = await Order.get_or_none(idempotency_key=scoped)
        if existing is not None:
            return existing, False
    # The order is committed before the provider is asked, so a checkout the provider
    # creates can never be paid without an order behind it. The insert carries the checkout
    # claim: whoever inserts the row is the one request that calls the provider.
    try:
        order = await Order.create(
            id=new_order_id(),
            product_id=product.id,
            amount_minor=product.amount_minor,
            currency=product.currency,
            provider=provider.value,
            buyer_email=email,
            status=OrderStatus.CREATED,
            status_token=new_status_token(),
            idempotency_key=scoped,
            checkout_lease_until=lease_until(),
        )
    except IntegrityError:
        # A concurrent request with the same scoped key inserted first: it is the creator,
        # this one a replay (IntegrityError is an OperationalError, which would answer 503).
        existing = await Order.get_or_none(idempotency_key=scoped) if scoped else None
        if existing is None:
            raise
        return existing, False
    log.info("order created", extra={"order_id": order.id, "provider": provider.value})
    return order, True


async def _checkout_once(
    provider: PaymentProvider, product: Product, order: Order, public_url: str, *, claimed: bool
) -> Order:
    """The order with its checkout: created here by the claim holder, or waited for."""
    if claimed or await claim(order):
        await _create_provider_checkout(provider, product, order, public_url)
        return order
    fresh, took_over = await wait_for_checkout(order)
    if took_over:
        await _create_provider_checkout(provider, product, fresh, public_url)
    return fresh


async def _create_provider_checkout(
    provider: PaymentProvider, product: Product, order: Order, public_url: str
) -> None:
    status_url = order.status_url(public_url)
    req = CheckoutRequest(
        order_id=order.id,
        product_id=product.id,
        product_name=product.name,
        description=product.description,
        amount_minor=order.amount_minor,
        currency=order.currency,
        buyer_email=order.buyer_email,
        success_url=status_url,
        # The status page offers "payment cancelled, try again" instead of "waiting".
        cancel_url=f"{status_url}&cancelled=1",
        notification_url=f"{public_url}/webhooks/{provider.name.value}",
        idempotency_key=f"checkout:{order.id}",
        # Anything time-derived in the provider request (Stripe's expires_at) must come
        # from the order, or an idempotent retry sends a different body and is refused.
        created_at=order.created_at,
    )
    try:
        session = await provider.create_checkout(req)
    except ProviderUnavailable as exc:
        # Keep the order: if the provider did create the checkout before the failure, a
        # payment for it still finds its order; a retry with the same Idempotency-Key
        # reuses the order and the provider-side idempotency key.
        await release(order)
        log.warning("checkout creation failed: %s", exc, extra={"order_id": order.id})
        raise ServiceUnavailable(
            f"{provider.name.value} is unreachable, try again shortly",
            code="provider_unavailable",
        ) from exc
    except BaseException:
        await release(order)
        raise
    order.provider_ref = session.provider_ref
    order.checkout_url = session.checkout_url
    order.checkout_lease_until = None
    await order.save(
        update_fields=["provider_ref", "checkout_url", "checkout_lease_until", "updated_at"]
    )
