"""One webhook delivery: the provider verifies and normalises the raw bytes, each event goes
through the apply path, and every outcome is counted, logged and answered.

Exceptions are left to the app's error table: a `ProviderError` answers 400/401/503 (counted
here, where the provider is known), a database failure 503 so the provider retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from gateway.db.models import Order
from gateway.ops import metrics
from gateway.ops.instrumented import outcome_of
from gateway.payments.apply import Result
from gateway.payments.schedule import recheck_soon
from gateway.state import AppState
from gateway.webhooks.alarm import SignatureAlarm
from providers.base import PaymentProvider, UnsignedNotifications
from providers.errors import ProviderError, WebhookSignatureError
from providers.events import ActionableEvent, Ignored, PaymentEvent
from providers.ids import is_order_id

# The route's logger, as before the service was split from it: operators filter on it.
log = logging.getLogger("gateway.webhooks.routes")

# One entry of the answer's "events" list.
Outcome = dict[str, str | None]


def _ignored(detail: str) -> Outcome:
    return {"result": "ignored", "detail": detail, "order_id": None}


async def receive(
    state: AppState,
    name: str,
    provider: PaymentProvider,
    body: bytes,
    headers: Mapping[str, str],
    *,
    received: float,
) -> dict[str, object]:
    """The answer to one delivery of `body` (the exact bytes) to provider `name`.

    `received` is the request's `time.perf_counter()`, for the settle-to-license histogram.
    """
    if await _never_created(name, provider, body):
        return {"received": 1, "events": [_ignored("not a checkout of ours")]}
    events = await _verified_events(state.webhook_alarm, name, provider, body, headers)
    outcomes = [await _handle(state, name, event, body, received) for event in events]
    return {"received": len(events), "events": outcomes}


async def _never_created(name: str, provider: PaymentProvider, body: bytes) -> bool:
    # Unsigned notifications (legacy BTCPay IPN) cost a signed provider call each: drop
    # those naming a checkout we never created before making any.
    if not isinstance(provider, UnsignedNotifications):
        return False
    ref = provider.unverified_ref(body)
    if ref is None or await Order.exists(provider=name, provider_ref=ref):
        return False
    log.info("%s notification for a checkout we never created: dropped", name)
    return True


async def _verified_events(
    alarm: SignatureAlarm,
    name: str,
    provider: PaymentProvider,
    body: bytes,
    headers: Mapping[str, str],
) -> list[PaymentEvent]:
    try:
        events = await provider.parse_webhook(body, headers)
    except ProviderError as exc:
        # Answered by the error table; counted here, where the provider is known.
        metrics.WEBHOOKS_REJECTED.labels(name, outcome_of(exc)).inc()
        if isinstance(exc, WebhookSignatureError):
            alarm.refused(name)
        raise
    alarm.verified(name)
    return events


async def _handle(
    state: AppState, name: str, event: PaymentEvent, body: bytes, received: float
) -> Outcome:
    if isinstance(event, Ignored):
        metrics.EVENTS.labels(name, "ignored").inc()
        if event.recheck_soon:
            # Genuine payment activity the provider cannot back yet (an instant late
            # payment before BTCPay marks PaidLate): nothing is stored, so no dedupe slot
            # is taken, and the reconciler looks at the order again shortly.
            await recheck_soon(
                event.provider, event.provider_ref, state.settings.reconcile.recheck_soon_seconds
            )
        return _ignored(event.reason)
    if event.order_id is not None and not is_order_id(event.order_id):
        # Another app's id (same Stripe account / BTCPay store), or a hostile one: not
        # ours, answered 2xx so it is not retried for days, and never put in a query.
        log.info(
            "%s event %r names an order id that is not ours; ignored",
            event.provider.value,
            event.order_id[:64],
            extra={"provider": event.provider.value},
        )
        return _ignored("not our order")
    return await _apply(state, name, event, body, received)


async def _apply(
    state: AppState, name: str, event: ActionableEvent, body: bytes, received: float
) -> Outcome:
    # Stored before we answer: a 2xx means the event is durable; a DB failure raises
    # and the error table answers 503 so the provider retries.
    result = await state.applier.apply(event, body)
    metrics.EVENTS.labels(name, result.result.value).inc()
    if result.result is Result.DUPLICATE:
        metrics.WEBHOOK_DUPLICATES.labels(name).inc()
    if result.license_issued:
        metrics.LICENSES_ISSUED.labels("webhook").inc()
        metrics.SETTLE_TO_LICENSE.observe(time.perf_counter() - received)
    if result.license_revoked:
        metrics.LICENSES_REVOKED.labels("reversal").inc()
    order_id = result.order_id or event.order_id
    log.info(
        "webhook event %s for order %s: %s",
        event.dedupe_key,
        order_id,
        result.result.value,
        extra={
            "provider": name,
            "order_id": order_id,
            "event": type(event).__name__,
            "dedupe_key": event.dedupe_key,
        },
    )
    return {"result": result.result.value, "detail": result.detail, "order_id": result.order_id}
