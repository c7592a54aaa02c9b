"""`POST /webhooks/{provider}`: raw bytes -> provider verifies -> apply path -> answer."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import NotFound
from gateway.reconciler import recheck_soon
from gateway.state import AppState
from providers.events import Ignored
from providers.ids import is_order_id

log = logging.getLogger(__name__)


async def webhook(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    name = request.path_params["provider"]
    provider = state.provider(name)
    if provider is None:
        raise NotFound(f"payment provider {name!r} is not enabled", code="unknown_provider")
    # The exact bytes: signatures are over them, and any re-serialisation breaks them.
    body = await request.body()
    events = await provider.parse_webhook(body, request.headers)
    outcomes: list[dict[str, str | None]] = []
    for event in events:
        if isinstance(event, Ignored):
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
        outcomes.append(
            {"result": result.result.value, "detail": result.detail, "order_id": result.order_id}
        )
    return JSONResponse({"received": len(events), "events": outcomes})
