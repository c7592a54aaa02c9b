"""`POST /webhooks/{provider}`: raw bytes -> provider verifies -> apply path -> answer."""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.db.models import Order
from gateway.http.errors import NotFound
from gateway.ops import metrics
from gateway.ops.instrumented import outcome_of
from gateway.payments.apply import Result
from gateway.payments.reconciler import recheck_soon
from gateway.state import AppState
from providers.errors import ProviderError, WebhookSignatureError
from providers.events import Ignored, PaymentReversed
from providers.ids import is_order_id

log = logging.getLogger(__name__)


async def webhook(request: Request) -> Response:
    received = time.perf_counter()
    state: AppState = request.app.state.gateway
    name = request.path_params["provider"]
    provider = state.provider(name)
    if provider is None:
        # Not the path segment as a label: a client could mint unbounded label values.
        metrics.WEBHOOKS_REJECTED.labels("unknown", "unknown_provider").inc()
        raise NotFound(f"payment provider {name!r} is not enabled", code="unknown_provider")
    metrics.WEBHOOKS_RECEIVED.labels(name).inc()
    alarm = state.webhook_alarm
    # The exact bytes: signatures are over them, and any re-serialisation breaks them.
    body = await request.body()
    # Unsigned notifications (legacy BTCPay IPN) cost a signed provider call each: drop
    # those naming a checkout we never created before making any.
    claimed = getattr(provider, "unverified_ref", None)
    if claimed is not None:
        ref = claimed(body)
        if ref is not None and not await Order.exists(provider=name, provider_ref=ref):
            log.info("%s notification for a checkout we never created: dropped", name)
            detail = "not a checkout of ours"
            return JSONResponse(
                {
                    "received": 1,
                    "events": [{"result": "ignored", "detail": detail, "order_id": None}],
                }
            )
    try:
        events = await provider.parse_webhook(body, request.headers)
    except ProviderError as exc:
        # Answered by the error table; counted here, where the provider is known.
        metrics.WEBHOOKS_REJECTED.labels(name, outcome_of(exc)).inc()
        if isinstance(exc, WebhookSignatureError):
            alarm.refused(name)
        raise
    alarm.verified(name)
    outcomes: list[dict[str, str | None]] = []
    for event in events:
        if isinstance(event, Ignored):
            metrics.EVENTS.labels(name, "ignored").inc()
            if event.recheck_soon:
                # Genuine payment activity the provider cannot back yet (an instant late
                # payment before BTCPay marks PaidLate): nothing is stored, so no dedupe slot
                # is taken, and the reconciler looks at the order again shortly.
                await recheck_soon(
                    event.provider,
                    event.provider_ref,
                    state.settings.reconcile.recheck_soon_seconds,
                )
            outcomes.append({"result": "ignored", "detail": event.reason, "order_id": None})
            continue
        if event.order_id is not None and not is_order_id(event.order_id):
            # Another app's id (same Stripe account / BTCPay store), or a hostile one: not
            # ours, answered 2xx so it is not retried for days, and never put in a query.
            log.info(
                "%s event %r names an order id that is not ours; ignored",
                event.provider.value,
                event.order_id[:64],
                extra={"provider": event.provider.value},
            )
            outcomes.append({"result": "ignored", "detail": "not our order", "order_id": None})
            continue
        # Stored before we answer: a 2xx means the event is durable; a DB failure raises
        # and the error table answers 503 so the provider retries.
        result = await state.applier.apply(event, body)
        metrics.EVENTS.labels(name, result.result.value).inc()
        if result.result is Result.DUPLICATE:
            metrics.WEBHOOK_DUPLICATES.labels(name).inc()
        if result.license_issued:
            metrics.LICENSES_ISSUED.labels("webhook").inc()
            metrics.SETTLE_TO_LICENSE.observe(time.perf_counter() - received)
        if (
            isinstance(event, PaymentReversed)
            and result.result is Result.APPLIED
            and result.detail.startswith("settled ")
        ):
            metrics.LICENSES_REVOKED.labels("reversal").inc()
        log.info(
            "webhook event %s for order %s: %s",
            event.dedupe_key,
            result.order_id or event.order_id,
            result.result.value,
            extra={
                "provider": name,
                "order_id": result.order_id or event.order_id,
                "event": type(event).__name__,
                "dedupe_key": event.dedupe_key,
            },
        )
        outcomes.append(
            {"result": result.result.value, "detail": result.detail, "order_id": result.order_id}
        )
    return JSONResponse({"received": len(events), "events": outcomes})
