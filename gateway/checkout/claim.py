"""The idempotent claim: which one request creates an order's provider checkout.

An Idempotency-Key is stored scoped to the request it names (`scope_idempotency_key`), so
concurrent and retried requests with one key find one order. The request that inserts the
order holds its checkout claim: a lease on the row (`checkout_lease_until`). Any other
request takes the claim only with one conditional update, while the order has no checkout
and no live lease (`claim`), or waits for the holder's checkout (`wait_for_checkout`). A
holder that fails lets go (`release`); one that crashes loses the claim when its lease ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q

from gateway.db.models import Order
from gateway.http.errors import GatewayError
from providers.events import ProviderName

# How long one request may hold an order's checkout claim (longer than the slowest provider
# create with its retries); a crashed holder's claim simply runs out.
CLAIM_SECONDS = 90
# How long a request that lost the claim waits for the winner's checkout before answering
# 409 + Retry-After.
WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05


class CheckoutInProgress(GatewayError):
    """Another request holds this order's checkout claim and has not finished in time."""

    status_code = 409
    code = "checkout_in_progress"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "a checkout for this Idempotency-Key is being created; retry shortly",
            retry_after=retry_after,
        )
        self.headers = {"retry-after": str(retry_after)}


def scope_idempotency_key(key: str, provider: ProviderName, product: str, email: str) -> str:
    """What is stored for an Idempotency-Key: a hash of the key *and* the request it names.

    The same key with another email, product or provider is another checkout (its own
    order), so a key never reveals or reuses someone else's order; the raw key is not kept.
    """
    material = "\0".join((key, provider.value, product, email.lower()))
    return hashlib.sha256(material.encode()).hexdigest()


def lease_until() -> datetime:
    """The end of a claim taken now."""
    return datetime.now(UTC) + timedelta(seconds=CLAIM_SECONDS)


async def claim(order: Order) -> bool:
    """Take the order's checkout claim with one conditional update; True if this request won."""
    now = datetime.now(UTC)
    won = (
        await Order.filter(id=order.id, checkout_url__isnull=True)
        .filter(Q(checkout_lease_until__isnull=True) | Q(checkout_lease_until__lt=now))
        .update(checkout_lease_until=lease_until())
    )
    return won == 1


async def release(order: Order) -> None:
    """Let go of the claim without a checkout, so the next request may try at once."""
    await Order.filter(id=order.id, checkout_url__isnull=True).update(checkout_lease_until=None)


async def wait_for_checkout(order: Order) -> tuple[Order, bool]:
    """The order, fresh, once the claim holder's checkout is there: `(order, False)`.

    `(order, True)` when the holder let go (provider down) or died holding the claim and
    this request took it over: the caller creates the checkout then. `CheckoutInProgress`
    after `WAIT_SECONDS` of neither.
    """
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL_SECONDS)
        fresh = await Order.get(id=order.id)
        if fresh.checkout_url is not None:
            return fresh, False
        lease = fresh.checkout_lease_until
        if (lease is None or lease < datetime.now(UTC)) and await claim(fresh):
            return fresh, True
    raise CheckoutInProgress(retry_after=max(1, int(WAIT_SECONDS)))
