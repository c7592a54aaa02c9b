"""`POST /webhooks/{provider}`: raw bytes -> provider verifies -> apply path -> answer."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import NotFound
from gateway.models import Order
from gateway.state import AppState
from providers.events import Ignored

log = logging.getLogger(__name__)


async def webhook(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    name = request.path_params["provider"]
    provider = state.provider(name)
    if provider is None:
        raise NotFound(f"payment provider {name!r} is not enabled", code="unknown_provider")
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
    events = await provider.parse_webhook(body, request.headers)
    outcomes: list[dict[str, str | None]] = []
    for event in events:
        if isinstance(event, Ignored):
            outcomes.append({"result": "ignored", "detail": event.reason, "order_id": None})
            continue
        # Stored before we answer: a 2xx means the event is durable; a DB failure raises
        # and the error table answers 503 so the provider retries.
        result = await state.applier.apply(event, body)
        outcomes.append(
            {"result": result.result.value, "detail": result.detail, "order_id": result.order_id}
        )
    return JSONResponse({"received": len(events), "events": outcomes})
